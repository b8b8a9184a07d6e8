/*
 * Threaded stress test of the native read path (native/nread.c), without Node or FUSE.
 * Built twice by `make native-test`, with -fsanitize=thread and with
 * -fsanitize=address,undefined, and run for a few seconds each (`make test` runs it).
 *
 *   nread_stress SECONDS
 *
 * Unit files of zstd frames (with content checksums, as bfs writes them; one frame of one
 * unit is corrupt) are made in a temporary directory. Files are lists of extents into those
 * units with holes between them. READERS threads read random ranges of random open handles
 * with nr_read and check every byte they were served against the generator the data was
 * made from (a served read that needed the corrupt frame is a failure too). Meanwhile the
 * control thread (this one), the way the mount's JavaScript does:
 *   - retires units (an fd is closed only after nr_retire returned 0) and registers them again
 *     with a fresh fd,
 *   - releases handles, the way the kernel does: only when no read of that handle is in
 *     progress, and registers a new handle number for the file,
 *   - resizes the frame cache,
 *   - closes the read path while reads are in progress (nr_close until it returns 0; reads
 *     after it must answer -1), then starts a new one: a round.
 * OPENERS threads meanwhile do what the native open does on libfuse threads: open a random
 * run of stream blocks (nr_open_blocks: every unit located by nr_unit_at and registered, else
 * declined), read it and check the bytes, release it (nr_release_native).
 * Exit status 0 when every check held; the counters are printed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#include "../nread.h"

#define UNITS 40
#define FRAMES 6
#define FRAME_BYTES 16384u
#define LAST_FRAME 10000u /* raw bytes of each unit's last frame */
#define UNIT_RAW ((FRAMES - 1) * FRAME_BYTES + LAST_FRAME)
#define FILES 24
#define MAX_EXT 12
#define READERS 8
#define OPENERS 2
#define UNIT_BLOCKS 22 /* 4 KiB blocks of a unit as the native open sees them (<= UNIT_RAW) */
#define BAD_UNIT 7
#define BAD_FRAME 2

static char dir[] = "/tmp/nread-stress-XXXXXX";
static char upath[UNITS][64];
static double utable[UNITS][FRAMES * 3];

typedef struct { uint64_t file_off, len, unit_off; uint32_t unit; } ext_t;
typedef struct { ext_t ext[MAX_EXT]; uint32_t n; uint64_t size; double reg[MAX_EXT * 4]; } layout_t;
static layout_t files[FILES];

/* A handle slot: the file it shows, its current handle number, and the reads using it. */
typedef struct {
  _Atomic int open;     /* 1: readers may start reads of fh */
  _Atomic int readers;  /* reads of fh in progress */
  _Atomic uint64_t fh;
} slot_t;
static slot_t slots[FILES];

static nr_t *_Atomic cur;     /* the read path of this round */
static _Atomic int closing;   /* nr_close has been called in this round */
static _Atomic int stop;
static _Atomic uint64_t n_served, n_fallback, n_after_close, n_reads;
static _Atomic uint64_t n_opens, n_declined;
static _Atomic int openers_in; /* openers using the round's read path */
static _Atomic int failed;

static uint32_t rng_next(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return (uint32_t)(*s >> 11);
}

/* Raw byte `off` of unit u: compressible runs with some noise. */
static inline uint8_t gen(uint32_t u, uint64_t off) {
  uint64_t x = (off >> 5) * 0x9E3779B97F4A7C15ULL + u * 0xC2B2AE3D27D4EB4FULL;
  return (uint8_t)((off & 31) < 24 ? (x >> 56) : (x >> 40) ^ off);
}

static void fail(const char *what) {
  fprintf(stderr, "nread_stress: FAIL: %s\n", what);
  atomic_store(&failed, 1);
}

