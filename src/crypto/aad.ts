/**
 * The associated data of each kind of message, byte for byte as native-notes/format.md
 * specifies it (§2.9 units, §2.10 hashes, §2.11 packs, §2.17 dedup objects; envelopes'
 * is format/v2/envelope.ts `envelopeAad`, key files' format/v2/keyfile.ts `keyFileAad`).
 * An ASCII label, then little-endian integers: a message moved to another object, position
 * or length does not open (§2.22 "AAD binds the logical identity").
 */

function build(label: string, fields: Array<[number, 4 | 8]>): Buffer {
  const head = Buffer.from(label, 'latin1')
  const out = Buffer.alloc(head.length + fields.reduce((n, [, w]) => n + w, 0))
  head.copy(out, 0)
  let o = head.length
  for (const [v, w] of fields) {
    if (!Number.isSafeInteger(v) || v < 0 || (w === 4 && v > 0xffffffff)) throw new RangeError(`${label}: ${v} does not fit a u${w * 8}`)
    if (w === 4) out.writeUInt32LE(v, o)
    else out.writeBigUInt64LE(BigInt(v), o)
    o += w
  }
  return out
}

export const aad = {
  /** §2.9: frame i of a unit revision, with its raw length. */
  unitFrame: (stream: number, unit: number, revision: number, frame: number, rawBytes: number): Buffer =>
    build('bfs/unit', [[stream, 4], [unit, 4], [revision, 4], [frame, 4], [rawBytes, 4]]),
  /** §2.9: a unit revision's index. */
  unitIndex: (stream: number, unit: number, revision: number): Buffer => build('bfs/unit-index', [[stream, 4], [unit, 4], [revision, 4]]),
  /** §2.10: chunk c of a stream's hashes. */
  hashesChunk: (stream: number, chunk: number): Buffer => build('bfs/hashes', [[stream, 4], [chunk, 8]]),
  /** §2.11: the piece at byte `offset` of a pack, `storedLen` bytes with its tag. */
  packPiece: (run: number, pack: number, offset: number, storedLen: number): Buffer =>
    build('bfs/piece', [[run, 4], [pack, 4], [offset, 8], [storedLen, 4]]),
  /** §2.11: a pack's table. */
  packTable: (run: number, pack: number): Buffer => build('bfs/pack-table', [[run, 4], [pack, 4]]),
  /** §2.17: a dedup object's page or directory at `position`. */
  dedup: (run: number, seq: number, position: number): Buffer => build('bfs/dedup', [[run, 4], [seq, 4], [position, 8]]),
}
