/*
 * nread: bfs's native read path (see native-notes/native-addon.md, "The native read path").
 *
 * Plain C: no N-API, no libfuse. A read of a file handle whose extents and units the
 * JavaScript side registered is served on the calling thread (a libfuse worker, through
 * the hook table of native/fuse_hooks.h): pread of the compressed frame from the unit
 * file, zstd decompression (which checks the frame's content checksum), copy out, with a
 * byte-bounded LRU of decompressed frames. Anything it cannot serve (a handle or unit not
 * registered, a deferred extent, an I/O error, a corrupt frame) returns -1 and the read is
 * served in JavaScript, which reports the error.
 *
 * Threads: nr_read runs on any number of threads at once. Every other call is made by one
 * control thread at a time (the JavaScript main thread), as the N-API glue does.
 */
#ifndef BFS_NREAD_H
#define BFS_NREAD_H

#include <stddef.h>
#include <stdint.h>

typedef struct nr_s nr_t;

/* Unit ids are < NR_MAX_UNITS (chunks of 1024 slots, 4096 chunks). */
#define NR_MAX_UNITS (1024u * 4096u)
/* Unit id of an extent the native path never serves (JavaScript does). */
#define NR_DEFERRED 0xFFFFFFFFu

typedef struct {
  uint64_t served, fallbacks, hits, misses, cached_bytes;
  uint64_t shared_loads; /* misses that waited for another thread's load of the same frame */
  uint64_t buffers;      /* frame buffers allocated: only while the cache grows (or a size changes) */
} nr_info_t;

/* A new read path with a frame cache of max_bytes; NULL without memory. Never freed while
 * any thread may still call nr_read on it (see nr_free). */
nr_t *nr_new(uint64_t max_bytes);
/* Changes the frame cache's bound (evicting down to it). */
void nr_set_cache(nr_t *nr, uint64_t max_bytes);
/* Dictionary slots (1 … NR_MAX_DICTS - 1; 0 means none). */
#define NR_MAX_DICTS 256u
/* Slot `slot` holds the zstd dictionary dict[0 .. len) (copied): frames of units registered
 * with that slot decompress with it. NULL on success (also when the slot is set already:
 * slots never change), else why it was refused. Control thread only. */
const char *nr_dict(nr_t *nr, uint32_t slot, const void *dict, size_t len);
/* An encrypted unit's frames (format.md §2.9, §2.22): frame i is stored as AEAD(key, nonce =
 * u32 LE 1 ‖ u64 LE i, AAD = "bfs/unit" ‖ u32 LE stream, unit, revision, i, raw bytes of i)
 * over its zstd frame, then the 16-byte tag. */
typedef struct {
  int alg;              /* the opener's number for the AEAD (native/aead.h) */
  uint8_t key[32];      /* the unit's object key */
  uint32_t stream, unit, revision;
} nr_seal_t;
/* Opens in[0 .. len) (ciphertext ‖ tag) into out (may be in): len - 16, or < 0 when it does
 * not authenticate or cannot. bfs_aead_open's shape; set by the caller (nr_set_opener) so
 * that nread.c itself needs no crypto library. */
typedef long long (*nr_open_fn)(int alg, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                                const uint8_t *in, size_t len, uint8_t *out);
/* The opener encrypted units' frames go through (control thread, before any such unit). */
void nr_set_opener(nr_t *nr, nr_open_fn fn);
/* Unit `id` is readable through `fd`; each frame but the last holds frame_bytes raw bytes;
 * frames: [file offset, compressed bytes, raw bytes] per frame (compressed bytes: as stored,
 * with the tag of a sealed frame); dict: 0, or the slot of the dictionary its frames need (set
 * before); seal: NULL, or the unit's key and identity (copied; refused without an opener).
 * NULL on success (also when the id is registered already: units never change), else why it
 * was refused. A frame that does not authenticate is a failed read (-1: JavaScript serves it
 * and reports the damage). */
