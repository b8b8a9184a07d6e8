/*
 * bfs's native read path: see nread.h. Moved here from the fuse-native patch
 * (patches/fuse-native+2.2.6.patch, FUSE_NATIVE_BFS_PATCH 3) unchanged but for the
 * N-API glue, which is in fastpath_napi.c now.
 */
#include "nread.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define NR_UNIT_CHUNK 1024
#define NR_UNIT_CHUNKS 4096
#define NR_FILE_BUCKETS 4096
#define NR_FRAME_BUCKETS 4096
#define NR_SPARE 2
#define NR_KEEP_COMP (256 << 10)
#define NR_POOL 256
// Bytes a cached frame counts against the cache size: its buffer (which may be a reused,
// larger one) and its record.
#define NR_COST(f) ((uint64_t) (f)->cap + sizeof(nr_frame_t))
// A spare buffer counts as much as the frame it will hold, so that taking one for a load
// leaves the total unchanged (nr_buffer).
#define NR_SPARE_COST(cap) ((uint64_t) (cap) + sizeof(nr_frame_t))

typedef struct {
  uint64_t frame_bytes;  // raw bytes of every frame but the last
  uint32_t frames;
  uint64_t *off;         // file offset of each compressed frame
  uint32_t *comp;        // compressed bytes of each frame
  uint32_t *raw;         // raw bytes of each frame
  int fd;
  uint32_t dict;         // 0, or the slot of the dictionary its frames were compressed with (nr_dict)
  // NR_EMPTY → (register) NR_LIVE → (retire, when no read holds it) NR_EMPTY. Readers hold
  // `refs` while they use the tables and the fd; see nr_unit_get and nr_retire.
  int state, refs;
  // Set by every read of the unit, cleared by a retire that then refuses: a second chance,
  // since JavaScript cannot see which units native reads use.
  int accessed;
  // An encrypted unit: its frames are opened (nr->opener) before they are decompressed.
  int sealed;
  nr_seal_t seal;
} nr_unit_t;

#define NR_EMPTY 0
#define NR_LIVE 1
#define NR_RETIRING 2

typedef struct { uint64_t file_off, len, unit_off; uint32_t unit; } nr_ext_t;

typedef struct nr_file_s {
  uint64_t fh, size;
  uint32_t n;
  int adopted;  // a native handle JavaScript serves too (nr_adopt): its release is JavaScript's
  nr_ext_t *ext;
  struct nr_file_s *next;
} nr_file_t;

typedef struct nr_frame_s {
  uint64_t key;
  char *data;
  uint32_t len, cap;
  int loading;  // a thread is loading it: not in the LRU list yet (see nr_copy)
  struct nr_frame_s *hnext, *prev, *next;
} nr_frame_t;

// Where a unit is: (stream, unit) -> id, and a stream's unit size (nr_unit_at). Entries are
// never removed (ids never change their unit) until close.
typedef struct nr_loc_s {
  uint64_t key;  // stream << 32 | unit
  uint32_t id;
  struct nr_loc_s *next;
} nr_loc_t;

typedef struct nr_stream_s {
  uint64_t stream, unit_blocks;
  struct nr_stream_s *next;
} nr_stream_t;

#define NR_LOC_BUCKETS 4096
#define NR_STREAM_BUCKETS 256

struct nr_s {
  nr_unit_t *units[NR_UNIT_CHUNKS];  // chunks allocated on demand, kept until close
  pthread_mutex_t lmu;               // locs, streams
  nr_loc_t *locs[NR_LOC_BUCKETS];
  nr_stream_t *streams[NR_STREAM_BUCKETS];
  uint64_t next_fh;                  // (fmu) the next native handle, less NR_NATIVE_FH
  uint64_t opens, declined, releases;
  pthread_mutex_t fmu;               // files
  nr_file_t *files[NR_FILE_BUCKETS];
  pthread_mutex_t cmu;               // frame cache
  pthread_cond_t loaded;             // (with cmu) a load finished: waiting misses look again
  nr_frame_t *frames[NR_FRAME_BUCKETS];
  nr_frame_t *head, *tail;           // LRU of loaded frames, head = most recently used
  uint64_t bytes, max_bytes;
  uint64_t hits, misses, shared_loads, fallbacks, served;
  uint64_t buffers;                  // (cmu) frame buffers malloc'd (nr_buffer)
  uint32_t test_delay_us;
  int closed, active, freed;
  // Buffers of evicted frames of another size than the load that evicted them, kept for a
  // later load of their size (nr_buffer: a load reuses the buffer it evicts when it fits).
  char *spare[NR_SPARE];
  uint32_t spare_cap[NR_SPARE];
  int nspare;
  // Buffers of pool_cap bytes faulted in ahead of the first loads by nr_prefault's thread,
  // counted against max_bytes as spares are (spare_bytes); taken before any other.
  char *pool[NR_POOL];
  uint32_t pool_cap;
  int npool, prefault_started;
  uint64_t spare_bytes;              // counted against max_bytes with the cached frames
  // Decompression dictionaries (format 2 units compacted with one, format.md §2.9.1), by
  // slot; set once by the control thread before any unit naming the slot is published,
  // read by any thread, freed by nr_free only.
  ZSTD_DDict *dicts[NR_MAX_DICTS];
  nr_open_fn opener;  // set once by the control thread before any sealed unit is published
};

static pthread_key_t nr_tls_key;
static pthread_once_t nr_tls_once = PTHREAD_ONCE_INIT;

typedef struct { ZSTD_DCtx *dctx; char *comp; size_t comp_cap; } nr_tls_t;

static void nr_tls_free (void *p) {
  nr_tls_t *t = (nr_tls_t *) p;
  if (t == NULL) return;
  ZSTD_freeDCtx(t->dctx);
  free(t->comp);
  free(t);
}

