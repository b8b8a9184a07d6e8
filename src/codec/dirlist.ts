/**
 * The native listing of a format 2 DIR piece (native/dirlist.c; native-notes/native-addon.md,
 * "The native listing"): the decoder in C that readdir of a mount uses for a directory held in
 * one DIR piece, answering names and packed stats without a JavaScript object per entry.
 */
import { dirListing as nativeDirListing, dirScan as nativeDirScan } from '../native/index.js'

/**
 * names = one Buffer (".", "..", then each entry's name, each ended by a NUL); stats =
 * STAT_FIELDS doubles per name (vfs/statpack.ts), slots 0 and 1 left zero; inode numbers
 * inoBase + ord. null: declined (a hard-linked entry, or a piece the JavaScript decoder would
 * refuse): list it in JavaScript, which reports any damage.
 */
export function dirListing(payload: Buffer, inoBase: number): [names: Buffer, stats: Float64Array] | null {
  return nativeDirListing(payload, inoBase)
}

/** dirScan's row layout (native/dirlist.h DL_ROW_*): doubles per entry, and each field's place. */
export const DIR_ROW = 8
export const ROW_SRC = 0
export const ROW_ENTRY = 1
export const ROW_NAME = 2
export const ROW_NAME_LEN = 3
export const ROW_TYPE = 4
export const ROW_REF = 5
export const ROW_ID = 6
export const ROW_ENTRIES = 7
/** Where dirScan's first row starts (the page's entry count comes first). */
export const ROWS_START = 1

/**
 * A directory page as rows without a JavaScript object per entry (find, native/dirlist.c
 * dl_scan): `payload` a DIR piece's raw payload (base null), or a DIRDELTA's with its base
 * DIR's (the caller has read the base the delta names, and checked R1). Element 0 is the
 * page's entry count; the rows follow from ROWS_START, DIR_ROW doubles an entry: SRC (0:
 * offsets into payload, 1: into base), the offsets of the entry (readEntry decodes it from
 * there), its name and name length, its type, the offsets of its directory PieceRef and that
 * ref's id (-1: not a directory, or an empty one), and the directory's entry count. Every
 * entry has dirListing's checks. `keep` (a name): rows only for the directories that have a
 * piece and the entries named `keep` (find's NAME without wildcards). `baseRows`: what
 * dirScan(base) returned, all rows of the base (it is not parsed again: a base is shared by
 * the deltas of many generations). null: declined: decode it in JavaScript, which reports any
 * damage.
 */
export function dirScan(payload: Buffer, base: Buffer | null, keep: Buffer | null = null, baseRows: Float64Array | null = null): Float64Array | null {
  return nativeDirScan(payload, base, keep, baseRows)
}
