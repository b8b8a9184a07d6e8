/*
 * What the capture engine (bilog.c) and its watchdog process (bilog_wd.c, the executable
 * bfs-bilog-wd) share: the layout of the shared page and how the watchdog is started.
 * native-notes/bilog.md, "The watchdog".
 */
#ifndef BFS_BILOG_WD_H
#define BFS_BILOG_WD_H

#include <stdatomic.h>
#include <stdint.h>

#define BILOG_MAX_LISTENERS 8
#define INFLIGHT_MAX 512

/* The page shared with the watchdog (a memfd, MAP_SHARED in both processes). */
typedef struct {
  _Atomic uint64_t heartbeat;
  _Atomic int void_flag; /* set by the watchdog when it took over */
  _Atomic int stop;
  /* per listener: the event fds it read and has not answered */
  _Atomic int ninflight[BILOG_MAX_LISTENERS];
  _Atomic int inflight[BILOG_MAX_LISTENERS][INFLIGHT_MAX];
  _Atomic int ready; /* set by the watchdog once it runs with the page mapped and its fds set */
} bilog_shm_t;

/* This page's layout and the arguments' meaning: a watchdog of another build (BFS_BILOG_WD,
 * an installation replaced under a running bfs) refuses to run, and the capture does not
 * start. Bump it with any change to either. */
#define BILOG_WD_VERSION 1

/* The watchdog's descriptors, as the engine's posix_spawn places them; its arguments are
 * argv[1] = the capturing process's pid, argv[2] = the stall limit in ms, argv[3] =
 * BILOG_WD_VERSION, argv[4] = sizeof(bilog_shm_t). It exits with 2 on other arguments. */
#define BILOG_WD_FAN_FD 3  /* a copy of the fanotify group fd */
#define BILOG_WD_SHM_FD 4  /* the memfd of the shared page (closed once mapped) */
#define BILOG_WD_STOP_FD 5 /* read end of a pipe whose write end only the engine holds: readable
                              or hung up when the capture stops or the capturing process dies */
/* The executable's name, looked for next to the binary that holds the engine (the addon,
 * a test program), unless BFS_BILOG_WD names it. */
#define BILOG_WD_NAME "bfs-bilog-wd"

#endif
