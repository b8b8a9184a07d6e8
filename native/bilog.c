/*
 * bilog: the before-image capture engine. See bilog.h for the interface and
 * native-notes/bilog.md for the design; the capture file's bytes are specified in
 * native-notes/format.md §2.16.1.
 *
 * Locking: one mutex (b->mu) guards the inode table, the per-block bitmaps and the capture
 * file's end (log_end, and flushed: what the flusher has written out of the ring). The
 * listener takes it only for events that change bytes (never for bfs's own reads, which it
 * answers first), so bilog_read_t0 must not hold it across its pread of the live file: that
 * pread raises an event the listener has to answer.
 *
 * Threads: the listener (SCHED_FIFO when allowed) answers events; before it allows a change
 * it copies the old bytes into a memory ring (emit), and the flusher thread (normal
 * priority) writes the ring out to the capture file in batches, so no file write is on a
 * writer's path. A full ring makes the listener wait for the flusher (backpressure).
 */
#include "bilog.h"
#include "bilog_wd.h"
#include "xxh64.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/fanotify.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The installed uapi headers predate pre-content events (Linux 6.14). */
#ifndef FAN_PRE_ACCESS
#define FAN_PRE_ACCESS 0x00100000
#endif
#ifndef FAN_EVENT_INFO_TYPE_RANGE
#define FAN_EVENT_INFO_TYPE_RANGE 6
#endif
struct bi_fan_range {
  struct fanotify_event_info_header hdr;
  uint32_t pad;
  uint64_t offset;
  uint64_t count;
};
#ifndef FAN_REPORT_TID
#define FAN_REPORT_TID 0x00000100
#endif
#ifndef FAN_MARK_EVICTABLE
#define FAN_MARK_EVICTABLE 0x00000200
#endif
#ifndef FAN_MARK_IGNORE
#define FAN_MARK_IGNORE 0x00000400
#endif
#ifndef OPEN_TREE_CLONE
#define OPEN_TREE_CLONE 1
#endif
#ifndef OPEN_TREE_CLOEXEC
#define OPEN_TREE_CLOEXEC O_CLOEXEC
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
/* mount_setattr(2)'s argument (linux/mount.h, spelled out as openat2's) */
struct bilog_mount_attr {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
#ifndef RESOLVE_NO_XDEV
#define RESOLVE_NO_XDEV 0x01
#define RESOLVE_NO_MAGICLINKS 0x02
#define RESOLVE_BENEATH 0x08
#endif
/* openat2(2)'s argument (linux/openat2.h, spelled out: not every libc ships it) */
struct bilog_open_how {
  uint64_t flags, mode, resolve;
};

#ifndef FAN_MARK_FILESYSTEM
#define FAN_MARK_FILESYSTEM 0x00000100
#endif

#define BS 4096ULL
#define CHUNK_BLOCKS 512 /* blocks per chunk of the per-inode tables (2 MiB of file) */
#define RUN_BLOCKS 256   /* blocks per image record at most (1 MiB) */
/* files up to this T0 size are read whole at their first event that may change them (pre_read),
 * unless bilog_opts_t.preread_max or BFS_BILOG_PREREAD=BYTES (0: never; measurements) says
 * otherwise */
#define PREREAD_DEFAULT (64 * 1024)
#define EVBUF_BYTES 65536
/* the inode table's first size: 16,384 buckets, doubled at one inode per bucket (native/test
 * builds a tiny one, so that its runs grow the table many times under the lock's contention) */
#ifndef NBUCKETS_BITS0
#define NBUCKETS_BITS0 14
#endif
_Static_assert(NBUCKETS_BITS0 >= 1 && NBUCKETS_BITS0 <= 30, "NBUCKETS_BITS0: 1 to 30");
#define REHASH_STEP 4 /* old buckets moved to the new table per insert while the table grows */
#define QUIET_SLOTS 64
/* old bytes held in memory before the flusher writes them out (native/test builds a small one) */
#ifndef RING_BYTES
#define RING_BYTES (32u << 20)
#endif
_Static_assert(RING_BYTES % 4096 == 0 && RING_BYTES >= 2 * (BILOG_MAX_DATA + BILOG_RECORD_BYTES + 8),
               "the ring must hold the largest record twice");
#define FLUSH_MS 10             /* the flusher's look interval while records flow */
/* the ring faulted in a huge page at a time, this far ahead of the capture file's end
 * (prefault_ahead; native/test builds small ones, so that records meet the pages being
 * faulted in all the time) */
#ifndef PREFAULT_STEP
#define PREFAULT_STEP (2u << 20)
#endif
#ifndef PREFAULT_LEAD
#define PREFAULT_LEAD (8u << 20)
#endif
_Static_assert(PREFAULT_STEP % 4096 == 0 && PREFAULT_LEAD >= PREFAULT_STEP, "PREFAULT_STEP: whole pages, at most the lead");
#define FLUSHER_NAPS 5          /* empty looks (~50 ms) before the flusher sleeps until woken */
#define TCACHE 64              /* cached /proc/TID/syscall fds (direct-mapped by TID) */

/* ---- optional phase profile (-DBILOG_PROF, bench/bilog-cap.c): not in the addon ------- */
#ifdef BILOG_PROF
enum { PH_READ, PH_RINGWAIT, PH_FSTAT, PH_PROC, PH_CLASSIFY, PH_LOCK, PH_COPY, PH_EMIT, PH_ANSWER, PH_CLOSE, PH_EVENT, PH_N };
static const char *const ph_name[PH_N] = {"read events", "ring full", "fstat", "/proc syscall", "classify",
                                          "lock wait", "pread old", "append log", "answer", "close fd",
                                          "whole event"};
#define PH_BUCKETS 20001 /* 0.5 µs buckets up to 10 ms, then one overflow bucket */
static uint32_t ph_hist[PH_N][PH_BUCKETS];
static uint64_t ph_count[PH_N], ph_sum[PH_N], ph_max[PH_N], ph_unknown;
static uint64_t prof_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}
static void prof_add(int ph, uint64_t ns) {
  uint64_t k = ns / 500;
  ph_hist[ph][k < PH_BUCKETS - 1 ? k : PH_BUCKETS - 1]++;
  ph_count[ph]++;
  ph_sum[ph] += ns;
  if (ns > ph_max[ph]) ph_max[ph] = ns;
}
static double prof_pct(int ph, double q) {
  uint64_t want = (uint64_t)(q * (double)ph_count[ph]), acc = 0;
  for (int k = 0; k < PH_BUCKETS; k++)
    if ((acc += ph_hist[ph][k]) > want) return k * 0.5;
  return 0;
}
static void prof_dump(void) {
  fprintf(stderr, "%-14s %9s %9s %9s %9s %10s %12s\n", "phase", "count", "mean_us", "p50_us", "p99_us", "max_us",
          "total_ms");
  for (int ph = 0; ph < PH_N; ph++)
    if (ph_count[ph])
      fprintf(stderr, "%-14s %9llu %9.1f %9.1f %9.1f %10.1f %12.1f\n", ph_name[ph], (unsigned long long)ph_count[ph],
              ph_sum[ph] / 1000.0 / ph_count[ph], prof_pct(ph, 0.5), prof_pct(ph, 0.99), ph_max[ph] / 1000.0,
              ph_sum[ph] / 1e6);
  fprintf(stderr, "events whose syscall was unknown: %llu\n", (unsigned long long)ph_unknown);
}
#define PROF_T(v) uint64_t v = prof_ns()
#define PROF_ADD(ph, t) prof_add(ph, prof_ns() - (t))
/* BILOG_PROF_TRACE=FILE: (read done, answered) per event, CLOCK_MONOTONIC ns, written at the stop */
#define TRACE_MAX 200000
static uint64_t tr_read[TRACE_MAX], tr_ans[TRACE_MAX];
static size_t tr_n;
static void trace_dump(void) {
  const char *f = getenv("BILOG_PROF_TRACE");
  FILE *o = f ? fopen(f, "w") : NULL;
  if (!o) return;
  for (size_t i = 0; i < tr_n; i++) fprintf(o, "%llu %llu\n", (unsigned long long)tr_read[i], (unsigned long long)tr_ans[i]);
  fclose(o);
}
#else
#define PROF_T(v) ((void)0)
#define PROF_ADD(ph, t) ((void)0)
#endif

/* ---- per-inode state ------------------------------------------------------ */

typedef struct {
  uint64_t logged[CHUNK_BLOCKS / 64], read[CHUNK_BLOCKS / 64], stale[CHUNK_BLOCKS / 64];
  /* (capture-file offset << 13) | bytes of each logged block; allocated with the chunk's first
   * image (most files are only read: their chunks stay at 200 bytes, not 4.3 KiB) */
  uint64_t *img;
} chunk_t;

typedef struct inode {
  uint64_t dev, ino;
  uint32_t igen;
  int first_logged; /* its kind 0 record is in the capture file */
  int uncovered;
  int ignored; /* bfs keeps the file as an earlier generation stored it: its writes need no images */
  int settled; /* bfs has read (or the log holds) every block of its T0 bytes: nothing to log */
  int marked;  /* settled or ignored, and given an ignore mark (at its first event after that) */
  int preread; /* read whole by the listener (pre_read): reads lay its images over, never zero them */
  int dropped; /* settled with no block logged: its chunks were freed (every block read, none logged) */
  uint64_t t0size;
  int64_t msec, csec;
  uint32_t mnsec, cnsec;
  chunk_t **chunks;
  uint64_t nchunks;
  struct inode *next;
} inode_t;

/* Shared with the watchdog process (bilog_wd.h: a memfd mapped by both). */
typedef bilog_shm_t shm_t;

/* A writer thread seen by the listener: its /proc/TID/syscall, kept open. While a pread of
 * fd succeeds, the thread it was opened for is alive, so it is the thread with that TID. */
typedef struct {
  pid_t tid;
  int fd;
  int own; /* a thread of this process (bfs's own reads are allowed at once) */
  int statfd; /* its /proc/TID/stat (the CPU it last ran on), opened when first needed, or -1 */
} tslot_t;

/* One listener thread's own state. */
typedef struct listener {
  struct bilog *b;
  int idx; /* its slots in shm's inflight */
  int cpu; /* pinned to it, or -1 */
  int ep;  /* its epoll (the group registered EPOLLEXCLUSIVE, or plainly while all are woken), or -1: it polls */
  char *evbuf;
  tslot_t tcache[TCACHE];
} listener_t;

struct bilog {
  pthread_mutex_t mu;
  int fanfd, logfd;
  /* The capture file's bytes [flushed, log_end) are in ring (at offset % RING_BYTES) and not yet
   * in the file; the flusher thread writes them out. Both under mu. */
  uint64_t log_end, flushed, seq;
  uint8_t *ring;
  pthread_cond_t data_cv, space_cv;
  int flusher_stop;
  int flusher_asleep; /* the flusher waits without a timeout (nothing logged for a while): emit wakes it */
  /* the ring's first pass: [0, populated) is faulted in; the flusher is faulting in [pf_lo,
   * pf_hi) without mu, which no record may reach meanwhile (prefault_ahead, ring_wait) */
  uint64_t populated, pf_lo, pf_hi;
  pthread_t fthr;
  int fthr_started;
  int taskdir;            /* /proc/self/task */
  /* the inode table (under mu): 2^nbits buckets, doubled when ninodes passes their number, so a
   * lookup walks one node on average however many files bfs reads (a fixed 16,384 buckets
   * walked ~5 cold nodes per new file at 78k files, ~60 at 1M). The doubling is incremental:
   * the previous table (old, 2^obits buckets) stays until every one of its chains has been
   * moved, REHASH_STEP buckets per insert (omoved: how many), so no insert under the lock
   * the listener needs (a writer waits on it) rehashes the whole table (~1M nodes at 1M files,
   * tens of ms of cache misses). A lookup looks in both. */
  inode_t **buckets, **old;
  /* a bit per hash of every identity ever inserted (insert_inode, under mu), read without mu
   * by bilog_t0_stat_ino: a clear bit means the table does not hold the inode */
  _Atomic uint64_t *seen;
  unsigned nbits, obits;
  size_t ninodes, omoved;
  /* the listeners: one per CPU this process may run on (pinned), so that a writer's event is
   * answered on the writer's own CPU: waking the listener and then the writer are local
   * wake-ups, no inter-processor interrupt (tens of µs each on a VM). Each waits in its own
   * epoll; how an event wakes them: pref and excl below. Each reads on its own (a read takes
   * what is queued, another's finds nothing: EAGAIN) into its own buffer and handles what it
   * read, the engine's state under mu. Until 2026-12-03 a listener lock serialised them; until
   * 2026-12-04 all of them polled the group, so every event woke every listener. */
  pthread_t thr[BILOG_MAX_LISTENERS];
  struct listener *lis[BILOG_MAX_LISTENERS];
  int thr_started; /* how many */
  /* How an event wakes the listeners (native-notes/bilog.md, "One listener woken, on the
   * writer's CPU"). Each listener waits in its own epoll. excl = 1: the group is registered
   * EPOLLEXCLUSIVE in each, so an event wakes one idle listener, the first on the group's wait
   * queue: pref, the one pinned to the CPU of the last writer found answered from another
   * CPU (EPOLLEXCLUSIVE wakes "one or more": busy listeners ahead of it find the event on
   * their ready list later and read nothing). excl = 0: registered plainly, so an event wakes every
   * listener (as poll did), chosen while writers hop between CPUs at more than 1 in 4 events
   * (two windows in a row), until they stop. order_mu serialises the changes; fg_n, fg_remote
   * and fg_hops count foreign events, those answered from another CPU than their writer's,
   * and those whose writer was on another CPU than the previous foreign event's. */
  _Atomic int pref, excl;
  int no_allwake; /* BFS_BILOG_FOLLOW=2 (measurements): never every listener */
  uint64_t preread_max; /* pre_read: files up to this T0 size; 0: never */
  _Atomic int nlis; /* lis[0 … nlis) are set (stored after each) */
  pthread_mutex_t order_mu;
  _Atomic uint64_t fg_n, fg_remote, fg_hops, win_hops;
  _Atomic int last_cpu; /* of the last foreign event's writer, -1 at first */
  int hop_windows, calm_windows; /* consecutive windows with more than 1 in 4 events hops, with at most 1 in 16 (under order_mu) */
  _Atomic int stop;
  int stopped;
  shm_t *shm;
  int shm_fd;
  pid_t wd_pid;
  int wd_stop; /* write end of the watchdog's stop pipe: closed at stop (or by the kernel when bfs dies) */
  int stall_ms;
  bilog_info_t info;
  bilog_stats_t st; /* under mu, except the _Atomic-free counters the listener alone bumps */
  _Atomic uint64_t events, own_events, open_events, skipped, settled_files, tree_opens, st_reorders, st_allwake;
  _Atomic int no_marks; /* an ignore mark failed with ENOSPC/EINVAL: no more tried */
  /* set (before the writer is allowed) once an event of another process may change a file:
   * until then no file has changed since T0, and bilog_t0_stat_ino answers without the lock */
  _Atomic int foreign;
  int void_logged;
  bilog_uncovered_t *unc;
  size_t nunc, capunc;
  uint64_t log_dev, log_ino;
  uint8_t *copybuf;
  /* bfs's own opens (bilog_open_quiet): the event's fd, which raises no events, kept per
   * opening thread until that thread claims it (quiet_mu; the slot's fd is -1 when empty) */
  pthread_mutex_t quiet_mu;
  struct {
    pid_t tid;
    int fd;
  } quiet[QUIET_SLOTS];
  /* The quiet tree: a private, detached clone of the mount at the watched directory
   * (open_tree(OPEN_TREE_CLONE): no path leads to it, only this fd), with an ignore mark for
   * FAN_PRE_ACCESS | FAN_OPEN_PERM on that mount. Opens and reads through it raise no events
   * at all (the filesystem mark's events are masked by the mount's ignore mask in the kernel),
   * so bfs's own reads cost no round trip through the listener. -1 when the kernel refused it
   * (then the quiet slots above are used). tree_rw: open_quiet holds it shared, stop
   * exclusive to close the fd. tree_root: the watched directory as given (absolute), and
   * tree_real its realpath, the prefixes a path must have to be opened through the tree. */
  int treefd;
  /* bilog_stop writes it so that the listeners leave poll at once (not after its 100 ms) */
  int wakefd;
  pthread_rwlock_t tree_rw;
  char *tree_root, *tree_real;
  size_t tree_rootlen, tree_reallen;
};

