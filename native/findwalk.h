/*
 * bfs find's walk of format 2 generations in C (findwalk.c; native-notes/native-addon.md,
 * "find's walk in C"). No N-API: bfs_native.c's findWalk wraps it.
 */
#ifndef BFS_FINDWALK_H
#define BFS_FINDWALK_H

#include <stddef.h>
#include <stdint.h>

#include "dirlist.h"

typedef struct fw_s fw_t;

/* A growing byte or value vector. */
typedef struct {
  uint8_t *p;
  size_t len, cap;
} fw_vec_t;

/* A walker: packs at ROOT/gens/RUN/pack-PACK, piece ids keyed BLAKE3 with key, the pattern as
 * spec (findWalk's layout: nseg, dirOnly, then per component: type 0 = **, 1 = literal bytes,
 * 2 = ASCII glob with * only; a 2-byte little-endian length; the bytes). NULL: bad spec or
 * out of memory. */
fw_t *fw_new(const char *root, const uint8_t key[32], const uint8_t *spec, size_t spec_len);
void fw_free(fw_t *w);

/* The matches below a generation's root directory: a node (>= 0), -1 for none, -2 declined
 * (a piece that cannot be read or checked, anything dl_scan or dl_index declines, a path
 * deeper than 512 directories: walk that generation in JavaScript, which names the damage).
 * Directories (with the pattern state) already walked are not walked again. */
int32_t fw_walk(fw_t *w, const dl_ref_t *root);

/* Appends the matches below node (fw_walk's) in path order: each path ('/' + names from the
 * root) to paths, and (path offset, path length, entry number) as three doubles to rows.
 * 1 = done, 0 = out of memory. */
int fw_flatten(fw_t *w, int32_t node, fw_vec_t *paths, fw_vec_t *rows);

/* The matched entries' bytes (each entry as its piece holds it, for readEntry) and their
 * (start, end) offsets in them, two doubles an entry. */
const fw_vec_t *fw_entries(fw_t *w);
const fw_vec_t *fw_entry_offsets(fw_t *w);

/* Pieces read (loaded and checked) so far. */
uint64_t fw_pieces_read(fw_t *w);

int fw_vec_put(fw_vec_t *v, const void *p, size_t n);

#endif
