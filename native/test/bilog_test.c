/*
 * The BI capture engine (native/bilog.c) without Node: built with AddressSanitizer + UBSan and
 * with ThreadSanitizer by `make native-test`, run by native/test/bilog_test.sh on a fresh ext4
 * loop filesystem (root, Linux >= 6.14; the script skips otherwise).
 *
 *   bilog_test DIR SEED    (DIR: the root of that filesystem, empty)
 *
 * Files of many sizes are made in DIR and kept in memory (the copy "at T0"). A writer
 * PROCESS (forked before the engine starts, so it is not one of "our" threads, and released
 * through a pipe once T0 is set) then changes them in every way the engine classifies:
 * pwrite, write at the file position, O_APPEND, ftruncate, truncate, O_TRUNC rewrites, punch
 * hole, collapse range, shared mmap writes. Meanwhile two reader threads read every file at
 * T0 (bilog_read_t0 with mark_read, each block once, in shuffled chunks) and compare with
 * the copy. After the stop: every record of the capture file has valid checksums, every image
 * holds the T0 bytes of its file, the end record is last, the file has the length the
 * counters say; the live files differ from the copy (the writer did change them: the test
 * is not vacuous). The engine is built with a small ring (-DRING_BYTES) so that the flusher
 * wraps around and the listener waits for room.
 *
 * Then no_double_logging: a second capture while a writer process does 20,000 random 4 KiB
 * pwrites into a 16 MiB file: the images must total exactly the distinct blocks written
 * (the engine used to log a whole file when it caught a writer before it slept: "running"
 * in /proc/TID/syscall).
 *
 * Then follow_writer: a writer pinned to one CPU is answered by that CPU's listener, and one
 * hopping between CPUs makes every listener wake for a while (bilog.c, follow_writer).
 *
 * Then many_inodes: a third capture over MI_FILES small files, each read at T0 by one of two
 * reader threads while a writer process overwrites one block of each, in another order: every
 * read must give the T0 bytes, and every file must be in the engine's inode table afterwards.
 * Twice: with the small files read whole at their first write (pre_read, the default), and
 * block by block (preread_max -1).
 * `make native-test` builds the engine with a 4-bucket table (-DNBUCKETS_BITS0=2), so this
 * grows it ten times (and moves its chains incrementally) while the listener and the readers
 * contend for its lock. Exit 0 when every check held.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../bilog.h"
#include "../xxh64.h"

#define NF 9
static const uint64_t SIZES[NF] = {0, 1, 4095, 4096 + 17, 100000, 300000, (1 << 20) + 123, 3 << 20, 6 << 20};
#define OPS 400

static char dir[4096];
static uint8_t *t0copy[NF];
static uint64_t t0ino[NF], t0dev[NF];
static _Atomic uint64_t file_reads; /* bilog_read_file calls that returned bytes */
static int rfd[NF];
static bilog_t *eng;
static int failures;
static pthread_mutex_t fail_mu = PTHREAD_MUTEX_INITIALIZER;

#define FAIL(...)                                                                                                  \
  do {                                                                                                             \
    pthread_mutex_lock(&fail_mu);                                                                                  \
    fprintf(stderr, "bilog_test: FAIL: " __VA_ARGS__);                                                             \
    fputc('\n', stderr);                                                                                           \
    failures++;                                                                                                    \
    pthread_mutex_unlock(&fail_mu);                                                                                \
  } while (0)

static uint64_t rnd(uint64_t *s) { /* xorshift64* */
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ULL;
}

static void path_of(int i, char *out, size_t n) { snprintf(out, n, "%s/f%d", dir, i); }

/* ---- the writer process ------------------------------------------------------------ */