/* The listener: an own thread's open, in a slot for bilog_open_quiet. */
static void quiet_keep(bilog_t *b, pid_t tid, int evfd) {
  int d = fcntl(evfd, F_DUPFD_CLOEXEC, 0);
  if (d < 0) return;
  pthread_mutex_lock(&b->quiet_mu);
  int i = (int)((unsigned)tid % QUIET_SLOTS), old = b->quiet[i].fd;
  b->quiet[i].tid = tid;
  b->quiet[i].fd = d;
  pthread_mutex_unlock(&b->quiet_mu);
  if (old >= 0) close(old); /* an open nobody claimed (not through bilog_open_quiet) */
}

static inline size_t bucket_of(unsigned nbits, uint64_t dev, uint64_t ino) {
  uint64_t h = (ino * 0x9E3779B97F4A7C15ULL) ^ (dev * 0xC2B2AE3D27D4EB4FULL);
  return (size_t)(h >> (64 - nbits));
}

/* Moves up to n chains of the previous table into the current one (under mu); frees the
 * previous table once it is empty. */
static void rehash_step(bilog_t *b, size_t n) {
  size_t osize = (size_t)1 << b->obits;
  for (; b->old && n > 0 && b->omoved < osize; n--, b->omoved++)
    for (inode_t *q = b->old[b->omoved], *nx; q; q = nx) {
      nx = q->next;
      size_t k = bucket_of(b->nbits, q->dev, q->ino);
      q->next = b->buckets[k];
      b->buckets[k] = q;
    }
  if (b->old && b->omoved >= osize) {
    free(b->old);
    b->old = NULL;
  }
}

/* Adds p to the inode table (under mu). When it holds as many inodes as buckets, a table of
 * twice the size becomes the current one and the chains of the previous one move over
 * REHASH_STEP at a time, one step per insert: 2^nbits inserts at least before the next
 * doubling, 2^(nbits-1) buckets to move, so a doubling always finds the previous one done
 * (finished here if not). Best effort: without memory for a bigger table, the chains grow. */
/* SEEN_BITS bits (512 KiB): ~2 % set after the Linux tree's 78k files, ~20 % at 1M */
#define SEEN_BITS 22
static inline void seen_bit(uint64_t dev, uint64_t ino, size_t *word, uint64_t *bit) {
  uint64_t h = (ino * 0xC2B2AE3D27D4EB4FULL) ^ (dev * 0x9E3779B97F4A7C15ULL) ^ (ino >> 29);
  h >>= 64 - SEEN_BITS;
  *word = (size_t)(h >> 6);
  *bit = 1ULL << (h & 63);
}

static void insert_inode(bilog_t *b, inode_t *p) {
  size_t w;
  uint64_t bit;
  seen_bit(p->dev, p->ino, &w, &bit);
  atomic_fetch_or(&b->seen[w], bit); /* before anything can find it, or allow a change to it */
  rehash_step(b, REHASH_STEP);
  if (b->ninodes >= ((size_t)1 << b->nbits) && b->nbits < 40) {
    rehash_step(b, SIZE_MAX);
    inode_t **t = calloc((size_t)1 << (b->nbits + 1), sizeof *t);
    if (t) {
      b->old = b->buckets;
      b->obits = b->nbits;
      b->omoved = 0;
      b->buckets = t;
      b->nbits++;
    }
  }
  size_t k = bucket_of(b->nbits, p->dev, p->ino);
  p->next = b->buckets[k];
  b->buckets[k] = p;
  b->ninodes++;
}

static inode_t *find_inode(bilog_t *b, uint64_t dev, uint64_t ino) {
  for (inode_t *p = b->buckets[bucket_of(b->nbits, dev, ino)]; p; p = p->next)
    if (p->dev == dev && p->ino == ino) return p;
  if (b->old) /* (a moved chain is empty there) */
    for (inode_t *p = b->old[bucket_of(b->obits, dev, ino)]; p; p = p->next)
      if (p->dev == dev && p->ino == ino) return p;
  return NULL;
}

/* Under mu. st must be the file's state at T0 (see bilog_read_t0 and handle_event). */
static inode_t *get_inode(bilog_t *b, const struct stat *st, int fd) {
  inode_t *p = find_inode(b, st->st_dev, st->st_ino);
  if (p) return p;
  p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->dev = st->st_dev;
  p->ino = st->st_ino;
  p->t0size = (uint64_t)st->st_size;
  p->msec = st->st_mtim.tv_sec;
  p->mnsec = (uint32_t)st->st_mtim.tv_nsec;
  p->csec = st->st_ctim.tv_sec;
  p->cnsec = (uint32_t)st->st_ctim.tv_nsec;
  int gen = 0;
  if (fd >= 0 && ioctl(fd, FS_IOC_GETVERSION, &gen) == 0) p->igen = (uint32_t)gen;
  for (size_t i = 0; i < b->nunc; i++)
    if (b->unc[i].dev == p->dev && b->unc[i].ino == p->ino) p->uncovered = b->unc[i].reason;
  insert_inode(b, p);
  return p;
}

static chunk_t *get_chunk(inode_t *p, uint64_t block, int create) {
  uint64_t c = block / CHUNK_BLOCKS;
  if (c >= p->nchunks) {
    if (!create) return NULL;
    uint64_t n = p->nchunks ? p->nchunks : 4;
    while (n <= c) n *= 2;
    chunk_t **t = realloc(p->chunks, n * sizeof *t);
    if (!t) return NULL;
    memset(t + p->nchunks, 0, (n - p->nchunks) * sizeof *t);
    p->chunks = t;
    p->nchunks = n;
  }
  if (!p->chunks[c] && create) p->chunks[c] = calloc(1, sizeof(chunk_t));
  return p->chunks[c];
}

#define BIT(a, i) (((a)[(i) / 64] >> ((i) % 64)) & 1)
#define SETBIT(a, i) ((a)[(i) / 64] |= 1ULL << ((i) % 64))

