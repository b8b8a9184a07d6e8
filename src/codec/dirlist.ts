/**
 * The native listing of a format 2 DIR piece (native/dirlist.c; native-notes/native-addon.md,
 * "The native listing"): the decoder in C that readdir of a mount uses for a directory held in
 * one DIR piece, answering names and packed stats without a JavaScript object per entry.
 */
import { dirListing as nativeDirListing } from '../native/index.js'

/**
 * names = one Buffer (".", "..", then each entry's name, each ended by a NUL); stats =
 * STAT_FIELDS doubles per name (vfs/statpack.ts), slots 0 and 1 left zero; inode numbers
 * inoBase + ord. null: declined (a hard-linked entry, or a piece the JavaScript decoder would
 * refuse): list it in JavaScript, which reports any damage.
 */
export function dirListing(payload: Buffer, inoBase: number): [names: Buffer, stats: Float64Array] | null {
  return nativeDirListing(payload, inoBase)
}
