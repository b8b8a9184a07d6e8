/*
 * The native readdir's two reads of a DIR piece (native/dirlist.c) and the stat cache's
 * listings kept as pieces (native/statcache.c), without Node or FUSE. Built by
 * `make native-test` with -fsanitize=address,undefined and with -fsanitize=thread, run for a
 * few seconds each (`make test` runs it).
 *
 *   dirlist_fuzz SECONDS
 *
 * Synthetic DIR payloads (format.md §2.13.1: every entry type, inline maps, map references,
 * piece references, xattrs, multi-byte times and inode numbers) are made here. Then, until
 * the time is up:
 *   - each payload, then copies of it with 1–3 random bit flips or cut short, is read three
 *     ways: dl_parse (the whole parse), dl_heads (the readdir's quick pass) and dl_entry_stat
 *     (a lookup's read of one entry) at each offset the pass gave. Whatever dl_parse reads,
 *     the pass reads with the same modes and inode numbers, and every entry's read gives
 *     dl_parse's stat; whatever dl_parse declines, the pass or some entry's read declines;
 *     and every mode the pass gives has a type and at most 07777. Every payload sits in an
 *     allocation of its exact size, so ASan reports a read past its end.
 *   - READERS threads look names up (sc_get, sc_get_dir, sc_get_file) while this thread
 *     publishes listings of the intact payloads with sc_begin / sc_add / sc_commit, over a
 *     bound that evicts them, and checks each answer against dl_parse's.
 * Exit status 0 when every check held.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "../dirlist.h"
#include "../statcache.h"

#define NPAY 7 /* the last: 3 entries with 3 xattrs of 64 KiB each, which the cache does not keep */
#define MAXN 700
#define INO_BASE 4096.0
#define READERS 3

static uint64_t rng = 0x2545f4914f6cdd1dULL;
static uint64_t rnd64(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}
static uint64_t rnd(uint64_t n) { return n ? rnd64(&rng) % n : 0; }

typedef struct {
  uint8_t *p;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const void *d, size_t n) {
  if (b->len + n > b->cap) {
    b->cap = (b->len + n) * 2;
    b->p = realloc(b->p, b->cap);
  }
  memcpy(b->p + b->len, d, n);
  b->len += n;
}
static void byte(buf_t *b, uint8_t v) { put(b, &v, 1); }
static void varint(buf_t *b, uint64_t v) {
  while (v >= 0x80) {
    byte(b, (uint8_t)(v | 0x80));
    v >>= 7;
  }
  byte(b, (uint8_t)v);
}
static void svarint(buf_t *b, int64_t v) { varint(b, v < 0 ? (uint64_t)(-v) * 2 - 1 : (uint64_t)v * 2); }
static void blob(buf_t *b, const void *d, size_t n) {
  varint(b, n);
  put(b, d, n);
}
static void piece_ref(buf_t *b) {
  varint(b, 1 + rnd(5000));        /* run */
  varint(b, rnd(100000));          /* pack */
  varint(b, 64 + rnd(1ULL << 34)); /* offset past the pack header */
  varint(b, 1 + rnd(1000000));     /* stored length */
  for (int i = 0; i < 32; i++) byte(b, (uint8_t)rnd(256));
}

