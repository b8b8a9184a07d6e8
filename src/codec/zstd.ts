import { createRequire } from 'node:module'
import type * as Binding from 'zstd-napi/binding.js'
import { pieceRaw } from '../native/index.js'

/**
 * The raw zstd-napi binding: contexts that compress into caller-owned buffers (no copies).
 * Loaded on first use, not when this module is: a 1 MB addon (its own libzstd) that a
 * format 2 mount never needs before it answers (its pieces and native reads use
 * bfs_native's zstd) cost every command's start its dlopen, ~5–10 ms (issue 15, mount ready).
 */
let loaded: typeof Binding | undefined
const zb = (): typeof Binding => (loaded ??= loadBinding())

/**
 * The addon could not be loaded: an installation problem, not damage. Callers that turn a
 * decompression failure into "corrupt" rethrow this one unchanged, so a missing or broken
 * zstd-napi is never reported as a corrupt repository. Its `code` is ELIBACC ("cannot access
 * a needed shared library"), which the CLI reports as a runtime failure (exit 1).
 */
export class CodecUnavailable extends Error {
  readonly code = 'ELIBACC'
  constructor(message: string) {
    super(message)
    this.name = 'CodecUnavailable'
  }
}

/** Rethrows `err` when it is a CodecUnavailable (for the catch blocks that report corruption). */
export function rethrowUnavailable(err: unknown): void {
  if (err instanceof CodecUnavailable) throw err
}

function loadBinding(): typeof Binding {
  try {
    return createRequire(import.meta.url)('zstd-napi/binding.js') as typeof Binding
  } catch (err) {
    const why = ((err as Error)?.message ?? String(err)).split('\n')[0]
    throw new CodecUnavailable(`cannot load the zstd library (zstd-napi: ${why}); reinstall bfs ('make build')`)
  }
}

/** Compresses independent zstd frames with the content checksum on (XXH64 of the raw bytes, checked on decompress). */
export class FrameCompressor {
  private readonly cctx = new (zb().CCtx)()
  constructor(level: number) {
    this.cctx.setParameter(zb().CParameter.compressionLevel, level)
    this.cctx.setParameter(zb().CParameter.checksumFlag, 1)
    this.cctx.setParameter(zb().CParameter.contentSizeFlag, 1)
  }
  /** Worst-case compressed size of `rawBytes`. */
  static bound(rawBytes: number): number {
    return zb().compressBound(rawBytes)
  }
  /** Compresses `src` into `dst`; returns the number of bytes written. */
  compressInto(dst: Uint8Array, src: Uint8Array): number {
    return this.cctx.compress2(dst, src)
  }
  /**
   * Every later frame is compressed with zstd dictionary `dict` (its id goes in each frame's
   * header, so a decoder given another dictionary refuses the frame). Set once, after the level.
   */
  useDictionary(dict: Uint8Array): this {
    this.cctx.loadDictionary(dict)
    return this
  }
}

/** A zstd dictionary loaded for decompression (shared by any number of decompressors). */
export class DecompressionDictionary {
  readonly ddict: InstanceType<typeof Binding.DDict>
  constructor(readonly bytes: Uint8Array) {
    this.ddict = new (zb().DDict)(bytes)
  }
  /** The dictionary's own id (0: a raw-content dictionary). */
  get id(): number {
    return this.ddict.getDictID()
  }
}

/** Decompresses whole frames into caller-owned buffers. Throws on corrupt input or checksum mismatch. */
export class FrameDecompressor {
  /** Made at the first frame (the readers that hold one may never decompress in JavaScript). */
  private dctx: InstanceType<typeof Binding.DCtx> | undefined
  /**
   * Decompresses one frame; returns the number of raw bytes written. `dict`: the dictionary
   * the frame was compressed with (a frame whose header names another id is refused).
   */
  decompressInto(dst: Uint8Array, src: Uint8Array, dict?: DecompressionDictionary): number {
    const d = (this.dctx ??= new (zb().DCtx)())
    return dict ? d.decompressUsingDDict(dst, src, dict.ddict) : d.decompress(dst, src)
  }
}

/** One-shot helpers for metadata files. */
export function compressBuffer(raw: Buffer, level = 3): Buffer {
  const c = new FrameCompressor(level)
  const dst = Buffer.allocUnsafe(FrameCompressor.bound(raw.length))
  const n = c.compressInto(dst, raw)
  return Buffer.from(dst.subarray(0, n))
}

export function decompressBuffer(stored: Buffer, rawBytes: number): Buffer {
  const dst = Buffer.allocUnsafe(rawBytes)
  const n = new FrameDecompressor().decompressInto(dst, stored)
  if (n !== rawBytes) throw new Error(`decompressed ${n} bytes, expected ${rawBytes}`)
  return dst
}

/**
 * Decompresses one whole zstd frame whose header records its content size (bfs writes every
 * frame with it), refusing one that claims more than `maxRawBytes` before allocating. Throws
 * a plain Error on anything wrong (the caller names the place); zstd's content checksum is
 * checked when the frame has one.
 */
export function decompressFrame(stored: Uint8Array, maxRawBytes: number, dctx: FrameDecompressor = new FrameDecompressor(), dict?: DecompressionDictionary): Buffer {
  const z = zb() // outside the try: a missing addon is not "not a zstd frame"
  let size: number | null
  try {
    size = z.getFrameContentSize(stored)
  } catch (err) {
    throw new Error(`not a zstd frame (${(err as Error).message})`)
  }
  if (size === null || !Number.isSafeInteger(size) || size < 0) throw new Error('zstd frame without a content size')
  if (size > maxRawBytes) throw new Error(`zstd frame of ${size} bytes, at most ${maxRawBytes} allowed`)
  let frameBytes: number
  try {
    frameBytes = z.findFrameCompressedSize(stored)
  } catch (err) {
    throw new Error(`not a whole zstd frame (${(err as Error).message})`)
  }
  if (frameBytes !== stored.length) throw new Error(`${stored.length} bytes hold a zstd frame of ${frameBytes} bytes and something else`)
  const dst = Buffer.allocUnsafe(size)
  const n = dctx.decompressInto(dst, stored, dict)
  if (n !== size) throw new Error(`zstd frame decompressed to ${n} bytes, its header says ${size}`)
  return dst
}

/**
 * A stored piece (one whole zstd frame with its content size, at most `maxRawBytes`)
 * decompressed and checked against its id (keyed BLAKE3 of the raw bytes) in one native call
 * (find reads tens of thousands of small pieces); null when anything is wrong: the caller's
 * own checks (decompressFrame, checkPieceId) then name it.
 */
export function decompressPiece(stored: Buffer, maxRawBytes: number, idKey: Uint8Array, id: Buffer): Buffer | null {
  return pieceRaw(stored, maxRawBytes, idKey, id)
}
