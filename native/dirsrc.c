/*
 * readdir of a format 2 generation on the libfuse thread, without JavaScript (dirsrc.h;
 * native-notes/native-addon.md, "readdir in C"). A directory is served here when its piece
 * reference is known — the generation's root (registered by JavaScript), or an entry of a
 * listing this code published before — and its piece is one DIR piece: pread from the pack
 * (a small cache of open packs), one zstd frame decompressed, its keyed BLAKE3 id checked
 * against the reference, the entries parsed by dirlist.c (which declines what the
 * JavaScript decoder would refuse, and hard links), the entry count checked against the
 * reference. Anything else answers -1 and JavaScript serves the directory as before
 * (and reports any damage).
 */
#include "dirsrc.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#include "blake3.h"
#include "dirlist.h"

#define DS_FDS 8
#define DS_MAX_RAW (1u << 20) /* MAX_PIECE_RAW_BYTES */
#define DS_MAX_STORED (1u << 21)
#define DS_DECLINED 4096
#define NAME_BUF 4097 /* a name (≤ 4096 bytes: dirlist.c NAME_MAX_READ) and its NUL */

struct ds_s {
  char *root; /* the repository's directory */
  uint8_t key[32];
  double ino_base;
  struct stat root_st;
  dl_ref_t root_ref;
  pthread_mutex_t mu;
  struct {
    uint64_t run, pack, used;
    int fd, users;
  } fds[DS_FDS];
  uint64_t tick;
  uint64_t served, fallbacks;
  uint64_t lookups, lookup_fallbacks; /* listings loaded for a lookup; lookups that gave up loading */
  /* pieces declined once (the first 8 bytes of their id; 0 = empty), direct-mapped (4,096
   * slots, 32 KiB: two declined directories share a slot, and load again, only past ~90 of
   * them in use): a lookup
   * does not load, decompress and hash again a piece it cannot list (a DIRINDEX, a DIRDELTA, a
   * directory with hard links), each time a name below it is looked up */
  uint64_t declined[DS_DECLINED];
};

typedef struct {
  ZSTD_DCtx *dctx;
  uint8_t *comp, *raw;
  uint16_t modes[DL_PAGE_MAX]; /* ds_list: the entries' st_modes and ords, for its filler */
  uint64_t ords[DL_PAGE_MAX];
} ds_tls_t;

static pthread_key_t ds_tls_key;
static pthread_once_t ds_tls_once = PTHREAD_ONCE_INIT;

static void ds_tls_free(void *p) {
  ds_tls_t *t = (ds_tls_t *)p;
  if (t == NULL) return;
  ZSTD_freeDCtx(t->dctx);
  free(t->comp);
  free(t->raw);
  free(t);
}

static void ds_tls_init(void) { pthread_key_create(&ds_tls_key, ds_tls_free); }

static ds_tls_t *ds_tls(void) {
  pthread_once(&ds_tls_once, ds_tls_init);
  ds_tls_t *t = (ds_tls_t *)pthread_getspecific(ds_tls_key);
  if (t != NULL) return t;
  t = calloc(1, sizeof *t);
  if (t == NULL) return NULL;
  t->dctx = ZSTD_createDCtx();
  t->comp = malloc(DS_MAX_STORED);
  t->raw = malloc(DS_MAX_RAW);
  if (t->dctx == NULL || t->comp == NULL || t->raw == NULL) {
    ds_tls_free(t);
    return NULL;
  }
  pthread_setspecific(ds_tls_key, t);
  return t;
}

ds_t *ds_new(const char *root, const uint8_t key[32], double ino_base, const struct stat *root_st, const void *root_ref) {
  ds_t *d = calloc(1, sizeof *d);
  if (d == NULL) return NULL;
  d->root = strdup(root);
  if (d->root == NULL) {
    free(d);
    return NULL;
  }
  memcpy(d->key, key, 32);
  d->ino_base = ino_base;
  d->root_st = *root_st;
  memcpy(&d->root_ref, root_ref, sizeof(dl_ref_t));
  pthread_mutex_init(&d->mu, NULL);
  for (int i = 0; i < DS_FDS; i++) d->fds[i].fd = -1;
  return d;
}

