/*
 * A format 2 DIR piece's listing for readdir (dirlist.c). No N-API: tested through the
 * addon's dirListing (test/dirlist.test.ts) against the JavaScript decoder.
 */
#ifndef BFS_DIRLIST_H
#define BFS_DIRLIST_H

#include <stddef.h>
#include <stdint.h>

/* Doubles per stat: statpack.ts STAT_FIELDS, fuse-native's FUSE_NATIVE_STAT_FIELDS. */
#define DL_STAT_FIELDS 18

/* A directory entry's piece reference (format.md §2.4 PieceRef) and its entry count. */
typedef struct {
  uint64_t run, pack, offset;
  uint32_t stored_len, entries;
  uint8_t id[32];
  uint8_t has; /* 0: not a directory, or an empty one */
} dl_ref_t;

/* The entry count of a DIR payload (after its header checks), or 0 when it is not one. */
size_t dl_count(const uint8_t *payload, size_t len);

/* Parses a DIR payload of n entries: names (NUL-ended, in order) into names (*names_len
 * bytes used; at most names_cap), stats into stats[n * DL_STAT_FIELDS], inode numbers
 * ino_base + ord. 1 = done; 0 = declined (see dirlist.c): list it in JavaScript. */
int dl_parse(const uint8_t *payload, size_t len, double ino_base, char *names, size_t names_cap, size_t *names_len,
             double *stats, size_t n, dl_ref_t *refs /* n of them, or NULL */);

/* A packed stat (DL_STAT_FIELDS doubles) as a struct stat, as the binding's populate_stat. */
struct stat;
void dl_to_stat(const double *s, struct stat *st);

#endif
