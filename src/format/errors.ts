/** Stable codes for everything that can be wrong with stored bytes. */
export type FormatErrorCode =
  | 'BAD_MAGIC'
  | 'BAD_VERSION'
  | 'TRUNCATED'
  | 'BAD_CHECKSUM'
  | 'BAD_VALUE'
  | 'TRAILING_BYTES'
  /** Well-formed, but needs a feature this bfs does not have (format 2 incompat features). */
  | 'UNSUPPORTED_FEATURE'

/** Raised by every decoder in format/: the bytes are not what the spec says. */
export class FormatError extends Error {
  readonly code: FormatErrorCode
  constructor(code: FormatErrorCode, message: string) {
    super(message)
    this.name = 'FormatError'
    this.code = code
  }
}
