/*
 * A format 2 DIR piece's listing for readdir, in C (native-notes/native-addon.md, "The
 * native listing"; the entry layout is native-notes/format.md §2.13.1): one pass over the
 * piece's raw payload writes every entry's name (NUL-ended, after "." and "..") and its stat
 * packed as the patched fuse-native binding takes it (statpack.ts: STAT_FIELDS doubles), so
 * a 1,000-entry directory costs no JavaScript object per entry.
 *
 * It declines (returns 0) whatever it does not answer exactly as the JavaScript decoder:
 * a hard-linked entry (E_LINKED: its inode number and link count are in the links table) and
 * anything the decoder would refuse among the fields a listing shows (the header, varints in
 * their shortest form, counts, names, types, flags, modes, nanoseconds, sizes, device
 * numbers, sort order, the end). The caller then lists the directory in JavaScript, which
 * reports the damage. Maps and xattr contents are stepped over with their bounds checked;
 * their finer rules are checked when a file is opened or its xattrs read.
 */
#include "dirlist.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define KIND_DIR 1
#define KIND_VERSION 1
#define PAGE_MAX_ENTRIES DL_PAGE_MAX
#define MIN_ENTRY_BYTES 19
#define NAME_MAX_READ 4096
#define SYMLINK_TARGET_MAX 65536
#define XATTR_NAME_MAX 255
#define XATTR_VALUE_MAX 65536
#define INLINE_MAX_EXTENTS 4
#define INLINE_MAX_BYTES 48
_Static_assert(DL_MAP_MAX == INLINE_MAX_EXTENTS, "a dl_ref_t holds every inline extent");
_Static_assert(sizeof(dl_fext_t) * DL_MAP_MAX <= 64, "a file's map shares a directory reference's bytes");
#define ID_BYTES 32
#define MAX_OBJECT_NUMBER 99999999ULL      /* common.ts */
#define PACK_HEADER_BYTES 64ULL            /* common.ts */
#define MAX_PIECE_STORED_BYTES (1114112ULL) /* common.ts: 1 MiB + 64 KiB */

#define E_XATTRS 1
#define E_LINKED 2
#define E_CHANGED_WHILE_READ 4
#define E_INLINE_MAP 8
#define E_MAP_REF 16
#define E_SYNTHETIC 32
#define E_EMPTY_DIR 64
#define E_KNOWN 127

enum { T_FILE = 1, T_DIR, T_SYMLINK, T_CHR, T_BLK, T_FIFO, T_SOCK };
static const double TYPE_BITS[8] = {0, 0100000, 0040000, 0120000, 0020000, 0060000, 0010000, 0140000};

/* statpack.ts field offsets */
enum { F_MODE = 0, F_UID = 1, F_GID = 2, F_SIZE = 3, F_NLINK = 5, F_INO_LO = 6, F_INO_HI = 7, F_RDEV = 8,
       F_BLKSIZE = 9, F_BLOCKS = 10, F_ATIME = 11, F_MTIME = 13, F_CTIME = 15, F_FLAGS = 17 };
#define STAT_NO_XATTRS 1

typedef struct {
  const uint8_t *p;
  size_t pos, len;
  int bad;
} rd_t;

#define MAX_SAFE 9007199254740991ULL

/* A varint as the StrictReader reads it: ≤ 8 bytes, shortest form, ≤ 2^53 − 1. */
static uint64_t rd_varint_slow(rd_t *r) {
  if (r->len - r->pos >= 8) { /* one 8-byte load: no loop, no bounds check per byte */
    uint64_t w;
    memcpy(&w, r->p + r->pos, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    uint64_t stop = ~w & 0x8080808080808080ULL; /* the high bit of every byte that ends it */
    if (stop == 0) {
      r->bad = 1;
      return 0;
    }
    unsigned nb = ((unsigned)__builtin_ctzll(stop) >> 3) + 1; /* 1 … 8 bytes */
    uint64_t x = (nb == 8 ? w : w & ((1ULL << (8 * nb)) - 1)) & 0x7f7f7f7f7f7f7f7fULL;
    uint64_t v = (x & 0x7fULL) | ((x >> 1) & 0x3f80ULL) | ((x >> 2) & 0x1fc000ULL) | ((x >> 3) & 0xfe00000ULL) |
                 ((x >> 4) & 0x7f0000000ULL) | ((x >> 5) & 0x3f800000000ULL) | ((x >> 6) & 0x1fc0000000000ULL) |
                 ((x >> 7) & 0xfe000000000000ULL);
    if ((nb > 1 && (w >> (8 * (nb - 1)) & 0xff) == 0) || v > MAX_SAFE) r->bad = 1;
    r->pos += nb;
    return v;
  }
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) {
    if (r->pos >= r->len) {
      r->bad = 1;
      return 0;
    }
    uint8_t b = r->p[r->pos++];
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if ((b & 0x80) == 0) {
      if ((i > 0 && b == 0) || v > MAX_SAFE) r->bad = 1;
      return v;
    }
  }
  r->bad = 1;
  return 0;
}

