/*
 * bilog: the before-image (BI) capture engine (issue 14, phase A). Plain C, no Node: the
 * N-API glue is bilog_napi.c, the test without Node native/test/bilog_test.c.
 *
 * One fanotify FAN_CLASS_PRE_CONTENT group with one filesystem mark (FAN_PRE_ACCESS |
 * FAN_OPEN_PERM), answered by a C thread (SCHED_FIFO when allowed). T0 is the moment the
 * mark is in place. Before a call that would change bytes bfs has not read yet is allowed,
 * their old content is appended to the capture file (native-notes/format.md §2.16.1), once
 * per 4 KiB block. bfs reads files "at T0" through bilog_read_t0 (live bytes overlaid by
 * the images) and says which ranges it has read (bilog_mark_read): those need no logging.
 * A watchdog process releases writers and voids the run when the listener stalls; when the
 * whole process dies the kernel releases them. See native-notes/bilog.md.
 *
 * Thread safety: every function may be called from any thread while the engine runs,
 * except bilog_stop/bilog_free (once, from one thread, after every other call returned).
 */
#ifndef BFS_BILOG_H
#define BFS_BILOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct bilog bilog_t;

typedef struct {
  /** Watchdog: a listener heartbeat older than this voids the run and releases writers; 0 = 10000. */
  int stall_ms;
  /** SCHED_FIFO priority of the listener thread (1 … 99); 0 = 10; -1 = do not ask. */
  int fifo_priority;
  /** Files of at most this many bytes at T0 are read whole at their first event that may change
   *  them (bilog.c, pre_read); 0 = 64 KiB (or the env BFS_BILOG_PREREAD), -1 = never; at most
   *  1 MiB (one image record: more is taken as 1 MiB). */
  long long preread_max;
} bilog_opts_t;

/** Record kinds and causes of the capture file (format.md §2.16.1). */
enum { BIK_FIRST = 0, BIK_IMAGE = 1, BIK_TRUNC = 2, BIK_UNCOVERED = 3, BIK_END = 4 };
enum { BIC_WRITE = 1, BIC_OTRUNC = 2, BIC_TRUNCATE = 3, BIC_FALLOCATE = 4, BIC_MMAP = 5, BIC_UNKNOWN = 6,
       /* a small file read whole at its first event that may change it (bilog.c, pre_read): its
        * content at T0, laid over the live bytes by every read, not kept in a generation's BI log */
       BIC_PREREAD = 7 };
enum { BIR_FD_AT_T0 = 1, BIR_UNCLASSIFIED = 4, BIR_LISTENER = 5, BIR_MAP_AT_T0 = 6 };

#define BILOG_HEADER_BYTES 64
#define BILOG_RECORD_BYTES 104
#define BILOG_MAX_DATA (1u << 20)

typedef struct {
  int64_t t0_sec;
  uint32_t t0_nsec;
  int fifo;        /* 1 when the listener runs at SCHED_FIFO */
  int sched_errno; /* why not (EPERM, ...), 0 when it does or was not asked */
  uint64_t fs_dev;
  pid_t watchdog_pid;
  int quiet_tree_errno; /* 0: bfs's opens go through the quiet tree; else why not (see bilog.c) */
} bilog_info_t;

/** Counters (monotonic while the engine runs). */
typedef struct {
  uint64_t events, own_events, open_events, skipped, first_sights, images, image_bytes, truncates,
      uncovered, log_bytes, records, stale_blocks, void_reason, log_errno,
      settled,    /* files whose every T0 block bfs has read or logged (their writers need no images) */
      tree_opens, /* bilog_open_quiet calls served through the quiet tree (no event at all) */
      /* how events woke the listeners (bilog.c, follow_writer): foreign writers' events, those
       * answered from another CPU than the writer's while one listener is woken per event, those
       * whose writer was on another CPU than the previous foreign event's, how often the listeners'
       * registration changed, and how often every listener came to be woken for a while */
      follow_events, follow_remote, follow_hops, follow_reorders, follow_allwake,
      /* small files read whole (settled) by the listener at their first event that may change
       * them, and the bytes copied so (cause BIC_PREREAD; not counted in images / image_bytes) */
      prereads, preread_bytes;
} bilog_stats_t;

/** One file the capture does not cover (found in /proc before and after the mark). */
typedef struct {
  int reason; /* BIR_FD_AT_T0 or BIR_MAP_AT_T0 */
  pid_t pid;
  int fd; /* -1 for a mapping */
  uint64_t dev, ino;
  char path[256];
} bilog_uncovered_t;

