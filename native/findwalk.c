/*
 * bfs find's walk of format 2 generations in C (findwalk.h; native-notes/native-addon.md,
 * "find's walk in C"). The pieces of every generation are read here (pread from the packs,
 * one zstd frame, keyed BLAKE3 against the reference's id, dl_scan's checks), names matched
 * against the pattern's components here, and the matches below a directory kept per (piece
 * id, pattern state): a piece shared by many generations is walked once. JavaScript gets,
 * per generation, the matching paths and the matched entries' bytes (it decodes those with
 * readEntry): one call for the whole search instead of calls and objects per piece and row.
 *
 * The pattern: the components PathPattern compiles (cli/find-select.ts), of the kinds that
 * match the same on bytes as its RegExps on the names' UTF-8 text: `**`, literal bytes, and
 * ASCII globs with `*` only (ASCII bytes decode to themselves and no other byte decodes to
 * ASCII, so a byte match is the text match). Anything else stays JavaScript's walk.
 */
#include "findwalk.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "blake3.h"
#include "dirsrc.h"

#define FW_MAX_RAW (1u << 20)      /* MAX_PIECE_RAW_BYTES */
#define FW_MAX_STORED (1114112u)   /* MAX_PIECE_STORED_BYTES */
#define FW_FDS 64
#define FW_MAX_SEGS 31
#define FW_MAX_DEPTH 512
#define FW_NONE (-1)
#define FW_DECLINED (-2)
#define T_DIR 2

typedef struct {
  uint8_t type; /* 0 **, 1 literal, 2 glob (* only) */
  const uint8_t *b;
  size_t n;
} fw_seg_t;

typedef struct {
  uint32_t name_off, name_len;
  int32_t ent, sub;
} fw_child_t;

typedef struct {
  uint32_t first, count;
} fw_node_t;

typedef struct {
  uint8_t id[32];
  uint32_t m;
  int32_t v; /* node, FW_NONE, FW_DECLINED */
  uint8_t used;
} fw_memo_t;

typedef struct {
  uint8_t id[32];
  uint8_t *raw;
  size_t len;
  double *rows;
  size_t n;
  uint8_t used;
} fw_base_t;

struct fw_s {
  char *root;
  uint8_t key[32];
  uint8_t *spec;
  fw_seg_t segs[FW_MAX_SEGS];
  int nseg, dir_only;
  uint32_t start, full;
  ZSTD_DCtx *dctx;
  struct {
    uint64_t run, pack, used;
    const uint8_t *map; /* the whole pack, read-only (packs are immutable) */
    size_t size;
  } packs[FW_FDS];
  /* per recursion depth: a raw payload and its rows, reused (no malloc, free and fresh pages per piece) */
  struct {
    uint8_t *raw;
    double *rows;
    size_t raw_cap, rows_cap;
  } lv[FW_MAX_DEPTH];
  int depth;
  uint64_t tick, pieces;
  fw_memo_t *memo;
  size_t memo_cap, memo_n;
  fw_base_t *bases;
  size_t bases_cap, bases_n;
  fw_vec_t names, ents, ent_offs, children, tmp, nodes;
  int32_t *ent_tab; /* entry numbers by their bytes' hash (-1 free): one copy of equal entries */
  size_t ent_cap;
};

int fw_vec_put(fw_vec_t *v, const void *p, size_t n) {
  if (v->len + n > v->cap) {
    size_t c = v->cap ? v->cap : 4096;
    while (c < v->len + n) c *= 2;
    uint8_t *q = realloc(v->p, c);
    if (!q) return 0;
    v->p = q, v->cap = c;
  }
  memcpy(v->p + v->len, p, n);
  v->len += n;
  return 1;
}

/* ---- the pattern (PathPattern's states: bit i = the first i components matched) ---- */

static uint32_t fw_close(const fw_t *w, uint32_t m) {
  for (int i = 0; i < w->nseg; i++)
    if ((m & (1u << i)) && w->segs[i].type == 0) m |= 1u << (i + 1);
  return m;
}

/* `*`-only glob over bytes (iterative, one backtrack point). */
static int fw_glob(const uint8_t *g, size_t gn, const uint8_t *s, size_t sn) {
  size_t gi = 0, si = 0, star = (size_t)-1, mark = 0;
  while (si < sn) {
    if (gi < gn && g[gi] == '*') {
      star = gi++;
      mark = si;
    } else if (gi < gn && g[gi] == s[si]) {
      gi++, si++;
    } else if (star != (size_t)-1) {
      gi = star + 1;
      si = ++mark;
    } else
      return 0;
  }
  while (gi < gn && g[gi] == '*') gi++;
  return gi == gn;
}