/* Most varints of an entry (types, modes, counts, nanoseconds of 0) are one byte. */
static inline uint64_t rd_varint(rd_t *r) {
  if (__builtin_expect(r->pos < r->len && r->p[r->pos] < 0x80, 1)) return r->p[r->pos++];
  return rd_varint_slow(r);
}

static double rd_svarint(rd_t *r) {
  uint64_t v = rd_varint(r);
  return (v & 1) ? -(double)((v + 1) / 2) : (double)(v / 2);
}

/* A blob's bytes (length ≤ max, within the payload), or NULL. */
static const uint8_t *rd_blob(rd_t *r, size_t max, size_t *n) {
  uint64_t l = rd_varint(r);
  if (r->bad || l > max || l > r->len - r->pos) {
    r->bad = 1;
    return NULL;
  }
  const uint8_t *b = r->p + r->pos;
  r->pos += (size_t)l;
  *n = (size_t)l;
  return b;
}

static void rd_skip(rd_t *r, size_t n) {
  if (n > r->len - r->pos) r->bad = 1;
  else r->pos += n;
}

/* A PieceRef with checkRef's rules (common.ts): run 1 … MAX_OBJECT_NUMBER, pack ≤ it, the
 * offset past the pack header, stored length 1 … MAX_PIECE_STORED_BYTES. */
static void rd_piece_ref(rd_t *r, dl_ref_t *out) {
  uint64_t run = rd_varint(r);
  uint64_t pack = rd_varint(r);
  uint64_t offset = rd_varint(r);
  uint64_t stored = rd_varint(r);
  if (run < 1 || run > MAX_OBJECT_NUMBER || pack > MAX_OBJECT_NUMBER || offset < PACK_HEADER_BYTES || stored < 1 ||
      stored > MAX_PIECE_STORED_BYTES)
    r->bad = 1;
  if (out && !r->bad && r->len - r->pos >= ID_BYTES) {
    out->run = run;
    out->pack = pack;
    out->offset = offset;
    out->stored_len = (uint32_t)stored;
    memcpy(out->id, r->p + r->pos, ID_BYTES);
  }
  rd_skip(r, ID_BYTES);
}

void dl_to_stat(const double *s, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_mode = (mode_t)s[F_MODE];
  st->st_uid = (uid_t)s[F_UID];
  st->st_gid = (gid_t)s[F_GID];
  st->st_size = (off_t)s[F_SIZE];
  st->st_nlink = (nlink_t)s[F_NLINK];
  st->st_ino = (ino_t)((uint64_t)s[F_INO_LO] + ((uint64_t)s[F_INO_HI] << 32));
  st->st_rdev = (dev_t)s[F_RDEV];
  st->st_blksize = (blksize_t)s[F_BLKSIZE];
  st->st_blocks = (blkcnt_t)s[F_BLOCKS];
  st->st_atim.tv_sec = (time_t)s[F_ATIME];
  st->st_atim.tv_nsec = (long)s[F_ATIME + 1];
  st->st_mtim.tv_sec = (time_t)s[F_MTIME];
  st->st_mtim.tv_nsec = (long)s[F_MTIME + 1];
  st->st_ctim.tv_sec = (time_t)s[F_CTIME];
  st->st_ctim.tv_nsec = (long)s[F_CTIME + 1];
}

size_t dl_count(const uint8_t *p, size_t len) {
  if (len < 2 || p[0] != KIND_DIR || p[1] != KIND_VERSION) return 0;
  rd_t r = {p, 2, len, 0};
  uint64_t n = rd_varint(&r);
  if (r.bad || n == 0 || n > PAGE_MAX_ENTRIES || n * MIN_ENTRY_BYTES > len - r.pos) return 0;
  return (size_t)n;
}

