import { specReader } from '../blocks/spec.js'
import type { UnitScan } from '../blocks/reader.js'
import type { WorkerReply, WorkerRequest } from './workers/protocol.js'

/** scanUnit: read and check every frame of one unit through the worker's reader (verify). */
export interface ScanUnitRequest extends WorkerRequest {
  op: 'scanUnit'
  specId: string
  gen: number
  unit: number
  /** The stored block hashes of the unit's blocks (format 2: its slice of the hashes file), compared with the data's. */
  hashes?: Uint8Array
}

export interface ScanUnitReply extends WorkerReply {
  /** What the scan found (bad frames listed), unless the unit could not be opened. */
  scan?: UnitScan
  /** Why the unit could not be opened or validated (the message names it). */
  failed?: string
  /** The unit is not in the store. */
  missing?: boolean
}

export function scanUnit(r: WorkerRequest): ScanUnitReply {
  const req = r as ScanUnitRequest
  try {
    return { id: req.id, scan: specReader(req.specId).scanUnitSync(req.gen, req.unit, 'full', req.hashes ? Buffer.from(req.hashes.buffer, req.hashes.byteOffset, req.hashes.byteLength) : undefined) }
  } catch (err) {
    return { id: req.id, failed: (err as Error).message, missing: (err as { code?: string }).code === 'ENOENT' }
  }
}