/* ---- the capture file ------------------------------------------------------ */

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static int write_all(int fd, struct iovec *iov, int n) {
  while (n > 0) {
    ssize_t w = writev(fd, iov, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    while (n > 0 && (size_t)w >= iov->iov_len) {
      w -= (ssize_t)iov->iov_len;
      iov++;
      n--;
    }
    if (n > 0) {
      iov->iov_base = (uint8_t *)iov->iov_base + w;
      iov->iov_len -= (size_t)w;
    }
  }
  return 0;
}

/* Copies len bytes into the ring at capture-file offset at (under mu, with room for them). */
static void ring_put(bilog_t *b, uint64_t at, const void *src, uint64_t len) {
  uint64_t pos = at % RING_BYTES, first = len < RING_BYTES - pos ? len : RING_BYTES - pos;
  if (!len) return;
  memcpy(b->ring + pos, src, first);
  if (len > first) memcpy(b->ring, (const uint8_t *)src + first, len - first);
}

/*
 * Until the ring has room for a record of len data bytes (or the log failed): waits for the
 * flusher, releasing mu meanwhile (backpressure: the writer stays blocked). Returns whether it
 * waited, i.e. whether mu was released: then another listener or a reader may have changed any
 * inode's state, and a caller that looked at it must look again. Under mu.
 */
/* Whether a record of total bytes must wait: the ring has no room for it, or it would reach
 * the pages the flusher is faulting in (prefault_ahead). Under mu. */
static inline int ring_busy(const bilog_t *b, uint64_t total) {
  return b->log_end + total - b->flushed > RING_BYTES || (b->pf_hi && b->log_end + total > b->pf_lo);
}

static int ring_wait(bilog_t *b, uint64_t len) {
  uint64_t total = BILOG_RECORD_BYTES + len + (8 - len % 8) % 8;
  if (b->st.log_errno || !ring_busy(b, total)) return 0;
  PROF_T(tw);
  while (!b->st.log_errno && ring_busy(b, total)) {
    b->flusher_asleep = 0;
    pthread_cond_signal(&b->data_cv);
    pthread_cond_wait(&b->space_cv, &b->mu);
  }
  PROF_ADD(PH_RINGWAIT, tw);
  return 1;
}

/*
 * Appends one record (under mu) to the ring; the flusher writes it to the capture file.
 * Returns the capture-file offset of its data, or 0 when the log failed (a write of the
 * flusher): then the run is void (the listener goes on allowing, logging nothing). May wait
 * for room in the ring, releasing mu meanwhile (backpressure: the writer stays blocked).
 *
 * Why memory is enough before FAN_ALLOW: the capture file is only read by this process, while
 * it runs (bilog_read_t0 reads the ring for bytes not yet written out) and after bilog_stop,
 * which writes everything out first. If the process dies, the run is void whether the bytes
 * were in the ring or in the page cache (there is no end record), so neither fsync nor a
 * write before allowing adds to the promise.
 */
static uint64_t emit(bilog_t *b, int kind, int cause, const inode_t *p, uint64_t off, const void *data, uint32_t len,
                     pid_t tid, int nr) {
  uint64_t total = BILOG_RECORD_BYTES + len + (8 - len % 8) % 8;
  /* room in the ring: wait for the flusher (mu is released meanwhile: log_range waits first,
   * see there, so that its copy and block bits are not changed under it) */
  ring_wait(b, len);
  if (b->st.log_errno) return 0;
  uint8_t h[BILOG_RECORD_BYTES];
  memset(h, 0, sizeof h);
  memcpy(h, "BIR1", 4);
  h[4] = (uint8_t)kind;
  h[5] = (uint8_t)cause;
  put32(h + 8, len);
  put64(h + 16, ++b->seq);
  if (p) {
    put32(h + 12, p->igen);
    put64(h + 24, p->dev);
    put64(h + 32, p->ino);
    put64(h + 48, p->t0size);
    put64(h + 56, (uint64_t)p->msec);
    put32(h + 64, p->mnsec);
    put32(h + 68, p->cnsec);
    put64(h + 72, (uint64_t)p->csec);
  }
  put64(h + 40, off);
  put32(h + 80, (uint32_t)tid);
  put32(h + 84, (uint32_t)nr);
  put64(h + 88, bfs_xxh64(data, len));
  put64(h + 96, bfs_xxh64(h, 96));
  static const uint8_t zeros[8];
  uint64_t pad = (8 - len % 8) % 8;
  uint64_t at = b->log_end;
  ring_put(b, at, h, sizeof h);
  ring_put(b, at + sizeof h, data, len);
  ring_put(b, at + sizeof h + len, zeros, pad);
  b->log_end += total;
  b->st.records++;
  b->st.log_bytes = b->log_end;
  /* the flusher batches: woken early only when the ring fills up (else it looks every FLUSH_MS) */
  if (b->log_end - b->flushed >= RING_BYTES / 8 || b->flusher_asleep) {
    b->flusher_asleep = 0; /* one wake-up per burst after a quiet spell, none while records flow */
    pthread_cond_signal(&b->data_cv);
  }
  return at + sizeof h;
}

/*
 * The ring's pages, faulted in by the flusher rather than on the listener's path, a huge page
 * at a time from the step after the one holding the capture file's end to PREFAULT_LEAD
 * beyond it (the ring's first pass only; the pages below log_end were written, so faulted
 * in, by emit, which faults in the rest of its step itself). Each step touches its pages
 * without mu, and a record that would reach them meanwhile waits in ring_wait. Until
 * 2026-12-05 the whole ring was faulted in at start by one MADV_POPULATE_WRITE: 3 ms for
 * memory the VM had used before, 80-250 ms for memory it had not (the host backs it then),
 * for a ring most backups never fill, and the call held the process's mmap lock throughout,
 * so every mmap of bfs meanwhile (the listeners' stacks, the watchdog's spawn, V8's heap)
 * waited for it: bilog_start took 40-75 ms instead of ~6. A page fault takes only the
 * mapping's own lock (Linux ≥ 6.4). Under mu (released while touching); returns with it held.
 */
static void prefault_ahead(bilog_t *b) {
  while (!b->flusher_stop) {
    /* from the next step: the one holding log_end is emit's to fault in (a record never waits
     * for the flusher, a normal-priority thread, to touch the pages right at the end) */
    uint64_t lo = (b->log_end / PREFAULT_STEP + 1) * PREFAULT_STEP;
    /* except before the first record: the first step too (from the page after the header's),
     * so that the first writers do not fault it in (the flusher starts before the mark) */
    if (b->seq == 0) lo = (b->log_end + 4095) & ~4095ULL;
    if (lo < b->populated) lo = b->populated;
    uint64_t want = b->log_end + PREFAULT_LEAD < RING_BYTES ? b->log_end + PREFAULT_LEAD : RING_BYTES;
    if (lo >= want) return;
    uint64_t hi = lo + PREFAULT_STEP - lo % PREFAULT_STEP;
    if (hi > RING_BYTES) hi = RING_BYTES;
    b->pf_lo = lo;
    b->pf_hi = hi;
    pthread_mutex_unlock(&b->mu);
    for (uint64_t o = lo; o < hi; o += 4096) ((volatile uint8_t *)b->ring)[o] = 0; /* beyond log_end: no record's bytes */
    pthread_mutex_lock(&b->mu);
    b->pf_lo = b->pf_hi = 0;
    b->populated = hi;
    pthread_cond_broadcast(&b->space_cv);
    atomic_fetch_add(&b->shm->heartbeat, 1); /* progress: a listener waiting for it is not stalled */
  }
}

/*
 * The flusher thread: writes the ring's bytes [flushed, log_end) to the capture file, in
 * batches (it looks every FLUSH_MS, 10 ms, or when emit finds the ring filling up or full:
 * at 2 ms, 500 wake-ups a second were a tenth of the capture's CPU in an image backup with a
 * writer at 2,000 writes/s, and each one a task for the woken writer to wait behind). A failed
 * write voids the run: log_errno is set, waiters are released and nothing more is logged
 * (what is in the ring stays readable). It stops once flusher_stop is set and all is out.
 * After FLUSHER_NAPS empty looks in a row (~50 ms without a record) it sleeps until emit wakes
 * it: a backup no one writes to paid ~500 wake-ups a second for nothing (0.2 s of CPU in a
 * 14 s backup of the Linux tree on a VM, where a context switch costs tens of µs).
 */
static void *flusher(void *arg) {
  bilog_t *b = arg;
  prctl(PR_SET_NAME, "bfs-bilog-fl", 0, 0, 0);
  pthread_mutex_lock(&b->mu);
  int naps = 0;
  for (;;) {
    prefault_ahead(b);
    if (b->flushed == b->log_end || b->st.log_errno) {
      if (b->flusher_stop) break;
      if (++naps > FLUSHER_NAPS) {
        b->flusher_asleep = 1;
        while (b->flusher_asleep && !b->flusher_stop) pthread_cond_wait(&b->data_cv, &b->mu);
        b->flusher_asleep = 0;
        naps = 0;
        /* then the burst's records get their FLUSH_MS to gather, as when it looks every FLUSH_MS */
      }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += FLUSH_MS * 1000000L;
      if (ts.tv_nsec >= 1000000000) ts.tv_sec++, ts.tv_nsec -= 1000000000;
      if (!b->flusher_stop) pthread_cond_timedwait(&b->data_cv, &b->mu, &ts);
      continue;
    }
    naps = 0;
    uint64_t from = b->flushed, to = b->log_end;
    pthread_mutex_unlock(&b->mu);
    /* the ring holds [from, to) until flushed moves: emit writes only beyond log_end */
    int err = 0;
    uint64_t done = from;
    while (done < to && !err) {
      uint64_t pos = done % RING_BYTES, n = to - done;
      if (n > RING_BYTES - pos) n = RING_BYTES - pos;
      if (n > 8u << 20) n = 8u << 20;
      ssize_t w = pwrite(b->logfd, b->ring + pos, n, (off_t)done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) err = w < 0 ? errno : EIO;
      else done += (uint64_t)w;
    }
    pthread_mutex_lock(&b->mu);
    b->flushed = done;
    if (err && !b->st.log_errno) {
      b->st.log_errno = (uint64_t)err;
      b->st.void_reason = BIR_LISTENER;
    }
    pthread_cond_broadcast(&b->space_cv);
    atomic_fetch_add(&b->shm->heartbeat, 1); /* progress: a listener waiting for room is not stalled */
  }
  pthread_mutex_unlock(&b->mu);
  return NULL;
}

/*
 * Copies capture-file bytes [at, at+len) into dst (under mu): from the file below flushed,
 * from the ring above. 0 or -errno.
 */
static int log_read(bilog_t *b, uint8_t *dst, uint64_t at, uint64_t len) {
  while (len && at < b->flushed) {
    uint64_t n = b->flushed - at < len ? b->flushed - at : len;
    ssize_t k = pread(b->logfd, dst, n, (off_t)at);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return k < 0 ? -errno : -EIO;
    dst += k, at += (uint64_t)k, len -= (uint64_t)k;
  }
  if (!len) return 0;
  uint64_t pos = at % RING_BYTES, first = len < RING_BYTES - pos ? len : RING_BYTES - pos;
  memcpy(dst, b->ring + pos, first);
  if (len > first) memcpy(dst + first, b->ring, len - first);
  return 0;
}

static void note_first(bilog_t *b, inode_t *p, pid_t tid, int nr) {
  if (p->first_logged) return;
  /* room first: a wait releases mu, and another listener may write the record meanwhile */
  if (ring_wait(b, 0) && p->first_logged) return;
  if (emit(b, BIK_FIRST, 0, p, 0, NULL, 0, tid, nr)) {
    p->first_logged = 1;
    b->st.first_sights++;
  }
}

/*
 * Logs the not-yet-logged, not-yet-read blocks of [off, end) (under mu), reading their
 * current bytes through fd (the event's fd: no events). Blocks already read by bfs are
 * marked stale instead: bfs must not read them at T0 again.
 */
static void log_range(bilog_t *b, inode_t *p, int fd, uint64_t off, uint64_t end, int cause, pid_t tid, int nr) {
  /* settled meanwhile (the caller waited for the ring, releasing mu, while bfs read the file
   * whole): nothing to log, as for any settled file */
  if (p->settled) return;
  if (end > p->t0size) end = p->t0size;
  for (uint64_t blk = off / BS; blk * BS < end;) {
    chunk_t *c = get_chunk(p, blk, 1);
    if (!c) {
      b->st.void_reason = BIR_LISTENER;
      return;
    }
    uint64_t i = blk % CHUNK_BLOCKS;
    if (BIT(c->logged, i) || BIT(c->read, i)) {
      if (BIT(c->read, i) && !BIT(c->logged, i) && !BIT(c->stale, i)) {
        SETBIT(c->stale, i);
        b->st.stale_blocks++;
      }
      blk++;
      continue;
    }
    /* a run of blocks to log, within one chunk, ≤ 1 MiB */
    uint64_t b0 = blk, n = 1;
    while (n < RUN_BLOCKS && (b0 + n) * BS < end && (b0 + n) % CHUNK_BLOCKS != 0 &&
           !BIT(c->logged, (b0 + n) % CHUNK_BLOCKS) && !BIT(c->read, (b0 + n) % CHUNK_BLOCKS))
      n++;
    if (!c->img && !(c->img = calloc(CHUNK_BLOCKS, sizeof *c->img))) {
      b->st.void_reason = BIR_LISTENER;
      return;
    }
    uint64_t want = n * BS;
    if (b0 * BS + want > end) want = end - b0 * BS;
    /* room for the record first: emit would wait releasing mu, and meanwhile another listener
     * could copy its own image into copybuf (one per capture) or log these same blocks, and a
     * reader mark them read. After a wait, look at the blocks again. */
    if (ring_wait(b, want)) continue;
    ssize_t r = 0;
    PROF_T(tc);
    while ((uint64_t)r < want) {
      ssize_t k = pread(fd, b->copybuf + r, want - (uint64_t)r, (off_t)(b0 * BS + (uint64_t)r));
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) break;
      r += k;
    }
    PROF_ADD(PH_COPY, tc);
    if (r > 0) {
      PROF_T(te);
      uint64_t doff = emit(b, BIK_IMAGE, cause, p, b0 * BS, b->copybuf, (uint32_t)r, tid, nr);
      PROF_ADD(PH_EMIT, te);
      if (!doff) return;
      for (uint64_t j = 0; j * BS < (uint64_t)r; j++) {
        uint64_t bytes = (uint64_t)r - j * BS;
        if (bytes > BS) bytes = BS;
        SETBIT(c->logged, (b0 + j) % CHUNK_BLOCKS);
        c->img[(b0 + j) % CHUNK_BLOCKS] = ((doff + j * BS) << 13) | bytes;
      }
      if (cause == BIC_PREREAD)
        b->st.preread_bytes += (uint64_t)r;
      else {
        b->st.images++;
        b->st.image_bytes += (uint64_t)r;
      }
    }
    atomic_fetch_add(&b->shm->heartbeat, 1); /* a long copy is progress, not a stall */
    blk = b0 + n;
  }
}

/* ---- classifying an event ----------------------------------------------------- */

/*
 * /proc/TID/syscall of the event's thread (blocked until we answer): the call it is in, and
 * whether it is one of this process's threads (*own). Returns the call's number, -1 when it is
 * not in one (a page fault), -2 when unknown. The file stays open in the listener's tcache (a pread at 0
 * renders it afresh; it fails with ESRCH once its thread is gone, and then it is reopened, so
 * a reused TID is never taken for the old thread).
 *
 * "running" means the thread has queued the event but not yet gone to sleep: it will, so ask
 * again (sleeping, not spinning: at SCHED_FIFO a spin could keep it off this CPU), for up to
 * ~1 s (a preempted writer may wait that long for a CPU on a saturated machine), rather than
 * fall back to "unknown", which logs the whole file: far costlier for a big file.
 */
static long proc_syscall(bilog_t *b, tslot_t *tcache, pid_t tid, long long a[6], int *own) {
  tslot_t *s = &tcache[(unsigned)tid % TCACHE];
  char buf[512];
  *own = 0;
  for (int tries = 0;; tries++) {
    ssize_t n = -1;
    if (s->fd >= 0 && s->tid == tid) n = pread(s->fd, buf, sizeof buf - 1, 0);
    if (n <= 0) {
      char path[64];
      if (s->fd >= 0) close(s->fd);
      if (s->statfd >= 0) close(s->statfd);
      s->fd = s->statfd = -1;
      snprintf(path, sizeof path, "/proc/%d/syscall", (int)tid);
      int f = open(path, O_RDONLY | O_CLOEXEC);
      if (f < 0) return -2;
      snprintf(path, sizeof path, "%d", (int)tid);
      s->tid = tid;
      s->fd = f;
      s->own = tid == getpid() || (b->taskdir >= 0 && faccessat(b->taskdir, path, F_OK, 0) == 0);
      n = pread(f, buf, sizeof buf - 1, 0);
      if (n <= 0) return -2;
    }
    *own = s->own;
    if (*own) return -2; /* not needed: bfs's own threads are allowed at once */
    buf[n] = 0;
    if (buf[0] == 'r') { /* "running": it will sleep soon (it may wait for a CPU first) */
      if (tries >= 1100) return -2; /* ~1 s: give up, log conservatively */
      struct timespec ts = {0, tries < 10 ? 2000 : tries < 100 ? 20000 : 1000000};
      nanosleep(&ts, NULL);
      atomic_fetch_add(&b->shm->heartbeat, 1);
      continue;
    }
    if (buf[0] < '0' && buf[0] != '-') return -2;
    char *q = buf;
    long nr = strtol(q, &q, 10);
    for (int i = 0; i < 6; i++) a[i] = (long long)strtoull(q, &q, 0);
    return nr;
  }
}

/* The open flags of the thread's fd (from /proc/TID/fdinfo), or -1. */
static long fd_flags(pid_t tid, long long fd) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/fdinfo/%lld", (int)tid, fd);
  int f = open(path, O_RDONLY | O_CLOEXEC);
  if (f < 0) return -1;
  ssize_t n = read(f, buf, sizeof buf - 1);
  close(f);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *q = strstr(buf, "flags:");
  return q ? strtol(q + 6, NULL, 8) : -1;
}

/* Whether the thread's fd is the file st describes. */
static int fd_is(pid_t tid, long long fd, const struct stat *st) {
  char path[64];
  struct stat s;
  snprintf(path, sizeof path, "/proc/%d/fd/%lld", (int)tid, fd);
  return stat(path, &s) == 0 && s.st_dev == st->st_dev && s.st_ino == st->st_ino;
}

typedef struct {
  int log;          /* 0 nothing, 1 log [off, end) */
  int note;         /* the call may change the size: record the T0 state first */
  int cause;        /* BIC_* */
  int trunc;        /* write a kind 2 record with new_eof */
  int writable;     /* an open for writing (nothing to log yet): a small file may be pre_read */
  uint64_t off, end, new_eof;
} action_t;

