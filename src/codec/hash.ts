import { hash } from 'node:crypto'
import * as native from '../native/index.js'

/** Bytes per block everywhere in bfs. */
export const BLOCK_BYTES = 4096
/** Bytes of a stored block hash. */
export const HASH_BYTES = 8

/**
 * Block hash algorithms (the repository config's hashAlg):
 * - 'xxh64': XXH64 of the 4096-byte block with the repository's seed, 8 bytes little-endian
 *   (native, ~6 GB/s);
 * - 'sha256-64': the first 8 bytes of SHA-256 of the block (unencrypted repositories only:
 *   an encrypted one is xxh64, format.md §2.22).
 * A frame check is the same function over the frame's concatenated block hashes.
 *
 * The seed (format.md §2.22): 0 in every unencrypted repository of either format
 * (UNENCRYPTED_SEED), the repository's `blockSeed` (kBlockSeed's first 8 bytes LE) in an
 * encrypted one. Every function here takes it explicitly, with no default, so that no caller
 * can fall back to seed 0 by omission; a repository gives it from one place (Repo2.blockSeed).
 */
export type HashAlg = 'xxh64' | 'sha256-64'
export const DEFAULT_HASH_ALG: HashAlg = 'xxh64'

/** The XXH64 seed of an unencrypted repository (both formats): block hashes, frame checks and page cuts as they always were. */
export const UNENCRYPTED_SEED = 0n

/** Refuses a seed with the sha256-64 algorithm: an encrypted repository hashes with seeded XXH64 only. */
function sha256Unseeded(seed: bigint): void {
  if (seed !== 0n) throw new Error('sha256-64 block hashes take no seed (an encrypted repository is xxh64)')
}

/** Hashes `blocks` consecutive blocks of `data` starting at byte `start` into `out` (8 bytes each), with the repository's `seed`. */
export function hashBlocks(alg: HashAlg, data: Buffer, start: number, blocks: number, out: Buffer, outOffset: number, seed: bigint): void {
  if (alg === 'xxh64') return native.hashBlocks(data, start, blocks, out, outOffset, seed)
  sha256Unseeded(seed)
  for (let i = 0; i < blocks; i++) {
    const o = start + i * BLOCK_BYTES
    ;(hash('sha256', data.subarray(o, o + BLOCK_BYTES), 'buffer') as Buffer).copy(out, outOffset + i * HASH_BYTES, 0, HASH_BYTES)
  }
}

/** Hash of one 4 KiB block into out[outOffset…+8]. */
export function blockHash(alg: HashAlg, block: Buffer, out: Buffer, outOffset: number, seed: bigint): void {
  hashBlocks(alg, block, 0, 1, out, outOffset, seed)
}

/** Frame check: the hash function (same seed) over the concatenated block hashes of the frame's blocks. */
export function frameCheck(alg: HashAlg, blockHashes: Buffer, seed: bigint): Buffer {
  const out = Buffer.allocUnsafe(HASH_BYTES)
  if (alg === 'xxh64') native.xxh64Into(blockHashes, out, 0, seed)
  else {
    sha256Unseeded(seed)
    ;(hash('sha256', blockHashes, 'buffer') as Buffer).copy(out, 0, 0, HASH_BYTES)
  }
  return out
}

export const ZERO_BLOCK = Buffer.alloc(BLOCK_BYTES)
const zeroHashes = new Map<string, Buffer>()
/** Hash of an all-zero block (what a hole reads as), with the repository's seed. */
export function zeroBlockHash(alg: HashAlg, seed: bigint): Buffer {
  const k = `${alg}:${seed}`
  let h = zeroHashes.get(k)
  if (!h) {
    h = Buffer.alloc(HASH_BYTES)
    blockHash(alg, ZERO_BLOCK, h, 0, seed)
    if (zeroHashes.size >= 16) zeroHashes.clear()
    zeroHashes.set(k, h)
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

/**
 * XXH64 (seed 0) of `bytes` as an unsigned 64-bit number: the page-cut hash of unencrypted
 * repositories (format.md §2.13.5) and the checks of the local capture file (BFSBILG, §2.16.1,
 * never stored). A repository's page cuts come from pageCutHash(repo.blockSeed).
 */
export function xxh64Seed0(bytes: Buffer): bigint {
  native.xxh64Into(bytes, xxhOut, 0)
  return xxhOut.readBigUInt64LE(0)
}
const xxhOut = Buffer.alloc(8)

/** XXH64 with `seed` of `bytes` as an unsigned 64-bit number. */
export function xxh64Seeded(bytes: Buffer, seed: bigint): bigint {
  native.xxh64Into(bytes, xxhOut, 0, seed)
  return xxhOut.readBigUInt64LE(0)
}

/** The page-cut hash (and BI record check) of a repository whose seed is `seed` (§2.13.5, §2.22): xxh64Seed0 itself for seed 0. */
export function pageCutHash(seed: bigint): (bytes: Buffer) => bigint {
  return seed === 0n ? xxh64Seed0 : (bytes) => xxh64Seeded(bytes, seed)
}