/* One entry as parse_entry reads it. */
typedef struct {
  const uint8_t *name;
  size_t nl, start, ref_off, id_off; /* start: the entry's first byte; ref_off, id_off: its directory PieceRef's and its id's (dirs; else 0) */
  unsigned type;
  uint64_t flags, ord, mode, uid, gid, an, mn, cn, nlink, entries;
  double as, ms, cs, st_size, blocks, rdev;
  int has_xattrs;
} dl_ent_t;

/* An entry's flags: known bits only, and each where its type allows it. */
static int flags_ok(unsigned type, uint64_t flags) {
  if (flags & ~(uint64_t)E_KNOWN) return 0;
  if (type != T_FILE && (flags & (E_INLINE_MAP | E_MAP_REF | E_CHANGED_WHILE_READ))) return 0;
  if ((flags & (E_INLINE_MAP | E_MAP_REF)) == (E_INLINE_MAP | E_MAP_REF)) return 0;
  if (type != T_DIR && (flags & (E_EMPTY_DIR | E_SYNTHETIC))) return 0;
  return 1;
}

/* One entry at r's position with the checks above (dlparse's, but for E_LINKED, which is
 * only noted in e->flags); ref (a directory's PieceRef) filled when not NULL. 1 = read;
 * 0 = declined. */