#ifdef __x86_64__
enum { NR_READ = 0, NR_WRITE = 1, NR_OPEN = 2, NR_MMAP = 9, NR_PREAD = 17, NR_PWRITE = 18, NR_READV = 19,
       NR_WRITEV = 20, NR_MADVISE = 28, NR_SENDFILE = 40, NR_EXECVE = 59, NR_TRUNCATE = 76, NR_FTRUNCATE = 77,
       NR_CREAT = 85, NR_READAHEAD = 187, NR_IO_SUBMIT = 209, NR_FADVISE = 221, NR_OPENAT = 257, NR_SPLICE = 275,
       NR_FALLOCATE = 285, NR_PREADV = 295, NR_PWRITEV = 296, NR_OPEN_BY_HANDLE = 304, NR_EXECVEAT = 322,
       NR_COPY_FILE_RANGE = 326, NR_PREADV2 = 327, NR_PWRITEV2 = 328, NR_IO_URING = 426 };
#define BILOG_KNOWN_ABI 1
#else
#define BILOG_KNOWN_ABI 0
#endif

static void classify(const struct fanotify_event_metadata *m, int have_range, uint64_t roff, uint64_t rcnt,
                     const struct stat *st, long nr, const long long *a, action_t *act) {
  uint64_t size = (uint64_t)st->st_size;
  memset(act, 0, sizeof *act);
  act->off = 0;
  act->end = size;
  if (!have_range) {
    roff = 0;
    rcnt = size;
  }
#define LOG_RANGE(o, e, c) (act->log = 1, act->note = 1, act->off = (o), act->end = (e), act->cause = (c))
#define WHOLE(c) LOG_RANGE(0, size, c)
  if (!BILOG_KNOWN_ABI) {
    /* no syscall table for this architecture: every open and access logs the whole file */
    WHOLE(BIC_UNKNOWN);
    return;
  }
#if BILOG_KNOWN_ABI
  if (m->mask & FAN_OPEN_PERM) {
    long long fl;
    switch (nr) {
      case NR_OPEN: fl = a[1]; break;
      case NR_OPENAT: case NR_OPEN_BY_HANDLE: fl = a[2]; break;
      case NR_CREAT: fl = O_TRUNC; break;
      case NR_EXECVE: case NR_EXECVEAT: fl = 0; break;
      default: fl = -1; /* openat2 (flags behind a pointer), io_uring, a kernel opener */
    }
    if (fl == -1) {
      WHOLE(BIC_UNKNOWN);
    } else if (fl & O_TRUNC) {
      WHOLE(BIC_OTRUNC);
      act->trunc = size > 0;
      act->new_eof = 0;
    } else if ((fl & O_ACCMODE) != O_RDONLY && !(fl & O_APPEND))
      act->writable = 1; /* (an append overwrites nothing: a log file opened to append is not copied) */
    return;
  }
  uint64_t rend = roff + rcnt < roff ? UINT64_MAX : roff + rcnt;
  switch (nr) {
    case -1: /* not in a syscall: a page fault; shared writable mappings were logged at mmap() */
    case NR_READ: case NR_PREAD: case NR_READV: case NR_PREADV: case NR_PREADV2: case NR_READAHEAD:
    case NR_FADVISE: case NR_MADVISE: case NR_EXECVE: case NR_EXECVEAT:
      return;
    case NR_WRITE: case NR_WRITEV: {
      long fl = fd_flags(m->pid, a[0]);
      if (fl >= 0 && (fl & O_APPEND)) {
        act->note = 1; /* appends overwrite nothing, but change the size */
        return;
      }
      LOG_RANGE(roff, rend, BIC_WRITE);
      return;
    }
    case NR_PWRITE: case NR_PWRITEV: case NR_PWRITEV2: case NR_IO_SUBMIT: case NR_IO_URING:
      LOG_RANGE(roff, rend, BIC_WRITE);
      return;
    case NR_SENDFILE: /* (out_fd, in_fd, ...) */
      if (fd_is(m->pid, a[0], st)) LOG_RANGE(roff, rend, BIC_WRITE);
      return;
    case NR_SPLICE: case NR_COPY_FILE_RANGE: /* (fd_in, off_in, fd_out, ...) */
      if (fd_is(m->pid, a[2], st)) LOG_RANGE(roff, rend, BIC_WRITE);
      return;
    case NR_TRUNCATE: case NR_FTRUNCATE: {
      uint64_t len = (uint64_t)a[1];
      act->note = 1;
      if (len < size) {
        LOG_RANGE(len / BS * BS, size, BIC_TRUNCATE);
        act->trunc = 1;
        act->new_eof = len;
      }
      return;
    }
    case NR_FALLOCATE: { /* (fd, mode, offset, len) */
      long long mode = a[1];
      uint64_t o = (uint64_t)a[2], l = (uint64_t)a[3];
      act->note = 1;
      if (mode & (FALLOC_FL_COLLAPSE_RANGE | FALLOC_FL_INSERT_RANGE)) {
        LOG_RANGE(o / BS * BS, size, BIC_FALLOCATE);
        act->trunc = 1;
        act->new_eof = o;
      } else if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) {
        uint64_t s = o < roff ? o : roff, e = o + l > rend ? o + l : rend;
        LOG_RANGE(s, e, BIC_FALLOCATE);
      }
      return;
    }
    case NR_MMAP: { /* (addr, len, prot, flags, fd, off): a later mprotect may add PROT_WRITE */
      if (!(a[3] & MAP_SHARED)) return;
      long fl = fd_flags(m->pid, a[4]);
      if (fl >= 0 && (fl & O_ACCMODE) == O_RDONLY) return;
      uint64_t o = (uint64_t)a[5], l = (uint64_t)a[1];
      LOG_RANGE(o, o + l < o ? UINT64_MAX : o + l, BIC_MMAP);
      return;
    }
    default:
      WHOLE(BIC_UNKNOWN); /* an unknown caller: the conservative answer */
      return;
  }
#endif
#undef LOG_RANGE
#undef WHOLE
}

static void answer(bilog_t *b, int fd) {
  struct fanotify_response r = {.fd = fd, .response = FAN_ALLOW};
  ssize_t w;
  do w = write(b->fanfd, &r, sizeof r);
  while (w < 0 && errno == EINTR);
  /* ENOENT: the watchdog answered it already (the run is void then) */
}

static void ignore_mark(bilog_t *b, int fd);
static void settle_locked(bilog_t *b, inode_t *p);

/* Whether neither bfs nor the listener has touched any block of the inode (none read, logged or
 * stale). Under mu. */
static int untouched(const inode_t *p) {
  for (uint64_t i = 0; i < p->nchunks; i++) {
    const chunk_t *c = p->chunks[i];
    for (size_t w = 0; c && w < CHUNK_BLOCKS / 64; w++)
      if (c->read[w] | c->logged[w] | c->stale[w]) return 0;
  }
  return 1;
}

/*
 * A file of at most preread_max bytes at T0 that nothing has read or logged yet, at its first
 * event that may change it (a write, a truncation, an open for writing): every block of its T0
 * bytes is logged now (cause BIC_PREREAD), so the file is settled at once and given an ignore
 * mark: its writers raise no more events. A writer of a small file, which would otherwise wait
 * for the listener at every write until bfs reads the file, waits once, for a copy of at most
 * preread_max bytes. The bytes are the file's content at T0, as bfs's own read would have
 * found it: every read lays them over the live bytes (read_span), so the file is stored from
 * them like any other, and they are not kept in the generation's BI log (which holds only
 * images of blocks stored as zeros). Under mu; returns whether the file is now settled.
 */
static int pre_read(bilog_t *b, inode_t *p, int fd, pid_t tid, int nr) {
  p->preread = 1; /* (before the copy: whatever part of it is logged is laid over) */
  log_range(b, p, fd, 0, p->t0size, BIC_PREREAD, tid, nr);
  settle_locked(b, p);
  if (p->settled) b->st.prereads++;
  return p->settled;
}

/* Whether pre_read applies to the inode (under mu). */
static int pre_readable(const bilog_t *b, const inode_t *p) {
  return p->t0size > 0 && p->t0size <= b->preread_max && !p->uncovered && !p->preread && !p->settled && untouched(p);
}

/* The CPU a (blocked) thread last ran on, field 39 of /proc/TID/stat, or -1; its slot in tcache
 * is the one proc_syscall just filled for it. */
static int writer_cpu(tslot_t *tcache, pid_t tid) {
  tslot_t *s = &tcache[(unsigned)tid % TCACHE];
  if (s->fd < 0 || s->tid != tid) return -1;
  char buf[1024];
  if (s->statfd < 0) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)tid);
    if ((s->statfd = open(path, O_RDONLY | O_CLOEXEC)) < 0) return -1;
  }
  ssize_t n = pread(s->statfd, buf, sizeof buf - 1, 0);
  if (n <= 0) return -1;
  buf[n] = 0;
  char *q = strrchr(buf, ')');
  if (!q) return -1;
  q++;
  for (int field = 2; field < 38; field++) { /* skip to field 39 (1-based; ')' ends field 2) */
    q = strchr(q + 1, ' ');
    if (!q) return -1;
  }
  return atoi(q + 1);
}

/* Registers the group in every listener's epoll again, listener j's first (an add goes to the
 * tail of the group's wait queue), EPOLLEXCLUSIVE when excl. Under order_mu. */
static void reorder(bilog_t *b, int j, int excl) {
  for (int pass = 0; pass < 2; pass++)
    for (int k = 0; k < atomic_load(&b->nlis); k++) {
      if ((pass == 0) != (k == j) || b->lis[k]->ep < 0) continue;
      if (k == j && excl == atomic_load(&b->excl)) continue; /* (first already once the others are behind it) */
      struct epoll_event e = {.events = EPOLLIN | (excl ? EPOLLEXCLUSIVE : 0), .data.fd = b->fanfd};
      epoll_ctl(b->lis[k]->ep, EPOLL_CTL_DEL, b->fanfd, NULL);
      /* an add fails only short of memory (or of max_user_watches): then that listener reads
       * the group only on its 100 ms timeout (listener()) until the next change; queued events
       * wait, nothing is lost */
      epoll_ctl(b->lis[k]->ep, EPOLL_CTL_ADD, b->fanfd, &e);
    }
  atomic_store(&b->pref, j);
  atomic_store(&b->excl, excl);
  atomic_fetch_add(&b->st_reorders, 1);
}

/*
 * A foreign writer's event, read by listener l: where was the writer (the CPU it last ran on)?
 * When on another CPU than l's (the exclusive wake-up went to the listener first on the queue,
 * not to the writer's), that CPU's listener goes first from now on. And was it on another CPU
 * than the previous foreign event's writer (a hop)? Hops make following wrong: one writer that
 * the scheduler moves (an idle machine moves a writer woken by a listener to the idle CPU, each
 * time) or writers on several CPUs taking turns. At the end of every FOLLOW_WINDOW foreign
 * events: after two windows in a row with more than 1 in 4 events hops, every listener is woken
 * (plain registration: the local one answers), until two windows in a row with at most 1 in 16;
 * then one again.
 */
#define FOLLOW_WINDOW 64
static void follow_writer(bilog_t *b, listener_t *l, pid_t tid) {
  uint64_t n = atomic_fetch_add(&b->fg_n, 1) + 1;
  int cpu = writer_cpu(l->tcache, tid), j = -1;
  for (int k = 0; cpu >= 0 && k < atomic_load(&b->nlis); k++)
    if (b->lis[k]->cpu == cpu) j = k;
  int last_cpu = atomic_exchange(&b->last_cpu, cpu);
  if (cpu >= 0 && last_cpu >= 0 && cpu != last_cpu) {
    atomic_fetch_add(&b->fg_hops, 1);
    atomic_fetch_add(&b->win_hops, 1);
  }
  if (atomic_load(&b->excl) && j >= 0 && cpu != l->cpu) {
    atomic_fetch_add(&b->fg_remote, 1);
    if (atomic_load(&b->pref) != j) {
      pthread_mutex_lock(&b->order_mu);
      if (atomic_load(&b->excl) && atomic_load(&b->pref) != j) reorder(b, j, 1);
      pthread_mutex_unlock(&b->order_mu);
    }
  }
  if (n % FOLLOW_WINDOW) return;
  pthread_mutex_lock(&b->order_mu);
  uint64_t hops = atomic_exchange(&b->win_hops, 0);
  b->hop_windows = hops * 4 > FOLLOW_WINDOW ? b->hop_windows + 1 : 0;
  b->calm_windows = hops * 16 <= FOLLOW_WINDOW ? b->calm_windows + 1 : 0;
  int to = j >= 0 ? j : atomic_load(&b->pref);
  if (atomic_load(&b->excl) && b->hop_windows >= 2 && !b->no_allwake) {
    reorder(b, to, 0);
    atomic_fetch_add(&b->st_allwake, 1);
  } else if (!atomic_load(&b->excl) && b->calm_windows >= 2)
    reorder(b, to, 1);
  pthread_mutex_unlock(&b->order_mu);
}

