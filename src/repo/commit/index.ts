/**
 * The commit module: the one way a generation is written (writeGeneration), the stream its
 * data goes into, the writer lock and crash recovery. Writers import it from here.
 */
export { writeGeneration, type CommitOptions, type CommitResult, type GenerationBody, type GenerationSpec } from './generation.js'
export { DEFAULT_FRAME_BLOCKS, DEFAULT_LEVEL, DEFAULT_UNIT_BLOCKS, emptyStats, newStream, streamGeometry, type GenerationKind, type StreamSettings } from './geometry.js'
export { recoverRepository, storageError } from './recover.js'
export { WriterLock, type LockInfo } from './lock.js'
export { StreamWriter } from './stream.js'
