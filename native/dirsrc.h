/*
 * readdir of a format 2 generation on the libfuse thread, without JavaScript (dirsrc.c).
 * No N-API and no libfuse here: the filler is passed in (libfuse 2.9's fuse_fill_dir_t).
 */
#ifndef BFS_DIRSRC_H
#define BFS_DIRSRC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "statcache.h"

typedef struct ds_s ds_t;
typedef int (*ds_fill_t)(void *buf, const char *name, const struct stat *st, off_t off);

/* The generation: the repository's directory (packs at gens/RUN/pack-PACK), the piece id
 * key, inode numbers ino_base + ord, the root directory's stat and its piece reference
 * (a dl_ref_t; has = 0: an empty root, served in JavaScript). Never freed (the mount's
 * life). */
ds_t *ds_new(const char *root, const uint8_t key[32], double ino_base, const struct stat *root_st, const void *root_ref);
/* 0: served (".", "..", every entry; the listing published to sc); -1: ask JavaScript. */
int ds_readdir(ds_t *d, sc_t *sc, const char *path, void *buf, ds_fill_t filler);
/* A lookup's miss (path not in the stat cache): the listings of path's directory and of
 * every directory above it that has none, loaded here from the piece references their
 * parents' listings hold (as ds_readdir, without filling), top down. 0: at least one
 * listing was published (look path up again); -1: nothing was loaded (every listing was
 * there already: the name is not in it; or a directory on the way has no reference here,
 * was declined before, or fails): ask JavaScript. */
int ds_lookup(ds_t *d, sc_t *sc, const char *path);
/* The root directory's stat, as registered: 0. */
int ds_root_stat(ds_t *d, struct stat *st);
void ds_stats(ds_t *d, uint64_t *served, uint64_t *fallbacks, uint64_t *lookups, uint64_t *lookup_fallbacks);
/* The path of a pack (tests compare it with keys2.pack). 0, or -1 when it does not fit. */
int ds_pack_path(const char *root, uint64_t run, uint64_t pack, char *out, size_t cap);

#endif