static void handle_event(bilog_t *b, listener_t *l, struct fanotify_event_metadata *m) {
  atomic_fetch_add(&b->events, 1);
  if (m->mask & FAN_OPEN_PERM) atomic_fetch_add(&b->open_events, 1);
  int have_range = 0;
  uint64_t roff = 0, rcnt = 0;
  for (char *p = (char *)m + m->metadata_len; p + sizeof(struct fanotify_event_info_header) <= (char *)m + m->event_len;) {
    struct fanotify_event_info_header *h = (void *)p;
    if (h->info_type == FAN_EVENT_INFO_TYPE_RANGE && h->len >= sizeof(struct bi_fan_range)) {
      struct bi_fan_range *r = (void *)p;
      roff = r->offset;
      rcnt = r->count;
      have_range = 1;
    }
    if (!h->len) break;
    p += h->len;
  }
  if (atomic_load(&b->shm->void_flag) || b->st.void_reason) return;
  /* the calling thread's syscall, and whether it is one of bfs's own (allowed at once) */
  long long a[6] = {0};
  int own = 0;
  PROF_T(t3);
  long nr = proc_syscall(b, l->tcache, m->pid, a, &own);
  PROF_ADD(PH_PROC, t3);
  if (own) {
    atomic_fetch_add(&b->own_events, 1);
    if (m->mask & FAN_OPEN_PERM) quiet_keep(b, m->pid, m->fd);
    return;
  }
  if (l->ep >= 0 && nr != -2) follow_writer(b, l, m->pid);
  if (!BILOG_KNOWN_ABI) nr = -2;
#ifdef BILOG_PROF
  if (nr == -2) ph_unknown++;
#endif
  struct stat st;
  PROF_T(t2);
  if (fstat(m->fd, &st) != 0 || !S_ISREG(st.st_mode)) return;
  PROF_ADD(PH_FSTAT, t2);
  action_t act;
  PROF_T(t4);
  classify(m, have_range, roff, rcnt, &st, nr, a, &act);
  PROF_ADD(PH_CLASSIFY, t4);
  /* (the current size is the T0 size unless the file changed already; pre_read checks that) */
  int maybe_pre = b->preread_max && (act.log || act.writable) && (uint64_t)st.st_size <= b->preread_max;
  if (!act.note && !act.log && !maybe_pre) {
    atomic_fetch_add(&b->skipped, 1);
    return;
  }
  PROF_T(t5);
  int want_mark = 0;
  pthread_mutex_lock(&b->mu);
  PROF_ADD(PH_LOCK, t5);
  atomic_store(&b->foreign, 1);
  inode_t *p = get_inode(b, &st, m->fd);
  if (!p) {
    b->st.void_reason = BIR_LISTENER;
  } else if (p->ignored || p->settled) {
    atomic_fetch_add(&b->skipped, 1);
    if (!p->marked) p->marked = want_mark = 1;
  } else {
    int pre = maybe_pre && pre_readable(b, p);
    if (act.note || act.log || pre) note_first(b, p, m->pid, (int)nr);
    if (act.trunc && emit(b, BIK_TRUNC, act.cause, p, act.new_eof, NULL, 0, m->pid, (int)nr)) b->st.truncates++;
    /* those may have waited for the ring, releasing mu (another listener may have read it whole
     * meanwhile): room for the copy now, then look again, so that the copy is made and logged
     * in one hold of mu */
    if (pre) {
      ring_wait(b, p->t0size);
      pre = pre_readable(b, p);
    }
    if (pre) {
      if (pre_read(b, p, m->fd, m->pid, (int)nr) && !p->marked) p->marked = want_mark = 1;
    } else if (act.log && act.off < act.end)
      log_range(b, p, m->fd, act.off, act.end, act.cause, m->pid, (int)nr);
    else if (!act.note && !act.log)
      atomic_fetch_add(&b->skipped, 1);
  }
  pthread_mutex_unlock(&b->mu);
  if (want_mark) ignore_mark(b, m->fd);
}

/* The watchdog took over (the run is void): say so in the log, once. */
static void note_void(bilog_t *b) {
  if (!atomic_load(&b->shm->void_flag)) return;
  pthread_mutex_lock(&b->mu);
  if (!b->void_logged) {
    if (!b->st.void_reason) b->st.void_reason = BIR_LISTENER;
    emit(b, BIK_UNCOVERED, BIR_LISTENER, NULL, 0, NULL, 0, 0, -1);
    b->void_logged = 1;
  }
  pthread_mutex_unlock(&b->mu);
}

/* Reads the queued events and answers them. Returns -1 at the end (stopping and nothing
 * queued); an empty read (EAGAIN: another listener took them) is not the end. */
static int listen_once(listener_t *l, int stopping) {
  bilog_t *b = l->b;
  note_void(b);
  PROF_T(tr);
  ssize_t len = read(b->fanfd, l->evbuf, EVBUF_BYTES);
  PROF_ADD(PH_READ, tr);
  PROF_T(trd);
  if (len <= 0) return stopping && !(len < 0 && errno == EINTR) ? -1 : 0; /* EAGAIN: another listener took them */
  int k = 0;
  ssize_t left = len; /* FAN_EVENT_NEXT consumes its length argument */
  for (struct fanotify_event_metadata *m = (void *)l->evbuf; FAN_EVENT_OK(m, left); m = FAN_EVENT_NEXT(m, left))
    if (m->fd >= 0 && k < INFLIGHT_MAX) atomic_store(&b->shm->inflight[l->idx][k++], m->fd);
  atomic_store(&b->shm->ninflight[l->idx], k);
  left = len;
  for (struct fanotify_event_metadata *m = (void *)l->evbuf; FAN_EVENT_OK(m, left); m = FAN_EVENT_NEXT(m, left)) {
    if (m->mask & FAN_Q_OVERFLOW) { /* events were dropped (their writes allowed unseen) */
      pthread_mutex_lock(&b->mu);
      if (!b->st.void_reason) b->st.void_reason = BIR_LISTENER;
      pthread_mutex_unlock(&b->mu);
      continue;
    }
    if (m->vers != FANOTIFY_METADATA_VERSION || m->fd < 0) continue;
    PROF_T(tev);
    handle_event(b, l, m);
    PROF_T(ta);
    answer(b, m->fd);
    PROF_ADD(PH_ANSWER, ta);
#ifdef BILOG_PROF
    if (tr_n < TRACE_MAX) tr_read[tr_n] = trd, tr_ans[tr_n++] = prof_ns();
#endif
    PROF_T(tcl);
    close(m->fd);
    PROF_ADD(PH_CLOSE, tcl);
    PROF_ADD(PH_EVENT, tev);
  }
  atomic_store(&b->shm->ninflight[l->idx], 0);
  return 0;
}

static void *listener(void *arg) {
  listener_t *l = arg;
  bilog_t *b = l->b;
  prctl(PR_SET_NAME, "bfs-bilog", 0, 0, 0);
  if (l->cpu >= 0) {
    cpu_set_t cs;
    CPU_ZERO(&cs);
    CPU_SET(l->cpu, &cs);
    pthread_setaffinity_np(pthread_self(), sizeof cs, &cs); /* best effort */
  }
  struct pollfd pf[2] = {{.fd = b->fanfd, .events = POLLIN}, {.fd = b->wakefd, .events = POLLIN}};
  int ep = l->ep;
  for (;;) {
    atomic_fetch_add(&b->shm->heartbeat, 1);
    note_void(b);
    int stopping = atomic_load(&b->stop);
    struct epoll_event evs[2];
    int pr = ep >= 0 ? epoll_wait(ep, evs, 2, stopping ? 0 : 100) : poll(pf, b->wakefd >= 0 ? 2 : 1, stopping ? 0 : 100);
    if (pr <= 0) {
      if (stopping) break;
      /* a timeout: read anyway (non-blocking; EAGAIN when nothing is queued), so that a
       * listener whose epoll lost the group (a failed re-registration) still answers */
      if (ep >= 0 && listen_once(l, 0) < 0) break;
      continue;
    }
    if (listen_once(l, stopping) < 0) break;
  }
  return NULL;
}

/* Starts the listeners (at SCHED_FIFO prio when prio > 0 and allowed); 0 or an errno. */
static int start_listeners(bilog_t *b, int prio) {
  cpu_set_t cs;
  int cpus[BILOG_MAX_LISTENERS], n = 0;
  const char *env = getenv("BFS_BILOG_LISTENERS"); /* a count, for measurements: 1 = one, unpinned */
  int want = env && *env ? atoi(env) : BILOG_MAX_LISTENERS;
  if (want > 1 && sched_getaffinity(0, sizeof cs, &cs) == 0)
    for (int c = 0; c < CPU_SETSIZE && n < want && n < BILOG_MAX_LISTENERS; c++)
      if (CPU_ISSET(c, &cs)) cpus[n++] = c;
  if (n <= 1) cpus[0] = -1, n = 1; /* one CPU (or more than we pin for): one listener, unpinned */
  else {
    /* more CPUs than listeners: unpinned, as one */
    int total = CPU_COUNT(&cs);
    if (total > n) cpus[0] = -1, n = 1;
  }
  const char *fol = getenv("BFS_BILOG_FOLLOW");
  b->no_allwake = fol && *fol == '2'; /* (before any listener runs) */
  atomic_store(&b->last_cpu, -1);
  for (int i = 0; i < n; i++) {
    listener_t *la = calloc(1, sizeof *la);
    if (!la || !(la->evbuf = malloc(EVBUF_BYTES))) {
      free(la);
      return ENOMEM;
    }
    la->b = b;
    la->idx = i;
    la->cpu = cpus[i];
    la->ep = -1;
    /* BFS_BILOG_FOLLOW=0 (measurements): no epoll, each listener polls the group, so every
     * event wakes all of them (the way until 2026-12-04) */
    const char *fo = getenv("BFS_BILOG_FOLLOW");
    if (n > 1 && !(fo && *fo == '0') && (la->ep = epoll_create1(EPOLL_CLOEXEC)) >= 0) {
      struct epoll_event e1 = {.events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = b->fanfd};
      struct epoll_event e2 = {.events = EPOLLIN, .data.fd = b->wakefd};
      if (epoll_ctl(la->ep, EPOLL_CTL_ADD, b->fanfd, &e1) != 0 || (b->wakefd >= 0 && epoll_ctl(la->ep, EPOLL_CTL_ADD, b->wakefd, &e2) != 0)) {
        close(la->ep);
        la->ep = -1;
      } else
        atomic_store(&b->excl, 1);
    }
    for (int k = 0; k < TCACHE; k++) la->tcache[k].fd = la->tcache[k].statfd = -1;
    int rc = EPERM;
    if (prio > 0) {
      pthread_attr_t at;
      pthread_attr_init(&at);
      struct sched_param sp = {.sched_priority = prio};
      pthread_attr_setinheritsched(&at, PTHREAD_EXPLICIT_SCHED);
      pthread_attr_setschedpolicy(&at, SCHED_FIFO);
      pthread_attr_setschedparam(&at, &sp);
      rc = pthread_create(&b->thr[i], &at, listener, la);
      pthread_attr_destroy(&at);
      if (rc == 0) b->info.fifo = 1;
      else b->info.sched_errno = rc;
    }
    if (rc != 0) {
      rc = pthread_create(&b->thr[i], NULL, listener, la);
      if (rc != 0) {
        if (la->ep >= 0) close(la->ep);
        free(la->evbuf);
        free(la);
        return rc;
      }
    }
    b->lis[i] = la; /* (freed by bilog_free, after the join) */
    b->thr_started++;
    atomic_store(&b->nlis, i + 1);
  }
  return 0;
}

/* ---- what the capture does not cover: /proc ---------------------------------------- */

/* Under mu (taken here): the scan after the mark runs while the listeners read unc (get_inode),
 * and may find an inode a listener put in the table since the mark, which is then flagged. */
static void add_unc(bilog_t *b, int reason, pid_t pid, int fd, uint64_t dev, uint64_t ino, const char *path) {
  if (dev == b->log_dev && ino == b->log_ino) return;
  pthread_mutex_lock(&b->mu);
  for (size_t i = 0; i < b->nunc; i++)
    if (b->unc[i].dev == dev && b->unc[i].ino == ino && b->unc[i].reason == reason) {
      pthread_mutex_unlock(&b->mu);
      return;
    }
  if (b->nunc == b->capunc) {
    size_t n = b->capunc ? b->capunc * 2 : 16;
    bilog_uncovered_t *t = realloc(b->unc, n * sizeof *t);
    if (!t) {
      pthread_mutex_unlock(&b->mu);
      return;
    }
    b->unc = t;
    b->capunc = n;
  }
  inode_t *seen = find_inode(b, dev, ino);
  if (seen && !seen->uncovered) seen->uncovered = reason;
  bilog_uncovered_t *u = &b->unc[b->nunc++];
  memset(u, 0, sizeof *u);
  u->reason = reason;
  u->pid = pid;
  u->fd = fd;
  u->dev = dev;
  u->ino = ino;
  snprintf(u->path, sizeof u->path, "%s", path);
  pthread_mutex_unlock(&b->mu);
}

/* Files on the filesystem open for writing, or mapped shared and writable, by any process. */
static void scan_proc(bilog_t *b) {
  DIR *d = opendir("/proc");
  if (!d) return;
  struct dirent *e;
  while ((e = readdir(d))) {
    char *endp;
    long pid = strtol(e->d_name, &endp, 10);
    if (*endp || pid <= 0) continue;
    char path[128], link[256];
    snprintf(path, sizeof path, "/proc/%ld/fd", pid);
    DIR *fdd = opendir(path);
    if (fdd) {
      struct dirent *f;
      while ((f = readdir(fdd))) {
        long fd = strtol(f->d_name, &endp, 10);
        if (*endp || f->d_name[0] == '.') continue;
        struct stat st;
        snprintf(path, sizeof path, "/proc/%ld/fd/%ld", pid, fd);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || st.st_dev != b->info.fs_dev) continue;
        long fl = fd_flags((pid_t)pid, fd);
        if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY) continue;
        ssize_t n = readlink(path, link, sizeof link - 1);
        link[n > 0 ? n : 0] = 0;
        add_unc(b, BIR_FD_AT_T0, (pid_t)pid, (int)fd, st.st_dev, st.st_ino, link);
      }
      closedir(fdd);
    }
    snprintf(path, sizeof path, "/proc/%ld/maps", pid);
    FILE *mf = fopen(path, "re");
    if (mf) {
      char line[4352];
      while (fgets(line, sizeof line, mf)) {
        char perms[8] = {0};
        unsigned maj, min;
        unsigned long long ino;
        int pos = 0;
        if (sscanf(line, "%*x-%*x %7s %*x %x:%x %llu %n", perms, &maj, &min, &ino, &pos) < 4) continue;
        if (perms[1] != 'w' || perms[3] != 's' || ino == 0) continue;
        if (makedev(maj, min) != b->info.fs_dev) continue;
        char *nl = strchr(line + pos, '\n');
        if (nl) *nl = 0;
        add_unc(b, BIR_MAP_AT_T0, (pid_t)pid, -1, makedev(maj, min), ino, line + pos);
      }
      fclose(mf);
    }
  }
  closedir(d);
}