static uint32_t fw_step(const fw_t *w, uint32_t m, const uint8_t *s, size_t n) {
  uint32_t out = 0;
  for (int i = 0; i < w->nseg; i++) {
    if (!(m & (1u << i))) continue;
    const fw_seg_t *g = &w->segs[i];
    if (g->type == 0) out |= 1u << i;
    else if (g->type == 1 ? (g->n == n && memcmp(g->b, s, n) == 0) : fw_glob(g->b, g->n, s, n)) out |= 1u << (i + 1);
  }
  return out ? fw_close(w, out) : 0;
}

fw_t *fw_new(const char *root, const uint8_t key[32], const uint8_t *spec, size_t spec_len) {
  if (spec_len < 2 || spec[0] < 1 || spec[0] > FW_MAX_SEGS) return NULL;
  fw_t *w = calloc(1, sizeof *w);
  if (!w) return NULL;
  w->root = strdup(root);
  w->spec = malloc(spec_len);
  w->dctx = ZSTD_createDCtx();
  w->memo_cap = 1 << 14;
  w->memo = calloc(w->memo_cap, sizeof *w->memo);
  if (!w->root || !w->spec || !w->dctx || !w->memo) goto bad;
  memcpy(w->key, key, 32);
  memcpy(w->spec, spec, spec_len);
  w->nseg = spec[0];
  w->dir_only = spec[1] != 0;
  size_t pos = 2;
  for (int i = 0; i < w->nseg; i++) {
    if (spec_len - pos < 3) goto bad;
    fw_seg_t *g = &w->segs[i];
    g->type = w->spec[pos];
    g->n = (size_t)w->spec[pos + 1] | (size_t)w->spec[pos + 2] << 8;
    pos += 3;
    if (g->type > 2 || spec_len - pos < g->n || (g->type != 0 && g->n == 0)) goto bad;
    g->b = w->spec + pos;
    pos += g->n;
  }
  if (pos != spec_len) goto bad;
  w->full = 1u << w->nseg;
  w->start = fw_close(w, 1);
  return w;
bad:
  fw_free(w);
  return NULL;
}

void fw_free(fw_t *w) {
  if (!w) return;
  for (int i = 0; i < FW_FDS; i++)
    if (w->packs[i].map) munmap((void *)w->packs[i].map, w->packs[i].size);
  for (int i = 0; i < FW_MAX_DEPTH; i++) free(w->lv[i].raw), free(w->lv[i].rows);
  for (size_t i = 0; i < w->bases_cap; i++)
    if (w->bases[i].used) free(w->bases[i].raw), free(w->bases[i].rows);
  free(w->bases);
  free(w->memo);
  free(w->ent_tab);
  ZSTD_freeDCtx(w->dctx);
  free(w->root);
  free(w->spec);
  fw_vec_t *vs[] = {&w->names, &w->ents, &w->ent_offs, &w->children, &w->tmp, &w->nodes};
  for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) free(vs[i]->p);
  free(w);
}

const fw_vec_t *fw_entries(fw_t *w) { return &w->ents; }
const fw_vec_t *fw_entry_offsets(fw_t *w) { return &w->ent_offs; }
uint64_t fw_pieces_read(fw_t *w) { return w->pieces; }

/* ---- pieces ---- */

/* The pack mapped whole (*size its bytes), or NULL. */
static const uint8_t *fw_pack(fw_t *w, uint64_t run, uint64_t pack, size_t *size) {
  int lru = 0;
  for (int i = 0; i < FW_FDS; i++) {
    if (w->packs[i].map && w->packs[i].run == run && w->packs[i].pack == pack) {
      w->packs[i].used = ++w->tick;
      *size = w->packs[i].size;
      return w->packs[i].map;
    }
    if (!w->packs[i].map || (w->packs[lru].map && w->packs[i].used < w->packs[lru].used)) lru = i;
  }
  char path[4096 + 64];
  if (ds_pack_path(w->root, run, pack, path, sizeof path) != 0) return NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  struct stat st;
  void *m = MAP_FAILED;
  if (fstat(fd, &st) == 0 && st.st_size > 0) m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED) return NULL;
  if (w->packs[lru].map) munmap((void *)w->packs[lru].map, w->packs[lru].size);
  w->packs[lru].map = m, w->packs[lru].size = (size_t)st.st_size, w->packs[lru].run = run, w->packs[lru].pack = pack, w->packs[lru].used = ++w->tick;
  *size = (size_t)st.st_size;
  return m;
}