void ds_stats(ds_t *d, uint64_t *served, uint64_t *fallbacks, uint64_t *lookups, uint64_t *lookup_fallbacks) {
  *served = __atomic_load_n(&d->served, __ATOMIC_RELAXED);
  *fallbacks = __atomic_load_n(&d->fallbacks, __ATOMIC_RELAXED);
  *lookups = __atomic_load_n(&d->lookups, __ATOMIC_RELAXED);
  *lookup_fallbacks = __atomic_load_n(&d->lookup_fallbacks, __ATOMIC_RELAXED);
}

static uint64_t ds_id64(const dl_ref_t *ref) {
  uint64_t v;
  memcpy(&v, ref->id, 8);
  return v ? v : 1;
}

static int ds_was_declined(ds_t *d, const dl_ref_t *ref) {
  uint64_t v = ds_id64(ref);
  return __atomic_load_n(&d->declined[v % DS_DECLINED], __ATOMIC_RELAXED) == v;
}

static void ds_decline(ds_t *d, const dl_ref_t *ref) {
  uint64_t v = ds_id64(ref);
  __atomic_store_n(&d->declined[v % DS_DECLINED], v, __ATOMIC_RELAXED);
}

/* The pack's path, as keys2.pack (src/format/v2/layout.ts): gens/RUN/pack-PACK, 8 digits. */
int ds_pack_path(const char *root, uint64_t run, uint64_t pack, char *out, size_t cap) {
  if (run > 99999999ULL || pack > 99999999ULL) return -1;
  int n = snprintf(out, cap, "%s/gens/%08llu/pack-%08llu", root, (unsigned long long)run, (unsigned long long)pack);
  return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* A held fd of the pack (slot >= 0: release it with ds_put; slot -1: close it). */
static int ds_get(ds_t *d, uint64_t run, uint64_t pack, int *slot) {
  pthread_mutex_lock(&d->mu);
  int free_slot = -1;
  for (int i = 0; i < DS_FDS; i++) {
    if (d->fds[i].fd >= 0 && d->fds[i].run == run && d->fds[i].pack == pack) {
      d->fds[i].users++;
      d->fds[i].used = ++d->tick;
      int fd = d->fds[i].fd; /* (users > 0 keeps the slot; read it under the lock anyway) */
      pthread_mutex_unlock(&d->mu);
      *slot = i;
      return fd;
    }
    if (d->fds[i].users == 0 && (free_slot < 0 || d->fds[i].fd < 0 || (d->fds[free_slot].fd >= 0 && d->fds[i].used < d->fds[free_slot].used)))
      free_slot = i;
  }
  pthread_mutex_unlock(&d->mu);
  char path[4096 + 64];
  if (ds_pack_path(d->root, run, pack, path, sizeof path) != 0) return -1;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  pthread_mutex_lock(&d->mu);
  /* the slot chosen may have been taken meanwhile: take it only if still unused */
  if (free_slot >= 0 && d->fds[free_slot].users == 0) {
    int old = d->fds[free_slot].fd;
    d->fds[free_slot].fd = fd;
    d->fds[free_slot].run = run;
    d->fds[free_slot].pack = pack;
    d->fds[free_slot].users = 1;
    d->fds[free_slot].used = ++d->tick;
    pthread_mutex_unlock(&d->mu);
    if (old >= 0) close(old);
    *slot = free_slot;
    return fd;
  }
  pthread_mutex_unlock(&d->mu);
  *slot = -1;
  return fd;
}

static void ds_put(ds_t *d, int slot, int fd) {
  if (slot < 0) {
    close(fd);
    return;
  }
  pthread_mutex_lock(&d->mu);
  d->fds[slot].users--;
  pthread_mutex_unlock(&d->mu);
}

/* The checked raw payload of ref into t->raw: its length, or -1. */
static long ds_load(ds_t *d, ds_tls_t *t, const dl_ref_t *ref) {
  if (ref->stored_len == 0 || ref->stored_len > DS_MAX_STORED) return -1;
  int slot;
  int fd = ds_get(d, ref->run, ref->pack, &slot);
  if (fd < 0) return -1;
  size_t got = 0;
  while (got < ref->stored_len) {
    ssize_t n = pread(fd, t->comp + got, ref->stored_len - got, (off_t)(ref->offset + got));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  ds_put(d, slot, fd);
  if (got != ref->stored_len) return -1;
  unsigned long long size = ZSTD_getFrameContentSize(t->comp, got);
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > DS_MAX_RAW) return -1;
  if (ZSTD_findFrameCompressedSize(t->comp, got) != got) return -1;
  size_t n = ZSTD_decompressDCtx(t->dctx, t->raw, DS_MAX_RAW, t->comp, got);
  if (ZSTD_isError(n) || n != size) return -1;
  uint8_t id[32];
  blake3_hasher h;
  blake3_hasher_init_keyed(&h, d->key);
  blake3_hasher_update(&h, t->raw, n);
  blake3_hasher_finalize(&h, id, 32);
  if (memcmp(id, ref->id, 32) != 0) return -1;
  return (long)n;
}

/* The quick pass's entries (dl_heads) into the listing being built, and what a filler needs
 * of them kept for it. */
typedef struct {
  sc_listing_t *l;
  ds_tls_t *t;
} ds_heads_t;

static int ds_head(void *ctx, size_t k, size_t off, const uint8_t *name, size_t nl, uint32_t mode, uint64_t ord) {
  ds_heads_t *h = (ds_heads_t *)ctx;
  h->t->modes[k] = (uint16_t)mode;
  h->t->ords[k] = ord;
  return sc_add(h->l, off, (const char *)name, nl);
}

/* Loads and checks the piece ref of the directory path (plen bytes, "/" for the root),
 * publishes its listing to sc and, with a filler, gives it ".", "..", then every entry.
 * 0 = done; -1 = declined or failed (nothing filled, nothing published). The listing is
 * the payload itself with its entries' offsets (statcache.h): a readdir reads only what it
 * shows (names, types, inode numbers: dl_heads), a lookup reads its entry's stat. */
static int ds_list(ds_t *d, ds_tls_t *t, sc_t *sc, const char *path, size_t plen, const dl_ref_t *ref,
                   const struct stat *self, const struct stat *parent, void *buf, ds_fill_t filler) {
  long rawlen = ds_load(d, t, ref);
  if (rawlen < 0) return -1;
  size_t n = dl_count(t->raw, (size_t)rawlen);
  if (n == 0 || n != ref->entries) {
    ds_decline(d, ref);
    return -1;
  }
  const uint8_t *p;
  sc_listing_t *l = sc_begin(path, plen, n, t->raw, (size_t)rawlen, d->ino_base, &p);
  if (l == NULL) return -1;
  ds_heads_t h = {l, t};
  if (!dl_heads(p, (size_t)rawlen, n, ds_head, &h)) {
    sc_abandon(l);
    ds_decline(d, ref);
    return -1;
  }
  if (filler) {
    filler(buf, ".", self, 0);
    filler(buf, "..", parent, 0);
    /* libfuse's filler takes d_type from st_mode and d_ino from st_ino (use_ino) */
    struct stat st;
    memset(&st, 0, sizeof st);
    char name[NAME_BUF];
    for (size_t k = 0; k < n; k++) { /* a full buffer stops the filler; the listing is still whole */
      size_t nl;
      const uint8_t *np = dl_entry_name(p, (size_t)rawlen, sc_off(l, k), &nl);
      if (nl == 0 || nl >= sizeof name) continue; /* dl_heads: names of 1 … 4096 bytes */
      memcpy(name, np, nl);
      name[nl] = 0;
      st.st_mode = t->modes[k];
      st.st_ino = (ino_t)(uint64_t)(d->ino_base + (double)t->ords[k]);
      if (filler(buf, name, &st, 0) == 1) break;
    }
  }
  /* a listing the stat cache does not keep (more entries than it holds): a readdir was
   * served all the same; a lookup finds nothing, so it is declined like a DIRINDEX */
  if (!sc_commit(sc, l) && !filler) {
    ds_decline(d, ref);
    return -1;
  }
  return 0;
}

int ds_readdir(ds_t *d, sc_t *sc, const char *path, void *buf, ds_fill_t filler) {
  if (d == NULL || sc == NULL) return -1;
  ds_tls_t *t = ds_tls();
  if (t == NULL) goto fallback;
  struct stat self, parent;
  dl_ref_t ref;
  size_t plen = strlen(path);
  if (plen == 1 && path[0] == '/') {
    self = parent = d->root_st;
    ref = d->root_ref;
    if (!ref.has) goto fallback;
  } else {
    if (!sc_get_dir(sc, path, &self, &ref)) goto fallback;
    const char *slash = strrchr(path, '/');
    if (slash == path) {
      parent = d->root_st;
    } else {
      char pp[4096];
      size_t l = (size_t)(slash - path);
      if (l >= sizeof pp) goto fallback;
      memcpy(pp, path, l);
      pp[l] = 0;
      if (!sc_get(sc, pp, &parent, NULL, 0)) goto fallback;
    }
  }
  if (ds_list(d, t, sc, path, plen, &ref, &self, &parent, buf, filler) == 0) {
    __atomic_fetch_add(&d->served, 1, __ATOMIC_RELAXED);
    return 0;
  }
fallback:
  __atomic_fetch_add(&d->fallbacks, 1, __ATOMIC_RELAXED);
  return -1;
}

int ds_root_stat(ds_t *d, struct stat *st) {
  *st = d->root_st;
  return 0;
}

int ds_lookup(ds_t *d, sc_t *sc, const char *path) {
  if (d == NULL || sc == NULL || path == NULL || path[0] != '/') return -1;
  size_t len = strlen(path);
  const char *slash = strrchr(path, '/');
  size_t dlen = (size_t)(slash - path); /* path's directory: path[0 .. dlen), 0 = the root */
  if (len < 2 || slash == path + len - 1 || dlen >= 4096) return -1;
  char dir[4096];
  memcpy(dir, path, dlen);
  dir[dlen] = 0;
  ds_tls_t *t = NULL;
  int loaded = 0;
  /* each directory from the root down to path's own: a listing there already, or one
   * loaded now from the piece reference its parent's listing holds */
  for (size_t pos = 0;;) {
    const char *dp = pos == 0 ? "/" : dir;
    size_t dl = pos == 0 ? 1 : pos;
    if (!sc_has_listing(sc, dp, dl)) {
      dl_ref_t ref;
      struct stat st;
      char save = dir[pos];
      dir[pos] = 0;
      int known = pos == 0 ? (ref = d->root_ref).has : sc_get_dir(sc, dir, &st, &ref);
      dir[pos] = save;
      if (!known || ds_was_declined(d, &ref)) return -1; /* a listing JavaScript made, an empty or unlistable directory */
      if (t == NULL && (t = ds_tls()) == NULL) return -1;
      if (ds_list(d, t, sc, dp, dl, &ref, NULL, NULL, NULL, NULL) != 0) {
        __atomic_fetch_add(&d->lookup_fallbacks, 1, __ATOMIC_RELAXED);
        return -1;
      }
      loaded++;
      __atomic_fetch_add(&d->lookups, 1, __ATOMIC_RELAXED);
    }
    if (pos == dlen) break;
    const char *next = memchr(dir + pos + 1, '/', dlen - pos - 1);
    pos = next ? (size_t)(next - dir) : dlen;
  }
  return loaded ? 0 : -1;
}