static void make_units(void) {
  if (mkdtemp(dir) == NULL) { perror("mkdtemp"); exit(2); }
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
  ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 3);
  static uint8_t raw[FRAME_BYTES];
  static uint8_t comp[FRAME_BYTES * 2];
  for (uint32_t u = 0; u < UNITS; u++) {
    snprintf(upath[u], sizeof upath[u], "%s/unit-%02u", dir, u);
    int fd = open(upath[u], O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) { perror("open"); exit(2); }
    uint64_t pos = 32; /* a header, as in bfs's unit files */
    for (uint32_t f = 0; f < FRAMES; f++) {
      uint32_t rlen = f == FRAMES - 1 ? LAST_FRAME : FRAME_BYTES;
      for (uint32_t i = 0; i < rlen; i++) raw[i] = gen(u, (uint64_t)f * FRAME_BYTES + i);
      size_t c = ZSTD_compress2(cc, comp, sizeof comp, raw, rlen);
      if (ZSTD_isError(c)) { fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(c)); exit(2); }
      if (u == BAD_UNIT && f == BAD_FRAME) comp[c / 2] ^= 0x5a;
      if (pwrite(fd, comp, c, (off_t)pos) != (ssize_t)c) { perror("pwrite"); exit(2); }
      utable[u][3 * f] = (double)pos;
      utable[u][3 * f + 1] = (double)c;
      utable[u][3 * f + 2] = (double)rlen;
      pos += c;
    }
    close(fd);
  }
  ZSTD_freeCCtx(cc);
}

static void make_files(void) {
  uint64_t s = 0x1234567;
  for (int i = 0; i < FILES; i++) {
    layout_t *l = &files[i];
    uint64_t off = rng_next(&s) % 3 ? 0 : rng_next(&s) % 20000;
    l->n = 1 + rng_next(&s) % MAX_EXT;
    for (uint32_t k = 0; k < l->n; k++) {
      ext_t *e = &l->ext[k];
      e->unit = rng_next(&s) % UNITS;
      e->len = 1 + rng_next(&s) % (3 * FRAME_BYTES);
      if (e->len > UNIT_RAW) e->len = UNIT_RAW;
      e->unit_off = rng_next(&s) % (UNIT_RAW - e->len + 1);
      e->file_off = off;
      off += e->len + (rng_next(&s) % 2 ? 0 : rng_next(&s) % 30000); /* a hole, or none */
      double *r = &l->reg[4 * k];
      r[0] = (double)e->file_off; r[1] = (double)e->len; r[2] = e->unit; r[3] = (double)e->unit_off;
    }
    l->size = off + rng_next(&s) % 5000;
  }
}

/* Checks a served read: every byte, and that it needed no byte of the corrupt frame. */
static void check(const layout_t *l, const uint8_t *buf, uint64_t pos, int n, size_t len) {
  uint64_t want = pos >= l->size ? 0 : (l->size - pos < len ? l->size - pos : len);
  if ((uint64_t)n != want) { fail("served a wrong byte count"); return; }
  for (int i = 0; i < n; i++) {
    uint64_t p = pos + (uint64_t)i;
    uint8_t exp = 0;
    for (uint32_t k = 0; k < l->n; k++) {
      const ext_t *e = &l->ext[k];
      if (p >= e->file_off && p < e->file_off + e->len) {
        uint64_t uo = e->unit_off + (p - e->file_off);
        if (e->unit == BAD_UNIT && uo / FRAME_BYTES == BAD_FRAME) { fail("served bytes of a corrupt frame"); return; }
        exp = gen(e->unit, uo);
        break;
      }
    }
    if (buf[i] != exp) {
      char m[128];
      snprintf(m, sizeof m, "wrong byte at %llu: %u, expected %u", (unsigned long long)p, buf[i], exp);
      fail(m);
      return;
    }
  }
}

