/**
 * The native read path's side of the block reader: what it is told (units with their
 * descriptor and seek table, files with their extents) and the extent table layout it reads.
 * Today the patched fuse-native binding implements NativeSink; issue 12 moves it to
 * native/nread.c behind a hook (native-notes/fuse-native.md).
 */

/** A native read path that serves reads without this process's event loop, once it knows a handle's extents and the units they point into. */
export interface NativeSink {
  /**
   * A unit it may read: id, descriptor, full frame size in bytes, [offset, compBytes, rawBytes]
   * per frame; `at`: where it is (stream, unit, the stream's unit size in blocks), which lets
   * the native open (native/hooks.c) map a file's extents to unit ids without JavaScript;
   * `seal`: an encrypted unit's AEAD (0 AES-256-GCM, 1 ChaCha20-Poly1305), object key and
   * revision, with which the native path opens its frames (`at` is then required).
   */
  unit(id: number, fd: number, frameBytes: number, frames: Float64Array, at?: { stream: number; unit: number; unitBlocks: number }, dict?: number, seal?: { alg: number; key: Buffer; revision: number }): void
  /**
   * Dictionary slot `slot` (1 … {@link MAX_NATIVE_DICTS} - 1) holds a zstd dictionary: a unit
   * registered with `dict` = slot decompresses every frame with it. Absent: units with a
   * dictionary stay in JavaScript.
   */
  dict?(slot: number, bytes: Buffer): void
  /** Unregisters a unit unless a read holds it; returns how many do (0: its fd may be closed), or -1 if read since last asked (kept, once). */
  retire(id: number): number
  file(handle: number, size: number, extents: Float64Array): void
  release(handle: number): void
  /** A handle the native open gave is served in JavaScript too from now on: its release comes to JavaScript. */
  adopt?(handle: number): void
}

/** Dictionary slots the native read path has (native/nread.h NR_MAX_DICTS; slot 0 means none). */
export const MAX_NATIVE_DICTS = 256

/** Unit ids the native read path accepts (its table holds 2^22). */
export const MAX_NATIVE_UNITS = 1 << 22

/**
 * Unit id of an extent the native path must hand back to JavaScript (a claimed range, or a
 * unit whose bytes are not on local disk). Today's binding refuses a table containing it
 * (ids must be < MAX_NATIVE_UNITS), so such a handle is read wholly in JavaScript, which is
 * correct; the C read path of issue 12 step 11 returns -1 for these extents only.
 */
export const NATIVE_DEFERRED = 0xffffffff

/** Doubles per extent in a native extent table: [fileOffset, length, unitId | NATIVE_DEFERRED, offsetInUnit], bytes. */
export const NATIVE_EXTENT_FIELDS = 4
