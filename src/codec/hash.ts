import { hash } from 'node:crypto'
import * as native from '../native/index.js'

/** Bytes per block everywhere in bfs. */
export const BLOCK_BYTES = 4096
/** Bytes of a stored block hash. */
export const HASH_BYTES = 8

/**
 * Block hash algorithms (the repository config's hashAlg):
 * - 'xxh64': XXH64 (seed 0) of the 4096-byte block, 8 bytes little-endian (native, ~6 GB/s);
 * - 'sha256-64': the first 8 bytes of SHA-256 of the block.
 * A frame check is the same function over the frame's concatenated block hashes.
 */
export type HashAlg = 'xxh64' | 'sha256-64'
export const DEFAULT_HASH_ALG: HashAlg = 'xxh64'

/** Hashes `blocks` consecutive blocks of `data` starting at byte `start` into `out` (8 bytes each). */
export function hashBlocks(alg: HashAlg, data: Buffer, start: number, blocks: number, out: Buffer, outOffset: number): void {
  if (alg === 'xxh64') return native.hashBlocks(data, start, blocks, out, outOffset)
  for (let i = 0; i < blocks; i++) {
    const o = start + i * BLOCK_BYTES
    ;(hash('sha256', data.subarray(o, o + BLOCK_BYTES), 'buffer') as Buffer).copy(out, outOffset + i * HASH_BYTES, 0, HASH_BYTES)
  }
}

/** Hash of one 4 KiB block into out[outOffset…+8]. */
export function blockHash(alg: HashAlg, block: Buffer, out: Buffer, outOffset: number): void {
  hashBlocks(alg, block, 0, 1, out, outOffset)
}

/** Frame check: the hash function over the concatenated block hashes of the frame's blocks. */
export function frameCheck(alg: HashAlg, blockHashes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(HASH_BYTES)
  if (alg === 'xxh64') native.xxh64Into(blockHashes, out, 0)
  else (hash('sha256', blockHashes, 'buffer') as Buffer).copy(out, 0, 0, HASH_BYTES)
  return out
}

export const ZERO_BLOCK = Buffer.alloc(BLOCK_BYTES)
const zeroHashes = new Map<HashAlg, Buffer>()
/** Hash of an all-zero block (what a hole reads as). */
export function zeroBlockHash(alg: HashAlg): Buffer {
  let h = zeroHashes.get(alg)
  if (!h) {
    h = Buffer.alloc(HASH_BYTES)
    blockHash(alg, ZERO_BLOCK, h, 0)
    zeroHashes.set(alg, h)
  }
  return h
}

/** True when the 4 KiB block at `offset` is all zero bytes. */
export function isZeroBlock(data: Buffer, offset: number): boolean {
  return data.compare(ZERO_BLOCK, 0, BLOCK_BYTES, offset, offset + BLOCK_BYTES) === 0
}

/** The all-zero BLAKE3 key: piece ids and content digests of unencrypted repositories (format.md §2.5). */
export const ZERO_ID_KEY = Buffer.alloc(32)

/** Keyed BLAKE3 (32 bytes) of a raw piece payload: its id (format.md §2.5). */
export function pieceIdOf(payload: Uint8Array, key: Uint8Array = ZERO_ID_KEY): Buffer {
  return native.blake3(payload, key)
}

/** XXH64 (seed 0) of `bytes` as an unsigned 64-bit number: the page-cut hash of unencrypted repositories (format.md §2.13.5). */
export function xxh64Seed0(bytes: Buffer): bigint {
  native.xxh64Into(bytes, xxhOut, 0)
  return xxhOut.readBigUInt64LE(0)
}
const xxhOut = Buffer.alloc(8)