static void writer(int go_fd, uint64_t seed) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  char c;
  if (read(go_fd, &c, 1) != 1) _exit(3);
  uint64_t s = seed * 7919 + 1;
  static uint8_t buf[65536];
  for (int op = 0; op < OPS; op++) {
    int i = op == 0 ? NF - 1 : (int)(rnd(&s) % NF);
    char p[4200];
    path_of(i, p, sizeof p);
    struct stat st;
    if (stat(p, &st) != 0) _exit(4);
    uint64_t size = (uint64_t)st.st_size;
    for (size_t k = 0; k < sizeof buf; k += 8) memcpy(buf + k, &(uint64_t){rnd(&s)}, 8);
    uint64_t len = 1 + rnd(&s) % 20000, off = rnd(&s) % (size + 5000);
    int kind = (int)(rnd(&s) % 9), fd = -1;
    if (op == 0) kind = 5; /* first, the largest file rewritten: its T0 content logged, more than the test's ring */
    switch (kind) {
      case 0: /* pwrite, may extend */
        fd = open(p, O_WRONLY);
        if (pwrite(fd, buf, len, (off_t)off) < 0) _exit(5);
        break;
      case 1: /* write at the file position */
        fd = open(p, O_RDWR);
        lseek(fd, (off_t)off, SEEK_SET);
        if (write(fd, buf, len) < 0) _exit(5);
        break;
      case 2: /* append */
        fd = open(p, O_WRONLY | O_APPEND);
        if (write(fd, buf, len) < 0) _exit(5);
        break;
      case 3: /* ftruncate, shorter or longer */
        fd = open(p, O_RDWR);
        if (ftruncate(fd, (off_t)(rnd(&s) % (size + 10000))) < 0) _exit(5);
        break;
      case 4:
        if (truncate(p, (off_t)(rnd(&s) % (size + 1))) < 0) _exit(5);
        break;
      case 5: /* O_TRUNC rewrite */
        fd = open(p, O_WRONLY | O_TRUNC);
        if (write(fd, buf, len) < 0) _exit(5);
        break;
      case 6:
        fd = open(p, O_RDWR);
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, (off_t)len); /* may fail */
        break;
      case 7: /* collapse range: block-aligned, strictly inside the file (else EINVAL, fine) */
        fd = open(p, O_RDWR);
        fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, (off_t)(off / 4096 * 4096), 4096);
        break;
      case 8: { /* shared writable mapping */
        if (size == 0) break;
        fd = open(p, O_RDWR);
        uint64_t mo = off / 4096 % (size / 4096 + 1) * 4096, ml = size - mo;
        if (ml == 0) break;
        uint8_t *m = mmap(NULL, ml, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)mo);
        if (m == MAP_FAILED) _exit(6);
        for (uint64_t k = 0; k < ml; k += 1 + rnd(&s) % 9000) m[k] ^= 0xa5;
        msync(m, ml, MS_SYNC);
        munmap(m, ml);
        break;
      }
    }
    if (fd >= 0) close(fd);
  }
  _exit(0);
}

/* ---- the readers ---------------------------------------------------------------------- */

typedef struct {
  int first; /* reads files first, first + 2, ... */
  uint64_t seed;
  int live;  /* through bilog_read_file (by path and scanned inode; blocks logged before the read as zeros) */
} reader_arg_t;

/* bilog_read_file's [o, e) of file i in buf: each block's part is its T0 bytes, or zeros when it
 * was logged before the read (at most *logged such parts). */
static void check_live(int i, const uint8_t *buf, uint64_t o, uint64_t e, uint64_t logged) {
  uint64_t zeroed = 0;
  for (uint64_t s0 = o; s0 < e;) {
    uint64_t s1 = (s0 / 4096 + 1) * 4096 < e ? (s0 / 4096 + 1) * 4096 : e;
    if (memcmp(buf + (s0 - o), t0copy[i] + s0, s1 - s0) != 0) {
      for (uint64_t k = s0; k < s1; k++)
        if (buf[k - o]) {
          FAIL("f%d: read_file [%llu, %llu): block %llu is neither its T0 bytes nor zeros", i, (unsigned long long)o,
               (unsigned long long)e, (unsigned long long)(s0 / 4096));
          return;
        }
      zeroed++;
    }
    s0 = s1;
  }
  if (zeroed > logged)
    FAIL("f%d: read_file [%llu, %llu): %llu blocks read as zeros, %llu counted", i, (unsigned long long)o,
         (unsigned long long)e, (unsigned long long)zeroed, (unsigned long long)logged);
}

