#include "hooks.h"

#include <string.h>

static int hook_read(void *ctx, uint64_t fh, char *buf, size_t len, int64_t offset) {
  return nr_read(((bfs_hooks_t *)ctx)->nr, fh, buf, len, offset);
}

void bfs_hooks_init(bfs_hooks_t *h, nr_t *nr) {
  memset(&h->table, 0, sizeof h->table);
  h->table.magic = FUSE_NATIVE_HOOKS_MAGIC;
  h->table.abi = FUSE_NATIVE_HOOKS_ABI;
  h->table.size = (uint32_t)sizeof h->table;
  h->table.ctx = h;
  h->nr = nr;
  if (nr != NULL) h->table.read = hook_read;
}