static int parse_entry(rd_t *r, dl_ent_t *e, dl_ref_t *ref) {
  if (ref) ref->file = ref->nmap = 0;
  e->start = r->pos;
  e->ref_off = e->id_off = 0;
  e->entries = 0;
  size_t nl = 0;
  const uint8_t *name = rd_blob(r, NAME_MAX_READ, &nl);
  if (r->bad || nl == 0 || memchr(name, '/', nl) || memchr(name, 0, nl)) return 0;
  e->name = name;
  e->nl = nl;
  if (r->pos >= r->len) return 0;
  unsigned type = r->p[r->pos++];
  if (type < T_FILE || type > T_SOCK) return 0;
  e->type = type;
  uint64_t flags = rd_varint(r);
  if (r->bad || !flags_ok(type, flags)) return 0;
  e->flags = flags;
  e->ord = rd_varint(r), e->mode = rd_varint(r), e->uid = rd_varint(r), e->gid = rd_varint(r);
  e->as = rd_svarint(r);
  e->an = rd_varint(r);
  e->ms = rd_svarint(r);
  e->mn = rd_varint(r);
  e->cs = rd_svarint(r);
  e->cn = rd_varint(r);
  uint64_t size = rd_varint(r);
  rd_varint(r); /* srcDev, srcInoHi, srcInoLo */
  rd_varint(r);
  rd_varint(r);
  e->nlink = rd_varint(r);
  if (r->bad || e->ord == 0 || e->mode > 07777 || e->an > 999999999 || e->mn > 999999999 || e->cn > 999999999) return 0;
  if (type != T_FILE && type != T_SYMLINK && size != 0) return 0;
  double st_size = 0, blocks = 0, rdev = 0;
  switch (type) {
    case T_DIR:
      if (!(flags & E_EMPTY_DIR)) {
        e->ref_off = r->pos;
        rd_piece_ref(r, ref);
        e->id_off = r->pos - ID_BYTES;
        uint64_t entries = rd_varint(r);
        if (entries < 1) return 0;
        e->entries = entries;
        if (ref) {
          ref->entries = entries > UINT32_MAX ? 0 : (uint32_t)entries;
          ref->has = entries <= UINT32_MAX;
        }
      }
      st_size = 4096;
      blocks = 8;
      break;
    case T_FILE: {
      uint64_t data_blocks = rd_varint(r);
      /* the native open (native/hooks.c) takes the extents of an inline map (or of none) */
      int whole = 1;
      uint8_t nmap = 0;
      if (flags & E_INLINE_MAP) {
        /* readExtentList(limit: the file's blocks, at most 4) and the entry's map rules */
        size_t start = r->pos;
        uint64_t x = rd_varint(r);
        if (r->bad || x < 1 || x > INLINE_MAX_EXTENTS || x * 3 > r->len - r->pos) return 0;
        int64_t limit = (int64_t)((size + 4095) / 4096), next = 0, last_stream = 0, data = 0;
        int64_t pfb = -1, pcount = 0, psb = 0;
        uint64_t pstream = 0;
        for (uint64_t i = 0; i < x; i++) {
          int64_t fb = next + (int64_t)rd_varint(r);
          int64_t count = (int64_t)rd_varint(r);
          uint64_t stream = rd_varint(r);
          int64_t sb = 0;
          if (stream != 0) {
            uint64_t d = rd_varint(r);
            sb = last_stream + ((d & 1) ? -(int64_t)((d + 1) / 2) : (int64_t)(d / 2));
            last_stream = sb + count;
          }
          if (r->bad || count < 1 || stream == 0 || sb < 0 || fb + count > (int64_t)MAX_SAFE || fb + count > limit) return 0;
          if (pfb >= 0 && pfb + pcount == fb && pstream == stream && psb + pcount == sb) return 0; /* not canonical */
          pfb = fb, pcount = count, pstream = stream, psb = sb;
          if (fb > UINT32_MAX || count > UINT32_MAX || stream > UINT32_MAX || sb > UINT32_MAX) whole = 0;
          else if (ref && i < DL_MAP_MAX) ref->map[i] = (dl_fext_t){(uint32_t)fb, (uint32_t)count, (uint32_t)stream, (uint32_t)sb};
          nmap = (uint8_t)(i + 1);
          next = fb + count;
          data += count;
        }
        if (r->pos - start > INLINE_MAX_BYTES || (uint64_t)data != data_blocks) return 0;
      } else if (flags & E_MAP_REF) {
        rd_piece_ref(r, NULL);
        uint64_t extents = rd_varint(r);
        if (extents < 1 || data_blocks < 1 || extents > data_blocks) return 0;
        whole = 0; /* its map is in map pieces */
      } else if (data_blocks != 0) {
        return 0;
      }
      if (ref) {
        ref->file = (uint8_t)whole;
        ref->nmap = whole ? nmap : 0;
      }
      st_size = (double)size;
      blocks = (double)data_blocks * 8;
      break;
    }
    case T_SYMLINK: {
      size_t tl = 0;
      rd_blob(r, SYMLINK_TARGET_MAX, &tl);
      if (r->bad || tl == 0) return 0;
      st_size = (double)tl; /* as the JavaScript listing: the target's length */
      break;
    }
    case T_CHR:
    case T_BLK: {
      uint64_t major = rd_varint(r), minor = rd_varint(r);
      /* statpack.ts's makedev works on 32-bit signed minors: decline what it would not match;
       * and a major of more than 32 bits makes no dev_t (its double would not convert) */
      if (minor > 0x7fffffffULL || major > 0xffffffffULL) return 0;
      /* glibc's makedev, as statpack.ts */
      if (major || minor)
        rdev = (double)(major & 0xfff) * 256 + (double)(minor & 0xff) + (double)(minor & ~(uint64_t)0xff) * 4096 +
               (double)(major / 4096) * 4294967296.0;
      break;
    }
    default:
      break;
  }
  e->has_xattrs = 0;
  if (flags & E_XATTRS) {
    uint64_t x = rd_varint(r);
    if (r->bad || x == 0 || x * 2 > r->len - r->pos) return 0;
    const uint8_t *pxn = NULL;
    size_t pa = 0;
    for (uint64_t i = 0; i < x; i++) {
      size_t a = 0, b = 0;
      const uint8_t *xn = rd_blob(r, XATTR_NAME_MAX, &a);
      rd_blob(r, XATTR_VALUE_MAX, &b);
      if (r->bad || a == 0 || memchr(xn, 0, a)) return 0;
      if (pxn) { /* names strictly increasing, as Buffer.compare */
        size_t m = pa < a ? pa : a;
        int c = memcmp(pxn, xn, m);
        if (c > 0 || (c == 0 && pa >= a)) return 0;
      }
      pxn = xn;
      pa = a;
    }
    e->has_xattrs = 1;
  }
  if (r->bad) return 0;
  if (ref && (type != T_DIR || (flags & E_EMPTY_DIR))) ref->has = 0;
  e->st_size = st_size;
  e->blocks = blocks;
  e->rdev = rdev;
  return 1;
}

/* Buffer.compare of two names: < 0, 0, > 0. */
static int name_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
  size_t m = al < bl ? al : bl;
  int c = memcmp(a, b, m);
  if (c) return c;
  return al < bl ? -1 : al > bl ? 1 : 0;
}