/* ---- the interface ---------------------------------------------------------------- */

static void write_header(bilog_t *b, uint8_t *h) {
  memset(h, 0, BILOG_HEADER_BYTES);
  memcpy(h, "BFSBILG", 8);
  put16(h + 8, 1);
  put16(h + 10, BILOG_HEADER_BYTES);
  put32(h + 12, (uint32_t)BS);
  put64(h + 16, (uint64_t)b->info.t0_sec);
  put32(h + 24, b->info.t0_nsec);
  put32(h + 28, b->info.fifo ? 1 : 0);
  put64(h + 32, b->info.fs_dev);
  put64(h + 56, bfs_xxh64(h, 56));
}


/* The quiet tree (see struct bilog). Any failure leaves treefd -1 and the reason in
 * info.quiet_tree_errno: bfs's opens then go through the quiet slots, as before. */
static void quiet_tree_start(bilog_t *b, const char *watch_path, const struct stat *wst) {
  int err = 0;
  char *dir = strdup(watch_path);
  if (!dir) {
    b->info.quiet_tree_errno = ENOMEM;
    return;
  }
  if (!S_ISDIR(wst->st_mode)) { /* an image file: the tree of its directory */
    char *slash = strrchr(dir, '/');
    if (!slash) {
      free(dir);
      dir = strdup(".");
    } else if (slash == dir) {
      slash[1] = 0;
    } else {
      *slash = 0;
    }
    if (!dir) {
      b->info.quiet_tree_errno = ENOMEM;
      return;
    }
  }
  size_t n = strlen(dir);
  while (n > 1 && dir[n - 1] == '/') dir[--n] = 0;
  char *real = realpath(dir, NULL);
  int fd = real ? (int)syscall(SYS_open_tree, AT_FDCWD, real, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC) : -1;
  struct stat rst;
  /* read-only before the ignore mark: a process that reaches the clone anyway (through
   * /proc/<bfs>/fd/N, when allowed to ptrace bfs) cannot write through it unseen */
  struct bilog_mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
  if (!real || fd < 0) {
    err = errno;
  } else if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &ro, sizeof ro) != 0) {
    err = errno;
  } else if (fstatat(fd, "", &rst, AT_EMPTY_PATH) != 0) {
    err = errno;
  } else if (rst.st_dev != wst->st_dev) {
    err = EXDEV; /* the directory is on another filesystem than the watched file */
  } else if (fanotify_mark(b->fanfd, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORE | FAN_MARK_IGNORED_SURV_MODIFY,
                           FAN_PRE_ACCESS | FAN_OPEN_PERM, fd, ".") != 0 &&
             fanotify_mark(b->fanfd, FAN_MARK_ADD | FAN_MARK_MOUNT | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY,
                           FAN_PRE_ACCESS | FAN_OPEN_PERM, fd, ".") != 0) {
    err = errno;
  }
  if (err || dir[0] != '/') {
    if (fd >= 0) close(fd);
    free(dir);
    free(real);
    b->info.quiet_tree_errno = err ? err : EINVAL;
    return;
  }
  b->treefd = fd;
  b->tree_root = dir;
  b->tree_rootlen = strlen(dir);
  b->tree_real = real;
  b->tree_reallen = strlen(real);
}

/* The part of path below the quiet tree's root ("" for none), NULL when path is not below it. */
static const char *tree_rel(const char *root, size_t len, const char *path) {
  if (len == 1 && root[0] == '/') return path[0] == '/' && path[1] ? path + 1 : NULL;
  return strncmp(path, root, len) == 0 && path[len] == '/' && path[len + 1] ? path + len + 1 : NULL;
}

/* An fd of path opened through the quiet tree, or -1 (not below it, not the same file as path
 * names in bfs's namespace: a mount inside the tree, a symlink on the way, a race); *st is the
 * fd's stat. With want_id, the inode bfs's scan found at path (lstat in bfs's namespace): when
 * the fd is that inode, the lstat of the path that proves it is the same file is not needed
 * (a path walk: the dearest part of the open). */
static int tree_open(bilog_t *b, const char *path, int want_id, uint64_t want_dev, uint64_t want_ino, struct stat *st) {
  if (b->treefd < 0) return -1;
  const char *rel = tree_rel(b->tree_root, b->tree_rootlen, path);
  if (!rel) rel = tree_rel(b->tree_real, b->tree_reallen, path);
  if (!rel) return -1;
  int fd = -1;
  pthread_rwlock_rdlock(&b->tree_rw);
  if (b->treefd >= 0) {
    /* beneath the clone's root, never across a mount (the clone has none: a path crossing a
     * submount in bfs's namespace would name the directory under it), no magic links */
    struct bilog_open_how how = {.flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME | O_NONBLOCK,
                                 .resolve = RESOLVE_BENEATH | RESOLVE_NO_XDEV | RESOLVE_NO_MAGICLINKS};
    fd = (int)syscall(SYS_openat2, b->treefd, rel, &how, sizeof how);
    if (fd < 0 && errno == EPERM) {
      how.flags &= ~(uint64_t)O_NOATIME;
      fd = (int)syscall(SYS_openat2, b->treefd, rel, &how, sizeof how);
    }
  }
  pthread_rwlock_unlock(&b->tree_rw);
  if (fd < 0) return -1;
  /* the same inode as the path in bfs's namespace (lstat raises no event), a regular file */
  struct stat a;
  if (fstat(fd, st) == 0 && S_ISREG(st->st_mode) &&
      ((want_id && (uint64_t)st->st_dev == want_dev && (uint64_t)st->st_ino == want_ino) ||
       (lstat(path, &a) == 0 && a.st_dev == st->st_dev && a.st_ino == st->st_ino)))
    return fd;
  close(fd);
  return -1;
}

/* ---- the watchdog process -------------------------------------------------------- */

/* The watchdog's executable: $BFS_BILOG_WD, else bfs-bilog-wd next to the binary that holds
 * this code (the addon, native/build/Release/; a test program). 0 or an errno. */
static int wd_path(char *out, size_t n) {
  const char *env = getenv("BFS_BILOG_WD");
  if (env && *env) return snprintf(out, n, "%s", env) < (int)n ? 0 : ENAMETOOLONG;
  char self[PATH_MAX];
  Dl_info di;
  const char *bin = NULL;
  if (dladdr((void *)bilog_start, &di) && di.dli_fname && di.dli_fname[0] == '/') bin = di.dli_fname;
  if (!bin) { /* in the main program (glibc names it "" or argv[0], maybe relative) */
    ssize_t k = readlink("/proc/self/exe", self, sizeof self - 1);
    if (k <= 0) return ENOENT;
    self[k] = 0;
    bin = self;
  }
  const char *slash = strrchr(bin, '/');
  return snprintf(out, n, "%.*s/%s", (int)(slash - bin), bin, BILOG_WD_NAME) < (int)n ? 0 : ENAMETOOLONG;
}

/* what spawn_watchdog says failed, for bilog_start's *syscall_name (the path it tried) */
static __thread char wd_what[PATH_MAX + 64];

/*
 * Starts the watchdog (bilog_wd.c) with posix_spawn: its group fd, shared page and stop pipe
 * at the descriptors bilog_wd.h names, and waits until it says it runs. Not fork(): Node's
 * address space took 100-200 ms to fork here (on the backup's path), and every page of it
 * then stayed copy-on-write for the whole backup. 0 or an errno (exec failures included:
 * glibc's posix_spawn reports them; ECHILD: it exited before it was ready, e.g. a watchdog
 * of another build; ETIMEDOUT: not ready within 30 s), with wd_what set.
 */
static int spawn_watchdog(bilog_t *b) {
  char path[PATH_MAX], pid_s[24], stall_s[24], ver_s[24], size_s[24];
  int err = wd_path(path, sizeof path);
  snprintf(wd_what, sizeof wd_what, "spawning the watchdog %s", err ? BILOG_WD_NAME : path);
  if (err) return err;
  int pfd[2];
  if (pipe2(pfd, O_CLOEXEC) != 0) return errno;
  b->wd_stop = pfd[1];
  /* copies above 5 first, so that placing one at 3, 4 or 5 never overwrites another's source */
  int src[3] = {b->fanfd, b->shm_fd, pfd[0]}, tmp[3] = {-1, -1, -1};
  for (int i = 0; i < 3 && !err; i++)
    if ((tmp[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 16)) < 0) err = errno;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t at;
  int fa_ok = 0, at_ok = 0;
  if (!err) err = posix_spawn_file_actions_init(&fa);
  if (!err) fa_ok = 1;
  /* nothing of bfs's: not its terminal, nor the pipe a `bfs backup | …` writes to */
  if (!err) err = posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDWR, 0);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, 0, 1);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, 0, 2);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, tmp[0], BILOG_WD_FAN_FD);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, tmp[1], BILOG_WD_SHM_FD);
  if (!err) err = posix_spawn_file_actions_adddup2(&fa, tmp[2], BILOG_WD_STOP_FD);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  if (!err) err = posix_spawn_file_actions_addclosefrom_np(&fa, BILOG_WD_STOP_FD + 1); /* (it closes them too) */
#endif
  if (!err) err = posix_spawnattr_init(&at);
  if (!err) at_ok = 1;
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  if (!err) err = posix_spawnattr_setsigdefault(&at, &all);
  if (!err) err = posix_spawnattr_setsigmask(&at, &none);
  if (!err) err = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSID | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  snprintf(pid_s, sizeof pid_s, "%d", (int)getpid());
  snprintf(stall_s, sizeof stall_s, "%d", b->stall_ms);
  snprintf(ver_s, sizeof ver_s, "%d", BILOG_WD_VERSION);
  snprintf(size_s, sizeof size_s, "%zu", sizeof(shm_t));
  char *argv[] = {path, pid_s, stall_s, ver_s, size_s, NULL}, *envp[] = {NULL};
  pid_t pid = -1;
  if (!err) err = posix_spawn(&pid, path, &fa, &at, argv, envp);
  if (!err) b->wd_pid = b->info.watchdog_pid = pid;
  /* until it runs with its page mapped and its fds in place (~1 ms; generous under load) */
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  while (!err && !atomic_load(&b->shm->ready)) {
    int status = 0;
    pid_t w = waitpid(pid, &status, WNOHANG);
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (w == pid || (w < 0 && errno == ECHILD)) { /* (ECHILD: reaped by someone else) */
      b->wd_pid = b->info.watchdog_pid = 0;
      snprintf(wd_what, sizeof wd_what, "the watchdog %s exited at start (status %d)", path,
               w != pid ? -1 : WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
      err = ECHILD;
    } else if (now.tv_sec - t0.tv_sec >= 30) {
      kill(pid, SIGKILL); /* a program that never says it runs: not left behind */
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      b->wd_pid = b->info.watchdog_pid = 0;
      snprintf(wd_what, sizeof wd_what, "the watchdog %s did not start within 30 s", path);
      err = ETIMEDOUT;
    } else {
      struct timespec ts = {0, 200 * 1000};
      nanosleep(&ts, NULL);
    }
  }
  if (fa_ok) posix_spawn_file_actions_destroy(&fa);
  if (at_ok) posix_spawnattr_destroy(&at);
  for (int i = 0; i < 3; i++)
    if (tmp[i] >= 0) close(tmp[i]);
  close(pfd[0]);
  close(b->shm_fd); /* the watchdog has its own; the mapping stays */
  b->shm_fd = -1;
  return err;
}

