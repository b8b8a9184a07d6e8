/*
 * One fast path of bfs's addon: the native read path (nread.c) and the hook table that
 * lets the patched fuse-native binding call it on its libfuse threads (fuse_hooks.h).
 * Compiled with the read path (-O3), so the hooks cost one direct call more than the code
 * that used to live in the binding.
 */
#ifndef BFS_HOOKS_H
#define BFS_HOOKS_H

#include "fuse_hooks.h"
#include "nread.h"

typedef struct bfs_hooks {
  fuse_native_hooks_t table; /* table.ctx points back here */
  nr_t *nr;                  /* NULL: every read is served in JavaScript */
} bfs_hooks_t;

/* Fills h->table for the parts that are not NULL. */
void bfs_hooks_init(bfs_hooks_t *h, nr_t *nr);

#endif