static void nr_tls_init (void) { pthread_key_create(&nr_tls_key, nr_tls_free); }

static nr_tls_t *nr_tls (void) {
  pthread_once(&nr_tls_once, nr_tls_init);
  nr_tls_t *t = (nr_tls_t *) pthread_getspecific(nr_tls_key);
  if (t != NULL) return t;
  t = calloc(1, sizeof(nr_tls_t));
  if (t == NULL) return NULL;
  t->dctx = ZSTD_createDCtx();
  if (t->dctx == NULL) { free(t); return NULL; }
  pthread_setspecific(nr_tls_key, t);
  return t;
}

// Bucket of a frame key (unit << 32 | frame): a multiplicative hash, so that frame k of
// every unit does not share one chain.
static inline uint32_t nr_bucket (uint64_t key) {
  return (uint32_t) ((key * 0x9E3779B97F4A7C15ULL) >> 52) % NR_FRAME_BUCKETS;
}

// A live unit, held (refs) until nr_unit_put; NULL if not registered (or being retired).
// refs++ then state, against retire's state = RETIRING then refs: sequentially consistent
// on both sides, so either the reader sees RETIRING or the retirer sees the reference.
static nr_unit_t *nr_unit_get (nr_t *nr, uint32_t id) {
  if (id >= (uint32_t) NR_UNIT_CHUNK * NR_UNIT_CHUNKS) return NULL;
  nr_unit_t *chunk = __atomic_load_n(&nr->units[id / NR_UNIT_CHUNK], __ATOMIC_ACQUIRE);
  if (chunk == NULL) return NULL;
  nr_unit_t *u = &chunk[id % NR_UNIT_CHUNK];
  __atomic_add_fetch(&u->refs, 1, __ATOMIC_SEQ_CST);
  if (__atomic_load_n(&u->state, __ATOMIC_SEQ_CST) == NR_LIVE) {
    if (!__atomic_load_n(&u->accessed, __ATOMIC_RELAXED)) __atomic_store_n(&u->accessed, 1, __ATOMIC_RELAXED);
    return u;
  }
  __atomic_sub_fetch(&u->refs, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

static void nr_unit_put (nr_unit_t *u) {
  __atomic_sub_fetch(&u->refs, 1, __ATOMIC_SEQ_CST);
}

static void nr_unlink (nr_t *nr, nr_frame_t *f) {
  if (f->prev) f->prev->next = f->next; else nr->head = f->next;
  if (f->next) f->next->prev = f->prev; else nr->tail = f->prev;
  f->prev = f->next = NULL;
}

static void nr_push_front (nr_t *nr, nr_frame_t *f) {
  f->prev = NULL;
  f->next = nr->head;
  if (nr->head) nr->head->prev = f; else nr->tail = f;
  nr->head = f;
}

// Takes the least recently used frame out of the cache (not a loading one: those are not in
// the LRU list) and frees its record; its buffer is the caller's. cmu held.
static char *nr_evict_tail (nr_t *nr, uint32_t *cap) {
  nr_frame_t *f = nr->tail;
  nr_unlink(nr, f);
  nr_frame_t **pp = &nr->frames[nr_bucket(f->key)];
  while (*pp != f) pp = &(*pp)->hnext;
  *pp = f->hnext;
  nr->bytes -= NR_COST(f);
  char *data = f->data;
  *cap = f->cap;
  free(f);
  return data;
}

// Frees spare buffers, then the least recently used frames, until the cache is within limit;
// cmu held. A miss never needs this to make room (nr_buffer recycles the buffers of the
// frames it evicts): only a smaller bound (nr_set_cache), close, or loads that found no
// frame to evict (every one loading) leave the cache over its bound.
static void nr_evict_to (nr_t *nr, uint64_t limit) {
  while (nr->bytes + nr->spare_bytes > limit && nr->npool > 0) {
    free(nr->pool[--nr->npool]);
    nr->spare_bytes -= NR_SPARE_COST(nr->pool_cap);
  }
  while (nr->bytes + nr->spare_bytes > limit && nr->nspare > 0) {
    free(nr->spare[--nr->nspare]);
    nr->spare_bytes -= NR_SPARE_COST(nr->spare_cap[nr->nspare]);
  }
  while (nr->bytes + nr->spare_bytes > limit && nr->tail != NULL) {
    uint32_t cap;
    free(nr_evict_tail(nr, &cap));
  }
}

// A buffer of cap bytes serves a frame of n raw bytes (and is not wastefully larger).
static inline int nr_fits (uint32_t cap, uint32_t n) { return cap >= n && cap / 2 <= n; }

// Keeps a buffer that does not fit the load at hand for a later one; when NR_SPARE are kept
// already, the oldest goes. cmu held.
static void nr_spare_put (nr_t *nr, char *b, uint32_t cap) {
  if (nr->nspare == NR_SPARE) {
    free(nr->spare[0]);
    nr->spare_bytes -= NR_SPARE_COST(nr->spare_cap[0]);
    nr->spare[0] = nr->spare[--nr->nspare];
    nr->spare_cap[0] = nr->spare_cap[nr->nspare];
  }
  nr->spare[nr->nspare] = b;
  nr->spare_cap[nr->nspare++] = cap;
  nr->spare_bytes += NR_SPARE_COST(cap);
}

// A buffer for a frame of n raw bytes, and its capacity; cmu held. A buffer that has served
// before, whenever the cache is full: a spare that fits, else the least recently used
// frame's (evicted for it). malloc only while the cache has room to grow (or nothing is left
// to evict). Issue 15: fresh memory is paid for by page faults as the decoder first writes
// it, 256 of them per 1 MiB frame, which cost ~3-5 ms of CPU per frame on the bench machine
// (a VM: ~15 µs a fault) against ~0.7 ms for the decode itself. The eviction of main before
// this (evicted buffers to at most two spares, counted against the bound with the frames,
// then free) freed a 1 MiB buffer about every third miss of a full cache, and glibc gave
// some of them back to the kernel: ~5 % of cold reads decoded into fresh pages.
static char *nr_buffer (nr_t *nr, uint32_t n, uint32_t *cap) {
  if (n == 0) n = 1;
  if (nr->npool > 0 && nr_fits(nr->pool_cap, n)) {
    *cap = nr->pool_cap;
    nr->spare_bytes -= NR_SPARE_COST(*cap);
    return nr->pool[--nr->npool];
  }
  for (;;) {
    for (int k = 0; k < nr->nspare; k++) {
      if (nr_fits(nr->spare_cap[k], n)) {
        char *b = nr->spare[k];
        *cap = nr->spare_cap[k];
        nr->spare_bytes -= NR_SPARE_COST(*cap);
        nr->spare[k] = nr->spare[--nr->nspare];
        nr->spare_cap[k] = nr->spare_cap[nr->nspare];
        return b;
      }
    }
    // room for one more (a frame larger than the whole cache is not cached: no room made)
    if (nr->bytes + nr->spare_bytes + n + sizeof(nr_frame_t) <= nr->max_bytes || nr->tail == NULL ||
        (uint64_t) n + sizeof(nr_frame_t) > nr->max_bytes) break;
    uint32_t c;
    char *b = nr_evict_tail(nr, &c);
    if (nr_fits(c, n)) { *cap = c; return b; }
    nr_spare_put(nr, b, c);  // (a frame of another size: kept for one of its size)
  }
  *cap = n;
  nr->buffers++;
  return malloc(n);
}

static void nr_spare_free (nr_t *nr) {  // cmu held
  while (nr->npool > 0) free(nr->pool[--nr->npool]);
  while (nr->nspare > 0) free(nr->spare[--nr->nspare]);
  nr->spare_bytes = 0;
}

static void nr_put32 (uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t) (v >> (8 * i)); }
static void nr_put64 (uint8_t *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (uint8_t) (v >> (8 * i)); }

static void nr_trim_comp (nr_tls_t *t);

// Reads (and opens, when the unit is sealed) and decompresses frame fr of unit u into data
// (rlen bytes); 0, or -1 on any error.
static int nr_load (nr_t *nr, nr_unit_t *u, uint32_t fr, char *data, uint32_t rlen) {
  uint32_t delay = __atomic_load_n(&nr->test_delay_us, __ATOMIC_RELAXED);
  if (delay) usleep(delay);
  nr_tls_t *t = nr_tls();
  uint32_t clen = u->comp[fr];
  if (t == NULL) return -1;
  if (t->comp_cap < clen) {
    char *c = realloc(t->comp, clen);
    if (c == NULL) return -1;
    t->comp = c;
    t->comp_cap = clen;
  }
  size_t got = 0;
  while (got < clen) {
    ssize_t r = pread(u->fd, t->comp + got, clen - got, (off_t) (u->off[fr] + got));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t) r;
  }
  if (u->sealed) {  // AEAD(key, nonce(1, fr), AAD) of the zstd frame ‖ tag, opened in place
    uint8_t nonce[12] = {1, 0, 0, 0}, aad[28];
    memcpy(aad, "bfs/unit", 8);
    nr_put32(aad + 8, u->seal.stream);
    nr_put32(aad + 12, u->seal.unit);
    nr_put32(aad + 16, u->seal.revision);
    nr_put32(aad + 20, fr);
    nr_put32(aad + 24, rlen);
    nr_put64(nonce + 4, fr);
    // (a sealed frame is never shorter than its tag and a byte: nr_unit refuses such tables)
    long long n = clen > 16 && nr->opener ? nr->opener(u->seal.alg, u->seal.key, nonce, aad, sizeof aad, (const uint8_t *) t->comp, clen, (uint8_t *) t->comp) : -1;
    if (clen <= 16 || n < 0 || n != (long long) clen - 16) {  // damaged or tampered with: JavaScript reports it
      explicit_bzero(t->comp, clen);  // (bytes that did not authenticate are not kept)
      nr_trim_comp(t);
      return -1;
    }
    clen -= 16;
  }
  size_t dn = u->dict ? ZSTD_decompress_usingDDict(t->dctx, data, rlen, t->comp, clen, nr->dicts[u->dict])
                      : ZSTD_decompressDCtx(t->dctx, data, rlen, t->comp, clen);
  nr_trim_comp(t);
  return ZSTD_isError(dn) || dn != rlen ? -1 : 0;
}

