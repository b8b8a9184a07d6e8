#include "hooks.h"
#include "dirlist.h"

#include <fcntl.h>
#include <string.h>

_Static_assert(SC_NO_XATTRS == FUSE_NATIVE_STAT_NO_XATTRS && SC_NO_CACHE == FUSE_NATIVE_STAT_NO_CACHE, "stat flags");

static int hook_read(void *ctx, uint64_t fh, char *buf, size_t len, int64_t offset) {
  return nr_read(((bfs_hooks_t *)ctx)->nr, fh, buf, len, offset);
}

/* The stat cache; on a miss in a format 2 generation, the listings of the path's
 * directories loaded here from their pieces (ds_lookup: a lookup of a path whose directory
 * was never listed, as `cat DIR/FILE` or `cp` of one file does, no longer goes to
 * JavaScript), then the stat cache again. */
static int hook_getattr(void *ctx, const char *path, struct stat *st) {
  bfs_hooks_t *h = (bfs_hooks_t *)ctx;
  if (sc_get(h->sc, path, st, NULL, 1)) return 0;
  ds_t *ds = __atomic_load_n(&h->ds, __ATOMIC_ACQUIRE);
  if (ds == NULL) return -1;
  if (path[0] == '/' && path[1] == 0) return ds_root_stat(ds, st); /* the root is in no listing */
  return ds_lookup(ds, h->sc, path) == 0 && sc_get(h->sc, path, st, NULL, 0) ? 0 : -1;
}

static int hook_no_xattrs(void *ctx, const char *path) {
  uint32_t flags = 0;
  return sc_get(((bfs_hooks_t *)ctx)->sc, path, NULL, &flags, 0) && (flags & SC_NO_XATTRS);
}

static void hook_stat_seen(void *ctx, const char *dir, const char *name, size_t name_len, const struct stat *st,
                           uint32_t flags) {
  sc_seen(((bfs_hooks_t *)ctx)->sc, dir, name, name_len, st, flags);
}

static int hook_readdir(void *ctx, const char *path, void *buf,
                        int (*fill)(void *buf, const char *name, const struct stat *st, off_t off)) {
  bfs_hooks_t *h = (bfs_hooks_t *)ctx;
  ds_t *ds = __atomic_load_n(&h->ds, __ATOMIC_ACQUIRE);
  if (ds) return ds_readdir(ds, h->sc, path, buf, fill);
  /* format 1: a listing JavaScript published ahead (sc_publish_full), else JavaScript */
  return sc_readdir(h->sc, path, buf, fill);
}

/* A read-only open of a regular file whose whole map a listing published in C holds
 * (sc_get_file: dirsrc.c's listings of a format 2 generation), every unit it reads
 * registered: a native handle (nr_open_blocks), without JavaScript. Anything else (the
 * mount did not turn it on: a tape tier, BI overlays, no native reads; a map in map
 * pieces; a unit not open yet; a path listed in JavaScript) goes to JavaScript's open. */
static int hook_open(void *ctx, const char *path, int flags, uint64_t *fh) {
  bfs_hooks_t *h = (bfs_hooks_t *)ctx;
  if (!__atomic_load_n(&h->open_files, __ATOMIC_ACQUIRE) || (flags & O_ACCMODE) != O_RDONLY) return -1;
  struct stat st;
  dl_ref_t ref;
  if (!sc_get_file(h->sc, path, &st, &ref) || !S_ISREG(st.st_mode) || st.st_size < 0 || ref.nmap > DL_MAP_MAX) return -1;
  nr_bext_t x[DL_MAP_MAX];
  for (uint8_t i = 0; i < ref.nmap; i++) x[i] = (nr_bext_t){ref.map[i].fb, ref.map[i].count, ref.map[i].stream, ref.map[i].sb};
  return nr_open_blocks(h->nr, (uint64_t)st.st_size, x, ref.nmap, fh) == 0 ? 0 : -1;
}

/* A native handle JavaScript never adopted is released here; JavaScript's own go there. */
static int hook_release(void *ctx, uint64_t fh) {
  return nr_release_native(((bfs_hooks_t *)ctx)->nr, fh) ? 0 : -1;
}

void bfs_hooks_init(bfs_hooks_t *h, nr_t *nr, sc_t *sc) {
  memset(&h->table, 0, sizeof h->table);
  h->table.magic = FUSE_NATIVE_HOOKS_MAGIC;
  h->table.abi = FUSE_NATIVE_HOOKS_ABI;
  h->table.size = (uint32_t)sizeof h->table;
  h->table.ctx = h;
  h->nr = nr;
  h->sc = sc;
  h->ds = NULL;
  if (nr != NULL) h->table.read = hook_read;
  if (sc != NULL) {
    h->table.getattr = hook_getattr;
    h->table.no_xattrs = hook_no_xattrs;
    h->table.stat_seen = hook_stat_seen;
    h->table.readdir = hook_readdir;
  }
  h->open_files = 0;
  if (nr != NULL && sc != NULL) {
    h->table.open = hook_open;
    h->table.release = hook_release;
  }
}