/** What a file looked like at T0, as bfs should store it. */
typedef struct {
  uint64_t size;
  int64_t mtime_sec, ctime_sec;
  uint32_t mtime_nsec, ctime_nsec;
  uint32_t igen;
  int uncovered; /* a reason (BIR_*) when the capture does not cover it, else 0 */
} bilog_t0stat_t;

/**
 * Starts capture on the filesystem holding `watch_path`, appending to a new `log_path`
 * (created, truncated; opened before the mark). Returns 0, or an errno with *syscall naming
 * the call that failed ("fanotify_init", "fanotify_mark" — EOPNOTSUPP on tmpfs, FUSE,
 * overlayfs; EINVAL on kernels without pre-content events —, "open", "spawning the watchdog
 * PATH", "the watchdog PATH exited at start (status N)", ...).
 */
int bilog_start(const char *watch_path, const char *log_path, const bilog_opts_t *opts, bilog_t **out,
                const char **syscall);
void bilog_info(bilog_t *b, bilog_info_t *out);
void bilog_stats(bilog_t *b, bilog_stats_t *out);
/** The files found not covered; valid until bilog_free. */
const bilog_uncovered_t *bilog_uncovered(bilog_t *b, size_t *n);

/**
 * Reads up to `len` bytes of the file open as `fd` at `off`, as they were at T0. Returns the
 * bytes read (0 at or beyond the T0 size), or -errno: -ESTALE when a block in the range was
 * marked read and written since (read it before marking it), -EXDEV for a file on another
 * filesystem, -ECANCELED after bilog_stop. With mark_read, the blocks wholly in the range
 * (and a last partial block ending at the T0 size) are marked read in the same step.
 */
ssize_t bilog_read_t0(bilog_t *b, int fd, void *buf, size_t len, uint64_t off, int mark_read);
/**
 * Like bilog_read_t0 with mark_read, but the blocks that were logged (changed since T0 before
 * this read) read as zeros instead of their images, and *logged counts them: the caller
 * stores the live bytes and the BI log the images (format.md, "Before-image log (format 1)").
 * Each block must be read once: a block logged after its read was marked cannot be told from
 * one logged before it.
 */
ssize_t bilog_read_live(bilog_t *b, int fd, void *buf, size_t len, uint64_t off, uint64_t *logged);
/**
 * bfs will not read the file (dev, ino): it keeps it as an earlier generation stored it (its
 * ctime has not moved since). Its writes from now on are allowed without images. 0 or -errno.
 */
int bilog_ignore(bilog_t *b, uint64_t dev, uint64_t ino);
/** bfs has read [off, off+len) of fd (bytes as at T0): whole blocks in it need no more logging. */
int bilog_mark_read(bilog_t *b, int fd, uint64_t off, uint64_t len);
/**
 * Opens a regular file at `path` read-only (O_NOATIME where allowed, O_NOFOLLOW) so that
 * reads through the returned fd raise no events: the listener keeps the fd of the open's own
 * permission event (which raises none) for the opening thread. Falls back to the plain fd
 * when there is none. Returns the fd (the caller closes it) or -errno.
 */
int bilog_open_quiet(bilog_t *b, const char *path);
/**
 * bilog_open_quiet, bilog_read_live and close in one call, for a range of a file bfs's scan
 * found at `path` as inode (dev, ino): when the quiet tree's fd is that inode, the lstat that
 * proves it is the file `path` names is skipped, and the open's fstat serves the read (one
 * fstat per file, as offline). Returns the bytes read or -errno; *at_open says whether the open
 * failed (1) or the read (0).
 */
ssize_t bilog_read_file(bilog_t *b, const char *path, uint64_t dev, uint64_t ino, void *buf, size_t len, uint64_t off,
                        uint64_t *logged, int *at_open);
/**
 * The T0 state of (dev, ino) if the capture has seen the inode: 1 and *out filled. 0 when it
 * has not — nothing changed it since T0, so its current stat is its T0 state (out->uncovered
 * still says whether it had a writer at T0). -errno on error.
 */
int bilog_t0_stat_ino(bilog_t *b, uint64_t dev, uint64_t ino, bilog_t0stat_t *out);
/** The T0 size and times of the file open as fd. 0 or -errno. */
int bilog_t0_stat(bilog_t *b, int fd, bilog_t0stat_t *out);

/**
 * Removes the mark, answers what is queued, stops the listener and the watchdog, appends the
 * end record. Returns 0 or the errno of a failed log write. bilog_stats stays valid.
 */
int bilog_stop(bilog_t *b);
void bilog_free(bilog_t *b);

#endif