static void nr_trim_comp (nr_tls_t *t) {
  if (t->comp_cap > NR_KEEP_COMP) {  // each thread keeps at most a small input buffer
    free(t->comp);
    t->comp = NULL;
    t->comp_cap = 0;
  }
}

static nr_frame_t *nr_find (nr_t *nr, uint64_t key) {  // cmu held
  for (nr_frame_t *f = nr->frames[nr_bucket(key)]; f != NULL; f = f->hnext) if (f->key == key) return f;
  return NULL;
}

// Copies n bytes at `in` of frame fr of unit uid into dst; 0 on success, -1 to fall back.
//
// Single flight: a miss announces its load with a `loading` record in the table (its buffer
// reserved and counted, not in the LRU list, so never evicted) before it drops the lock. A
// concurrent miss of the same frame finds the record and waits on `loaded` instead of
// reading and decompressing the frame a second time. The loader publishes the frame (or,
// when the load failed, removes the record) and wakes the waiters; a waiter that then finds
// no frame answers -1, and JavaScript serves the read (and reports the error).
static int nr_copy (nr_t *nr, nr_unit_t *u, uint32_t uid, uint32_t fr, uint64_t in, char *dst, uint64_t n) {
  uint64_t key = ((uint64_t) uid << 32) | fr;
  pthread_mutex_lock(&nr->cmu);
  nr_frame_t *f = nr_find(nr, key);
  int shared = 0;
  if (f != NULL && f->loading) {
    nr->shared_loads++;
    shared = 1;
    do pthread_cond_wait(&nr->loaded, &nr->cmu);
    while ((f = nr_find(nr, key)) != NULL && f->loading);
    if (f == NULL) { pthread_mutex_unlock(&nr->cmu); return -1; }  // its load failed
  }
  if (f != NULL) {
    memcpy(dst, f->data + in, n);
    if (nr->head != f) { nr_unlink(nr, f); nr_push_front(nr, f); }
    if (!shared) nr->hits++;
    pthread_mutex_unlock(&nr->cmu);
    return 0;
  }
  nr->misses++;
  uint32_t rlen = u->raw[fr], cap = 0;
  char *data = nr_buffer(nr, rlen, &cap);
  if (data == NULL) { pthread_mutex_unlock(&nr->cmu); return -1; }
  // a frame larger than the whole cache is not cached, nor shared
  f = (uint64_t) cap + sizeof(nr_frame_t) <= nr->max_bytes ? malloc(sizeof(nr_frame_t)) : NULL;
  if (f != NULL) {
    f->key = key;
    f->data = data;
    f->len = rlen;
    f->cap = cap;
    f->loading = 1;
    f->prev = f->next = NULL;
    f->hnext = nr->frames[nr_bucket(key)];
    nr->frames[nr_bucket(key)] = f;
    nr->bytes += NR_COST(f);
    nr_evict_to(nr, nr->max_bytes);
  }
  pthread_mutex_unlock(&nr->cmu);

  int rc = nr_load(nr, u, fr, data, rlen);
  if (rc == 0) memcpy(dst, data + in, n);
  if (f == NULL) { free(data); return rc; }

  pthread_mutex_lock(&nr->cmu);
  if (rc == 0) {
    f->loading = 0;
    nr_push_front(nr, f);
    nr_evict_to(nr, nr->max_bytes);
  } else {
    nr_frame_t **pp = &nr->frames[nr_bucket(key)];
    while (*pp != f) pp = &(*pp)->hnext;
    *pp = f->hnext;
    nr->bytes -= NR_COST(f);
    free(f->data);
    free(f);
  }
  pthread_cond_broadcast(&nr->loaded);
  pthread_mutex_unlock(&nr->cmu);
  return rc;
}