static void *reader(void *arg) {
  reader_arg_t *ra = arg;
  uint64_t s = ra->seed;
  uint8_t *buf = malloc(300000);
  for (int i = ra->first; i < NF; i += 2) {
    bilog_t0stat_t ts;
    if (bilog_t0_stat(eng, rfd[i], &ts) != 0 || ts.size != SIZES[i]) {
      FAIL("f%d: T0 size %llu, expected %llu", i, (unsigned long long)ts.size, (unsigned long long)SIZES[i]);
      continue;
    }
    /* chunks of random sizes, read in a shuffled order, each once */
    uint64_t starts[4096], n = 0;
    for (uint64_t o = 0; o < SIZES[i] && n < 4096; o += 1 + rnd(&s) % 300000) starts[n++] = o;
    for (uint64_t k = n; k > 1; k--) {
      uint64_t j = rnd(&s) % k, t = starts[k - 1];
      starts[k - 1] = starts[j];
      starts[j] = t;
    }
    for (uint64_t k = 0; k < n; k++) {
      uint64_t o = starts[k], e = SIZES[i];
      for (uint64_t m = 0; m < n; m++) /* the chunk ends where the next one starts */
        if (starts[m] > o && starts[m] < e) e = starts[m];
      if (ra->live) {
        char p[4200];
        path_of(i, p, sizeof p);
        uint64_t logged = 0;
        int at_open = -1;
        ssize_t r = bilog_read_file(eng, p, t0dev[i], t0ino[i], buf, e - o, o, &logged, &at_open);
        if (r != (ssize_t)(e - o)) {
          FAIL("f%d: read_file [%llu, %llu) returned %zd (at_open %d)", i, (unsigned long long)o, (unsigned long long)e, r,
               at_open);
          continue;
        }
        file_reads++;
        check_live(i, buf, o, e, logged);
      } else {
        ssize_t r = bilog_read_t0(eng, rfd[i], buf, e - o, o, 1);
        if (r != (ssize_t)(e - o)) {
          FAIL("f%d: read_t0 [%llu, %llu) returned %zd", i, (unsigned long long)o, (unsigned long long)e, r);
          continue;
        }
        if (memcmp(buf, t0copy[i] + o, e - o) != 0) {
          uint64_t d = 0;
          while (buf[d] == t0copy[i][o + d]) d++;
          FAIL("f%d: read_t0 [%llu, %llu) differs from the T0 copy at %llu", i, (unsigned long long)o,
               (unsigned long long)e, (unsigned long long)(o + d));
        }
      }
      struct timespec ts2 = {0, (long)(rnd(&s) % 300000)}; /* let the writer interleave */
      nanosleep(&ts2, NULL);
    }
    /* beyond the T0 size: nothing */
    if (bilog_read_t0(eng, rfd[i], buf, 10, SIZES[i], 0) != 0) FAIL("f%d: read_t0 at the T0 size is not empty", i);
  }
  free(buf);
  return NULL;
}

/* ---- the capture file ------------------------------------------------------------------- */

static uint64_t get64(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v;
}
static uint32_t get32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

