import { hash } from 'node:crypto'

/** Bytes per block everywhere in bfs. */
export const BLOCK_BYTES = 4096
/** Bytes of a stored block hash. */
export const HASH_BYTES = 8

/** Block hash (hashAlg 'sha256-64'): the first 8 bytes of SHA-256 of the 4096-byte block. */
export function blockHash(block: Uint8Array, out: Buffer, outOffset: number): void {
  ;(hash('sha256', block, 'buffer') as Buffer).copy(out, outOffset, 0, HASH_BYTES)
}

/** Hashes `blocks` consecutive blocks of `data` starting at byte `start` into `out` (8 bytes each). */
export function hashBlocks(data: Uint8Array, start: number, blocks: number, out: Buffer, outOffset: number): void {
  for (let i = 0; i < blocks; i++) {
    const o = start + i * BLOCK_BYTES
    blockHash(data.subarray(o, o + BLOCK_BYTES), out, outOffset + i * HASH_BYTES)
  }
}

/** Frame check: first 8 bytes of SHA-256 over the concatenated block hashes of the frame's blocks. */
export function frameCheck(blockHashes: Uint8Array): Buffer {
  return (hash('sha256', blockHashes, 'buffer') as Buffer).subarray(0, HASH_BYTES)
}

export const ZERO_BLOCK = Buffer.alloc(BLOCK_BYTES)
export const ZERO_BLOCK_HASH = Buffer.alloc(HASH_BYTES)
blockHash(ZERO_BLOCK, ZERO_BLOCK_HASH, 0)

/** True when the 4 KiB block at `offset` is all zero bytes. */
export function isZeroBlock(data: Buffer, offset: number): boolean {
  return data.compare(ZERO_BLOCK, 0, BLOCK_BYTES, offset, offset + BLOCK_BYTES) === 0
}
