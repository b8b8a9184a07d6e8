/**
 * The seam between bfs and a tape library: what a drive and a changer (robot) do, in the
 * terms of the SCSI stream and media-changer commands (SSC / SMC). The virtual tape library
 * (vtl.ts) implements both; a real drive behind Linux st/sg would implement the same.
 *
 * Positions are logical block addresses as drives count them: block 0 is the first record
 * after the beginning of tape (BOT), and every record and every filemark takes one address.
 * End of data (EOD) is the address after the last record or filemark written.
 */
import type { Clock } from './clock.js'
import type { TapeModel } from './model.js'

export type TapeErrorCode =
  /** No cartridge loaded (SCSI NOT READY). */
  | 'NOT_READY'
  /** LOCATE past end of data (SCSI BLANK CHECK); the drive is left at EOD. */
  | 'EOD'
  /** A write reached the physical end of the medium (VOLUME OVERFLOW); `written` records made it. */
  | 'VOLUME_OVERFLOW'
  /** A command the drive or changer cannot do in its state or with these arguments (ILLEGAL REQUEST). */
  | 'ILLEGAL_REQUEST'
  /** The cartridge file is not a bfs tape or is damaged where the drive must read it. */
  | 'MEDIUM_ERROR'
  /** Another process holds the drive or the library (RESERVATION CONFLICT). */
  | 'BUSY'
  /** The directory is not a virtual tape library. */
  | 'NOT_A_LIBRARY'

export class TapeError extends Error {
  constructor(
    readonly code: TapeErrorCode,
    message: string,
    /** VOLUME_OVERFLOW: records written before the end of the medium. */
    readonly written = 0,
  ) {
    super(message)
    this.name = 'TapeError'
  }
}

/** READ POSITION (long form), plus the end of data the drive knows from the cartridge memory. */
export interface TapePosition {
  /** Logical block address of the next record to read or write. */
  block: number
  /** Filemarks between BOT and `block` (the tape file number). */
  file: number
  /** At the beginning of partition. */
  bop: boolean
  /** At end of data: a read returns nothing, a write appends. */
  eod: boolean
  /** Past the early-warning point: finish the current tape file, then change cartridges. */
  earlyWarning: boolean
  eodBlock: number
}

export interface ReadResult {
  /** Records read, when data was asked for (empty otherwise). */
  records: Buffer[]
  /** Records passed over (read). */
  count: number
  /** Their bytes. */
  bytes: number
  /** The read stopped at a filemark, which it passed (the position is after it). */
  filemark: boolean
  /** The read stopped at end of data (BLANK CHECK); nothing more to read. */
  eod: boolean
}

/** Records to write without storing their bytes: the timing benches fill tapes with these; they read back as zeros. */
export interface FillRecords {
  fill: number
  /** Bytes per record (default the model's record size). */
  bytes?: number
}

export interface WriteResult {
  /** Records written. */
  count: number
  bytes: number
  /** Past the early-warning point after this write. */
  earlyWarning: boolean
}

export interface SpaceResult {
  /** Where the drive is now. */
  block: number
  /** Why it stopped short of the count: a filemark (SPACE blocks), BOT or EOD; null when it did not. */
  stoppedBy: 'filemark' | 'bot' | 'eod' | null
}

export interface DriveStatus {
  index: number
  /** Label of the cartridge in the drive, null when empty. */
  cartridge: string | null
  /** Threaded and ready (after LOAD, until UNLOAD). */
  loaded: boolean
  position: TapePosition | null
}

export interface TapeDrive {
  readonly index: number
  readonly model: TapeModel
  /** This drive's simulated timeline. */
  readonly clock: Clock
  status(): Promise<DriveStatus>
  /** Threads the cartridge the robot put in the drive; positions at BOT. */
  load(): Promise<void>
  /** Rewinds and ejects; the robot may then take the cartridge. */
  unload(): Promise<void>
  rewind(): Promise<void>
  readPosition(): Promise<TapePosition>
  /** LOCATE to a logical block address (≤ EOD). */
  locate(block: number): Promise<void>
  /** SPACE over `count` filemarks or blocks, forward (> 0) or backward (< 0). */
  space(count: number, unit: 'filemarks' | 'blocks'): Promise<SpaceResult>
  /**
   * READ up to `maxRecords` records from the position; stops after a filemark or at EOD.
   * `data: false` reads (and accounts) the records without returning their bytes.
   * `hostRate` (bytes/s) is how fast the host takes the data (default: at least native).
   */
  read(maxRecords: number, opts?: { data?: boolean; hostRate?: number }): Promise<ReadResult>
  /**
   * WRITE records at the position; a write before EOD first erases everything from there on
   * (tape appends only). `hostRate` (bytes/s) is how fast the host feeds the drive.
   */
  write(records: Buffer[] | FillRecords, opts?: { hostRate?: number }): Promise<WriteResult>
  /** WRITE FILEMARKS; `immediate: false` (the default, as IMMED=0) also flushes the buffer to tape. */
  writeFilemarks(count: number, opts?: { immediate?: boolean }): Promise<void>
  /** Writes everything buffered to the medium (WRITE FILEMARKS 0, IMMED=0). */
  flush(): Promise<void>
  /** Saves the drive's state and gives the drive up for other processes. */
  release(): Promise<void>
}

/** A storage element (slot) or a data transfer element (drive). */
export type ElementAddress = { slot: number } | { drive: number }

export interface Inventory {
  slots: Array<string | null>
  drives: Array<{ cartridge: string | null; loaded: boolean }>
}

export interface TapeChanger {
  inventory(): Promise<Inventory>
  /** MOVE MEDIUM: the robot carries a cartridge from one element to another (a drive must have ejected it). */
  move(from: ElementAddress, to: ElementAddress): Promise<void>
}