static void check_log(const char *path, const bilog_stats_t *st) {
  int fd = open(path, O_RDONLY);
  struct stat lst;
  if (fd < 0 || fstat(fd, &lst) != 0) {
    FAIL("capture file: %s", strerror(errno));
    return;
  }
  uint8_t *m = malloc((size_t)lst.st_size + 1);
  if (pread(fd, m, (size_t)lst.st_size, 0) != lst.st_size) FAIL("capture file: short read");
  close(fd);
  if ((uint64_t)lst.st_size != st->log_bytes)
    FAIL("capture file: %lld bytes, the counters say %llu", (long long)lst.st_size, (unsigned long long)st->log_bytes);
  if (lst.st_size < BILOG_HEADER_BYTES || memcmp(m, "BFSBILG", 8) != 0 || get64(m + 56) != bfs_xxh64(m, 56)) {
    free(m);
    FAIL("capture file: bad header");
    return;
  }
  uint64_t at = BILOG_HEADER_BYTES, n = 0, images = 0, preread_bytes = 0, seq = 0;
  int ended = 0;
  while (at + BILOG_RECORD_BYTES <= (uint64_t)lst.st_size) {
    const uint8_t *h = m + at;
    uint32_t len = get32(h + 8);
    if (ended) FAIL("capture file: a record after the end record, at %llu", (unsigned long long)at);
    if (memcmp(h, "BIR1", 4) != 0 || get64(h + 96) != bfs_xxh64(h, 96)) {
      FAIL("capture file: bad record header at %llu", (unsigned long long)at);
      break;
    }
    if (at + BILOG_RECORD_BYTES + len > (uint64_t)lst.st_size) {
      FAIL("capture file: record at %llu runs past the end", (unsigned long long)at);
      break;
    }
    const uint8_t *data = h + BILOG_RECORD_BYTES;
    if (get64(h + 88) != bfs_xxh64(data, len)) FAIL("capture file: bad data checksum at %llu", (unsigned long long)at);
    if (get64(h + 16) != ++seq && h[4] != BIK_END) FAIL("capture file: seq %llu, expected %llu", (unsigned long long)get64(h + 16), (unsigned long long)seq);
    if (h[4] == BIK_END) ended = 1;
    if (h[4] == BIK_IMAGE) {
      uint64_t ino = get64(h + 32), off = get64(h + 40);
      int i = -1;
      for (int k = 0; k < NF; k++)
        if (t0ino[k] == ino) i = k;
      if (i < 0) FAIL("capture file: an image of inode %llu, not one of the files", (unsigned long long)ino);
      else if (off + len > SIZES[i] || memcmp(data, t0copy[i] + off, len) != 0)
        FAIL("capture file: the image of f%d at %llu (+%u) is not its T0 bytes", i, (unsigned long long)off, len);
      if (h[5] == BIC_PREREAD) /* a small file read whole (bilog.c, pre_read): counted apart */
        preread_bytes += len;
      else
        images++;
    }
    n++;
    at += BILOG_RECORD_BYTES + len + (8 - len % 8) % 8;
  }
  if (at != (uint64_t)lst.st_size) FAIL("capture file: %llu bytes of junk at the end", (unsigned long long)(lst.st_size - at));
  if (!ended) FAIL("capture file: no end record");
  if (n != st->records) FAIL("capture file: %llu records, the counters say %llu", (unsigned long long)n, (unsigned long long)st->records);
  if (images != st->images) FAIL("capture file: %llu images, the counters say %llu", (unsigned long long)images, (unsigned long long)st->images);
  if (preread_bytes != st->preread_bytes)
    FAIL("capture file: %llu bytes of files read whole, the counters say %llu", (unsigned long long)preread_bytes,
         (unsigned long long)st->preread_bytes);
  free(m);
}

/* ---- a writer process doing random 4 KiB pwrites during a capture ------------------------- */

#define ND_SIZE (16u << 20)
#define ND_WRITES 20000

/*
 * A capture of DIR while a writer process (forked before it starts, released once T0 is set)
 * does `writes` random 4 KiB pwrites into a fresh ND_SIZE file, the blocks drawn from `seed0`.
 * The writer runs on CPU `cpu` when >= 0 and, when `hop_cpu` >= 0, moves between `hop_cpu`
 * (even writes) and `cpu` (odd) before each write. Fills *st, *info and *distinct (the
 * distinct blocks written); returns 0, or -1 after a FAIL naming `what`.
 */
static int random_writes(const char *what, uint64_t seed0, int writes, int cpu, int hop_cpu, bilog_stats_t *st,
                         bilog_info_t *info, uint64_t *distinct) {
  char p[4200], logpath[4200];
  snprintf(p, sizeof p, "%s/rw", dir);
  snprintf(logpath, sizeof logpath, "%s/rw.bilog", dir);
  int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || ftruncate(fd, ND_SIZE) != 0) {
    FAIL("%s: %s", what, strerror(errno));
    return -1;
  }
  close(fd);
  static uint8_t written[ND_SIZE / 4096];
  memset(written, 0, sizeof written);
  uint64_t s = seed0;
  *distinct = 0;
  for (int k = 0; k < writes; k++) {
    uint64_t blk = rnd(&s) % (ND_SIZE / 4096);
    if (!written[blk]) written[blk] = 1, ++*distinct;
  }
  int go[2];
  if (pipe(go) != 0) return -1;
  pid_t w = fork();
  if (w == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(go[1]);
    char c, buf[4096];
    memset(buf, 0x5a, sizeof buf);
    cpu_set_t one;
    if (cpu >= 0) {
      CPU_ZERO(&one);
      CPU_SET(cpu, &one);
      if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(6);
    }
    if (read(go[0], &c, 1) != 1) _exit(3);
    int f = open(p, O_WRONLY);
    uint64_t s2 = seed0;
    for (int k = 0; k < writes; k++) {
      if (hop_cpu >= 0) {
        CPU_ZERO(&one);
        CPU_SET(k % 2 ? cpu : hop_cpu, &one);
        if (sched_setaffinity(0, sizeof one, &one) != 0) _exit(6);
      }
      if (pwrite(f, buf, sizeof buf, (off_t)(rnd(&s2) % (ND_SIZE / 4096) * 4096)) != (ssize_t)sizeof buf) _exit(5);
    }
    _exit(0);
  }
  close(go[0]);
  bilog_t *e;
  const char *sc = "?";
  int err = bilog_start(dir, logpath, NULL, &e, &sc);
  if (err) {
    FAIL("%s: bilog_start: %s: %s", what, sc, strerror(err));
    kill(w, SIGKILL);
    waitpid(w, NULL, 0);
    return -1;
  }
  bilog_info(e, info);
  if (write(go[1], "g", 1) != 1) FAIL("%s: could not release the writer", what);
  close(go[1]);
  int ws;
  waitpid(w, &ws, 0);
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) FAIL("%s: the writer failed (status %d)", what, ws);
  bilog_stop(e);
  bilog_stats(e, st);
  bilog_free(e);
  unlink(p);
  unlink(logpath);
  return 0;
}