int dl_parse(const uint8_t *p, size_t len, double ino_base, char *names, size_t names_cap, size_t *names_len,
             double *stats, size_t n_expected, dl_ref_t *refs) {
  if (dl_count(p, len) != n_expected || n_expected == 0) return 0;
  rd_t r = {p, 2, len, 0};
  rd_varint(&r);
  size_t out = 0;
  const uint8_t *prev = NULL;
  size_t prev_len = 0;
  for (size_t k = 0; k < n_expected; k++) {
    dl_ent_t e;
    if (!parse_entry(&r, &e, refs ? &refs[k] : NULL)) return 0;
    if (e.flags & E_LINKED) return 0; /* the links table has its inode and link count */
    if (prev && name_cmp(prev, prev_len, e.name, e.nl) >= 0) return 0; /* strictly increasing */
    prev = e.name;
    prev_len = e.nl;
    size_t nl = e.nl;
    if (out + nl + 1 > names_cap) return 0;
    memcpy(names + out, e.name, nl);
    names[out + nl] = 0;
    out += nl + 1;
    double *s = stats + k * DL_STAT_FIELDS;
    memset(s, 0, DL_STAT_FIELDS * sizeof(double));
    unsigned type = e.type;
    s[F_MODE] = TYPE_BITS[type] + (double)e.mode;
    s[F_UID] = (double)e.uid;
    s[F_GID] = (double)e.gid;
    s[F_SIZE] = e.st_size;
    s[F_NLINK] = type == T_DIR ? (e.nlink ? (double)e.nlink : 1) : 1;
    double ino = ino_base + (double)e.ord;
    double lo = ino - 4294967296.0 * (double)(uint64_t)(ino / 4294967296.0);
    s[F_INO_LO] = lo;
    s[F_INO_HI] = (ino - lo) / 4294967296.0;
    s[F_RDEV] = e.rdev;
    s[F_BLKSIZE] = 4096;
    s[F_BLOCKS] = e.blocks;
    s[F_ATIME] = e.as;
    s[F_ATIME + 1] = (double)e.an;
    s[F_MTIME] = e.ms;
    s[F_MTIME + 1] = (double)e.mn;
    s[F_CTIME] = e.cs;
    s[F_CTIME + 1] = (double)e.cn;
    s[F_FLAGS] = e.has_xattrs ? 0 : STAT_NO_XATTRS;
  }
  if (r.pos != r.len) return 0; /* trailing bytes */
  *names_len = out;
  return 1;
}

/* An entry's stat as dl_to_stat makes it of the stat dl_parse packs for it (the same
 * fields, without the doubles), and that stat's flags field. */
static void ent_stat(const dl_ent_t *e, double ino_base, struct stat *st, uint32_t *flags) {
  memset(st, 0, sizeof *st);
  st->st_mode = (mode_t)(TYPE_BITS[e->type] + (double)e->mode);
  st->st_uid = (uid_t)e->uid;
  st->st_gid = (gid_t)e->gid;
  st->st_size = (off_t)e->st_size;
  st->st_nlink = (nlink_t)(e->type == T_DIR && e->nlink ? e->nlink : 1);
  st->st_ino = (ino_t)(uint64_t)(ino_base + (double)e->ord);
  st->st_rdev = (dev_t)e->rdev;
  st->st_blksize = 4096;
  st->st_blocks = (blkcnt_t)e->blocks;
  st->st_atim.tv_sec = (time_t)e->as;
  st->st_atim.tv_nsec = (long)e->an;
  st->st_mtim.tv_sec = (time_t)e->ms;
  st->st_mtim.tv_nsec = (long)e->mn;
  st->st_ctim.tv_sec = (time_t)e->cs;
  st->st_ctim.tv_nsec = (long)e->cn;
  *flags = e->has_xattrs ? 0 : STAT_NO_XATTRS;
}

int dl_entry_stat(const uint8_t *p, size_t len, size_t off, double ino_base, struct stat *st, uint32_t *flags, dl_ref_t *ref) {
  if (off < 3 || off >= len) return 0;
  rd_t r = {p, off, len, 0};
  dl_ent_t e;
  dl_ref_t rf;
  if (!parse_entry(&r, &e, &rf) || (e.flags & E_LINKED)) return 0;
  ent_stat(&e, ino_base, st, flags);
  if (ref) *ref = rf;
  return 1;
}

/* ---- dl_heads: the native readdir's quick pass ---- */