static nr_file_t *nr_file_find (nr_t *nr, uint64_t fh) {  // fmu held
  for (nr_file_t *f = nr->files[fh % NR_FILE_BUCKETS]; f != NULL; f = f->next) if (f->fh == fh) return f;
  return NULL;
}

int nr_read (nr_t *nr, uint64_t fh, char *buf, size_t len, int64_t offset) {
  // active/closed is a store-then-load handshake with nr_close on both sides, so both need
  // sequential consistency (acquire/release alone lets x86 reorder the store after the
  // load, and close could free tables under a reader).
  __atomic_add_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
  int rc = -1;
  if (__atomic_load_n(&nr->closed, __ATOMIC_SEQ_CST) || offset < 0 || len > INT32_MAX) goto out;
  pthread_mutex_lock(&nr->fmu);
  // The kernel sends release only after the last read of a handle has returned, so the
  // entry stays valid after the lock is dropped.
  nr_file_t *f = nr_file_find(nr, fh);
  pthread_mutex_unlock(&nr->fmu);
  if (f == NULL) goto out;
  uint64_t pos = (uint64_t) offset;
  if (pos >= f->size) { rc = 0; goto out; }
  uint64_t end = pos + len < f->size ? pos + len : f->size;
  uint32_t lo = 0, hi = f->n;  // first extent ending after pos
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (f->ext[mid].file_off + f->ext[mid].len <= pos) lo = mid + 1; else hi = mid;
  }
  for (uint32_t i = lo; pos < end; i++) {
    uint64_t xs = i < f->n ? f->ext[i].file_off : end;
    if (pos < xs) {  // a hole up to the next extent (or the end)
      uint64_t z = xs < end ? xs : end;
      memset(buf + (pos - (uint64_t) offset), 0, z - pos);
      pos = z;
      if (pos >= end) break;  // ends in the hole: the next extent's unit is not needed
    }
    nr_ext_t *e = &f->ext[i];
    uint64_t xe = e->file_off + e->len < end ? e->file_off + e->len : end;
    nr_unit_t *u = nr_unit_get(nr, e->unit);
    if (u == NULL) goto out;
    int ok = 1;
    while (ok && pos < xe) {
      uint64_t uo = e->unit_off + (pos - e->file_off);
      uint64_t fr = uo / u->frame_bytes, in = uo % u->frame_bytes;
      if (fr >= u->frames || in >= u->raw[fr]) { ok = 0; break; }
      uint64_t n = u->raw[fr] - in;
      if (n > xe - pos) n = xe - pos;
      if (nr_copy(nr, u, e->unit, (uint32_t) fr, in, buf + (pos - (uint64_t) offset), n) != 0) { ok = 0; break; }
      pos += n;
    }
    nr_unit_put(u);
    if (!ok) goto out;
  }
  rc = (int) (end - (uint64_t) offset);
