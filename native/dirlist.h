/*
 * A format 2 DIR piece's listing for readdir (dirlist.c). No N-API: tested through the
 * addon's dirListing (test/dirlist.test.ts) against the JavaScript decoder.
 */
#ifndef BFS_DIRLIST_H
#define BFS_DIRLIST_H

#include <stddef.h>
#include <stdint.h>

/* Entries a DIR page holds at most (format.md §2.13.1: PAGE_MAX_ENTRIES). */
#define DL_PAGE_MAX 8192

/* Doubles per stat: statpack.ts STAT_FIELDS, fuse-native's FUSE_NATIVE_STAT_FIELDS. */
#define DL_STAT_FIELDS 18

/* An extent of a file's inline map (format.md §2.13.1), in 4 KiB blocks: file block, count,
 * stream, stream block. */
typedef struct {
  uint32_t fb, count, stream, sb;
} dl_fext_t;

/* Inline extents a dl_ref_t holds: all an inline map may have (INLINE_MAX_EXTENTS). */
#define DL_MAP_MAX 4

/* A directory entry's piece reference (format.md §2.4 PieceRef) and its entry count; or,
 * for a regular file, its whole data map when the entry holds it inline (the native open:
 * native/hooks.c). The two share their bytes: a directory never has a map. */
typedef struct {
  union {
    struct {
      uint64_t run, pack, offset;
      uint32_t stored_len, entries;
      uint8_t id[32];
    };
    dl_fext_t map[DL_MAP_MAX]; /* file: map[0 .. nmap) */
  };
  uint8_t has;  /* 0: not a directory, or an empty one */
  uint8_t file; /* 1: a regular file whose extents are map[0 .. nmap) (none: no data); 0: unknown
                 * (a map piece, or values beyond 32 bits: JavaScript opens it) */
  uint8_t nmap;
} dl_ref_t;

/* The entry count of a DIR payload (after its header checks), or 0 when it is not one. */
size_t dl_count(const uint8_t *payload, size_t len);

/* Parses a DIR payload of n entries: names (NUL-ended, in order) into names (*names_len
 * bytes used; at most names_cap), stats into stats[n * DL_STAT_FIELDS], inode numbers
 * ino_base + ord. 1 = done; 0 = declined (see dirlist.c): list it in JavaScript. */
int dl_parse(const uint8_t *payload, size_t len, double ino_base, char *names, size_t names_cap, size_t *names_len,
             double *stats, size_t n, dl_ref_t *refs /* n of them, or NULL */);

/* The native readdir's quick pass over a DIR payload of n entries (dirsrc.c): each entry's
 * start offset, name (name_len bytes, not NUL-ended), st_mode (type and permission bits) and ord given
 * to `each` (which returns 1 to go on, 0 to stop: declined). It checks what a listing shows
 * and what finds the entries: the header and n, names (non-empty, no '/' or NUL, ≤ 4096
 * bytes, strictly increasing), types, flags (known bits, their combinations; a hard-linked
 * entry declines, as dl_parse), ord ≥ 1, the mode ≤ 07777, every entry's layout (its other fields are stepped
 * over, not read) and the end. The rest of an entry (modes, times, sizes, maps, piece
 * references, xattrs, varint forms) is read and checked by dl_entry_stat when the entry is
 * looked up. 1 = done; 0 = declined. */
struct stat;
typedef int (*dl_head_t)(void *ctx, size_t k, size_t off, const uint8_t *name, size_t name_len, uint32_t mode, uint64_t ord);
int dl_heads(const uint8_t *payload, size_t len, size_t n, dl_head_t each, void *ctx);
/* The entry that starts at byte off of a DIR payload, read with every check of dl_parse:
 * its stat (what dl_to_stat makes of the stat dl_parse packs for it), that stat's flags
 * field, and ref as dl_parse's refs[k] (may be NULL). 1 = read; 0 = declined. */
int dl_entry_stat(const uint8_t *payload, size_t len, size_t off, double ino_base, struct stat *st, uint32_t *flags,
                  dl_ref_t *ref);
/* The name of the entry that starts at off (unchecked beyond its bounds: dl_heads checked
 * it): its bytes and *name_len (0 when out of bounds). */
const uint8_t *dl_entry_name(const uint8_t *payload, size_t len, size_t off, size_t *name_len);

/* dl_scan's rows: DL_ROW doubles an entry. SRC: 0 = the payload, 1 = the base (a DIRDELTA's);
 * ENTRY, NAME, REF, ID: byte offsets in that payload of the entry, its name, its directory
 * PieceRef and that ref's id (REF, ID: -1 when the entry has no piece: not a directory, or an
 * empty one); NAME_LEN; TYPE (format.md §2.13.1); ENTRIES: the directory's entry count. */
enum { DL_ROW_SRC, DL_ROW_ENTRY, DL_ROW_NAME, DL_ROW_NAME_LEN, DL_ROW_TYPE, DL_ROW_REF, DL_ROW_ID, DL_ROW_ENTRIES, DL_ROW };

/* The entries of a directory page as rows, in name order: a DIR payload (base NULL), or a
 * DIRDELTA payload applied to its base (a DIR payload: the caller has read the base the delta
 * names and checked R1). The checks of dl_parse on every entry (hard-linked entries are
 * answered: a row has no inode number), names strictly increasing, a DIRDELTA's ops sorted,
 * its deletes naming base entries, its result count. base_rows (or NULL): the base's base_n
 * rows as dl_scan gave them for it (not read again; they must be of this base). Returns the number of rows (≤ cap), 0 =
 * declined: read it in JavaScript, which reports the damage. */
size_t dl_scan(const uint8_t *payload, size_t len, const uint8_t *base, size_t base_len, const double *base_rows, size_t base_n,
               double *rows, size_t cap);

/* The entry of a DIR or DIRDELTA payload that starts at byte off (a row's DL_ROW_ENTRY), parsed
 * again with dl_scan's checks: *end its end (one past its last byte), *ref its directory
 * PieceRef (ref->has = 0: none). 1 = read; 0 = declined. */
int dl_entry_at(const uint8_t *p, size_t len, size_t off, size_t *end, dl_ref_t *ref);

/* The base PieceRef a DIRDELTA payload names (entries left 0). 1 = read; 0 = not a DIRDELTA, or bad. */
int dl_delta_base(const uint8_t *p, size_t len, dl_ref_t *ref);

/* A DIRINDEX child: its first name (empty for the first child), its piece, its entry count. */
typedef struct {
  const uint8_t *first;
  size_t first_len;
  dl_ref_t ref;
  uint64_t entries;
} dl_ixchild_t;

/* A DIRINDEX payload with decodeDirIndex's checks (format.md §2.13.5: its level ≤ 4, 1 … 4096
 * children of ≥ 1 entry each summing to its total, first names valid and strictly increasing
 * after an empty first): its level, total and children (at most cap). The child count, or 0:
 * declined. */
size_t dl_index(const uint8_t *p, size_t len, uint64_t *level, uint64_t *total, dl_ixchild_t *kids, size_t cap);

/* A packed stat (DL_STAT_FIELDS doubles) as a struct stat, as the binding's populate_stat. */
struct stat;
void dl_to_stat(const double *s, struct stat *st);

#endif