/* Steps over k varints (their values unread), eight bytes a load: each byte whose high bit
 * is clear ends one. A run of eight continuation bytes is no varint the parser reads. */
static void rd_skipv(rd_t *r, unsigned k) {
  while (k > 0 && !r->bad) {
    if (r->len - r->pos < 8) { /* the payload's last bytes: one at a time */
      for (; k > 0; k--) {
        size_t i = 0;
        while (r->pos + i < r->len && (r->p[r->pos + i] & 0x80) && i < 8) i++;
        if (r->pos + i >= r->len || i >= 8) {
          r->bad = 1;
          return;
        }
        r->pos += i + 1;
      }
      return;
    }
    uint64_t w;
    memcpy(&w, r->p + r->pos, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    uint64_t stop = ~w & 0x8080808080808080ULL, last = 0;
    if (stop == 0) {
      r->bad = 1;
      return;
    }
    do {
      last = stop;
      stop &= stop - 1;
      k--;
    } while (k > 0 && stop);
    r->pos += ((unsigned)__builtin_ctzll(last) >> 3) + 1; /* past the last varint ended in this word */
  }
}

static void rd_skipblob(rd_t *r, size_t max) {
  uint64_t l = rd_varint(r);
  if (r->bad || l > max || l > r->len - r->pos) r->bad = 1;
  else r->pos += (size_t)l;
}

int dl_heads(const uint8_t *p, size_t len, size_t n_expected, dl_head_t each, void *ctx) {
  if (dl_count(p, len) != n_expected || n_expected == 0) return 0;
  rd_t r = {p, 2, len, 0};
  rd_varint(&r);
  const uint8_t *prev = NULL;
  size_t prev_len = 0;
  for (size_t k = 0; k < n_expected; k++) {
    size_t start = r.pos, nl = 0;
    const uint8_t *name = rd_blob(&r, NAME_MAX_READ, &nl);
    if (r.bad || nl == 0 || memchr(name, '/', nl) || memchr(name, 0, nl)) return 0;
    if (prev && name_cmp(prev, prev_len, name, nl) >= 0) return 0; /* strictly increasing */
    prev = name;
    prev_len = nl;
    if (r.pos >= r.len) return 0;
    unsigned type = r.p[r.pos++];
    if (type < T_FILE || type > T_SOCK) return 0;
    uint64_t flags = rd_varint(&r);
    /* parse_entry's rules on flags; a hard-linked entry declines (as dl_parse) */
    if (r.bad || !flags_ok(type, flags) || (flags & E_LINKED)) return 0;
    uint64_t ord = rd_varint(&r);
    uint64_t mode = rd_varint(&r);
    if (r.bad || ord == 0 || mode > 07777) return 0;
    rd_skipv(&r, 13); /* uid gid, three times (seconds, nanoseconds), size, srcDev srcInoHi srcInoLo, nlink */
    switch (type) {
      case T_DIR:
        if (!(flags & E_EMPTY_DIR)) {
          rd_skipv(&r, 4); /* the PieceRef: run pack offset storedLen, id; then the entry count */
          rd_skip(&r, ID_BYTES);
          rd_skipv(&r, 1);
        }
        break;
      case T_FILE:
        rd_skipv(&r, 1); /* data blocks */
        if (flags & E_INLINE_MAP) {
          uint64_t x = rd_varint(&r);
          if (r.bad || x < 1 || x > INLINE_MAX_EXTENTS) return 0;
          for (uint64_t i = 0; i < x; i++) {
            rd_skipv(&r, 2); /* file block delta, count */
            if (rd_varint(&r) == 0) return 0; /* stream 0: parse_entry declines it (no stream block follows) */
            rd_skipv(&r, 1);
          }
        } else if (flags & E_MAP_REF) {
          rd_skipv(&r, 4);
          rd_skip(&r, ID_BYTES);
          rd_skipv(&r, 1);
        }
        break;
      case T_SYMLINK:
        rd_skipblob(&r, SYMLINK_TARGET_MAX);
        break;
      case T_CHR:
      case T_BLK:
        rd_skipv(&r, 2);
        break;
      default:
        break;
    }
    if (flags & E_XATTRS) {
      uint64_t x = rd_varint(&r);
      if (r.bad || x == 0 || x * 2 > r.len - r.pos) return 0;
      for (uint64_t i = 0; i < x && !r.bad; i++) {
        rd_skipblob(&r, XATTR_NAME_MAX);
        rd_skipblob(&r, XATTR_VALUE_MAX);
      }
    }
    if (r.bad || !each(ctx, k, start, name, nl, (uint32_t)TYPE_BITS[type] | (uint32_t)mode, ord)) return 0;
  }
  return r.pos == r.len;
}

const uint8_t *dl_entry_name(const uint8_t *p, size_t len, size_t off, size_t *nl) {
  if (off >= len) {
    *nl = 0;
    return p;
  }
  rd_t r = {p, off, len, 0};
  size_t l = 0;
  const uint8_t *name = rd_blob(&r, NAME_MAX_READ, &l);
  *nl = r.bad ? 0 : l;
  return r.bad ? p : name;
}

/* ---- dl_scan: a directory page as a table, for find (cli/find.ts) ---- */

#define KIND_DIRDELTA 2

/* One row (DL_ROW doubles, dirlist.h): offsets into payload p, whose number is src. */
static void put_row(double *row, int src, const uint8_t *p, const dl_ent_t *e) {
  row[DL_ROW_SRC] = src;
  row[DL_ROW_ENTRY] = (double)e->start;
  row[DL_ROW_NAME] = (double)(e->name - p);
  row[DL_ROW_NAME_LEN] = (double)e->nl;
  row[DL_ROW_TYPE] = e->type;
  row[DL_ROW_REF] = e->ref_off ? (double)e->ref_off : -1;
  row[DL_ROW_ID] = e->ref_off ? (double)e->id_off : -1;
  row[DL_ROW_ENTRIES] = (double)e->entries;
}

/* The rows of every entry of a DIR payload (n = dl_count), names checked strictly increasing;
 * src: the row's payload number. 1 = done. */
static int scan_dir(const uint8_t *p, size_t len, size_t n, double *rows, int src) {
  rd_t r = {p, 2, len, 0};
  rd_varint(&r);
  const uint8_t *prev = NULL;
  size_t prev_len = 0;
  for (size_t k = 0; k < n; k++) {
    dl_ent_t e;
    dl_ref_t ref;
    if (!parse_entry(&r, &e, &ref)) return 0;
    if (prev && name_cmp(prev, prev_len, e.name, e.nl) >= 0) return 0;
    prev = e.name;
    prev_len = e.nl;
    put_row(rows + k * DL_ROW, src, p, &e);
  }
  return r.pos == r.len;
}

size_t dl_scan(const uint8_t *p, size_t len, const uint8_t *base, size_t base_len, const double *base_rows, size_t base_n,
               double *rows, size_t cap) {
  if (len < 2 || p[1] != KIND_VERSION) return 0;
  if (p[0] == KIND_DIR) {
    size_t n = dl_count(p, len);
    if (n == 0 || n > cap || !scan_dir(p, len, n, rows, 0)) return 0;
    return n;
  }
  if (p[0] != KIND_DIRDELTA || !base) return 0;
  size_t nb = dl_count(base, base_len);
  if (nb == 0) return 0;
  rd_t r = {p, 2, len, 0};
  rd_piece_ref(&r, NULL); /* the base (the caller reads it: R1, R3) */
  uint64_t result = rd_varint(&r);
  uint64_t nops = rd_varint(&r);
  if (r.bad || result < 1 || nops < 1 || nops * 2 > r.len - r.pos || result > cap) return 0;
  double *brows = malloc(nb * DL_ROW * sizeof(double));
  if (!brows) return 0;
  size_t out = 0, i = 0;
  int ok;
  if (base_rows) { /* the base's rows as dl_scan gave them (the caller keeps them with the base) */
    ok = base_n == nb;
    if (ok) memcpy(brows, base_rows, nb * DL_ROW * sizeof(double));
    for (size_t k = 0; ok && k < nb; k++) brows[k * DL_ROW + DL_ROW_SRC] = 1;
  } else
    ok = scan_dir(base, base_len, nb, brows, 1);
  const uint8_t *prev = NULL;
  size_t prev_len = 0;
  for (uint64_t k = 0; ok && k < nops; k++) {
    if (r.pos >= r.len) {
      ok = 0;
      break;
    }
    uint8_t op = r.p[r.pos++];
    dl_ent_t e;
    dl_ref_t ref;
    const uint8_t *name;
    size_t nl;
    if (op == 1) {
      if (!parse_entry(&r, &e, &ref)) {
        ok = 0;
        break;
      }
      name = e.name, nl = e.nl;
    } else if (op == 2) {
      name = rd_blob(&r, NAME_MAX_READ, &nl);
      if (r.bad || nl == 0 || memchr(name, '/', nl) || memchr(name, 0, nl)) {
        ok = 0;
        break;
      }
    } else {
      ok = 0;
      break;
    }
    if (prev && name_cmp(prev, prev_len, name, nl) >= 0) {
      ok = 0;
      break;
    }
    prev = name, prev_len = nl;
    /* the base's entries before this name, then the op */
    int hit = 0;
    while (i < nb) {
      const double *b = brows + i * DL_ROW;
      int c = name_cmp(base + (size_t)b[DL_ROW_NAME], (size_t)b[DL_ROW_NAME_LEN], name, nl);
      if (c > 0) break;
      if (c == 0) {
        hit = 1;
        i++;
        break;
      }
      if (out >= cap) {
        ok = 0;
        break;
      }
      memcpy(rows + out++ * DL_ROW, b, DL_ROW * sizeof(double));
      i++;
    }
    if (!ok) break;
    if (op == 2) {
      if (!hit) ok = 0; /* a delete of a name the base does not have */
      continue;
    }
    if (out >= cap) {
      ok = 0;
      break;
    }
    put_row(rows + out++ * DL_ROW, 0, p, &e);
  }
  while (ok && i < nb) {
    if (out >= cap) {
      ok = 0;
      break;
    }
    memcpy(rows + out++ * DL_ROW, brows + i++ * DL_ROW, DL_ROW * sizeof(double));
  }
  free(brows);
  if (!ok || r.bad || r.pos != r.len || out != result) return 0;
  return out;
}

/* ---- dl_entry_at: one entry again, for find's walk in C (findwalk.c) ---- */

int dl_entry_at(const uint8_t *p, size_t len, size_t off, size_t *end, dl_ref_t *ref) {
  if (off >= len) return 0;
  rd_t r = {p, off, len, 0};
  dl_ent_t e;
  dl_ref_t rf;
  memset(&rf, 0, sizeof rf);
  if (!parse_entry(&r, &e, &rf) || r.bad) return 0;
  if (end) *end = r.pos;
  if (ref) *ref = rf;
  return 1;
}

int dl_delta_base(const uint8_t *p, size_t len, dl_ref_t *ref) {
  if (len < 2 || p[0] != KIND_DIRDELTA || p[1] != KIND_VERSION) return 0;
  rd_t r = {p, 2, len, 0};
  memset(ref, 0, sizeof *ref);
  rd_piece_ref(&r, ref);
  if (r.bad) return 0;
  ref->has = 1;
  return 1;
}

#define KIND_DIRINDEX 3
#define INDEX_MAX_LEVEL 4
#define INDEX_MAX_CHILDREN 4096
#define MIN_INDEX_CHILD_BYTES 38

size_t dl_index(const uint8_t *p, size_t len, uint64_t *level, uint64_t *total, dl_ixchild_t *kids, size_t cap) {
  if (len < 2 || p[0] != KIND_DIRINDEX || p[1] != KIND_VERSION) return 0;
  rd_t r = {p, 2, len, 0};
  *level = rd_varint(&r);
  *total = rd_varint(&r);
  uint64_t n = rd_varint(&r);
  if (r.bad || n < 1 || n > INDEX_MAX_CHILDREN || n > cap || n * MIN_INDEX_CHILD_BYTES > r.len - r.pos || *level > INDEX_MAX_LEVEL) return 0;
  uint64_t sum = 0;
  for (size_t i = 0; i < n; i++) {
    dl_ixchild_t *c = &kids[i];
    c->first = rd_blob(&r, NAME_MAX_READ, &c->first_len);
    memset(&c->ref, 0, sizeof c->ref);
    rd_piece_ref(&r, &c->ref);
    c->entries = rd_varint(&r);
    if (r.bad || c->entries < 1) return 0;
    c->ref.has = 1;
    if (i == 0 ? c->first_len != 0 : (c->first_len == 0 || memchr(c->first, '/', c->first_len) || memchr(c->first, 0, c->first_len)))
      return 0;
    if (i > 0 && name_cmp(kids[i - 1].first, kids[i - 1].first_len, c->first, c->first_len) >= 0) return 0;
    sum += c->entries;
  }
  if (r.pos != r.len || sum != *total) return 0;
  return (size_t)n;
}