out:
  if (rc < 0) __atomic_add_fetch(&nr->fallbacks, 1, __ATOMIC_RELAXED);
  else __atomic_add_fetch(&nr->served, 1, __ATOMIC_RELAXED);
  __atomic_sub_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
  return rc;
}

// ---- control (one thread at a time: the JavaScript main thread) ------------------------

nr_t *nr_new (uint64_t max_bytes) {
  nr_t *nr = calloc(1, sizeof(nr_t));
  if (nr == NULL) return NULL;
  pthread_mutex_init(&nr->fmu, NULL);
  pthread_mutex_init(&nr->lmu, NULL);
  pthread_mutex_init(&nr->cmu, NULL);
  pthread_cond_init(&nr->loaded, NULL);
  nr->max_bytes = max_bytes;
  return nr;
}

void nr_set_cache (nr_t *nr, uint64_t max_bytes) {
  pthread_mutex_lock(&nr->cmu);
  nr->max_bytes = max_bytes;
  nr_evict_to(nr, nr->max_bytes);
  pthread_mutex_unlock(&nr->cmu);
}

const char *nr_dict (nr_t *nr, uint32_t slot, const void *dict, size_t len) {
  if (nr->closed) return NULL;
  if (slot == 0 || slot >= NR_MAX_DICTS) return "dictionary slot out of range";
  if (nr->dicts[slot] != NULL) return NULL;  // registered already: slots never change
  if (dict == NULL || len == 0) return "empty dictionary";
  ZSTD_DDict *d = ZSTD_createDDict(dict, len);
  if (d == NULL) return "dictionary refused";
  __atomic_store_n(&nr->dicts[slot], d, __ATOMIC_RELEASE);
  return NULL;
}

void nr_set_opener (nr_t *nr, nr_open_fn fn) { nr->opener = fn; }

const char *nr_unit (nr_t *nr, uint32_t id, int fd, uint64_t frame_bytes, const double *d, size_t count, uint32_t dict,
                     const nr_seal_t *seal) {
  if (nr->closed) return NULL;
  if (seal != NULL && nr->opener == NULL) return "no AEAD opener";
  if (id >= (uint32_t) NR_UNIT_CHUNK * NR_UNIT_CHUNKS) return "unit id out of range";
  if (dict >= NR_MAX_DICTS || (dict != 0 && __atomic_load_n(&nr->dicts[dict], __ATOMIC_ACQUIRE) == NULL)) return "unknown dictionary";
  if (fd <= 0 || frame_bytes == 0 || frame_bytes > 0xffffffffULL || (d == NULL && count != 0) || count % 3 != 0 || count / 3 > 0xffffffffULL) return "bad unit";
  uint32_t frames = (uint32_t) (count / 3);
  for (uint32_t k = 0; k < frames; k++) {
    if (!(d[3 * k] >= 0) || !(d[3 * k + 1] >= 1) || d[3 * k + 1] > 0xffffffffU || !(d[3 * k + 2] >= 1) || d[3 * k + 2] > (double) frame_bytes) return "bad frame";
    if (seal != NULL && !(d[3 * k + 1] >= 17)) return "bad frame";  // a sealed frame: its tag and at least a byte
  }
  nr_unit_t *chunk = nr->units[id / NR_UNIT_CHUNK];
  if (chunk == NULL) {
    chunk = calloc(NR_UNIT_CHUNK, sizeof(nr_unit_t));
    if (chunk == NULL) return "out of memory";
    __atomic_store_n(&nr->units[id / NR_UNIT_CHUNK], chunk, __ATOMIC_RELEASE);
  }
  nr_unit_t *u = &chunk[id % NR_UNIT_CHUNK];
  if (__atomic_load_n(&u->state, __ATOMIC_SEQ_CST) != NR_EMPTY) return NULL;  // registered already; units never change
  free(u->off); free(u->comp); free(u->raw);  // (NULL unless a retire could not free them)
  u->off = malloc(sizeof(uint64_t) * (frames ? frames : 1));
  u->comp = malloc(sizeof(uint32_t) * (frames ? frames : 1));
  u->raw = malloc(sizeof(uint32_t) * (frames ? frames : 1));
  if (u->off == NULL || u->comp == NULL || u->raw == NULL) {
    free(u->off); free(u->comp); free(u->raw);
    u->off = NULL; u->comp = u->raw = NULL;
    return "out of memory";
  }
  for (uint32_t k = 0; k < frames; k++) {
    u->off[k] = (uint64_t) d[3 * k];
    u->comp[k] = (uint32_t) d[3 * k + 1];
    u->raw[k] = (uint32_t) d[3 * k + 2];
  }
  u->frames = frames;
  u->frame_bytes = frame_bytes;
  u->fd = fd;
  u->dict = dict;
  u->sealed = seal != NULL;
  if (seal != NULL) u->seal = *seal;
  else explicit_bzero(&u->seal, sizeof u->seal);
  __atomic_store_n(&u->accessed, 0, __ATOMIC_RELAXED);
  __atomic_store_n(&u->state, NR_LIVE, __ATOMIC_SEQ_CST);  // published last
  // BFS_NR_PREFAULT=1 in the mount's environment (a switch for measuring, not documented
  // yet): the cache's buffers faulted in from the first unit on (nr_prefault)
  if (!nr->prefault_started) {
    const char *e = getenv("BFS_NR_PREFAULT");
    if (e != NULL && strcmp(e, "1") == 0) nr_prefault(nr, (uint32_t) frame_bytes);
  }
  return NULL;
}

