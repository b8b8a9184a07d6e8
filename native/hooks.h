/*
 * One fast path of bfs's addon: the native read path (nread.c), the stat cache
 * (statcache.c), and the hook table that lets the patched fuse-native binding call them on
 * its libfuse threads (fuse_hooks.h). Compiled with them (-O3), so a hook costs one direct
 * call more than the code that used to live in the binding.
 */
#ifndef BFS_HOOKS_H
#define BFS_HOOKS_H

#include "fuse_hooks.h"
#include "nread.h"
#include "statcache.h"
#include "dirsrc.h"

typedef struct bfs_hooks {
  fuse_native_hooks_t table; /* table.ctx points back here */
  nr_t *nr;                  /* NULL: every read is served in JavaScript */
  sc_t *sc;                  /* NULL: every getattr goes to JavaScript */
  ds_t *ds;                  /* set once (atomically) by the mount; NULL: readdir in JavaScript */
  int open_files;            /* set (atomically) by the mount: open files of listed maps in C (hook_open) */
} bfs_hooks_t;

/* Fills h->table for the parts that are not NULL. */
void bfs_hooks_init(bfs_hooks_t *h, nr_t *nr, sc_t *sc);

#endif