/* A DIR payload of n entries (names "e00000"…, increasing), one of each kind among files. */
static void make_payload(buf_t *b, size_t n, int seed, int big) {
  b->len = 0;
  byte(b, 1); /* KIND_DIR */
  byte(b, 1); /* version */
  varint(b, n);
  for (size_t k = 0; k < n; k++) {
    char name[32];
    int nl = snprintf(name, sizeof name, "e%05zu%s", k, (k + seed) % 7 == 0 ? "-a-longer-name" : "");
    blob(b, name, (size_t)nl);
    unsigned type = (unsigned)((k * 7 + (size_t)seed) % 10);
    type = type < 4 ? 1 : type - 3; /* mostly files; dirs, symlinks, devices, fifos, sockets */
    uint64_t flags = 0;
    int inline_map = 0, map_ref = 0, empty = 0, xattrs = big || rnd(5) == 0;
    if (type == 1) {
      uint64_t r = rnd(4);
      inline_map = r == 1 || r == 2;
      map_ref = r == 3;
      if (rnd(9) == 0) flags |= 4; /* changed while read */
    }
    if (type == 2) empty = rnd(4) == 0;
    flags |= (xattrs ? 1 : 0) | (inline_map ? 8 : 0) | (map_ref ? 16 : 0) | (empty ? 64 : 0);
    if (type == 2 && rnd(5) == 0) flags |= 32; /* synthetic */
    byte(b, (uint8_t)type);
    varint(b, flags);
    varint(b, 1 + k * 3 + rnd(3)); /* ord */
    varint(b, rnd(07777 + 1));     /* mode */
    varint(b, rnd(70000));          /* uid */
    varint(b, rnd(70000));          /* gid */
    svarint(b, (int64_t)rnd(2000000000) - (rnd(10) == 0 ? 3000000000LL : 0));
    varint(b, rnd(1000000000));
    svarint(b, (int64_t)rnd(2000000000));
    varint(b, rnd(1000000000));
    svarint(b, (int64_t)rnd(2000000000));
    varint(b, rnd(1000000000));
    uint64_t blocks = inline_map ? 1 + rnd(40) : map_ref ? 5 + rnd(1000) : 0;
    uint64_t size = type == 1 && blocks ? blocks * 4096 - rnd(4096) : 0;
    varint(b, size);
    varint(b, rnd(1 << 20)); /* srcDev, srcInoHi, srcInoLo */
    varint(b, rnd(2));
    varint(b, rnd(1ULL << 32));
    varint(b, type == 2 ? 2 + rnd(5) : 1 + rnd(3)); /* nlink */
    switch (type) {
      case 2:
        if (!empty) {
          piece_ref(b);
          varint(b, 1 + rnd(3000));
        }
        break;
      case 1:
        varint(b, blocks);
        if (inline_map) {
          uint64_t x = blocks >= 2 && rnd(2) ? 2 : 1; /* extents: file blocks [0, c0) and [c0 + gap, blocks) */
          varint(b, x);
          uint64_t c0 = x == 2 ? 1 + rnd(blocks - 1) : blocks;
          varint(b, 0);
          varint(b, c0);
          varint(b, 1 + rnd(3));
          svarint(b, (int64_t)rnd(100000));
          if (x == 2) {
            varint(b, 0);
            varint(b, blocks - c0);
            varint(b, 1 + rnd(3));
            svarint(b, (int64_t)rnd(1000) + 1);
          }
        } else if (map_ref) {
          piece_ref(b);
          varint(b, 1 + rnd(blocks));
        }
        break;
      case 3: {
        char t[64];
        int tl = snprintf(t, sizeof t, "../target/%zu", k);
        blob(b, t, (size_t)tl);
        break;
      }
      case 4:
      case 5:
        varint(b, rnd(300));
        varint(b, rnd(1 << 20));
        break;
      default:
        break;
    }
    if (xattrs) {
      uint64_t x = big ? 3 : 1 + rnd(3);
      varint(b, x);
      for (uint64_t i = 0; i < x; i++) {
        char xn[32];
        int xl = snprintf(xn, sizeof xn, "user.x%llu", (unsigned long long)i);
        blob(b, xn, (size_t)xl);
        static char v[65536];
        size_t vl = big ? sizeof v : rnd(200);
        for (size_t j = 0; j < vl; j++) v[j] = (char)rnd(256);
        blob(b, v, vl);
      }
    }
  }
}

static atomic_int failures;
#define CHECK(c, ...)                 \
  do {                                \
    if (!(c)) {                       \
      if (atomic_fetch_add(&failures, 1) < 20) { \
        fprintf(stderr, __VA_ARGS__); \
        fputc('\n', stderr);          \
      }                               \
    }                                 \
  } while (0)

typedef struct {
  size_t offs[MAXN];
  uint32_t modes[MAXN];
  uint64_t ords[MAXN];
  size_t n;
} heads_t;

static int on_head(void *ctx, size_t k, size_t off, const uint8_t *name, size_t nl, uint32_t mode, uint64_t ord) {
  heads_t *h = ctx;
  (void)name, (void)nl;
  if (k >= MAXN) return 0;
  h->offs[k] = off, h->modes[k] = mode, h->ords[k] = ord;
  h->n = k + 1;
  return 1;
}