int nr_retire (nr_t *nr, uint32_t id) {
  int held = 0;
  if (!nr->freed && id < (uint32_t) NR_UNIT_CHUNK * NR_UNIT_CHUNKS) {
    nr_unit_t *chunk = nr->units[id / NR_UNIT_CHUNK];
    nr_unit_t *u = chunk ? &chunk[id % NR_UNIT_CHUNK] : NULL;
    if (u != NULL && __atomic_exchange_n(&u->accessed, 0, __ATOMIC_RELAXED)) {
      held = -1;
    } else if (u != NULL && __atomic_load_n(&u->state, __ATOMIC_SEQ_CST) == NR_LIVE) {
      __atomic_store_n(&u->state, NR_RETIRING, __ATOMIC_SEQ_CST);
      held = __atomic_load_n(&u->refs, __ATOMIC_SEQ_CST);
      if (held == 0) {
        free(u->off); free(u->comp); free(u->raw);
        u->off = NULL; u->comp = u->raw = NULL;
        u->frames = 0;
        u->fd = 0;
        explicit_bzero(&u->seal, sizeof u->seal);  // (a retired unit's key is not kept)
        u->sealed = 0;
        __atomic_store_n(&u->state, NR_EMPTY, __ATOMIC_SEQ_CST);
      } else {
        __atomic_store_n(&u->state, NR_LIVE, __ATOMIC_SEQ_CST);  // in use: stays, ask again later
      }
    }
  }
  return held;
}

const char *nr_file (nr_t *nr, uint64_t fh, uint64_t size, const double *d, size_t count) {
  if (nr->closed) return NULL;
  if ((d == NULL && count != 0) || count % 4 != 0 || count / 4 > 0xffffffffULL) return "bad file";
  uint32_t n = (uint32_t) (count / 4);
  double prev_end = 0;
  for (uint32_t k = 0; k < n; k++) {
    const double *x = d + 4 * k;
    if (!(x[0] >= prev_end) || !(x[1] >= 1) || x[0] + x[1] > (double) size + 4096 || !(x[3] >= 0) ||
        !((x[2] >= 0 && x[2] < (double) NR_UNIT_CHUNK * NR_UNIT_CHUNKS) || x[2] == (double) NR_DEFERRED)) return "bad extent";
    prev_end = x[0] + x[1];
  }
  nr_file_t *f = calloc(1, sizeof(nr_file_t));
  if (f == NULL) return "out of memory";
  f->ext = malloc(sizeof(nr_ext_t) * (n ? n : 1));
  if (f->ext == NULL) { free(f); return "out of memory"; }
  for (uint32_t k = 0; k < n; k++) {
    f->ext[k].file_off = (uint64_t) d[4 * k];
    f->ext[k].len = (uint64_t) d[4 * k + 1];
    f->ext[k].unit = (uint32_t) d[4 * k + 2];
    f->ext[k].unit_off = (uint64_t) d[4 * k + 3];
  }
  f->n = n;
  f->fh = fh;
  f->size = size;
  pthread_mutex_lock(&nr->fmu);
  if (nr->closed) {  // (closed before the lock: nr_close frees the table under it)
    pthread_mutex_unlock(&nr->fmu);
    free(f->ext);
    free(f);
    return NULL;
  }
  nr_file_t **pp = &nr->files[f->fh % NR_FILE_BUCKETS];
  while (*pp != NULL && (*pp)->fh != f->fh) pp = &(*pp)->next;
  nr_file_t *old = *pp;
  if (old != NULL) { f->next = old->next; *pp = f; } else { f->next = NULL; *pp = f; }
  pthread_mutex_unlock(&nr->fmu);
  if (old != NULL) { free(old->ext); free(old); }
  return NULL;
}

void nr_release (nr_t *nr, uint64_t fh) {
  pthread_mutex_lock(&nr->fmu);
  nr_file_t **pp = &nr->files[fh % NR_FILE_BUCKETS];
  while (*pp != NULL && (*pp)->fh != fh) pp = &(*pp)->next;
  nr_file_t *f = *pp;
  if (f != NULL) *pp = f->next;
  pthread_mutex_unlock(&nr->fmu);
  if (f != NULL) { free(f->ext); free(f); }
}

void nr_info (nr_t *nr, nr_info_t *out) {
  out->served = __atomic_load_n(&nr->served, __ATOMIC_RELAXED);
  out->fallbacks = __atomic_load_n(&nr->fallbacks, __ATOMIC_RELAXED);
  pthread_mutex_lock(&nr->cmu);
  out->hits = nr->hits;
  out->misses = nr->misses;
  out->shared_loads = nr->shared_loads;
  out->buffers = nr->buffers;
  out->cached_bytes = nr->bytes;
  pthread_mutex_unlock(&nr->cmu);
}

int nr_close (nr_t *nr) {
  int active = 0;
  if (!nr->freed) {
    __atomic_store_n(&nr->closed, 1, __ATOMIC_SEQ_CST);
    active = __atomic_load_n(&nr->active, __ATOMIC_SEQ_CST);
    if (active == 0) {
      nr->freed = 1;
      pthread_mutex_lock(&nr->cmu);
      nr_evict_to(nr, 0);
      nr_spare_free(nr);
      pthread_mutex_unlock(&nr->cmu);
      pthread_mutex_lock(&nr->fmu);
      for (int b = 0; b < NR_FILE_BUCKETS; b++) {
        while (nr->files[b] != NULL) { nr_file_t *f = nr->files[b]; nr->files[b] = f->next; free(f->ext); free(f); }
      }
      pthread_mutex_unlock(&nr->fmu);
      pthread_mutex_lock(&nr->lmu);
      for (int b = 0; b < NR_LOC_BUCKETS; b++) {
        while (nr->locs[b] != NULL) { nr_loc_t *l = nr->locs[b]; nr->locs[b] = l->next; free(l); }
      }
      for (int b = 0; b < NR_STREAM_BUCKETS; b++) {
        while (nr->streams[b] != NULL) { nr_stream_t *t = nr->streams[b]; nr->streams[b] = t->next; free(t); }
      }
      pthread_mutex_unlock(&nr->lmu);
      for (int c = 0; c < NR_UNIT_CHUNKS; c++) {
        nr_unit_t *chunk = nr->units[c];
        if (chunk == NULL) continue;
        __atomic_store_n(&nr->units[c], NULL, __ATOMIC_RELEASE);
        for (int k = 0; k < NR_UNIT_CHUNK; k++) { free(chunk[k].off); free(chunk[k].comp); free(chunk[k].raw); }
        explicit_bzero(chunk, sizeof(nr_unit_t) * NR_UNIT_CHUNK);  // (keys of sealed units)
        free(chunk);
      }
    }
  }
  return active;
}