/* ---- no double logging ---------------------------------------------------------------- */

static void no_double_logging(uint64_t seed) {
  bilog_stats_t st;
  bilog_info_t info;
  uint64_t distinct;
  if (random_writes("no_double_logging", seed * 104729 + 3, ND_WRITES, -1, -1, &st, &info, &distinct)) return;
  if (st.image_bytes != distinct * 4096)
    FAIL("no_double_logging: %llu image bytes for %llu distinct blocks written (%llu bytes)",
         (unsigned long long)st.image_bytes, (unsigned long long)distinct, (unsigned long long)distinct * 4096);
  printf("no_double_logging: events=%llu images=%llu image_bytes=%llu distinct_blocks=%llu\n",
         (unsigned long long)st.events, (unsigned long long)st.images, (unsigned long long)st.image_bytes,
         (unsigned long long)distinct);
}

/* ---- one listener woken, on the writer's CPU ------------------------------------------------ */

/*
 * A writer process pinned to the last CPU this process may use (the listener woken first at the
 * start is the one pinned to the first): after its first event, the listener on its CPU must be
 * the one woken (at most a few events answered from another CPU, every listener never woken
 * at once, no hop counted). Then a writer that moves to the other CPU before each write: every
 * event is a hop, so every listener comes to be woken (allwake), and
 * every write still completes with its block's image logged once. Needs >= 2 CPUs (and at
 * most BILOG_MAX_LISTENERS, 8: more and the engine runs one unpinned listener) and SCHED_FIFO.
 */
#define FW_WRITES 3000
static void follow_writer_test(uint64_t seed, int hop) {
  cpu_set_t cs;
  if (sched_getaffinity(0, sizeof cs, &cs) != 0) return;
  int first = -1, last = -1, n = CPU_COUNT(&cs);
  for (int c = 0; c < CPU_SETSIZE; c++)
    if (CPU_ISSET(c, &cs)) {
      if (first < 0) first = c;
      last = c;
    }
  /* the measurement switches would change what is tested */
  unsetenv("BFS_BILOG_FOLLOW");
  unsetenv("BFS_BILOG_LISTENERS");
  if (n < 2 || n > 8) {
    printf("follow_writer(%s): skipped (%d CPUs)\n", hop ? "hop" : "pinned", n);
    return;
  }
  bilog_stats_t st;
  bilog_info_t info;
  uint64_t distinct;
  if (random_writes("follow_writer", seed * 7919 + 5, FW_WRITES, last, hop ? first : -1, &st, &info, &distinct)) return;
  printf("follow_writer(%s): fifo=%d events=%llu follow_events=%llu remote=%llu hops=%llu reorders=%llu allwake=%llu\n",
         hop ? "hop" : "pinned", info.fifo, (unsigned long long)st.events, (unsigned long long)st.follow_events,
         (unsigned long long)st.follow_remote, (unsigned long long)st.follow_hops, (unsigned long long)st.follow_reorders,
         (unsigned long long)st.follow_allwake);
  if (st.image_bytes != distinct * 4096)
    FAIL("follow_writer: %llu image bytes for %llu distinct blocks written", (unsigned long long)st.image_bytes,
         (unsigned long long)distinct);
  if (st.follow_events < FW_WRITES)
    FAIL("follow_writer: %llu events counted for %d writes", (unsigned long long)st.follow_events, FW_WRITES);
  if (hop) {
    if (!st.follow_allwake || st.follow_hops * 2 < st.follow_events)
      FAIL("follow_writer: a writer hopping between CPUs (%llu hops in %llu events) did not make every listener wake",
           (unsigned long long)st.follow_hops, (unsigned long long)st.follow_events);
  } else if (!info.fifo) {
    /* (without SCHED_FIFO the writer can run between an answer and its listener's next wait) */
    printf("follow_writer: no SCHED_FIFO (errno %d): the pinned writer's checks are skipped\n", info.sched_errno);
  } else {
    /* the first event woke the first CPU's listener (remote), then the writer's own: 1 */
    if (st.follow_reorders < 1) FAIL("follow_writer: the listener woken first never moved to the writer's CPU");
    if (st.follow_allwake || st.follow_hops || st.follow_remote * 8 > st.follow_events)
      FAIL("follow_writer: %llu of %llu events answered from another CPU than the pinned writer's",
           (unsigned long long)st.follow_remote, (unsigned long long)st.follow_events);
  }
}