/* The checked raw payload of ref into *buf (grown as needed, *cap its size; *len its length): 1, or 0. */
static int fw_load_into(fw_t *w, const dl_ref_t *ref, uint8_t **buf, size_t *cap, size_t *len) {
  size_t psize;
  if (ref->stored_len == 0 || ref->stored_len > FW_MAX_STORED) return 0;
  const uint8_t *pk = fw_pack(w, ref->run, ref->pack, &psize);
  if (!pk || ref->offset > psize || psize - ref->offset < ref->stored_len) return 0; /* a pack that ends before the piece */
  const uint8_t *comp = pk + ref->offset;
  size_t got = ref->stored_len;
  unsigned long long size = ZSTD_getFrameContentSize(comp, got);
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > FW_MAX_RAW || size < 2) return 0;
  if (ZSTD_findFrameCompressedSize(comp, got) != got) return 0;
  if (*cap < size) {
    uint8_t *q = realloc(*buf, (size_t)size);
    if (!q) return 0;
    *buf = q, *cap = (size_t)size;
  }
  size_t n = ZSTD_decompressDCtx(w->dctx, *buf, (size_t)size, comp, got);
  if (ZSTD_isError(n) || n != size) return 0;
  uint8_t id[32];
  blake3_hasher h;
  blake3_hasher_init_keyed(&h, w->key);
  blake3_hasher_update(&h, *buf, n);
  blake3_hasher_finalize(&h, id, 32);
  if (memcmp(id, ref->id, 32) != 0) return 0;
  w->pieces++;
  *len = n;
  return 1;
}

/* The checked raw payload of ref (malloc'd, *len its length), or NULL. */
static uint8_t *fw_load(fw_t *w, const dl_ref_t *ref, size_t *len) {
  uint8_t *buf = NULL;
  size_t cap = 0;
  if (fw_load_into(w, ref, &buf, &cap, len)) return buf;
  free(buf);
  return NULL;
}