void nr_free (nr_t *nr) {
  if (nr == NULL) return;
  for (uint32_t k = 0; k < NR_MAX_DICTS; k++) ZSTD_freeDDict(nr->dicts[k]);
  pthread_mutex_destroy(&nr->fmu);
  pthread_mutex_destroy(&nr->lmu);
  pthread_mutex_destroy(&nr->cmu);
  pthread_cond_destroy(&nr->loaded);
  free(nr);
}

// nr_prefault's thread: buffers of `size` bytes, every page written once, into the pool while
// the cache has room for them and the read path is open. It holds `active` (taken by
// nr_prefault), so nr_close answers non-zero until it has returned; dropping it is its last
// touch of nr.
static void *nr_prefault_main (void *arg) {
  nr_t *nr = (nr_t *) arg;
  uint32_t size = nr->pool_cap;  // (set before the thread was created, never changed)
  for (;;) {
    if (__atomic_load_n(&nr->closed, __ATOMIC_SEQ_CST)) break;
    pthread_mutex_lock(&nr->cmu);
    int room = nr->npool < NR_POOL && nr->bytes + nr->spare_bytes + NR_SPARE_COST(size) <= nr->max_bytes;
    pthread_mutex_unlock(&nr->cmu);
    if (!room) break;
    char *b = malloc(size);
    if (b == NULL) break;
    for (size_t k = 0; k < size; k += 4096) ((volatile char *) b)[k] = 0;
    pthread_mutex_lock(&nr->cmu);
    room = nr->npool < NR_POOL && nr->bytes + nr->spare_bytes + NR_SPARE_COST(size) <= nr->max_bytes;
    if (room) {
      nr->pool[nr->npool++] = b;
      nr->spare_bytes += NR_SPARE_COST(size);
      nr->buffers++;
    }
    pthread_mutex_unlock(&nr->cmu);
    if (!room) { free(b); break; }
  }
  __atomic_sub_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
  return NULL;
}

void nr_prefault (nr_t *nr, uint32_t frame_bytes) {
  if (nr->prefault_started || nr->closed || frame_bytes == 0) return;
  nr->prefault_started = 1;
  pthread_mutex_lock(&nr->cmu);
  nr->pool_cap = frame_bytes;
  pthread_mutex_unlock(&nr->cmu);
  __atomic_add_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
  pthread_attr_t at;
  pthread_t t;
  int ok = pthread_attr_init(&at) == 0;
  if (ok) {
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    ok = pthread_create(&t, &at, nr_prefault_main, nr) == 0;
    pthread_attr_destroy(&at);
  }
  if (!ok) __atomic_sub_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
}

void nr_set_test_load_delay_us (nr_t *nr, uint32_t us) {
  __atomic_store_n(&nr->test_delay_us, us, __ATOMIC_RELAXED);
}

// ---- the native open (nread.h) ----------------------------------------------------------

#define NR_BLOCK 4096ULL

static uint64_t nr_loc_key (uint64_t stream, uint64_t unit) { return stream << 32 | unit; }

static uint32_t nr_loc_bucket (uint64_t key) { return (uint32_t) ((key * 0x9E3779B97F4A7C15ULL) >> 52) % NR_LOC_BUCKETS; }

const char *nr_unit_at (nr_t *nr, uint32_t id, uint64_t stream, uint64_t unit, uint64_t unit_blocks) {
  if (nr->closed) return NULL;
  if (id >= (uint32_t) NR_UNIT_CHUNK * NR_UNIT_CHUNKS || stream > UINT32_MAX || unit > UINT32_MAX || unit_blocks == 0 || unit_blocks > UINT32_MAX) return "bad unit location";
  uint64_t key = nr_loc_key(stream, unit);
  pthread_mutex_lock(&nr->lmu);
  nr_stream_t *t = nr->streams[stream % NR_STREAM_BUCKETS];
  while (t != NULL && t->stream != stream) t = t->next;
  if (t == NULL) {
    t = malloc(sizeof *t);
    if (t == NULL) { pthread_mutex_unlock(&nr->lmu); return "out of memory"; }
    t->stream = stream;
    t->unit_blocks = unit_blocks;
    t->next = nr->streams[stream % NR_STREAM_BUCKETS];
    nr->streams[stream % NR_STREAM_BUCKETS] = t;
  } else if (t->unit_blocks != unit_blocks) {
    pthread_mutex_unlock(&nr->lmu);
    return "a stream's unit size changed";
  }
  nr_loc_t *l = nr->locs[nr_loc_bucket(key)];
  while (l != NULL && l->key != key) l = l->next;
  const char *why = NULL;
  if (l == NULL) {
    l = malloc(sizeof *l);
    if (l == NULL) why = "out of memory";
    else {
      l->key = key;
      l->id = id;
      l->next = nr->locs[nr_loc_bucket(key)];
      nr->locs[nr_loc_bucket(key)] = l;
    }
  } else if (l->id != id) why = "a unit's id changed";
  pthread_mutex_unlock(&nr->lmu);
  return why;
}