/* ---- many inodes: the inode table grows under contention ----------------------------------- */

#define MI_FILES 2000
#define MI_BYTES 8192

static uint8_t mi_byte(int i, int k, uint64_t seed) { return (uint8_t)((uint64_t)i * 131 + (uint64_t)k * 7 + seed); }

typedef struct {
  int first;
  uint64_t seed;
  int live;    /* read with bilog_read_live (blocks logged since T0 come back as zeros, counted) */
  int preread; /* small files are read whole at their first write: a live read zeroes nothing */
} mi_arg_t;

static void *mi_reader(void *arg) {
  mi_arg_t *a = arg;
  uint8_t buf[MI_BYTES];
  char p[4200];
  for (int i = a->first; i < MI_FILES; i += 2) {
    snprintf(p, sizeof p, "%s/mi/%d", dir, i);
    int fd = open(p, O_RDONLY);
    if (fd < 0) {
      FAIL("many_inodes: %s: %s", p, strerror(errno));
      continue;
    }
    uint64_t logged = 0;
    ssize_t r = a->live ? bilog_read_live(eng, fd, buf, sizeof buf, 0, &logged) : bilog_read_t0(eng, fd, buf, sizeof buf, 0, 1);
    close(fd);
    if (r != MI_BYTES) {
      FAIL("many_inodes: %d: read returned %zd", i, r);
      continue;
    }
    /* every block its T0 bytes, or (a live read) zeros counted in logged; no T0 block is zeros */
    uint64_t zeroed = 0;
    for (int b0 = 0; b0 < MI_BYTES; b0 += 4096) {
      int t0 = 1, zero = 1;
      for (int k = b0; k < b0 + 4096; k++) {
        if (buf[k] != mi_byte(i, k, a->seed)) t0 = 0;
        if (buf[k]) zero = 0;
      }
      if (zero && a->live) zeroed++;
      else if (!t0) {
        FAIL("many_inodes: %d: block %d is not its T0 bytes", i, b0 / 4096);
        break;
      }
    }
    if (zeroed != logged) FAIL("many_inodes: %d: %llu blocks read as zeros, %llu counted", i, (unsigned long long)zeroed, (unsigned long long)logged);
    if (a->preread && logged) FAIL("many_inodes: %d: a file read whole had %llu blocks zeroed", i, (unsigned long long)logged);
  }
  return NULL;
}