const char *nr_unit(nr_t *nr, uint32_t id, int fd, uint64_t frame_bytes, const double *frames, size_t count, uint32_t dict,
                    const nr_seal_t *seal);
/* Unregisters unit `id` unless a read holds it: 0 (its fd may be closed now), the number of
 * reads holding it, or -1 when it was read since the last call (kept once, mark cleared). */
int nr_retire(nr_t *nr, uint32_t id);
/* Handle fh is a file of `size` bytes: [file offset, length, unit id, unit offset] per
 * extent, in file order; gaps read as zeros. Replaces an earlier registration of fh. */
const char *nr_file(nr_t *nr, uint64_t fh, uint64_t size, const double *extents, size_t count);
/* Forgets handle fh (the kernel sends no read of it after its release). */
void nr_release(nr_t *nr, uint64_t fh);
/* Bytes read into buf (0 at the end of the file), or -1: let JavaScript serve this read. */
int nr_read(nr_t *nr, uint64_t fh, char *buf, size_t len, int64_t offset);
void nr_info(nr_t *nr, nr_info_t *out);

/* ---- the native open (native/hooks.c; native-notes/native-addon.md, "open in C") ----
 * A handle opened here, on a libfuse thread, is numbered NR_NATIVE_FH and up (JavaScript's
 * handles stay below): JavaScript never saw its open. A read of it that the native path
 * cannot serve reaches JavaScript with that number, which then opens the file by its path
 * and says so (nr_adopt); its release is then JavaScript's too. */
#define NR_NATIVE_FH 0x80000000ULL

/* Unit `id` is unit `unit` of stream `stream`, whose units hold unit_blocks 4 KiB blocks
 * each (the JS thread, when it registers the unit; ids never change their unit). NULL, or
 * why it was refused. */
const char *nr_unit_at(nr_t *nr, uint32_t id, uint64_t stream, uint64_t unit, uint64_t unit_blocks);

/* An extent of a file in 4 KiB blocks: file block, count, stream, stream block. */
typedef struct { uint64_t fb, count, stream, sb; } nr_bext_t;

/* Any thread: registers a new handle (*fh, >= NR_NATIVE_FH) for a file of `size` bytes
 * whose data is x[0 .. n) (sorted, gaps are holes), when every unit it reads is located
 * (nr_unit_at) and registered now; 0. Else -1 and nothing is registered: let JavaScript
 * open it (it opens the units). */
int nr_open_blocks(nr_t *nr, uint64_t size, const nr_bext_t *x, size_t n, uint64_t *fh);
/* Any thread (release): 1 when fh was a native handle JavaScript never adopted and is
 * forgotten now (or unknown: nothing to do), 0 when JavaScript must release it (one of its
 * own, or adopted). */
int nr_release_native(nr_t *nr, uint64_t fh);
/* JS thread: JavaScript serves native handle fh from now on too (a read fell back to it),
 * so its release goes to JavaScript. 1 if fh was registered. */
int nr_adopt(nr_t *nr, uint64_t fh);
/* Native opens and releases so far. */
void nr_open_info(nr_t *nr, uint64_t *opens, uint64_t *declined, uint64_t *releases);
/* Stops the path (later reads return -1) and returns the reads still in progress; when
 * there are none it frees the tables (unit fds may be closed then). Never waits. */
int nr_close(nr_t *nr);
/* Frees nr itself: only once nr_close returned 0 and no thread can call nr_read on it any
 * more (the tests; a mount never frees its read path). */
void nr_free(nr_t *nr);

/* Tests only: every load sleeps this long before it reads, so that concurrent misses of the
 * same frame meet it. */
void nr_set_test_load_delay_us(nr_t *nr, uint32_t us);

/* Control thread, once per read path (later calls do nothing): a thread of its own allocates
 * buffers of frame_bytes and writes every page of them while the cache has room, so that the
 * first loads of a mount decode into memory already faulted in (issue 15: ~15 µs a page fault
 * on the bench VM). nr_close answers non-zero until the thread has returned. */
void nr_prefault(nr_t *nr, uint32_t frame_bytes);

#endif
