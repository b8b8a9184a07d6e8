/*
 * The stat cache the mount answers getattr (and "no xattrs") from on the libfuse threads,
 * without a hop to the event loop: path -> struct stat, filled from the stats JavaScript
 * answers readdir (and getattr) with. Moved here from the fuse-native patch (patch 3's
 * fn_cache_*), same tables and locking; see native-notes/native-addon.md, "The stat cache".
 *
 * Only for immutable trees (bfs generations; the binding takes hooks only on read-only
 * mounts): nothing is ever invalidated, entries go only when the table is full.
 */
#ifndef BFS_STATCACHE_H
#define BFS_STATCACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

typedef struct sc_s sc_t;

typedef struct {
  uint64_t entries, hits, misses, inserts;
  uint64_t listed; /* readdirs served by sc_readdir */
} sc_info_t;

/* Flags of an entry (fuse_hooks.h: FUSE_NATIVE_STAT_NO_XATTRS / _NO_CACHE). */
#define SC_NO_XATTRS 1u
#define SC_NO_CACHE 2u

/* A cache of at most max_entries (two generations of max_entries / 2: see statcache.c).
 * getattr: also keep the stats JavaScript's getattr answers with (not only readdir's). */
sc_t *sc_new(size_t max_entries, int getattr);
/* 1 and *st / *flags (either may be NULL) filled when path is cached, else 0. count: add
 * to hits / misses. Any thread. */
int sc_get(sc_t *c, const char *path, struct stat *st, uint32_t *flags, int count);
/* A stat JavaScript answered with: dir + "/" + name (readdir), or, with dir NULL, the path
 * `name` (getattr: kept only if the cache was made with getattr). Entries flagged
 * SC_NO_CACHE, without a type (st_mode 0), and "." / ".." are not kept. The calling thread
 * holds the write lock from a readdir reply's first kept entry until a call with name NULL
 * (the reply's end): one lock per reply. Only ever one calling thread (the JS thread). */
void sc_seen(sc_t *c, const char *dir, const char *name, size_t name_len, const struct stat *st, uint32_t flags);
/* A whole listing published at once (the native readdir, on a libfuse thread; any thread),
 * kept as the DIR payload it came from: sc_begin makes a listing of n entries holding a copy
 * of payload (len bytes; *copy: where), seen by no reader; sc_add appends the next entry
 * (where it starts in the payload, its name), 0 when it does not fit; sc_commit publishes
 * it in place of dir's listing once all n are added (1 = kept; 0 = not: fewer added, more
 * entries than the cache holds; the listing is gone either way); sc_abandon drops it. A
 * lookup reads the entry's stat and piece reference from the payload then (dl_entry_stat,
 * inode numbers ino_base + ord); an entry it declines is not found. */
typedef struct sc_listing_s sc_listing_t;
sc_listing_t *sc_begin(const char *dir, size_t dir_len, size_t n, const uint8_t *payload, size_t len, double ino_base,
                       const uint8_t **copy);
int sc_add(sc_listing_t *l, size_t off, const char *name, size_t name_len);
/* Where entry k (< the entries added) of a listing from sc_begin starts in its payload. */
size_t sc_off(const sc_listing_t *l, size_t k);
int sc_commit(sc_t *c, sc_listing_t *l);
void sc_abandon(sc_listing_t *l);
/* A directory's whole listing (format 1: published by JavaScript ahead of its readdir):
 * as sc_begin … sc_commit without piece references, plus the stats of `.` and `..`; n may be 0.
 * sc_readdir then serves the directory. Replaces dir's listing. Any thread. */
void sc_publish_full(sc_t *c, const char *dir, size_t dir_len, size_t n, const char *const *names,
                     const size_t *name_lens, const struct stat *stats, const uint32_t *flags, const struct stat *dot,
                     const struct stat *dotdot);
/* readdir of path from a listing published by sc_publish_full (`.`, `..`, then its entries
 * in the order published, given to fill): 0 when served, -1 (nothing filled) when there is
 * none. Any thread. */
int sc_readdir(sc_t *c, const char *path, void *buf, int (*fill)(void *buf, const char *name, const struct stat *st, off_t off));
/* 1 and *st, *ref (a dl_ref_t) filled when path is a cached directory with a piece
 * reference (published by sc_commit), else 0. */
int sc_get_dir(sc_t *c, const char *path, struct stat *st, void *ref);
/* 1 and *st, *ref (a dl_ref_t) filled when path is a cached regular file whose whole map
 * the listing holds (ref->file: published by sc_commit from a DIR piece), else 0. */
int sc_get_file(sc_t *c, const char *path, struct stat *st, void *ref);
/* 1 when the directory dir (len bytes, "/" for the root; need not be NUL-ended) has a
 * listing (published by sc_commit, sc_publish_full or a readdir reply), else 0. Sets the
 * listing's reference bit. Any thread. */
int sc_has_listing(sc_t *c, const char *dir, size_t len);
void sc_info(sc_t *c, sc_info_t *out);
/* Drops every entry (the table itself stays usable). */
void sc_clear(sc_t *c);
/* Frees c: only when no thread can use it any more (tests). */
void sc_free(sc_t *c);

#endif