static void many_inodes(uint64_t seed, long long preread_max) {
  char p[4200], logpath[4200];
  static uint64_t ino[MI_FILES], dev[MI_FILES];
  snprintf(p, sizeof p, "%s/mi", dir);
  if (mkdir(p, 0755) != 0) {
    FAIL("many_inodes: mkdir: %s", strerror(errno));
    return;
  }
  uint8_t buf[MI_BYTES];
  for (int i = 0; i < MI_FILES; i++) {
    snprintf(p, sizeof p, "%s/mi/%d", dir, i);
    for (int k = 0; k < MI_BYTES; k++) buf[k] = mi_byte(i, k, seed);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct stat st;
    if (fd < 0 || write(fd, buf, sizeof buf) != (ssize_t)sizeof buf || fstat(fd, &st) != 0) {
      FAIL("many_inodes: %s: %s", p, strerror(errno));
      if (fd >= 0) close(fd);
      return;
    }
    close(fd);
    ino[i] = st.st_ino;
    dev[i] = st.st_dev;
  }
  snprintf(logpath, sizeof logpath, "%s/mi.bilog", dir);
  int go[2];
  if (pipe(go) != 0) return;
  fflush(stdout); /* (not twice through the child's exit) */
  pid_t w = fork();
  if (w == 0) { /* one block of every file, in an order of its own */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(go[1]);
    char c, junk[4096];
    memset(junk, 0xee, sizeof junk);
    if (read(go[0], &c, 1) != 1) _exit(3);
    uint64_t s = seed * 7919 + 5;
    for (int n = 0; n < MI_FILES; n++) {
      int i = (int)(((uint64_t)n * 1103 + seed) % MI_FILES); /* 1103 is prime: a permutation */
      char q[4200];
      snprintf(q, sizeof q, "%s/mi/%d", dir, i);
      int f = open(q, O_WRONLY);
      if (f < 0 || pwrite(f, junk, sizeof junk, (off_t)(rnd(&s) % 2 * 4096)) != (ssize_t)sizeof junk) _exit(5);
      close(f);
    }
    _exit(0);
  }
  close(go[0]);
  const char *sc = "?";
  bilog_opts_t mo = {.preread_max = preread_max};
  int err = bilog_start(dir, logpath, &mo, &eng, &sc);
  if (err) {
    FAIL("many_inodes: bilog_start: %s: %s", sc, strerror(err));
    kill(w, SIGKILL);
    waitpid(w, NULL, 0);
    return;
  }
  if (write(go[1], "g", 1) != 1) FAIL("many_inodes: could not release the writer");
  close(go[1]);
  pthread_t rt[2];
  /* one reader reads at T0, the other as bfs's workers do (live: the BI log's blocks zeroed) */
  mi_arg_t ma[2] = {{0, seed, 0, preread_max >= 0}, {1, seed, 1, preread_max >= 0}};
  for (int k = 0; k < 2; k++) pthread_create(&rt[k], NULL, mi_reader, &ma[k]);
  for (int k = 0; k < 2; k++) pthread_join(rt[k], NULL);
  int ws;
  waitpid(w, &ws, 0);
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) FAIL("many_inodes: the writer failed (status %d)", ws);
  int missing = 0;
  for (int i = 0; i < MI_FILES; i++) {
    bilog_t0stat_t ts;
    if (bilog_t0_stat_ino(eng, dev[i], ino[i], &ts) != 1 || ts.size != MI_BYTES) missing++;
  }
  if (missing) FAIL("many_inodes: %d of %d files are not in the inode table with their T0 size", missing, MI_FILES);
  bilog_stop(eng);
  bilog_stats_t st;
  bilog_stats(eng, &st);
  bilog_free(eng);
  eng = NULL;
  if (st.void_reason) FAIL("many_inodes: the run is void (reason %llu)", (unsigned long long)st.void_reason);
  /* by default the files (8 KiB) are read whole at their first write (pre_read), with
   * preread_max -1 block by block */
  if ((preread_max < 0 ? st.images : st.prereads) == 0)
    FAIL("many_inodes: no %s: the writer and the readers did not overlap", preread_max < 0 ? "images" : "pre-reads");
  if (preread_max < 0 && st.prereads) FAIL("many_inodes: %llu pre-reads with preread_max -1", (unsigned long long)st.prereads);
  printf("many_inodes(preread_max %lld): files=%d events=%llu images=%llu prereads=%llu\n", preread_max, MI_FILES,
         (unsigned long long)st.events, (unsigned long long)st.images, (unsigned long long)st.prereads);
  for (int i = 0; i < MI_FILES; i++) {
    snprintf(p, sizeof p, "%s/mi/%d", dir, i);
    unlink(p);
  }
  snprintf(p, sizeof p, "%s/mi", dir);
  rmdir(p);
  unlink(logpath);
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: bilog_test DIR SEED\n");
    return 2;
  }
  snprintf(dir, sizeof dir, "%s", argv[1]);
  unsetenv("BFS_BILOG_PREREAD"); /* a measurement switch: 0 would leave many_inodes nothing to pre-read */
  uint64_t seed = strtoull(argv[2], NULL, 10), s = seed | 1;
  for (int i = 0; i < NF; i++) {
    char p[4200];
    path_of(i, p, sizeof p);
    t0copy[i] = malloc(SIZES[i] + 1);
    for (uint64_t k = 0; k < SIZES[i]; k++) t0copy[i][k] = (uint8_t)(rnd(&s) >> 56);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    struct stat st;
    if (fd < 0 || write(fd, t0copy[i], SIZES[i]) != (ssize_t)SIZES[i] || fstat(fd, &st) != 0) {
      perror(p);
      return 1;
    }
    close(fd);
    t0ino[i] = st.st_ino;
    t0dev[i] = st.st_dev;
  }
  int go[2];
  if (pipe(go) != 0) return perror("pipe"), 1;
  pid_t w = fork();
  if (w == 0) {
    close(go[1]);
    writer(go[0], seed);
  }
  close(go[0]);

  char logpath[4200];
  snprintf(logpath, sizeof logpath, "%s/capture.bilog", dir); /* on the watched filesystem: raises no events */
  const char *sc = "?";
  int err = bilog_start(dir, logpath, NULL, &eng, &sc);
  if (err) {
    fprintf(stderr, "bilog_test: bilog_start: %s: %s\n", sc, strerror(err));
    kill(w, SIGKILL);
    waitpid(w, NULL, 0);
    return 1;
  }
  for (int i = 0; i < NF; i++) { /* after T0, as bfs does: reads through fds from before raise no events */
    char p[4200];
    path_of(i, p, sizeof p);
    rfd[i] = open(p, O_RDONLY);
  }
  size_t nunc;
  bilog_uncovered(eng, &nunc);
  if (nunc) FAIL("%zu files reported uncovered; none are open for writing at T0", nunc);
  if (write(go[1], "g", 1) != 1) FAIL("could not release the writer");
  close(go[1]);

  pthread_t rt[2];
  /* the odd files through bilog_read_file, as bfs's workers read (by path, quiet tree) */
  reader_arg_t ra[2] = {{0, seed * 31 + 7, 0}, {1, seed * 37 + 11, 1}};
  for (int k = 0; k < 2; k++) pthread_create(&rt[k], NULL, reader, &ra[k]);
  for (int k = 0; k < 2; k++) pthread_join(rt[k], NULL);
  int ws;
  waitpid(w, &ws, 0);
  if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) FAIL("the writer failed (status %d)", ws);

  err = bilog_stop(eng);
  bilog_stats_t st;
  bilog_stats(eng, &st);
  if (err || st.log_errno) FAIL("bilog_stop: %s", strerror(err ? err : (int)st.log_errno));
  if (st.void_reason) FAIL("the run is void (reason %llu)", (unsigned long long)st.void_reason);
  if (st.images == 0) FAIL("no images were logged: the writer and the readers did not overlap");
  if (st.own_events == 0) FAIL("no events of our own reads were seen");
  if (file_reads == 0) FAIL("no bilog_read_file read returned bytes");
  check_log(logpath, &st);
  bilog_free(eng);

  int changed = 0;
  for (int i = 0; i < NF; i++) {
    char p[4200];
    path_of(i, p, sizeof p);
    int fd = open(p, O_RDONLY);
    struct stat lst;
    fstat(fd, &lst);
    uint8_t *live = malloc((size_t)lst.st_size + 1);
    ssize_t r = pread(fd, live, (size_t)lst.st_size, 0);
    if ((uint64_t)lst.st_size != SIZES[i] || r != lst.st_size || memcmp(live, t0copy[i], SIZES[i]) != 0) changed++;
    free(live);
    close(fd);
    close(rfd[i]);
  }
  if (changed < NF / 2) FAIL("only %d of %d files changed: the writer did too little", changed, NF);
  no_double_logging(seed);
  follow_writer_test(seed, 0);
  follow_writer_test(seed, 1);
  many_inodes(seed, 0);
  many_inodes(seed, -1);
  printf("bilog_test: events=%llu own=%llu skipped=%llu images=%llu image_bytes=%llu truncates=%llu stale=%llu "
         "records=%llu changed=%d/%d: %s\n",
         (unsigned long long)st.events, (unsigned long long)st.own_events, (unsigned long long)st.skipped,
         (unsigned long long)st.images, (unsigned long long)st.image_bytes, (unsigned long long)st.truncates,
         (unsigned long long)st.stale_blocks, (unsigned long long)st.records, changed, NF,
         failures ? "FAILED" : "ok");
  for (int i = 0; i < NF; i++) free(t0copy[i]);
  return failures ? 1 : 0;
}
