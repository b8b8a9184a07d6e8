#include "hooks.h"

#include <string.h>

_Static_assert(SC_NO_XATTRS == FUSE_NATIVE_STAT_NO_XATTRS && SC_NO_CACHE == FUSE_NATIVE_STAT_NO_CACHE, "stat flags");

static int hook_read(void *ctx, uint64_t fh, char *buf, size_t len, int64_t offset) {
  return nr_read(((bfs_hooks_t *)ctx)->nr, fh, buf, len, offset);
}

static int hook_getattr(void *ctx, const char *path, struct stat *st) {
  return sc_get(((bfs_hooks_t *)ctx)->sc, path, st, NULL, 1) ? 0 : -1;
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
}
