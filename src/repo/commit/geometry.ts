/**
 * Geometry of a generation's data stream: the unit, frame and level defaults every writer
 * uses, and the stream a writer places its data in.
 */
import type { GenStats } from '../../format/manifest.js'
import { BfsError } from '../errors.js'
import type { WorkerPool } from '../pool.js'
import type { Repository } from '../repository.js'
import { StreamWriter } from './stream.js'
import { UNENCRYPTED_SEED } from '../../codec/hash.js'

/** Blocks per unit: 20 MiB. */
export const DEFAULT_UNIT_BLOCKS = 5120
/**
 * Frame size by kind of generation: 128 KiB for both since 2026-12-04 (issue 15). A cold
 * 4 KiB read decompresses its whole frame: a 1 MiB frame cost ~650–700 µs of zstd, and the
 * mount's cold pread median was ~3× squashfuse's (128 KiB blocks); with 128 KiB frames the
 * Linux tree's cold pread median fell from ~850 to ~290 µs, level with squashfuse, for
 * 232 MB stored instead of 206 MB at backup (185 MB after `bfs compact`, whose level 15 and
 * stream dictionary small frames get). Sequential reads prefetch by bytes, not frames
 * (blocks/reader.ts), and every frame cache is sized in bytes. Generations written before
 * keep their 1 MiB (files) or 256 KiB frames: readers take what the stream records.
 */
export const DEFAULT_FRAME_BLOCKS = { files: 32, volume: 32 } as const
export const DEFAULT_LEVEL = 3

/** Which frame size default applies. */
export type GenerationKind = keyof typeof DEFAULT_FRAME_BLOCKS

/** A writer's stream settings (the backup options of the same names; defaults above). */
export interface StreamSettings {
  /** Blocks per unit (default 5120 = 20 MiB). */
  unitBlocks?: number
  /** Blocks per frame (default by kind: DEFAULT_FRAME_BLOCKS). */
  frameBlocks?: number
  /** zstd level (default 3). */
  level?: number
}

/** A new stream for generation genId with the backup's unit, frame and level settings. */
export function newStream(repo: Repository, pool: WorkerPool, genId: number, opts: StreamSettings, kind: GenerationKind): StreamWriter {
  const { unitBlocks, frameBlocks } = streamGeometry(opts, kind)
  // A volume backup reads data in the main thread: it fills a spare buffer while the workers compress.
  return new StreamWriter(repo.store, pool, genId, unitBlocks, frameBlocks, opts.level ?? DEFAULT_LEVEL, repo.config.hashAlg, UNENCRYPTED_SEED /* format 1 is never encrypted */, kind === 'volume')
}

/** Unit and frame size of a backup; a unit must hold a whole number of frames. */
export function streamGeometry(opts: Pick<StreamSettings, 'unitBlocks' | 'frameBlocks'>, kind: GenerationKind): { unitBlocks: number; frameBlocks: number } {
  const unitBlocks = opts.unitBlocks ?? DEFAULT_UNIT_BLOCKS
  const frameBlocks = opts.frameBlocks ?? Math.min(DEFAULT_FRAME_BLOCKS[kind], unitBlocks)
  if (unitBlocks % frameBlocks !== 0) {
    throw new BfsError('BAD_INPUT', opts.frameBlocks === undefined ? `--unit-blocks must be a multiple of ${frameBlocks} (or give --frame-blocks)` : '--unit-blocks must be a multiple of --frame-blocks')
  }
  return { unitBlocks, frameBlocks }
}

export function emptyStats(): GenStats {
  return { entries: 0, files: 0, dirs: 0, logicalBytes: 0, storedBytes: 0, metaBytes: 0, newFiles: 0, changedFiles: 0, unchangedFiles: 0, skipped: 0, bytesRead: 0, seconds: 0 }
}
