import type { BlockReader, OpenFile } from '../blocks/reader.js'
import { PROCESS_OPEN_UNITS } from '../blocks/units.js'
import type { Repository } from './repository.js'
import { ObjectResolver } from './resolve.js'
import { repoBlockReader } from './stream-source.js'

/** Decompressed frames a one-shot command (cat, verify --against) keeps: it reads each object once, front to back. */
const COMMAND_CACHE_BYTES = 8 << 20

/**
 * Synchronous reads of objects of a repository for the one-shot commands (cat, verify
 * --against): the block reader with the process's open-unit budget, and a resolver of
 * block-map objects. Not for the mount (which must not block its event loop).
 */
export class CommandReader {
  readonly reader: BlockReader
  readonly resolver: ObjectResolver

  constructor(repo: Repository, opts: { fullCheck?: boolean } = {}) {
    this.resolver = new ObjectResolver(repo)
    this.reader = repoBlockReader(repo, { maxOpenUnits: PROCESS_OPEN_UNITS, cacheBytes: COMMAND_CACHE_BYTES, fullCheck: opts.fullCheck })
  }

  /** Object `objIndex` of `objGen`, of `sizeBytes`, opened for reading (objGen 0: an empty object). */
  open(objGen: number, objIndex: number, sizeBytes: number): OpenFile {
    return this.reader.file(objGen ? this.resolver.resolve(objGen, objIndex) : [], sizeBytes, objGen ? { gen: objGen, index: objIndex } : undefined)
  }

  /**
   * Hands the object's bytes to `write` in order, without copying (frame views; holes as
   * views of a zero buffer), until the end or until `write` returns false.
   */
  each(f: OpenFile, write: (data: Buffer, offset: number, bytes: number) => boolean): void {
    eachBytes(this.reader, f, write)
  }

  /** Closes the units it opened. */
  close(): void {
    void this.reader.close()
  }
}

const ZEROS = Buffer.alloc(1 << 20)

/**
 * Hands a file's bytes to `write` in order, without copying (frame views; holes as views of
 * a zero buffer), until the end or until `write` returns false; format 1 and 2 readers alike.
 */
export function eachBytes(reader: BlockReader, f: OpenFile, write: (data: Buffer, offset: number, bytes: number) => boolean): void {
  const CH = 1 << 20
  let go = true
  for (let pos = 0; go && pos < f.sizeBytes; pos += CH) {
    reader.visitSync(f, pos, CH, (p) => {
      if (!go) return
      if (p.data) go = write(p.data, p.offset, p.bytes)
      else for (let off = 0; go && off < p.bytes; off += ZEROS.length) go = write(ZEROS, 0, Math.min(ZEROS.length, p.bytes - off))
    })
  }
}