static uint64_t fw_hash(const uint8_t id[32], uint32_t m) {
  uint64_t h;
  memcpy(&h, id, 8);
  return (h ^ ((uint64_t)m * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
}

static fw_memo_t *fw_memo_slot(fw_t *w, const uint8_t id[32], uint32_t m) {
  size_t mask = w->memo_cap - 1;
  for (size_t i = fw_hash(id, m) >> 20 & mask;; i = (i + 1) & mask) {
    fw_memo_t *s = &w->memo[i];
    if (!s->used || (s->m == m && memcmp(s->id, id, 32) == 0)) return s;
  }
}

static int fw_memo_put(fw_t *w, const uint8_t id[32], uint32_t m, int32_t v) {
  if ((w->memo_n + 1) * 2 > w->memo_cap) {
    fw_memo_t *old = w->memo;
    size_t oc = w->memo_cap;
    w->memo = calloc(oc * 2, sizeof *w->memo);
    if (!w->memo) {
      w->memo = old;
      return 0;
    }
    w->memo_cap = oc * 2;
    for (size_t i = 0; i < oc; i++)
      if (old[i].used) *fw_memo_slot(w, old[i].id, old[i].m) = old[i];
    free(old);
  }
  fw_memo_t *s = fw_memo_slot(w, id, m);
  if (!s->used) w->memo_n++;
  memcpy(s->id, id, 32);
  s->m = m, s->v = v, s->used = 1;
  return 1;
}

/* A DIRDELTA's base (its payload and all its rows), read and scanned once. */
static fw_base_t *fw_base(fw_t *w, const dl_ref_t *ref) {
  if (w->bases_cap == 0 || (w->bases_n + 1) * 2 > w->bases_cap) {
    size_t oc = w->bases_cap, nc = oc ? oc * 2 : 1024;
    fw_base_t *old = w->bases, *nb = calloc(nc, sizeof *nb);
    if (!nb) return NULL;
    for (size_t i = 0; i < oc; i++) {
      if (!old[i].used) continue;
      size_t j = (size_t)(fw_hash(old[i].id, 0) >> 20) & (nc - 1);
      while (nb[j].used) j = (j + 1) & (nc - 1);
      nb[j] = old[i];
    }
    free(old);
    w->bases = nb, w->bases_cap = nc;
  }
  size_t mask = w->bases_cap - 1, j = (size_t)(fw_hash(ref->id, 0) >> 20) & mask;
  for (; w->bases[j].used; j = (j + 1) & mask)
    if (memcmp(w->bases[j].id, ref->id, 32) == 0) return &w->bases[j];
  size_t len;
  uint8_t *raw = fw_load(w, ref, &len);
  if (!raw) return NULL;
  size_t n = dl_count(raw, len); /* 0: not a DIR (R3) */
  double *rows = n ? malloc(n * DL_ROW * sizeof(double)) : NULL;
  if (!rows || dl_scan(raw, len, NULL, 0, NULL, 0, rows, n) != n) {
    free(raw);
    free(rows);
    return NULL;
  }
  fw_base_t *b = &w->bases[j];
  memcpy(b->id, ref->id, 32);
  b->raw = raw, b->len = len, b->rows = rows, b->n = n, b->used = 1;
  w->bases_n++;
  return b;
}

/* ---- matched entries: equal bytes (an entry unchanged in a changed directory) kept once ---- */

static uint64_t fw_bytes_hash(const uint8_t *p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ULL;
  return h ^ (h >> 29);
}

static const double *fw_ent_off(const fw_t *w, int32_t k) { return (const double *)w->ent_offs.p + 2 * k; }

static int fw_ent_slot(const fw_t *w, const uint8_t *p, size_t n, size_t *slot) {
  size_t mask = w->ent_cap - 1;
  for (size_t i = fw_bytes_hash(p, n) & mask;; i = (i + 1) & mask) {
    int32_t k = w->ent_tab[i];
    if (k < 0) {
      *slot = i;
      return -1;
    }
    const double *o = fw_ent_off(w, k);
    if ((size_t)(o[1] - o[0]) == n && memcmp(w->ents.p + (size_t)o[0], p, n) == 0) return k;
  }
}

/* The entry number of these bytes, added when new; -1: out of memory. */
static int32_t fw_entry(fw_t *w, const uint8_t *p, size_t n) {
  size_t count = w->ent_offs.len / (2 * sizeof(double));
  if ((count + 1) * 2 > w->ent_cap) {
    size_t nc = w->ent_cap ? w->ent_cap * 2 : 4096;
    int32_t *t = malloc(nc * sizeof *t);
    if (!t) return -1;
    memset(t, 0xff, nc * sizeof *t);
    free(w->ent_tab);
    w->ent_tab = t, w->ent_cap = nc;
    for (size_t k = 0; k < count; k++) {
      const double *o = fw_ent_off(w, (int32_t)k);
      size_t slot;
      fw_ent_slot(w, w->ents.p + (size_t)o[0], (size_t)(o[1] - o[0]), &slot);
      w->ent_tab[slot] = (int32_t)k;
    }
  }
  size_t slot;
  int32_t k = fw_ent_slot(w, p, n, &slot);
  if (k >= 0) return k;
  double off[2] = {(double)w->ents.len, (double)(w->ents.len + n)};
  if (!fw_vec_put(&w->ents, p, n) || !fw_vec_put(&w->ent_offs, off, sizeof off)) return -1;
  w->ent_tab[slot] = (int32_t)count;
  return (int32_t)count;
}

/* ---- the walk ---- */

/* Level lv's rows buffer with room for cap rows, or NULL. */
static double *fw_rows(fw_t *w, int lv, size_t cap) {
  if (w->lv[lv].rows_cap < cap) {
    double *q = realloc(w->lv[lv].rows, cap * DL_ROW * sizeof(double));
    if (!q) return NULL;
    w->lv[lv].rows = q, w->lv[lv].rows_cap = cap;
  }
  return w->lv[lv].rows;
}

static int32_t fw_dir(fw_t *w, const dl_ref_t *ref, uint32_t m);

static int fw_before(const dl_ref_t *a, const dl_ref_t *b) { /* R1: a written before b */
  return a->run < b->run || (a->run == b->run && (a->pack < b->pack || (a->pack == b->pack && a->offset < b->offset)));
}

static int fw_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl) {
  size_t n = al < bl ? al : bl;
  int c = memcmp(a, b, n);
  return c ? c : al < bl ? -1 : al > bl ? 1 : 0;
}

/*
 * One node of a directory onto w->tmp: its own piece (level -2: a DIR, DIRDELTA or DIRINDEX),
 * a DIRINDEX of the level expected (>= 0), or a page (-1: a DIR or DIRDELTA), with the checks
 * of TreeReader's walk (pieces/tree-reader.ts): the entry count its parent gives, a DIRINDEX's
 * level and name range, R1 for its children, a page's first name (lo) and its last below hi.
 * 1 = done; 0 = declined.
 */
static int fw_fill(fw_t *w, const dl_ref_t *ref, uint64_t entries, int level, const uint8_t *lo, size_t lol, const uint8_t *hi, size_t hil, uint32_t m) {
  if (w->depth >= FW_MAX_DEPTH) return 0;
  int lv = w->depth++;
  int ok = 0;
  size_t len = 0, n = 0;
  double *rows = NULL;
  const uint8_t *base = NULL, *raw = NULL;
  size_t base_len = 0;
  dl_ixchild_t *kids = NULL;
  if (!fw_load_into(w, ref, &w->lv[lv].raw, &w->lv[lv].raw_cap, &len)) goto out;
  raw = w->lv[lv].raw;
  if (raw[0] == 3) { /* DIRINDEX */
    if (level == -1) goto out;
    uint64_t ix_level, total;
    kids = malloc(4096 * sizeof *kids);
    size_t k = kids ? dl_index(raw, len, &ix_level, &total, kids, 4096) : 0;
    if (k == 0 || (level >= 0 && ix_level != (uint64_t)level) || total != entries) goto out;
    if (k > 1 && ((lo && fw_cmp(kids[1].first, kids[1].first_len, lo, lol) <= 0) || (hi && fw_cmp(kids[k - 1].first, kids[k - 1].first_len, hi, hil) >= 0)))
      goto out;
    for (size_t i = 0; i < k; i++) {
      if (!fw_before(&kids[i].ref, ref)) goto out;
      const uint8_t *clo = kids[i].first_len ? kids[i].first : lo;
      size_t clol = kids[i].first_len ? kids[i].first_len : lol;
      const uint8_t *chi = i + 1 < k ? kids[i + 1].first : hi;
      size_t chil = i + 1 < k ? kids[i + 1].first_len : hil;
      if (!fw_fill(w, &kids[i].ref, kids[i].entries, (int)ix_level - 1, clo, clol, chi, chil, m)) goto out;
    }
    ok = 1;
    goto out;
  }
  if (level >= 0) goto out; /* a DIRINDEX expected */
  if (raw[0] == 2) { /* DIRDELTA: its base first (R1: written before it; R3: a DIR, dl_scan's check) */
    dl_ref_t bref;
    if (!dl_delta_base(raw, len, &bref) || !fw_before(&bref, ref)) goto out;
    fw_base_t *b = fw_base(w, &bref);
    if (!b) goto out;
    base = b->raw, base_len = b->len;
    size_t cap = b->n + len / 2 + 1;
    if (!(rows = fw_rows(w, lv, cap))) goto out;
    n = dl_scan(raw, len, base, base_len, b->rows, b->n, rows, cap);
  } else if (raw[0] == 1) {
    size_t cap = dl_count(raw, len);
    if (!cap || !(rows = fw_rows(w, lv, cap))) goto out;
    n = dl_scan(raw, len, NULL, 0, NULL, 0, rows, cap);
  } else
    goto out; /* not a directory piece */
  if (n == 0 || n != entries) goto out;
#define ROW_NAME_AT(r) ((r)[DL_ROW_SRC] ? base : raw) + (size_t)(r)[DL_ROW_NAME], (size_t)(r)[DL_ROW_NAME_LEN]
  if (lo && fw_cmp(ROW_NAME_AT(rows), lo, lol) != 0) goto out;
  if (hi && fw_cmp(ROW_NAME_AT(rows + (n - 1) * DL_ROW), hi, hil) >= 0) goto out;
#undef ROW_NAME_AT
  for (size_t i = 0; i < n; i++) {
    const double *r = rows + i * DL_ROW;
    const uint8_t *src = r[DL_ROW_SRC] ? base : raw;
    size_t src_len = r[DL_ROW_SRC] ? base_len : len;
    const uint8_t *name = src + (size_t)r[DL_ROW_NAME];
    size_t nl = (size_t)r[DL_ROW_NAME_LEN];
    uint32_t s = fw_step(w, m, name, nl);
    if (s == 0) continue;
    int is_dir = r[DL_ROW_TYPE] == T_DIR;
    int self = (s & w->full) && (!w->dir_only || is_dir);
    int down = is_dir && r[DL_ROW_REF] >= 0 && (s & (w->full - 1));
    if (!self && !down) continue;
    fw_child_t c = {0, (uint32_t)nl, FW_NONE, FW_NONE};
    size_t end;
    dl_ref_t cref;
    if (!dl_entry_at(src, src_len, (size_t)r[DL_ROW_ENTRY], &end, &cref)) goto out;
    if (self && (c.ent = fw_entry(w, src + (size_t)r[DL_ROW_ENTRY], end - (size_t)r[DL_ROW_ENTRY])) < 0) goto out;
    if (down) {
      if (!cref.has || cref.entries != (uint32_t)r[DL_ROW_ENTRIES]) goto out;
      int32_t sub = fw_dir(w, &cref, s);
      if (sub == FW_DECLINED) goto out;
      c.sub = sub;
    }
    if (c.ent == FW_NONE && c.sub == FW_NONE) continue;
    c.name_off = (uint32_t)w->names.len;
    if (!fw_vec_put(&w->names, name, nl) || !fw_vec_put(&w->tmp, &c, sizeof c)) goto out;
  }
  ok = 1;
out:
  free(kids);
  w->depth--;
  return ok;
}

/* The matches below a directory (its piece ref, pattern state m): memoised. */
static int32_t fw_dir(fw_t *w, const dl_ref_t *ref, uint32_t m) {
  fw_memo_t *hit = fw_memo_slot(w, ref->id, m);
  if (hit->used) return hit->v;
  size_t tmp0 = w->tmp.len;
  int32_t result = FW_DECLINED;
  if (fw_fill(w, ref, ref->entries, -2, NULL, 0, NULL, 0, m)) {
    size_t count = (w->tmp.len - tmp0) / sizeof(fw_child_t);
    if (count == 0) {
      result = FW_NONE;
    } else {
      fw_node_t node = {(uint32_t)(w->children.len / sizeof(fw_child_t)), (uint32_t)count};
      if (fw_vec_put(&w->children, w->tmp.p + tmp0, w->tmp.len - tmp0) && fw_vec_put(&w->nodes, &node, sizeof node))
        result = (int32_t)(w->nodes.len / sizeof node - 1);
    }
  }
  w->tmp.len = tmp0;
  if (!fw_memo_put(w, ref->id, m, result)) return FW_DECLINED;
  return result;
}

int32_t fw_walk(fw_t *w, const dl_ref_t *root) { return fw_dir(w, root, w->start); }

static int fw_flat(fw_t *w, int32_t node, fw_vec_t *prefix, fw_vec_t *paths, fw_vec_t *rows) {
  const fw_node_t *nd = (const fw_node_t *)w->nodes.p + node;
  uint32_t first = nd->first, count = nd->count;
  size_t keep = prefix->len;
  for (uint32_t k = 0; k < count; k++) {
    const fw_child_t *c = (const fw_child_t *)w->children.p + first + k;
    prefix->len = keep;
    if (!fw_vec_put(prefix, "/", 1) || !fw_vec_put(prefix, w->names.p + c->name_off, c->name_len)) return 0;
    if (c->ent >= 0) {
      double row[3] = {(double)paths->len, (double)prefix->len, (double)c->ent};
      if (!fw_vec_put(paths, prefix->p, prefix->len) || !fw_vec_put(rows, row, sizeof row)) return 0;
    }
    if (c->sub >= 0 && !fw_flat(w, c->sub, prefix, paths, rows)) return 0;
  }
  prefix->len = keep;
  return 1;
}

int fw_flatten(fw_t *w, int32_t node, fw_vec_t *paths, fw_vec_t *rows) {
  if (node < 0) return 1;
  fw_vec_t prefix = {0};
  int ok = fw_flat(w, node, &prefix, paths, rows);
  free(prefix.p);
  return ok;
}
