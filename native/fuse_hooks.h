/*
 * The hook table bfs's addon hands to the patched fuse-native binding (fuse.node) at mount
 * time, as a napi external (see native-notes/fuse-native.md, "The hook table").
 *
 * The two addons are loaded with dlopen(RTLD_LOCAL) and cannot see each other's symbols,
 * so function pointers cross in this table. The binding checks magic, abi and size before
 * it uses it and refuses the mount otherwise. patches/fuse-native+2.2.6.patch carries a
 * byte-identical copy of the block between the markers below in fuse-native.c;
 * test/fuse-binding.test.ts compares the two. Change both together, and bump the ABI when
 * a field changes meaning (fields may be appended: `size` tells the binding how many there are).
 */
#ifndef BFS_FUSE_HOOKS_H
#define BFS_FUSE_HOOKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* ---- fuse_native_hooks_t (copy in fuse-native.c) ---- */
#define FUSE_NATIVE_HOOKS_MAGIC 0x31764b4f4f485346ULL /* "FSHOOKv1" */
#define FUSE_NATIVE_HOOKS_ABI 2
typedef struct fuse_native_hooks {
  uint64_t magic;
  uint32_t abi, size; /* size = sizeof(fuse_native_hooks_t) of the side that filled it */
  void *ctx;          /* passed to every hook; never freed while the process lives */
  /* libfuse thread: bytes read into buf (0 = end of file), or < 0: serve it in JavaScript */
  int (*read)(void *ctx, uint64_t fh, char *buf, size_t len, int64_t offset);
  /* libfuse thread: 0 and *st filled when the answer is known, else < 0: ask JavaScript */
  int (*getattr)(void *ctx, const char *path, struct stat *st);
  /* libfuse thread: 1 when path is known to have no xattrs (ENODATA, empty list), else 0 */
  int (*no_xattrs)(void *ctx, const char *path);
  /* JS thread: a stat JavaScript answered with; dir is NULL when name is a whole path
   * (getattr). A readdir reply's entries end with a call whose name is NULL: the hook may
   * hold a lock from its first entry to then. */
  void (*stat_seen)(void *ctx, const char *dir, const char *name, size_t name_len,
                    const struct stat *st, uint32_t flags);
  /* libfuse thread: 0 when the whole listing was given to fill (".", "..", every entry; as
   * libfuse 2.9's fuse_fill_dir_t, offsets 0), else < 0: ask JavaScript (nothing filled) */
  int (*readdir)(void *ctx, const char *path, void *buf,
                 int (*fill)(void *buf, const char *name, const struct stat *st, off_t off));
  /* libfuse thread: 0 and *fh set when the open was answered, else < 0: ask JavaScript */
  int (*open)(void *ctx, const char *path, int flags, uint64_t *fh);
  /* libfuse thread: 0 when fh was released here, else < 0: ask JavaScript */
  int (*release)(void *ctx, uint64_t fh);
} fuse_native_hooks_t;
/* ---- end of fuse_native_hooks_t ---- */

/* stat_seen flags (the stat record's flags field in fuse-native's index.js) */
#define FUSE_NATIVE_STAT_NO_XATTRS 1
#define FUSE_NATIVE_STAT_NO_CACHE 2

#endif
