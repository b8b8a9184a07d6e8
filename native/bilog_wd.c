/*
 * bfs-bilog-wd: the capture's watchdog (native-notes/bilog.md, "The watchdog"), started by
 * bilog_start with posix_spawn (not fork: forking Node's large address space took 100-200 ms
 * on the VMs bfs is measured on, on the backup's path, and left every page of the backup
 * copy-on-write while the watchdog lived). See bilog_wd.h for its descriptors and arguments.
 *
 * It leaves the capturing process's session (POSIX_SPAWN_SETSID) and ignores terminal
 * signals (Ctrl-C, Ctrl-Z reach bfs, not it), holds a copy of the fanotify group fd, and
 * - exits when the capture stops or bfs dies (the stop pipe is readable or hung up, or its
 *   parent changed): closing the last fd of the group makes the kernel allow every pending
 *   event;
 * - when the listeners' heartbeat has not moved for the stall limit (bfs stopped or hung),
 *   sets the void flag and answers every event itself — the ones the listeners read (their
 *   fd numbers are in the shared page) and every queued one — until bfs stops it or dies.
 */
#include "bilog_wd.h"

#include <errno.h>
#include <linux/fanotify.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EVBUF_BYTES 65536

static uint64_t now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* Whether the capture is over: the stop pipe readable or hung up (waits up to ms for it). */
static int stopped(int ms) {
  struct pollfd pf = {.fd = BILOG_WD_STOP_FD, .events = POLLIN};
  return poll(&pf, 1, ms) > 0;
}

static char evbuf[EVBUF_BYTES] __attribute__((aligned(8)));

/* argv[i] as a whole number > 0, or -1 */
static long arg(char **argv, int i) {
  char *end;
  errno = 0;
  long v = strtol(argv[i], &end, 10);
  return errno || end == argv[i] || *end || v <= 0 ? -1 : v;
}

int main(int argc, char **argv) {
  if (argc != 5) return 2;
  long parent = arg(argv, 1), stall_ms = arg(argv, 2);
  if (parent < 1 || stall_ms < 1 || arg(argv, 3) != BILOG_WD_VERSION || arg(argv, 4) != (long)sizeof(bilog_shm_t)) return 2;
  static const int ignored[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGTSTP, SIGTTIN, SIGTTOU, SIGPIPE};
  for (size_t i = 0; i < sizeof ignored / sizeof *ignored; i++) signal(ignored[i], SIG_IGN);
  prctl(PR_SET_NAME, "bfs-bilog-wd", 0, 0, 0);
  syscall(SYS_close_range, BILOG_WD_STOP_FD + 1, ~0U, 0); /* anything else inherited */
  bilog_shm_t *s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, BILOG_WD_SHM_FD, 0);
  close(BILOG_WD_SHM_FD);
  if (s == MAP_FAILED) return 3; /* bilog_start sees it exit before it is ready, and fails */
  atomic_store(&s->ready, 1);
  uint64_t last = atomic_load(&s->heartbeat), since = now_ms();
  int takeover = 0;
  for (;;) {
    if (getppid() != (pid_t)parent || atomic_load(&s->stop)) return 0;
    uint64_t hb = atomic_load(&s->heartbeat), t = now_ms();
    if (hb != last) {
      last = hb;
      since = t;
    } else if (!takeover && t - since > (uint64_t)stall_ms) {
      atomic_store(&s->void_flag, 1);
      takeover = 1;
    }
    if (!takeover) {
      if (stopped(20)) return 0;
      continue;
    }
    for (int l = 0; l < BILOG_MAX_LISTENERS; l++) {
      int n = atomic_load(&s->ninflight[l]);
      for (int i = 0; i < n && i < INFLIGHT_MAX; i++) {
        struct fanotify_response r = {.fd = atomic_load(&s->inflight[l][i]), .response = FAN_ALLOW};
        if (write(BILOG_WD_FAN_FD, &r, sizeof r) < 0) { /* answered already */ }
      }
    }
    struct pollfd pf[2] = {{.fd = BILOG_WD_FAN_FD, .events = POLLIN}, {.fd = BILOG_WD_STOP_FD, .events = POLLIN}};
    if (poll(pf, 2, 20) <= 0) continue;
    if (pf[1].revents) return 0;
    ssize_t len = read(BILOG_WD_FAN_FD, evbuf, EVBUF_BYTES);
    if (len <= 0) continue;
    for (struct fanotify_event_metadata *m = (void *)evbuf; FAN_EVENT_OK(m, len); m = FAN_EVENT_NEXT(m, len)) {
      if (m->fd < 0) continue;
      struct fanotify_response r = {.fd = m->fd, .response = FAN_ALLOW};
      if (write(BILOG_WD_FAN_FD, &r, sizeof r) < 0) { /* nothing to do */ }
      close(m->fd);
    }
  }
}