int bilog_start(const char *watch_path, const char *log_path, const bilog_opts_t *opts, bilog_t **out,
                const char **syscall_name) {
  bilog_t *b = calloc(1, sizeof *b);
  int err = 0;
  const char *where = "malloc";
  if (!b) return ENOMEM;
  b->fanfd = b->logfd = b->taskdir = b->treefd = b->shm_fd = b->wd_stop = -1;
  b->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); /* -1: the listeners see the stop within 100 ms */
  pthread_rwlock_init(&b->tree_rw, NULL);
  pthread_mutex_init(&b->mu, NULL);
  pthread_mutex_init(&b->quiet_mu, NULL);
  pthread_mutex_init(&b->order_mu, NULL);
  for (int i = 0; i < QUIET_SLOTS; i++) b->quiet[i].fd = -1;
  pthread_cond_init(&b->data_cv, NULL);
  pthread_cond_init(&b->space_cv, NULL);
  b->stall_ms = opts && opts->stall_ms > 0 ? opts->stall_ms : 10000;
  if (opts && opts->preread_max) {
    b->preread_max = opts->preread_max > 0 ? (uint64_t)opts->preread_max : 0;
  } else {
    const char *pre = getenv("BFS_BILOG_PREREAD");
    b->preread_max = pre && *pre ? strtoull(pre, NULL, 10) : PREREAD_DEFAULT;
  }
  /* at most one image record (1 MiB): pre_read copies and logs a file in one hold of mu */
  if (b->preread_max > (uint64_t)RUN_BLOCKS * BS) b->preread_max = (uint64_t)RUN_BLOCKS * BS;
  b->nbits = NBUCKETS_BITS0;
  b->buckets = calloc((size_t)1 << b->nbits, sizeof *b->buckets);
  b->seen = calloc((size_t)1 << (SEEN_BITS - 6), sizeof *b->seen);
  /* mappings of their own, which a child forked by anyone else in the process does not
   * inherit: no copy-on-write faults on the listener's path */
  b->copybuf = mmap(NULL, BILOG_MAX_DATA, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (b->copybuf == MAP_FAILED) b->copybuf = NULL;
  b->ring = mmap(NULL, RING_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (b->ring == MAP_FAILED) b->ring = NULL;
  if (b->ring) {
    madvise(b->ring, RING_BYTES, MADV_DONTFORK);
#ifdef MADV_HUGEPAGE
    /* 16 huge pages instead of 8,192 small ones for the flusher to fault in (a page fault costs
     * ~37 µs on the VMs bfs is measured on); the kernel aligns an anonymous mapping of a
     * multiple of 2 MiB on a 2 MiB boundary */
    madvise(b->ring, RING_BYTES, MADV_HUGEPAGE);
#endif
  }
  if (b->copybuf) madvise(b->copybuf, BILOG_MAX_DATA, MADV_DONTFORK);
  b->taskdir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  b->shm_fd = memfd_create("bfs-bilog-shm", MFD_CLOEXEC);
  if (b->shm_fd < 0 || ftruncate(b->shm_fd, sizeof(shm_t)) != 0) {
    err = errno;
    where = b->shm_fd < 0 ? "memfd_create" : "ftruncate";
    goto fail;
  }
  b->shm = mmap(NULL, sizeof(shm_t), PROT_READ | PROT_WRITE, MAP_SHARED, b->shm_fd, 0);
  if (b->shm == MAP_FAILED) b->shm = NULL;
  if (!b->buckets || !b->seen || !b->copybuf || !b->shm || !b->ring) {
    err = ENOMEM;
    goto fail;
  }
  struct stat wst;
  if (stat(watch_path, &wst) != 0) {
    err = errno;
    where = "stat";
    goto fail;
  }
  b->info.fs_dev = wst.st_dev;

  /* the capture file, opened (and its header written) before the mark: no events for it */
  b->logfd = open(log_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (b->logfd < 0) {
    err = errno;
    where = "open";
    goto fail;
  }
  struct stat lst;
  fstat(b->logfd, &lst);
  b->log_dev = lst.st_dev;
  b->log_ino = lst.st_ino;
  /* the header first (T0 still 0: rewritten in place once the mark is set), then records */
  uint8_t h[BILOG_HEADER_BYTES];
  write_header(b, h);
  struct iovec iov = {h, sizeof h};
  if ((err = write_all(b->logfd, &iov, 1))) {
    where = "write";
    goto fail;
  }
  b->log_end = b->flushed = sizeof h;
  /* the flusher, at the creating thread's (normal) priority */
  if ((err = pthread_create(&b->fthr, NULL, flusher, b))) {
    where = "pthread_create";
    goto fail;
  }
  b->fthr_started = 1;

  /* FAN_UNLIMITED_QUEUE: on a full queue the kernel would drop a permission event and let
   * its write through unseen (FAN_Q_OVERFLOW; listen_once voids the run if one comes) */
  b->fanfd = fanotify_init(FAN_CLASS_PRE_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_TID | FAN_UNLIMITED_MARKS | FAN_UNLIMITED_QUEUE,
                           O_RDONLY | O_LARGEFILE | O_CLOEXEC);
  if (b->fanfd < 0) {
    err = errno;
    where = "fanotify_init";
    goto fail;
  }
  scan_proc(b); /* an fd that closes between this scan and the one after the mark */
  quiet_tree_start(b, watch_path, &wst);

  /* the listeners, before the mark (events must find them running) */
  int prio = opts ? opts->fifo_priority : 0;
  if (prio == 0) prio = 10;
  if ((err = start_listeners(b, prio))) {
    where = "pthread_create";
    goto fail;
  }

  /* the watchdog, before the mark: it must not hold any event fd */
  if ((err = spawn_watchdog(b))) {
    where = wd_what;
    goto fail;
  }

  if (fanotify_mark(b->fanfd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_PRE_ACCESS | FAN_OPEN_PERM, AT_FDCWD,
                    watch_path) != 0) {
    err = errno;
    where = "fanotify_mark";
    goto fail;
  }
  /* T0 */
  struct timespec t0;
  clock_gettime(CLOCK_REALTIME, &t0);
  b->info.t0_sec = t0.tv_sec;
  b->info.t0_nsec = (uint32_t)t0.tv_nsec;
  scan_proc(b);

  pthread_mutex_lock(&b->mu);
  write_header(b, h);
  err = pwrite(b->logfd, h, sizeof h, 0) == (ssize_t)sizeof h ? 0 : errno ? errno : EIO;
  for (size_t i = 0; !err && i < b->nunc; i++) {
    inode_t tmp = {.dev = b->unc[i].dev, .ino = b->unc[i].ino};
    struct stat fst;
    char path[128];
    snprintf(path, sizeof path, "/proc/%d/fd/%d", (int)b->unc[i].pid, b->unc[i].fd);
    if (b->unc[i].fd >= 0 && stat(path, &fst) == 0 && fst.st_ino == b->unc[i].ino) tmp.t0size = (uint64_t)fst.st_size;
    emit(b, BIK_UNCOVERED, b->unc[i].reason, &tmp, 0, NULL, 0, b->unc[i].pid, -1);
    b->st.uncovered++;
  }
  pthread_mutex_unlock(&b->mu);
  if (err || b->st.log_errno) {
    err = err ? err : (int)b->st.log_errno;
    where = "write";
    goto fail;
  }
  *out = b;
  return 0;
fail:
  if (syscall_name) *syscall_name = where;
  bilog_stop(b);
  bilog_free(b);
  return err;
}

void bilog_info(bilog_t *b, bilog_info_t *out) { *out = b->info; }

void bilog_stats(bilog_t *b, bilog_stats_t *out) {
  pthread_mutex_lock(&b->mu);
  *out = b->st;
  pthread_mutex_unlock(&b->mu);
  out->events = atomic_load(&b->events);
  out->own_events = atomic_load(&b->own_events);
  out->open_events = atomic_load(&b->open_events);
  out->skipped = atomic_load(&b->skipped);
  out->settled = atomic_load(&b->settled_files);
  out->tree_opens = atomic_load(&b->tree_opens);
  out->follow_events = atomic_load(&b->fg_n);
  out->follow_remote = atomic_load(&b->fg_remote);
  out->follow_hops = atomic_load(&b->fg_hops);
  out->follow_reorders = atomic_load(&b->st_reorders);
  out->follow_allwake = atomic_load(&b->st_allwake);
  /* (prereads, preread_bytes: from b->st, under mu) */
  if (!out->void_reason && b->shm && atomic_load(&b->shm->void_flag)) out->void_reason = BIR_LISTENER;
}

const bilog_uncovered_t *bilog_uncovered(bilog_t *b, size_t *n) {
  *n = b->nunc;
  return b->unc;
}

/* The blocks of [off, off+len) bfs may call read: whole ones, and a last one ending at the T0 size. */
static void block_span(const inode_t *p, uint64_t off, uint64_t len, uint64_t *first, uint64_t *last_excl) {
  uint64_t end = off + len;
  if (end > p->t0size) end = p->t0size;
  *first = (off + BS - 1) / BS;
  *last_excl = end == p->t0size ? (end + BS - 1) / BS : end / BS;
}

/* Frees the inode's per-block state (chunks, their image tables, the array). */
static void free_chunks(inode_t *p) {
  for (uint64_t i = 0; i < p->nchunks; i++)
    if (p->chunks[i]) {
      free(p->chunks[i]->img);
      free(p->chunks[i]);
    }
  free(p->chunks);
  p->chunks = NULL;
  p->nchunks = 0;
}

/* Marks the blocks of [off, off+len) as read by bfs (no more logging needed); -ENOMEM when a
 * chunk could not be made (the blocks before it are marked). Under b->mu. */
static int mark_span(inode_t *p, uint64_t off, uint64_t len) {
  uint64_t f, l;
  block_span(p, off, len, &f, &l);
  for (uint64_t blk = f; blk < l; blk++) {
    chunk_t *c = get_chunk(p, blk, 1);
    if (!c) return -ENOMEM;
    SETBIT(c->read, blk % CHUNK_BLOCKS);
  }
  return 0;
}

/* Whether every block of the inode's T0 bytes has been read by bfs or has its image in the
 * log, none stale: then nothing any later change does to the file matters. Under b->mu. */
static int all_settled(inode_t *p) {
  uint64_t nblk = (p->t0size + BS - 1) / BS;
  for (uint64_t c0 = 0; c0 * CHUNK_BLOCKS < nblk; c0++) {
    chunk_t *c = c0 < p->nchunks ? p->chunks[c0] : NULL;
    if (!c) return 0;
    uint64_t n = nblk - c0 * CHUNK_BLOCKS < CHUNK_BLOCKS ? nblk - c0 * CHUNK_BLOCKS : CHUNK_BLOCKS;
    for (uint64_t w = 0; w * 64 < n; w++) {
      uint64_t want = n - w * 64 >= 64 ? ~0ULL : (1ULL << (n - w * 64)) - 1;
      if (((c->read[w] | c->logged[w]) & want) != want || (c->stale[w] & want)) return 0;
    }
  }
  return 1;
}

/* After bfs's read reached the T0 end of the file (under b->mu): when every block is settled,
 * nothing its writers do matters any more. The listener answers their next event at once and
 * gives the file an ignore mark then (ignore_mark), so files no one touches cost no syscall. */
static void settle_locked(bilog_t *b, inode_t *p) {
  if (!p->settled && !p->ignored && !p->uncovered && all_settled(p)) {
    p->settled = 1;
    atomic_fetch_add(&b->settled_files, 1);
    /* Read whole by bfs and never imaged (most files): their chunks say only "every block
     * read, none logged" now, so they go (a later read of the file checks its ctime, as for
     * any settled file; nothing logs a settled file's blocks). Each file bfs reads had a
     * chunk of 200 bytes until the end of the capture: 16 MB of fresh memory for the Linux
     * tree's 78k files, ~4,000 page faults (~20-50 µs each on the VMs bfs is measured on). */
    int logged = 0;
    for (uint64_t i = 0; i < p->nchunks && !logged; i++)
      for (size_t w = 0; p->chunks[i] && w < CHUNK_BLOCKS / 64; w++)
        if (p->chunks[i]->logged[w]) logged = 1;
    if (!logged) {
      free_chunks(p);
      p->dropped = 1;
    }
  }
}

/* The listener, at the first event of a settled or ignored file: an inode ignore mark for
 * FAN_PRE_ACCESS | FAN_OPEN_PERM through the event's fd, so its writers raise no more events
 * (evictable: it does not pin the inode; evicted, the events come back and are skipped).
 * Best effort. */
static void ignore_mark(bilog_t *b, int fd) {
  if (atomic_load(&b->no_marks)) return;
  if (fanotify_mark(b->fanfd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY | FAN_MARK_EVICTABLE,
                    FAN_PRE_ACCESS | FAN_OPEN_PERM, fd, NULL) != 0 &&
      (errno == ENOSPC || errno == EINVAL))
    atomic_store(&b->no_marks, 1); /* out of marks, or a kernel without evictable marks */
}

/* fd's stat (when known is NULL) checked for a read through the capture: 0 or -errno. */
static int fd_check(bilog_t *b, int fd, const struct stat **known, struct stat *st) {
  if (!*known) {
    if (fstat(fd, st) != 0) return -errno;
    *known = st;
  }
  if (!S_ISREG((*known)->st_mode)) return -EINVAL;
  if ((*known)->st_dev != b->info.fs_dev) return -EXDEV;
  return 0;
}

/* bilog_read_t0, bilog_read_live and bilog_read_file: `live` zeroes the logged blocks instead of
 * laying their images over the live bytes, and counts them in *logged (the BI log holds them),
 * except in a file the listener read whole (pre_read: its images are its content, laid over).
 * `known`: fd's stat when the caller has one (taken after the open, before this call), else
 * NULL. Two lock sections: the T0 state before the pread, the images, marks and settling after. */
static ssize_t read_span(bilog_t *b, int fd, const struct stat *known, void *buf, size_t len, uint64_t off, int mark_read,
                         int live, uint64_t *logged) {
  struct stat st;
  if (b->stopped) return -ECANCELED;
  int rc = fd_check(b, fd, &known, &st);
  if (rc) return rc;
  /* The inode's T0 state: the table's, or (the listener has not seen it) *known, taken before
   * the lock, and that is enough: a change is only allowed after the listener put the inode in
   * the table (under mu, with the stat of its event's fd, taken before the change), so an
   * inode not in the table once the lock is held had not been changed when *known was taken.
   * (Until 2026-12-03 every read stat'ed the fd twice, once more under the lock.) */
  pthread_mutex_lock(&b->mu);
  inode_t *p = get_inode(b, known, fd);
  uint64_t t0size = p ? p->t0size : 0;
  if (p && mark_read && len && off >= t0size) settle_locked(b, p);
  pthread_mutex_unlock(&b->mu);
  if (!p) return -ENOMEM;
  if (off >= t0size || len == 0) return 0;
  size_t n = len;
  if (n > t0size - off) n = (size_t)(t0size - off);
  /* the live bytes, without the lock: this pread raises an event the listener answers */
  size_t got = 0;
  while (got < n) {
    ssize_t k = pread(fd, (uint8_t *)buf + got, n - got, (off_t)(off + got));
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) return -errno;
    if (k == 0) break;
    got += (size_t)k;
  }
  memset((uint8_t *)buf + got, 0, n - got); /* beyond today's EOF, within T0's: see the images */
  /* every block changed since T0 was logged before its change was allowed: lay the images over.
   * A settled file's writers raise no events any more: its blocks bfs read (and did not log)
   * are read again only if the file is unchanged since T0, by a stat after the pread (a write
   * moves the ctime before it changes any byte). */
  struct stat st2;
  int changed = 0;
  pthread_mutex_lock(&b->mu);
  if (p->settled)
    changed = fstat(fd, &st2) != 0 || st2.st_ctim.tv_sec != p->csec || (uint32_t)st2.st_ctim.tv_nsec != p->cnsec;
  if (p->dropped && changed) rc = -ESTALE; /* every block was read, none logged */
  for (uint64_t blk = off / BS; !p->dropped && blk * BS < off + n; blk++) {
    chunk_t *c = get_chunk(p, blk, mark_read);
    uint64_t i = blk % CHUNK_BLOCKS;
    if (c && (BIT(c->stale, i) || (changed && BIT(c->read, i) && !BIT(c->logged, i)))) {
      rc = -ESTALE;
      break;
    }
    if (!c || !BIT(c->logged, i)) continue;
    uint64_t img = c->img[i], ioff = img >> 13, ibytes = img & 8191;
    uint64_t s = blk * BS > off ? blk * BS : off, e = (blk + 1) * BS < off + n ? (blk + 1) * BS : off + n;
    if (live && !p->preread) {
      memset((uint8_t *)buf + (s - off), 0, e - s);
      if (logged) (*logged)++;
      continue;
    }
    uint64_t have = blk * BS + ibytes; /* image bytes end here; zeros after (format.md §2.16.1) */
    if (have > s) {
      uint64_t ce = have < e ? have : e;
      if ((rc = log_read(b, (uint8_t *)buf + (s - off), ioff + (s - blk * BS), ce - s))) break;
      s = ce;
    }
    if (e > s) memset((uint8_t *)buf + (s - off), 0, e - s);
  }
  /* a block left unmarked (no memory for its chunk) is only logged again if written: harmless */
  if (!rc && mark_read && !p->dropped) {
    (void)mark_span(p, off, n);
    if (off + n >= t0size) settle_locked(b, p);
  }
  pthread_mutex_unlock(&b->mu);
  return rc ? rc : (ssize_t)n;
}

ssize_t bilog_read_t0(bilog_t *b, int fd, void *buf, size_t len, uint64_t off, int mark_read) {
  return read_span(b, fd, NULL, buf, len, off, mark_read, 0, NULL);
}

ssize_t bilog_read_live(bilog_t *b, int fd, void *buf, size_t len, uint64_t off, uint64_t *logged) {
  if (logged) *logged = 0;
  return read_span(b, fd, NULL, buf, len, off, 1, 1, logged);
}

int bilog_ignore(bilog_t *b, uint64_t dev, uint64_t ino) {
  if (b->stopped) return -ECANCELED;
  pthread_mutex_lock(&b->mu);
  inode_t *p = find_inode(b, (dev_t)dev, (ino_t)ino);
  if (!p && (p = calloc(1, sizeof *p))) {
    p->dev = dev;
    p->ino = ino;
    insert_inode(b, p);
  }
  if (p) p->ignored = 1;
  pthread_mutex_unlock(&b->mu);
  return p ? 0 : -ENOMEM;
}

int bilog_mark_read(bilog_t *b, int fd, uint64_t off, uint64_t len) {
  struct stat st;
  const struct stat *known = NULL;
  if (b->stopped) return -ECANCELED;
  int rc = fd_check(b, fd, &known, &st);
  if (rc) return rc;
  pthread_mutex_lock(&b->mu); /* (the stat before the lock is enough: see read_span) */
  inode_t *p = get_inode(b, known, fd);
  rc = p ? (p->dropped ? 0 : mark_span(p, off, len)) : -ENOMEM;
  pthread_mutex_unlock(&b->mu);
  return rc;
}

/* bilog_open_quiet; with want_id, the inode bfs expects at path (tree_open). *have_st says
 * whether *st is the returned fd's stat. */
static int open_quiet(bilog_t *b, const char *path, int want_id, uint64_t want_dev, uint64_t want_ino, struct stat *st,
                      int *have_st) {
  *have_st = 0;
  if (b->stopped) return -ECANCELED;
  int tfd = tree_open(b, path, want_id, want_dev, want_ino, st);
  if (tfd >= 0) {
    atomic_fetch_add(&b->tree_opens, 1);
    *have_st = 1;
    return tfd;
  }
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME | O_NONBLOCK); /* (O_NONBLOCK: a fifo put there after the scan must not hang a worker) */
  if (fd < 0 && errno == EPERM) fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return -errno;
  /* the open waited for the listener's answer, so its fd is in this thread's slot by now */
  pid_t tid = (pid_t)syscall(SYS_gettid);
  int q = -1;
  pthread_mutex_lock(&b->quiet_mu);
  int i = (int)((unsigned)tid % QUIET_SLOTS);
  if (b->quiet[i].tid == tid && b->quiet[i].fd >= 0) {
    q = b->quiet[i].fd;
    b->quiet[i].fd = -1;
  }
  pthread_mutex_unlock(&b->quiet_mu);
  struct stat a, c;
  if (q >= 0 && fstat(fd, &a) == 0 && fstat(q, &c) == 0 && a.st_dev == c.st_dev && a.st_ino == c.st_ino && S_ISREG(c.st_mode)) {
    int fl = fcntl(q, F_GETFL);
    if (fl >= 0) (void)fcntl(q, F_SETFL, fl | O_NOATIME); /* as the open asked (EPERM: left as it is) */
    close(fd);
    *st = c;
    *have_st = 1;
    return q;
  }
  if (q >= 0) close(q);
  return fd; /* not found (the mark is gone, or not a regular file): reads raise events, as without this */
}