static int same_stat(const struct stat *a, const struct stat *b) {
  return a->st_mode == b->st_mode && a->st_uid == b->st_uid && a->st_gid == b->st_gid && a->st_size == b->st_size &&
         a->st_nlink == b->st_nlink && a->st_ino == b->st_ino && a->st_rdev == b->st_rdev && a->st_blksize == b->st_blksize &&
         a->st_blocks == b->st_blocks && a->st_atim.tv_sec == b->st_atim.tv_sec && a->st_atim.tv_nsec == b->st_atim.tv_nsec &&
         a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
         a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

static char names_buf[1 << 20];
static double stats_buf[(MAXN + 2) * DL_STAT_FIELDS];
static dl_ref_t refs_buf[MAXN];
static heads_t hd;

/* The three reads of one payload; returns 1 when dl_parse read it. */
static int read_three(const uint8_t *p, size_t len, int intact, uint64_t *lazy_partial) {
  size_t n = dl_count(p, len);
  size_t used = 0;
  int full = n > 0 && n <= MAXN && dl_parse(p, len, INO_BASE, names_buf, sizeof names_buf, &used, stats_buf, n, refs_buf);
  memset(&hd, 0, sizeof hd);
  int heads = n > 0 && n <= MAXN && dl_heads(p, len, n, on_head, &hd);
  CHECK(!intact || full, "an intact payload of %zu entries is declined by dl_parse", n);
  if (full) {
    CHECK(heads, "dl_parse reads a payload the quick pass declines");
    if (!heads) return 1;
    for (size_t k = 0; k < n; k++) {
      struct stat want, got;
      uint32_t flags = 0;
      dl_ref_t ref;
      dl_to_stat(stats_buf + k * DL_STAT_FIELDS, &want);
      int ok = dl_entry_stat(p, len, hd.offs[k], INO_BASE, &got, &flags, &ref);
      CHECK(ok, "entry %zu: dl_entry_stat declines what dl_parse read", k);
      if (!ok) continue;
      CHECK(same_stat(&got, &want), "entry %zu: dl_entry_stat's stat differs from dl_parse's", k);
      CHECK(flags == (uint32_t)stats_buf[k * DL_STAT_FIELDS + 17], "entry %zu: flags differ", k);
      CHECK(hd.modes[k] == (uint32_t)want.st_mode, "entry %zu: the pass's mode %o, dl_parse's %o", k, hd.modes[k],
            (unsigned)want.st_mode);
      CHECK((ino_t)(uint64_t)(INO_BASE + (double)hd.ords[k]) == want.st_ino, "entry %zu: inode numbers differ", k);
      CHECK(ref.has == refs_buf[k].has && ref.file == refs_buf[k].file && ref.nmap == refs_buf[k].nmap,
            "entry %zu: piece reference differs", k);
    }
  } else if (heads) {
    size_t declined = 0;
    for (size_t k = 0; k < hd.n; k++) {
      struct stat got;
      uint32_t flags;
      if (!dl_entry_stat(p, len, hd.offs[k], INO_BASE, &got, &flags, NULL)) declined++;
    }
    CHECK(declined > 0, "the quick pass and every entry's read accept a payload dl_parse declines");
    (*lazy_partial)++;
  }
  for (size_t k = 0; heads && k < hd.n; k++) {
    uint32_t t = hd.modes[k] & 0170000;
    CHECK((t == 0100000 || t == 0040000 || t == 0120000 || t == 0020000 || t == 0060000 || t == 0010000 || t == 0140000) &&
              hd.modes[k] <= 0177777,
          "the pass gives mode %o", hd.modes[k]);
  }
  return full;
}

/* ---- the stat cache under lookups ---- */

static buf_t pay[NPAY];
static size_t npay[NPAY];
static struct stat want_st[NPAY][MAXN];
static dl_ref_t want_ref[NPAY][MAXN];
static sc_t *cache;
static atomic_int stop;
static atomic_ulong hits, lookups;

static void *reader(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ULL + 1;
  char path[64];
  while (!atomic_load(&stop)) {
    int d = (int)(rnd64(&s) % NPAY);
    size_t k = rnd64(&s) % (npay[d] + 3); /* a few names not there */
    int pl = k < npay[d] ? snprintf(path, sizeof path, "/d%d/e%05zu%s", d, k, (k + (size_t)d) % 7 == 0 ? "-a-longer-name" : "")
                         : snprintf(path, sizeof path, "/d%d/zz%zu", d, k);
    (void)pl;
    struct stat st;
    uint32_t flags;
    dl_ref_t ref;
    atomic_fetch_add(&lookups, 1);
    int found = sc_get(cache, path, &st, &flags, 1);
    if (k >= npay[d]) {
      CHECK(!found, "%s found", path);
      continue;
    }
    if (found) {
      CHECK(d != NPAY - 1, "%s found in a listing the bound should have refused", path);
      atomic_fetch_add(&hits, 1);
      CHECK(same_stat(&st, &want_st[d][k]), "%s: the cache's stat differs", path);
    }
    int isdir = sc_get_dir(cache, path, &st, &ref);
    if (isdir) CHECK(want_ref[d][k].has && memcmp(ref.id, want_ref[d][k].id, 32) == 0, "%s: the directory's reference differs", path);
    int isfile = sc_get_file(cache, path, &st, &ref);
    if (isfile) CHECK(want_ref[d][k].file && ref.nmap == want_ref[d][k].nmap, "%s: the file's map differs", path);
  }
  return NULL;
}

int main(int argc, char **argv) {
  double seconds = argc > 1 ? atof(argv[1]) : 2;
  size_t sizes[NPAY] = {1, 2, 37, 300, 600, MAXN, 3};
  for (int d = 0; d < NPAY; d++) {
    make_payload(&pay[d], sizes[d], d, d == NPAY - 1);
    pay[d].p = realloc(pay[d].p, pay[d].len); /* exact: ASan sees a read one byte past it */
    pay[d].cap = pay[d].len;
    npay[d] = sizes[d];
    size_t used;
    if (!dl_parse(pay[d].p, pay[d].len, INO_BASE, names_buf, sizeof names_buf, &used, stats_buf, sizes[d], refs_buf)) {
      fprintf(stderr, "dirlist_fuzz: payload %d (%zu entries) is not read by dl_parse: the generator is wrong\n", d, sizes[d]);
      return 1;
    }
    for (size_t k = 0; k < sizes[d]; k++) {
      dl_to_stat(stats_buf + k * DL_STAT_FIELDS, &want_st[d][k]);
      want_ref[d][k] = refs_buf[k];
    }
  }
  /* a bound of ~2.5 of the largest listings: publishing evicts while readers look up */
  cache = sc_new(MAXN * 5 / 2, 0);
  pthread_t th[READERS];
  for (int i = 0; i < READERS; i++) pthread_create(&th[i], NULL, reader, (void *)(uintptr_t)(i + 1));
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t rounds = 0, flipped = 0, read_full = 0, lazy_partial = 0, published = 0;
  for (;;) {
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if ((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9 > seconds) break;
    rounds++;
    int d = (int)rnd(NPAY);
    /* publish the intact payload (as ds_list does) */
    const uint8_t *copy;
    char dir[16];
    int dl = snprintf(dir, sizeof dir, "/d%d", d);
    sc_listing_t *l = sc_begin(dir, (size_t)dl, npay[d], pay[d].p, pay[d].len, INO_BASE, &copy);
    memset(&hd, 0, sizeof hd);
    int ok = l && dl_heads(copy, pay[d].len, npay[d], on_head, &hd);
    CHECK(ok, "the pass declines intact payload %d", d);
    for (size_t k = 0; ok && k < hd.n; k++) {
      size_t nl;
      const uint8_t *nm = dl_entry_name(copy, pay[d].len, hd.offs[k], &nl);
      if (!sc_add(l, hd.offs[k], (const char *)nm, nl)) ok = 0;
    }
    if (ok) {
      int kept = sc_commit(cache, l);
      /* the cache's bound counts a raw listing's bytes too: ~576 KiB in 3 entries is over it */
      CHECK(kept == (d != NPAY - 1), "listing %d: kept %d", d, kept);
      published += (uint64_t)kept;
    } else if (l)
      sc_abandon(l);
    /* the three reads: intact, then damaged copies */
    read_three(pay[d].p, pay[d].len, 1, &lazy_partial);
    for (int t = 0; t < 40; t++) {
      size_t len = pay[d].len;
      if (rnd(8) == 0) len = rnd(len);
      uint8_t *c = malloc(len ? len : 1); /* exact, as above */
      memcpy(c, pay[d].p, len);
      if (len == pay[d].len)
        for (int f = 1 + (int)rnd(3); f > 0; f--) c[rnd(len)] ^= (uint8_t)(1u << rnd(8));
      flipped++;
      read_full += (uint64_t)read_three(c, len, 0, &lazy_partial);
      free(c);
    }
  }
  atomic_store(&stop, 1);
  for (int i = 0; i < READERS; i++) pthread_join(th[i], NULL);
  sc_free(cache);
  for (int d = 0; d < NPAY; d++) free(pay[d].p);
  printf("dirlist_fuzz: %llu rounds, %llu listings published, %llu damaged payloads (%llu read whole, %llu listed with an entry "
         "declined at its lookup), %lu lookups (%lu hits): %s\n",
         (unsigned long long)rounds, (unsigned long long)published, (unsigned long long)flipped, (unsigned long long)read_full,
         (unsigned long long)lazy_partial, atomic_load(&lookups), atomic_load(&hits), atomic_load(&failures) ? "FAILED" : "ok");
  if (!atomic_load(&failures) && (lazy_partial == 0 || published == 0 || atomic_load(&hits) == 0)) {
    fprintf(stderr, "dirlist_fuzz: a check never ran (too few seconds?)\n");
    return 1;
  }
  return atomic_load(&failures) ? 1 : 0;
}