// A unit registered now (a read may still find it retired later: it then falls back).
static int nr_unit_live (nr_t *nr, uint32_t id) {
  nr_unit_t *u = nr_unit_get(nr, id);
  if (u == NULL) return 0;
  nr_unit_put(u);
  return 1;
}

int nr_open_blocks (nr_t *nr, uint64_t size, const nr_bext_t *x, size_t n, uint64_t *fh) {
  // (the active/closed handshake of nr_read: close never frees the tables under this)
  __atomic_add_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
  int rc = -1;
  nr_file_t *f = NULL;
  if (__atomic_load_n(&nr->closed, __ATOMIC_SEQ_CST) || n > 64) goto out;
  // the native extents as nativeExtents (blocks/reader.ts) makes them: split at unit ends
  nr_ext_t ext[256];
  uint32_t m = 0;
  uint64_t prev_end = 0;
  for (size_t i = 0; i < n; i++) {
    if (x[i].count == 0 || x[i].fb < prev_end || (x[i].fb + x[i].count) * NR_BLOCK > size + NR_BLOCK) goto out;  // (nr_file's rule)
    prev_end = x[i].fb + x[i].count;
    pthread_mutex_lock(&nr->lmu);
    nr_stream_t *t = nr->streams[x[i].stream % NR_STREAM_BUCKETS];
    while (t != NULL && t->stream != x[i].stream) t = t->next;
    uint64_t ub = t ? t->unit_blocks : 0;
    pthread_mutex_unlock(&nr->lmu);
    if (ub == 0) goto out;  // no unit of this stream registered yet
    uint64_t fb = x[i].fb, sb = x[i].sb, left = x[i].count;
    while (left > 0) {
      uint64_t unit = sb / ub, in = sb - unit * ub, k = ub - in < left ? ub - in : left;
      if (m >= sizeof ext / sizeof ext[0] || unit > UINT32_MAX) goto out;
      uint64_t key = nr_loc_key(x[i].stream, unit);
      pthread_mutex_lock(&nr->lmu);
      nr_loc_t *l = nr->locs[nr_loc_bucket(key)];
      while (l != NULL && l->key != key) l = l->next;
      uint32_t id = l ? l->id : NR_DEFERRED;
      pthread_mutex_unlock(&nr->lmu);
      if (id == NR_DEFERRED || !nr_unit_live(nr, id)) goto out;  // not open: JavaScript opens it
      ext[m++] = (nr_ext_t) {fb * NR_BLOCK, k * NR_BLOCK, in * NR_BLOCK, id};
      fb += k;
      sb += k;
      left -= k;
    }
  }
  f = calloc(1, sizeof(nr_file_t));
  if (f == NULL) goto out;
  f->ext = malloc(sizeof(nr_ext_t) * (m ? m : 1));
  if (f->ext == NULL) goto out;
  memcpy(f->ext, ext, sizeof(nr_ext_t) * m);
  f->n = m;
  f->size = size;
  pthread_mutex_lock(&nr->fmu);
  // a number no open handle has (2^31 of them before it wraps)
  do f->fh = NR_NATIVE_FH + (nr->next_fh++ & 0x7fffffffULL);
  while (nr_file_find(nr, f->fh) != NULL);
  f->next = nr->files[f->fh % NR_FILE_BUCKETS];
  nr->files[f->fh % NR_FILE_BUCKETS] = f;
  pthread_mutex_unlock(&nr->fmu);
  *fh = f->fh;
  f = NULL;
  rc = 0;
out:
  if (f != NULL) { free(f->ext); free(f); }
  __atomic_add_fetch(rc == 0 ? &nr->opens : &nr->declined, 1, __ATOMIC_RELAXED);
  __atomic_sub_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
  return rc;
}

int nr_release_native (nr_t *nr, uint64_t fh) {
  if (fh < NR_NATIVE_FH) return 0;
  __atomic_add_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
  int rc = 1;
  nr_file_t *f = NULL;
  if (!__atomic_load_n(&nr->closed, __ATOMIC_SEQ_CST)) {
    pthread_mutex_lock(&nr->fmu);
    nr_file_t **pp = &nr->files[fh % NR_FILE_BUCKETS];
    while (*pp != NULL && (*pp)->fh != fh) pp = &(*pp)->next;
    /* adopted, or not ours (JavaScript kept the handle when adopting failed): JavaScript releases it,
       so its entry and open file are freed; only a handle found here is released here */
    if (*pp == NULL || (*pp)->adopted) rc = 0;
    else { f = *pp; *pp = f->next; }
    pthread_mutex_unlock(&nr->fmu);
  }
  if (f != NULL) { free(f->ext); free(f); }
  if (rc) __atomic_add_fetch(&nr->releases, 1, __ATOMIC_RELAXED);
  __atomic_sub_fetch(&nr->active, 1, __ATOMIC_SEQ_CST);
  return rc;
}

int nr_adopt (nr_t *nr, uint64_t fh) {
  int found = 0;
  if (nr->closed) return 0;
  pthread_mutex_lock(&nr->fmu);
  nr_file_t *f = nr_file_find(nr, fh);
  if (f != NULL) { f->adopted = 1; found = 1; }
  pthread_mutex_unlock(&nr->fmu);
  return found;
}

void nr_open_info (nr_t *nr, uint64_t *opens, uint64_t *declined, uint64_t *releases) {
  *opens = __atomic_load_n(&nr->opens, __ATOMIC_RELAXED);
  *declined = __atomic_load_n(&nr->declined, __ATOMIC_RELAXED);
  *releases = __atomic_load_n(&nr->releases, __ATOMIC_RELAXED);
}