int bilog_open_quiet(bilog_t *b, const char *path) {
  struct stat st;
  int have;
  return open_quiet(b, path, 0, 0, 0, &st, &have);
}

ssize_t bilog_read_file(bilog_t *b, const char *path, uint64_t dev, uint64_t ino, void *buf, size_t len, uint64_t off,
                        uint64_t *logged, int *at_open) {
  struct stat st;
  int have = 0;
  if (logged) *logged = 0;
  *at_open = 1;
  int fd = open_quiet(b, path, 1, dev, ino, &st, &have);
  if (fd < 0) return fd;
  /* not the inode the scan found: the file was replaced (renamed over, or unlinked and its
   * number reused) after the scan and before this read. Its T0 bytes are gone, and the
   * capture knows the newcomer only from its first write (t0size ~0): reading it would store
   * the scan's size and times over zeros. -ESTALE: the caller says it is not covered. */
  if ((!have && fstat(fd, &st) != 0) || (uint64_t)st.st_dev != dev || (uint64_t)st.st_ino != ino) {
    close(fd);
    return -ESTALE;
  }
  have = 1;
  *at_open = 0;
  /* the open's stat serves the read: one fstat per file, as a plain open and read take */
  ssize_t r = read_span(b, fd, have ? &st : NULL, buf, len, off, 1, 1, logged);
  close(fd);
  return r;
}

int bilog_t0_stat_ino(bilog_t *b, uint64_t dev, uint64_t ino, bilog_t0stat_t *out) {
  if (b->stopped) return -ECANCELED;
  memset(out, 0, sizeof *out);
  /* nothing changed since T0 and nothing is uncovered (nunc is set before bilog_start returns):
   * the caller's stat is the T0 state */
  if (!atomic_load(&b->foreign) && b->nunc == 0) return 0;
  /* not in the table: as below without mu (the backup's main thread asks this for every file
   * before it plans the file's read, and waited for mu behind the workers' reads and the
   * listener: 181 ms of it in the bench's online tree backup with the writer, against ~8 ms
   * for the same 78k lookups uncontended). An inode is in the table before the listener
   * allows any change to it (insert_inode sets its bit first). unc is set before
   * bilog_start returns. */
  size_t w;
  uint64_t bit;
  seen_bit(dev, ino, &w, &bit);
  if (!(atomic_load(&b->seen[w]) & bit)) {
    for (size_t i = 0; i < b->nunc; i++)
      if (b->unc[i].dev == dev && b->unc[i].ino == ino) out->uncovered = b->unc[i].reason;
    return 0;
  }
  int found = 0;
  pthread_mutex_lock(&b->mu);
  inode_t *p = find_inode(b, dev, ino);
  if (p && !p->ignored) {
    out->size = p->t0size;
    out->mtime_sec = p->msec;
    out->mtime_nsec = p->mnsec;
    out->ctime_sec = p->csec;
    out->ctime_nsec = p->cnsec;
    out->igen = p->igen;
    out->uncovered = p->uncovered;
    found = 1;
  } else {
    for (size_t i = 0; i < b->nunc; i++)
      if (b->unc[i].dev == dev && b->unc[i].ino == ino) out->uncovered = b->unc[i].reason;
  }
  pthread_mutex_unlock(&b->mu);
  return found;
}

int bilog_t0_stat(bilog_t *b, int fd, bilog_t0stat_t *out) {
  struct stat st;
  const struct stat *known = NULL;
  if (b->stopped) return -ECANCELED;
  int rc = fd_check(b, fd, &known, &st);
  if (rc) return rc;
  pthread_mutex_lock(&b->mu); /* (the stat before the lock is enough: see read_span) */
  inode_t *p = get_inode(b, known, fd);
  if (p) {
    out->size = p->t0size;
    out->mtime_sec = p->msec;
    out->mtime_nsec = p->mnsec;
    out->ctime_sec = p->csec;
    out->ctime_nsec = p->cnsec;
    out->igen = p->igen;
    out->uncovered = p->uncovered;
  } else if (!rc) {
    rc = -ENOMEM;
  }
  pthread_mutex_unlock(&b->mu);
  return rc;
}

int bilog_stop(bilog_t *b) {
  if (!b || b->stopped) return b ? (int)b->st.log_errno : 0;
  b->stopped = 1;
  if (b->fanfd >= 0) fanotify_mark(b->fanfd, FAN_MARK_FLUSH | FAN_MARK_FILESYSTEM, 0, AT_FDCWD, NULL);
  atomic_store(&b->stop, 1);
  if (b->wakefd >= 0) {
    uint64_t one = 1;
    if (write(b->wakefd, &one, sizeof one) < 0) { /* EAGAIN: already written */
    }
  }
  for (int i = 0; i < b->thr_started; i++) pthread_join(b->thr[i], NULL); /* they answer what is queued, then return */
  if (b->wd_pid > 0) {
    atomic_store(&b->shm->stop, 1);
    close(b->wd_stop); /* wakes it */
    b->wd_stop = -1;
    int status;
    while (waitpid(b->wd_pid, &status, 0) < 0 && errno == EINTR) {
    }
    b->wd_pid = 0;
  }
  if (b->fanfd >= 0) close(b->fanfd); /* the kernel allows anything left */
  b->fanfd = -1;
  pthread_rwlock_wrlock(&b->tree_rw);
  if (b->treefd >= 0) close(b->treefd); /* fds opened through it keep the clone until closed */
  b->treefd = -1;
  pthread_rwlock_unlock(&b->tree_rw);
  pthread_mutex_lock(&b->quiet_mu);
  for (int i = 0; i < QUIET_SLOTS; i++)
    if (b->quiet[i].fd >= 0) {
      close(b->quiet[i].fd);
      b->quiet[i].fd = -1;
    }
  pthread_mutex_unlock(&b->quiet_mu);
  if (b->logfd >= 0 && b->fthr_started) {
    pthread_mutex_lock(&b->mu);
    if (b->thr_started && b->log_end) emit(b, BIK_END, 0, NULL, b->seq, NULL, 0, 0, -1);
    b->flusher_stop = 1; /* it writes out the rest, then returns */
    pthread_cond_signal(&b->data_cv);
    pthread_mutex_unlock(&b->mu);
    pthread_join(b->fthr, NULL);
    b->fthr_started = 0;
  }
  if (b->shm && atomic_load(&b->shm->void_flag) && !b->st.void_reason) b->st.void_reason = BIR_LISTENER;
#ifdef BILOG_PROF
  prof_dump();
  trace_dump();
#endif
  return (int)b->st.log_errno;
}

void bilog_free(bilog_t *b) {
  if (!b) return;
  bilog_stop(b);
  if (b->logfd >= 0) close(b->logfd);
  for (int l = 0; l < BILOG_MAX_LISTENERS; l++)
    if (b->lis[l]) {
      for (int i = 0; i < TCACHE; i++)
        if (b->lis[l]->tcache[i].fd >= 0) close(b->lis[l]->tcache[i].fd);
      for (int i = 0; i < TCACHE; i++)
        if (b->lis[l]->tcache[i].statfd >= 0) close(b->lis[l]->tcache[i].statfd);
      if (b->lis[l]->ep >= 0) close(b->lis[l]->ep);
      free(b->lis[l]->evbuf);
      free(b->lis[l]);
    }
  if (b->taskdir >= 0) close(b->taskdir);
  if (b->wakefd >= 0) close(b->wakefd);
  if (b->ring) munmap(b->ring, RING_BYTES);
  rehash_step(b, SIZE_MAX); /* every inode in one table */
  if (b->buckets) {
    for (size_t i = 0; i < ((size_t)1 << b->nbits); i++)
      for (inode_t *p = b->buckets[i], *n; p; p = n) {
        n = p->next;
        free_chunks(p);
        free(p);
      }
    free(b->buckets);
  }
  free((void *)b->seen);
  if (b->shm) munmap(b->shm, sizeof(shm_t));
  if (b->shm_fd >= 0) close(b->shm_fd);
  if (b->wd_stop >= 0) close(b->wd_stop);
  free(b->unc);
  if (b->copybuf) munmap(b->copybuf, BILOG_MAX_DATA);
  free(b->tree_root);
  free(b->tree_real);
  pthread_rwlock_destroy(&b->tree_rw);
  pthread_mutex_destroy(&b->mu);
  pthread_mutex_destroy(&b->order_mu);
  pthread_cond_destroy(&b->data_cv);
  pthread_cond_destroy(&b->space_cv);
  free(b);
}