static void *reader(void *arg) {
  uint64_t s = 0x9E3779B97F4A7C15ULL * ((uintptr_t)arg + 1);
  static _Thread_local uint8_t buf[4 * FRAME_BYTES];
  while (!atomic_load(&stop)) {
    int i = rng_next(&s) % FILES;
    slot_t *sl = &slots[i];
    /* as the kernel: a read of a handle starts only while it is open, and its release
     * waits for the reads in progress (so the read path is loaded after the check: the
     * control thread frees it only once every slot is closed and idle) */
    atomic_fetch_add(&sl->readers, 1);
    nr_t *nr = atomic_load(&sl->open) ? atomic_load(&cur) : NULL;
    if (nr == NULL) {
      atomic_fetch_sub(&sl->readers, 1);
      sched_yield();
      continue;
    }
    uint64_t fh = atomic_load(&sl->fh);
    const layout_t *l = &files[i];
    uint64_t pos = rng_next(&s) % (l->size + 2000);
    size_t len = 1 + rng_next(&s) % sizeof buf;
    int was_closing = atomic_load(&closing);
    int n = nr_read(nr, fh, (char *)buf, len, (int64_t)pos);
    atomic_fetch_add(&n_reads, 1);
    if (n >= 0) {
      atomic_fetch_add(&n_served, 1);
      check(l, buf, pos, n, len);
      if (was_closing) fail("a read that started after nr_close was served");
    } else {
      atomic_fetch_add(&n_fallback, 1);
      if (was_closing) atomic_fetch_add(&n_after_close, 1);
    }
    atomic_fetch_sub(&sl->readers, 1);
    if (was_closing) {
      struct timespec ts = {0, 200 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  return NULL;
}

/* As the native open (hooks.c): a file of `count` blocks at stream block sb, opened, read, released. */
static void *opener(void *arg) {
  uint64_t s = 0xC2B2AE3D27D4EB4FULL * ((uintptr_t)arg + 7);
  static _Thread_local uint8_t buf[6 * 4096];
  while (!atomic_load(&stop)) {
    atomic_fetch_add(&openers_in, 1);
    nr_t *nr = atomic_load(&cur);
    if (nr == NULL) {
      atomic_fetch_sub(&openers_in, 1);
      sched_yield();
      continue;
    }
    uint64_t count = 1 + rng_next(&s) % 40, sb = rng_next(&s) % (UNITS * UNIT_BLOCKS - count);
    uint64_t size = count * 4096 - rng_next(&s) % 4096;
    nr_bext_t x = {0, count, 1, sb};
    uint64_t fh = 0;
    if (nr_open_blocks(nr, size, &x, 1, &fh) != 0) {
      atomic_fetch_add(&n_declined, 1);
    } else {
      atomic_fetch_add(&n_opens, 1);
      if (fh < NR_NATIVE_FH) fail("a native handle below NR_NATIVE_FH");
      uint64_t pos = rng_next(&s) % size;
      size_t len = 1 + rng_next(&s) % sizeof buf;
      int n = nr_read(nr, fh, (char *)buf, len, (int64_t)pos);
      if (n >= 0) {
        uint64_t want = size - pos < len ? size - pos : len;
        if ((uint64_t)n != want) fail("native open: served a wrong byte count");
        for (int i = 0; i < n; i++) {
          uint64_t p = pos + (uint64_t)i, b = sb + p / 4096;
          uint32_t u = (uint32_t)(b / UNIT_BLOCKS);
          uint64_t uo = (b % UNIT_BLOCKS) * 4096 + p % 4096;
          if (u == BAD_UNIT && uo / FRAME_BYTES == BAD_FRAME) { fail("native open: served bytes of a corrupt frame"); break; }
          if (buf[i] != gen(u, uo)) { fail("native open: wrong byte"); break; }
        }
      }
      if (nr_release_native(nr, fh) != 1) fail("native open: release not answered");
      if (nr_release_native(nr, 5) != 0) fail("native release took a JavaScript handle");
    }
    atomic_fetch_sub(&openers_in, 1);
  }
  return NULL;
}

static int fds[UNITS]; /* registered units' fds, 0 = not registered */

static void register_unit(nr_t *nr, uint32_t u) {
  int fd = open(upath[u], O_RDONLY);
  if (fd < 0) { perror("open"); exit(2); }
  const char *why = nr_unit(nr, u, fd, FRAME_BYTES, utable[u], FRAMES * 3, 0, NULL);
  if (!why) why = nr_unit_at(nr, u, 1, u, UNIT_BLOCKS);
  if (why) { fail(why); close(fd); return; }
  fds[u] = fd;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t next_fh = 1;

static void open_slot(nr_t *nr, int i) {
  uint64_t fh = next_fh++;
  const char *why = nr_file(nr, fh, files[i].size, files[i].reg, files[i].n * 4);
  if (why) fail(why);
  atomic_store(&slots[i].fh, fh);
  atomic_store(&slots[i].open, 1);
}

/* As the kernel releases a handle: no new reads, wait for those in progress, then release. */
static void close_slot(nr_t *nr, int i) {
  atomic_store(&slots[i].open, 0);
  while (atomic_load(&slots[i].readers) > 0) sched_yield();
  nr_release(nr, atomic_load(&slots[i].fh));
}

static void round_(double seconds, uint64_t *s, uint32_t delay_us) {
  nr_t *nr = nr_new(16 * FRAME_BYTES);
  if (nr == NULL) { fail("nr_new"); return; }
  nr_set_test_load_delay_us(nr, delay_us); /* slow loads: more concurrent misses of one frame */
  for (uint32_t u = 0; u < UNITS; u++) if (rng_next(s) % 4) register_unit(nr, u);
  for (int i = 0; i < FILES; i++) open_slot(nr, i);
  atomic_store(&closing, 0);
  atomic_store(&cur, nr);
  uint64_t retired = 0, held = 0, second = 0;
  double end = now_s() + seconds;
  while (now_s() < end) {
    uint32_t what = rng_next(s) % 100;
    uint32_t u = rng_next(s) % UNITS;
    if (what < 30) {
      if (fds[u] == 0) register_unit(nr, u);
      else {
        int h = nr_retire(nr, u);
        if (h == 0) { close(fds[u]); fds[u] = 0; retired++; }
        else if (h < 0) second++;
        else held++;
      }
    } else if (what < 60) {
      int i = rng_next(s) % FILES;
      close_slot(nr, i);
      open_slot(nr, i);
    } else if (what < 63) {
      nr_set_cache(nr, (uint64_t)(rng_next(s) % 64) * FRAME_BYTES);
    } else if (what < 68) {
      /* a storm: retire and register again as fast as possible, to meet reads holding units */
      for (int k = 0; k < 300; k++) {
        uint32_t v = rng_next(s) % UNITS;
        if (fds[v] == 0) { register_unit(nr, v); continue; }
        int h = nr_retire(nr, v);
        if (h == 0) { close(fds[v]); fds[v] = 0; retired++; register_unit(nr, v); }
        else if (h < 0) second++;
        else held++;
      }
    }
    /* the readers get most of the time: an action every ~100 µs */
    struct timespec ts = {0, 100 * 1000};
    nanosleep(&ts, NULL);
  }
  /* close while reads go on: it never waits, and frees once none is in progress */
  int active = nr_close(nr), polls = 0;
  atomic_store(&closing, 1); /* a read that sees this started after nr_close stopped the path */
  while (active > 0) { polls++; sched_yield(); active = nr_close(nr); }
  if (active < 0) fail("nr_close < 0");
  /* reads after the close answer -1 (the readers check it) */
  struct timespec ts = {0, 5 * 1000 * 1000};
  nanosleep(&ts, NULL);
  atomic_store(&cur, NULL);
  for (int i = 0; i < FILES; i++) close_slot(nr, i);
  for (uint32_t u = 0; u < UNITS; u++) if (fds[u]) { close(fds[u]); fds[u] = 0; }
  nr_info_t info;
  nr_info(nr, &info);
  if (info.cached_bytes != 0) fail("tables not freed by nr_close");
  printf("round: served %llu fallbacks %llu hits %llu misses %llu shared loads %llu; retired %llu, held %llu, second chances %llu; close polled %d\n",
         (unsigned long long)info.served, (unsigned long long)info.fallbacks, (unsigned long long)info.hits,
         (unsigned long long)info.misses, (unsigned long long)info.shared_loads, (unsigned long long)retired, (unsigned long long)held,
         (unsigned long long)second, polls);
  /* no reader still uses nr: they all saw cur == NULL or finished */
  for (int i = 0; i < FILES; i++) while (atomic_load(&slots[i].readers) > 0) sched_yield();
  while (atomic_load(&openers_in) > 0) sched_yield();
  nr_free(nr);
}

/* READERS threads miss one frame at once (a slow load, so they meet it): one load, shared. */
static nr_t *sf_nr;
static pthread_barrier_t sf_barrier;
static int sf_rc[READERS];
static uint8_t sf_buf[READERS][1000];

static void *sf_reader(void *arg) {
  uintptr_t k = (uintptr_t)arg;
  pthread_barrier_wait(&sf_barrier);
  sf_rc[k] = nr_read(sf_nr, 1, (char *)sf_buf[k], sizeof sf_buf[k], (int64_t)(BAD_FRAME * FRAME_BYTES + 100 * k));
  return NULL;
}

static void single_flight(int corrupt) {
  uint32_t u = corrupt ? BAD_UNIT : BAD_UNIT + 1;
  sf_nr = nr_new(64 * FRAME_BYTES);
  nr_set_test_load_delay_us(sf_nr, 50 * 1000);
  int fd = open(upath[u], O_RDONLY);
  double ext[4] = {0, UNIT_RAW, u, 0};
  if (nr_unit(sf_nr, u, fd, FRAME_BYTES, utable[u], FRAMES * 3, 0, NULL) || nr_file(sf_nr, 1, UNIT_RAW, ext, 4)) fail("single flight: register");
  pthread_barrier_init(&sf_barrier, NULL, READERS);
  pthread_t t[READERS];
  for (uintptr_t k = 0; k < READERS; k++) pthread_create(&t[k], NULL, sf_reader, (void *)k);
  for (int k = 0; k < READERS; k++) pthread_join(t[k], NULL);
  pthread_barrier_destroy(&sf_barrier);
  nr_info_t i;
  nr_info(sf_nr, &i);
  printf("single flight (%s frame): misses %llu, shared loads %llu, hits %llu\n", corrupt ? "corrupt" : "good",
         (unsigned long long)i.misses, (unsigned long long)i.shared_loads, (unsigned long long)i.hits);
  /* one load; the others waited for it (or, arriving after it, hit) */
  if (i.misses != 1 || i.shared_loads + i.hits != READERS - 1 || i.shared_loads == 0) fail("single flight: not one shared load");
  for (int k = 0; k < READERS; k++) {
    if (corrupt) {
      if (sf_rc[k] != -1) fail("single flight: a waiter of a failed load was served");
      continue;
    }
    uint64_t off = BAD_FRAME * FRAME_BYTES + 100 * (uint64_t)k;
    int ok = sf_rc[k] == (int)sizeof sf_buf[k];
    for (size_t j = 0; ok && j < sizeof sf_buf[k]; j++) ok = sf_buf[k][j] == gen(u, off + j);
    if (!ok) fail("single flight: wrong bytes");
  }
  if (!corrupt && i.cached_bytes == 0) fail("single flight: the frame was not cached");
  if (corrupt && i.cached_bytes != 0) fail("single flight: a failed load left a record");
  if (nr_close(sf_nr) != 0) fail("single flight: close");
  close(fd);
  nr_free(sf_nr);
}

/* A full cache reuses the buffers of the frames it evicts (issue 15: fresh memory costs a
 * page fault per 4 KiB as the decoder first writes it). One thread reads the first byte of
 * every frame of every good unit in turn, three times over, through a cache of CACHE_FRAMES
 * frames: every read a miss. Buffers are allocated only while the cache grows: at most
 * CACHE_FRAMES, plus the spares of the two frame sizes (the last frame of a unit is smaller;
 * it fits a full frame's buffer, but a buffer made for it does not fit a full frame). */
#define CACHE_FRAMES 8
static void recycle(void) {
  nr_t *nr = nr_new(CACHE_FRAMES * (FRAME_BYTES + 256));
  int fds[UNITS];
  for (uint32_t u = 0; u < UNITS; u++) {
    fds[u] = open(upath[u], O_RDONLY);
    double ext[4] = {0, UNIT_RAW, u, 0};
    if (nr_unit(nr, u, fds[u], FRAME_BYTES, utable[u], FRAMES * 3, 0, NULL) || nr_file(nr, 100 + u, UNIT_RAW, ext, 4)) fail("recycle: register");
  }
  uint64_t reads = 0;
  for (int pass = 0; pass < 3; pass++) {
    for (uint32_t u = 0; u < UNITS; u++) {
      if (u == BAD_UNIT) continue;
      for (uint32_t f = 0; f < FRAMES; f++) {
        char b[64];
        uint64_t off = (uint64_t)f * FRAME_BYTES + 7 * u;
        int n = nr_read(nr, 100 + u, b, sizeof b, (int64_t)off);
        reads++;
        int ok = n == (int)sizeof b;
        for (int j = 0; ok && j < n; j++) ok = (uint8_t)b[j] == gen(u, off + j);
        if (!ok) fail("recycle: wrong bytes");
      }
    }
  }
  nr_info_t i;
  nr_info(nr, &i);
  printf("recycle: %llu reads, misses %llu, buffers allocated %llu, cached bytes %llu\n", (unsigned long long)reads,
         (unsigned long long)i.misses, (unsigned long long)i.buffers, (unsigned long long)i.cached_bytes);
  if (i.misses != reads) fail("recycle: a read hit (the test needs every read to miss)");
  if (i.buffers > CACHE_FRAMES + 2) fail("recycle: a full cache allocated buffers instead of reusing the evicted ones");
  if (i.cached_bytes > CACHE_FRAMES * (FRAME_BYTES + 256)) fail("recycle: the cache is over its bound");
  /* a smaller bound frees what no longer fits; the reads still serve the right bytes */
  nr_set_cache(nr, 2 * (FRAME_BYTES + 256));
  nr_info(nr, &i);
  if (i.cached_bytes > 2 * (FRAME_BYTES + 256)) fail("recycle: over the smaller bound");
  char b[64];
  if (nr_read(nr, 100, b, sizeof b, 5) != (int)sizeof b || (uint8_t)b[0] != gen(0, 5)) fail("recycle: read after the bound shrank");
  if (nr_close(nr) != 0) fail("recycle: close");
  nr_free(nr);
  for (uint32_t u = 0; u < UNITS; u++) close(fds[u]);
}

/* nr_prefault: the pool fills to the cache's bound in buffers of one frame, and loads then
 * take those instead of allocating; a close right after the start waits for its thread. */
static void prefault(void) {
  nr_t *nr = nr_new(CACHE_FRAMES * (FRAME_BYTES + 256));
  nr_prefault(nr, FRAME_BYTES);
  nr_prefault(nr, FRAME_BYTES); /* once per read path */
  nr_info_t i;
  /* (waits up to 20 s for its thread to fill the pool; the check below says whether it did) */
  for (int k = 0; k < 200000; k++) { nr_info(nr, &i); if (i.buffers >= CACHE_FRAMES) break; usleep(100); }
  usleep(20000); /* and a little more: a ninth buffer would show */
  while (nr_close(nr) != 0) usleep(100);
  nr_info(nr, &i);
  printf("prefault: %llu buffers faulted in\n", (unsigned long long)i.buffers);
  if (i.buffers != CACHE_FRAMES) fail("prefault: not one buffer per frame the cache holds");
  nr_free(nr);
  /* reads take the pool's buffers: no allocation while the cache fills */
  nr = nr_new(CACHE_FRAMES * (FRAME_BYTES + 256));
  nr_prefault(nr, FRAME_BYTES);
  uint32_t u = BAD_UNIT + 2;
  int fd = open(upath[u], O_RDONLY);
  double ext[4] = {0, UNIT_RAW, u, 0};
  if (nr_unit(nr, u, fd, FRAME_BYTES, utable[u], FRAMES * 3, 0, NULL) || nr_file(nr, 1, UNIT_RAW, ext, 4)) fail("prefault: register");
  for (int k = 0; k < 200000; k++) { nr_info(nr, &i); if (i.buffers == CACHE_FRAMES) break; usleep(100); }
  for (uint32_t f = 0; f < FRAMES; f++) {
    char b[64];
    uint64_t off = (uint64_t)f * FRAME_BYTES + 3;
    int ok = nr_read(nr, 1, b, sizeof b, (int64_t)off) == (int)sizeof b;
    for (size_t j = 0; ok && j < sizeof b; j++) ok = (uint8_t)b[j] == gen(u, off + j);
    if (!ok) fail("prefault: wrong bytes");
  }
  nr_info(nr, &i);
  if (i.misses != FRAMES || i.buffers != CACHE_FRAMES) fail("prefault: loads allocated beside the pool");
  if (i.cached_bytes > CACHE_FRAMES * (FRAME_BYTES + 256)) fail("prefault: over the bound");
  while (nr_close(nr) != 0) usleep(100);
  nr_free(nr);
  close(fd);
  /* closed at once: the thread stops, and the read path is freed only after it */
  for (int r = 0; r < 20; r++) {
    nr = nr_new(64 * (FRAME_BYTES + 256));
    nr_prefault(nr, FRAME_BYTES);
    if (r % 2) usleep(200);
    while (nr_close(nr) != 0) usleep(50);
    nr_free(nr);
  }
}

/*
 * Sealed units (nr_seal_t): a unit whose frames are "sealed" by a toy AEAD (a keystream XOR and
 * a 16-byte tag over key, nonce, AAD and ciphertext; the real one is native/aead.c, tested
 * through real mounts in test/format2-encrypt.test.ts) checks that nread opens each frame in
 * place with format.md §2.9's nonce (u32 LE 1 ‖ u64 LE frame) and AAD ("bfs/unit" ‖ u32 LE
 * stream, unit, revision, frame, raw bytes), built here independently, from READERS threads
 * at once; a frame whose bytes were changed is a fallback (-1), never served; a sealed unit
 * is refused without an opener.
 */
#define SEAL_STREAM 5u
#define SEAL_UNIT 3u
#define SEAL_REV 2u
static uint64_t toy_fnv(uint64_t h, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ULL;
  return h;
}
static void toy_tag(const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *ct, size_t n, uint8_t tag[16]) {
  for (int half = 0; half < 2; half++) {
    uint64_t h = half ? 0x84222325cbf29ce4ULL : 0xcbf29ce484222325ULL;
    h = toy_fnv(toy_fnv(toy_fnv(toy_fnv(h, key, 32), nonce, 12), aad, aad_len), ct, n);
    memcpy(tag + 8 * half, &h, 8);
  }
}
static void toy_xor(const uint8_t *key, const uint8_t *nonce, const uint8_t *in, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i++) out[i] = in[i] ^ key[i % 32] ^ nonce[i % 12] ^ (uint8_t)i;
}
static _Atomic uint64_t toy_opens;
static long long toy_open(int alg, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len, const uint8_t *in, size_t len, uint8_t *out) {
  atomic_fetch_add(&toy_opens, 1);
  if (alg != 1 || len < 16) return -1;
  uint8_t tag[16];
  toy_tag(key, nonce, aad, aad_len, in, len - 16, tag);
  if (memcmp(tag, in + len - 16, 16) != 0) return -1;
  toy_xor(key, nonce, in, len - 16, out);
  return (long long)len - 16;
}
static void le32(uint8_t *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i)); }
static nr_t *sl_nr;
static void *sl_reader(void *arg) {
  uintptr_t k = (uintptr_t)arg;
  for (int rep = 0; rep < 200; rep++) {
    uint32_t f = (uint32_t)((k + rep) % FRAMES);
    char b[300];
    uint64_t off = (uint64_t)f * FRAME_BYTES + (rep * 37) % 1000;
    int n = nr_read(sl_nr, 1, b, sizeof b, (int64_t)off);
    if (f == BAD_FRAME) { if (n != -1) fail("sealed: a tampered frame was served"); continue; }
    if (n != (int)sizeof b) { fail("sealed: a good frame was not served"); continue; }
    for (size_t j = 0; j < sizeof b; j++) if ((uint8_t)b[j] != gen(SEAL_UNIT, off + j)) { fail("sealed: wrong bytes"); break; }
  }
  return NULL;
}
static void sealed(void) {
  char path[96];
  snprintf(path, sizeof path, "%s/sealed", dir);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) { perror("open"); exit(2); }
  ZSTD_CCtx *cc = ZSTD_createCCtx();
  ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
  static uint8_t raw[FRAME_BYTES], comp[FRAME_BYTES * 2 + 16];
  double table[FRAMES * 3];
  nr_seal_t seal = {.alg = 1, .stream = SEAL_STREAM, .unit = SEAL_UNIT, .revision = SEAL_REV};
  for (int i = 0; i < 32; i++) seal.key[i] = (uint8_t)(i * 7 + 1);
  uint64_t pos = 64;
  for (uint32_t f = 0; f < FRAMES; f++) {
    uint32_t rlen = f == FRAMES - 1 ? LAST_FRAME : FRAME_BYTES;
    for (uint32_t i = 0; i < rlen; i++) raw[i] = gen(SEAL_UNIT, (uint64_t)f * FRAME_BYTES + i);
    size_t c = ZSTD_compress2(cc, comp, sizeof comp - 16, raw, rlen);
    if (ZSTD_isError(c)) { fprintf(stderr, "zstd: %s\n", ZSTD_getErrorName(c)); exit(2); }
    uint8_t nonce[12] = {1, 0, 0, 0, (uint8_t)f}, aad[28];
    memcpy(aad, "bfs/unit", 8);
    le32(aad + 8, SEAL_STREAM), le32(aad + 12, SEAL_UNIT), le32(aad + 16, SEAL_REV), le32(aad + 20, f), le32(aad + 24, rlen);
    toy_xor(seal.key, nonce, comp, c, comp);
    toy_tag(seal.key, nonce, aad, sizeof aad, comp, c, comp + c);
    if (f == BAD_FRAME) comp[c / 3] ^= 0x01; /* tampered with after sealing */
    if (pwrite(fd, comp, c + 16, (off_t)pos) != (ssize_t)(c + 16)) { perror("pwrite"); exit(2); }
    table[3 * f] = (double)pos, table[3 * f + 1] = (double)(c + 16), table[3 * f + 2] = (double)rlen;
    pos += c + 16;
  }
  ZSTD_freeCCtx(cc);
  double ext[4] = {0, UNIT_RAW, SEAL_UNIT, 0};
  nr_t *nr = nr_new(64 * (FRAME_BYTES + 256));
  const char *why = nr_unit(nr, SEAL_UNIT, fd, FRAME_BYTES, table, FRAMES * 3, 0, &seal);
  if (why == NULL || strcmp(why, "no AEAD opener") != 0) fail("sealed: registered without an opener");
  nr_set_opener(nr, toy_open);
  /* a sealed frame no longer than its tag (15, 16 bytes) is refused at registration */
  for (double c = 15; c <= 16; c++) {
    double tiny[3] = {64, c, 100};
    if (nr_unit(nr, SEAL_UNIT + 2, fd, FRAME_BYTES, tiny, 3, 0, &seal) == NULL) fail("sealed: a frame no longer than its tag was accepted");
  }
  if (nr_unit(nr, SEAL_UNIT, fd, FRAME_BYTES, table, FRAMES * 3, 0, &seal) || nr_file(nr, 1, UNIT_RAW, ext, 4)) fail("sealed: register");
  sl_nr = nr;
  pthread_t t[READERS];
  for (uintptr_t k = 0; k < READERS; k++) pthread_create(&t[k], NULL, sl_reader, (void *)k);
  for (int k = 0; k < READERS; k++) pthread_join(t[k], NULL);
  nr_info_t i;
  nr_info(nr, &i);
  printf("sealed: %llu opens, %llu served, %llu fallbacks\n", (unsigned long long)toy_opens, (unsigned long long)i.served, (unsigned long long)i.fallbacks);
  if (toy_opens < FRAMES || i.served == 0 || i.fallbacks == 0) fail("sealed: frames not opened, none served or none refused");
  /* the same bytes registered (as another unit id) under another revision do not open */
  seal.revision = SEAL_REV + 1;
  double ext2[4] = {0, UNIT_RAW, SEAL_UNIT + 1, 0};
  if (nr_unit(nr, SEAL_UNIT + 1, fd, FRAME_BYTES, table, FRAMES * 3, 0, &seal) || nr_file(nr, 2, UNIT_RAW, ext2, 4)) fail("sealed: register again");
  char b[64];
  if (nr_read(nr, 2, b, sizeof b, (int64_t)FRAME_BYTES * (FRAMES - 1)) != -1) fail("sealed: a frame opened under another revision's AAD");
  if (nr_read(nr, 1, b, sizeof b, (int64_t)FRAME_BYTES * (FRAMES - 1)) != (int)sizeof b) fail("sealed: the first unit stopped reading");
  while (nr_close(nr) != 0) usleep(100);
  nr_free(nr);
  close(fd);
  unlink(path);
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 4;
  make_units();
  make_files();
  pthread_t t[READERS], o[OPENERS];
  for (uintptr_t k = 0; k < READERS; k++) pthread_create(&t[k], NULL, reader, (void *)k);
  for (uintptr_t k = 0; k < OPENERS; k++) pthread_create(&o[k], NULL, opener, (void *)k);
  uint64_t s = 42;
  int rounds = seconds >= 2 ? (int)(seconds / 1.0) : 1;
  for (int r = 0; r < rounds && !atomic_load(&failed); r++) round_(seconds / rounds, &s, r % 2 ? 300 : 0);
  atomic_store(&stop, 1);
  for (int k = 0; k < READERS; k++) pthread_join(t[k], NULL);
  for (int k = 0; k < OPENERS; k++) pthread_join(o[k], NULL);
  printf("native opens: %llu opened, %llu declined\n", (unsigned long long)n_opens, (unsigned long long)n_declined);
  if (n_opens == 0 || n_declined == 0) fail("native open: none opened, or none declined");
  single_flight(0);
  single_flight(1);
  recycle();
  prefault();
  sealed();
  for (uint32_t u = 0; u < UNITS; u++) unlink(upath[u]);
  rmdir(dir);
  printf("nread_stress: %llu reads, %llu served, %llu fallbacks (%llu after close)\n", (unsigned long long)n_reads,
         (unsigned long long)n_served, (unsigned long long)n_fallback, (unsigned long long)n_after_close);
  if (n_served == 0) fail("nothing was served");
  if (atomic_load(&failed)) return 1;
  printf("nread_stress: ok\n");
  return 0;
}
