/*
 * bfs_native: the POSIX calls Node.js does not expose, as a plain-C N-API addon.
 *
 *   scanDirPacked readdir + fstatat(AT_SYMLINK_NOFOLLOW) of every child in one call
 *                 (src/native/index.ts turns it into scanDir's { names, stats })
 *   scanDirAsync  the same on the threadpool, sorted by name bytes (a Promise)
 *   readFilesAsync  open + fstat + read + fstat + flistxattr + close of a directory's small
 *                 files on the threadpool, into caller-provided arrays (a Promise)
 *   lstatRecord   lstat as an 18-double record
 *   fstatRecord   fstat as an 18-double record
 *   getXattrs     llistxattr + lgetxattr
 *   setXattr      lsetxattr
 *   dataRegions   lseek(SEEK_DATA / SEEK_HOLE) walk of an open file
 *   setTimes      utimensat with nanoseconds, optionally AT_SYMLINK_NOFOLLOW
 *   mknod         mknod(path, mode, makedev(major, minor))
 *   blockDeviceSize  ioctl(BLKGETSIZE64)
 *   blockDeviceSectorSize  ioctl(BLKSSZGET)
 *   flushBlockDevice ioctl(BLKFLSBUF)
 *   alignedBuffer a 4096-aligned Buffer (posix_memalign), for O_DIRECT reads
 *   adviseHugePages  madvise(MADV_HUGEPAGE) on a large buffer's 2 MiB-aligned part
 *   freezeFs / thawFs  ioctl(FIFREEZE / FITHAW)
 *   openat2, close, mkdirat, symlinkat, mknodat, linkat, renameat2, unlinkat, fstatatRecord,
 *   fchownat, fchmodat, utimensat, futimens, fsetxattr, setxattrat
 *                 directory-fd-relative calls, for a restore that never follows a
 *                 symlink it did not create (constants: atConstants)
 *   fadvise       posix_fadvise
 *   cachestat     cachestat(2): pages of a file range in the page cache
 *   flock         flock(LOCK_EX | LOCK_SH | LOCK_UN, always with LOCK_NB)
 *   blake3Into, blake3HasherNew / Update / Final / Reset
 *                 BLAKE3 (plain and keyed) with BLAKE3's official C implementation
 *                 (Debian's librust-blake3-dev, compiled in by binding.gyp)
 *
 * Every call but the two *Async ones is synchronous. Paths are accepted as JS strings (UTF-8 encoded)
 * or as Buffers/Uint8Arrays (raw bytes, used as they are). Failed system calls
 * throw an Error shaped like Node's own fs errors:
 *   { message: "ENOENT: no such file or directory, lgetxattr '/x'",
 *     code: "ENOENT", errno: -2, syscall: "lgetxattr", path: "/x" }
 * Bad arguments throw TypeError (code ERR_INVALID_ARG_TYPE / ERR_INVALID_ARG_VALUE)
 * or RangeError (code ERR_OUT_OF_RANGE), again as Node does.
 *
 * The record layout (STAT_FIELDS doubles per entry) is mirrored by
 * src/native/index.ts; keep the two in step.
 */
#include <node_api.h>

#include "aead.h"
#include "scrypt.h"
#include <sodium/utils.h>
#include "blake3.h"
#include "dirlist.h"
#include "findwalk.h"

#include <zstd.h>
#include <zdict.h>

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/limits.h>
#include <linux/openat2.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

/* ---- record layout ------------------------------------------------------ */

enum {
  R_DEV = 0,
  R_INO_HI = 1,
  R_INO_LO = 2,
  R_MODE = 3,
  R_NLINK = 4,
  R_UID = 5,
  R_GID = 6,
  R_RDEV_MAJOR = 7,
  R_RDEV_MINOR = 8,
  R_SIZE = 9,
  R_BLOCKS = 10,
  R_ATIME_SEC = 11,
  R_ATIME_NSEC = 12,
  R_MTIME_SEC = 13,
  R_MTIME_NSEC = 14,
  R_CTIME_SEC = 15,
  R_CTIME_NSEC = 16,
  R_ERRNO = 17,
  STAT_FIELDS = 18
};

/* Largest number a double holds exactly. */
#define MAX_SAFE_INTEGER 9007199254740991.0

static void fill_record(double *r, const struct stat *st) {
  uint64_t ino = (uint64_t)st->st_ino;
  r[R_DEV] = (double)st->st_dev;
  r[R_INO_HI] = (double)(uint32_t)(ino >> 32);
  r[R_INO_LO] = (double)(uint32_t)(ino & 0xffffffffu);
  r[R_MODE] = (double)st->st_mode;
  r[R_NLINK] = (double)st->st_nlink;
  r[R_UID] = (double)st->st_uid;
  r[R_GID] = (double)st->st_gid;
  r[R_RDEV_MAJOR] = (double)major(st->st_rdev);
  r[R_RDEV_MINOR] = (double)minor(st->st_rdev);
  r[R_SIZE] = (double)st->st_size;
  r[R_BLOCKS] = (double)st->st_blocks;
  r[R_ATIME_SEC] = (double)st->st_atim.tv_sec;
  r[R_ATIME_NSEC] = (double)st->st_atim.tv_nsec;
  r[R_MTIME_SEC] = (double)st->st_mtim.tv_sec;
  r[R_MTIME_NSEC] = (double)st->st_mtim.tv_nsec;
  r[R_CTIME_SEC] = (double)st->st_ctim.tv_sec;
  r[R_CTIME_NSEC] = (double)st->st_ctim.tv_nsec;
  r[R_ERRNO] = 0;
}

/* ---- error helpers ------------------------------------------------------ */

/* Throws a generic Error for an N-API failure, unless one is already pending. */
static void throw_napi_failure(napi_env env, const char *what) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  char msg[256];
  snprintf(msg, sizeof msg, "bfs_native: N-API call failed (%s): %s", what,
           info && info->error_message ? info->error_message : "unknown error");
  napi_throw_error(env, "ERR_BFS_NATIVE", msg);
}

#define NAPI_TRY(env, call, fail_label)      \
  do {                                       \
    if ((call) != napi_ok) {                 \
      throw_napi_failure((env), #call);      \
      goto fail_label;                       \
    }                                        \
  } while (0)

/* The errno's symbolic name, spelled as Node/libuv spell it. */
static const char *errno_name(int err) {
  switch (err) {
    /* glibc names 95 "EOPNOTSUPP"; Node (libuv) reports it as ENOTSUP. */
    case ENOTSUP: return "ENOTSUP";
    case EAGAIN: return "EAGAIN";
    default: break;
  }
  const char *n = strerrorname_np(err);
  return n ? n : "EUNKNOWN";
}

/* Appends a property to an object, ignoring (already reported) failures. */
static void set_named_string(napi_env env, napi_value obj, const char *key, const char *val) {
  napi_value v;
  if (napi_create_string_utf8(env, val, NAPI_AUTO_LENGTH, &v) == napi_ok)
    napi_set_named_property(env, obj, key, v);
}

/*
 * Throws Error("<CODE>: <description>, <syscall> '<path>'") with code, errno
 * (negative, as Node does), syscall and, when given, path. Invalid UTF-8 in
 * the path is shown as U+FFFD in message/path (the bytes are not lost to the
 * caller, who still holds its own Buffer).
 */
static void throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  const char *name = errno_name(err);
  char descbuf[128];
  const char *d = strerror_r(err, descbuf, sizeof descbuf);
  char desc[128];
  snprintf(desc, sizeof desc, "%s", d ? d : "unknown error");
  desc[0] = (char)tolower((unsigned char)desc[0]);

  size_t len = strlen(name) + strlen(desc) + strlen(syscall) + (path ? strlen(path) : 0) + 16;
  char *msg = malloc(len);
  if (!msg) {
    napi_throw_error(env, name, desc);
    return;
  }
  if (path)
    snprintf(msg, len, "%s: %s, %s '%s'", name, desc, syscall, path);
  else
    snprintf(msg, len, "%s: %s, %s", name, desc, syscall);

  napi_value code_v, msg_v, error, errno_v;
  if (napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &code_v) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) != napi_ok ||
      napi_create_error(env, code_v, msg_v, &error) != napi_ok) {
    free(msg);
    throw_napi_failure(env, "create error");
    return;
  }
  free(msg);
  if (napi_create_int32(env, -err, &errno_v) == napi_ok)
    napi_set_named_property(env, error, "errno", errno_v);
  set_named_string(env, error, "syscall", syscall);
  if (path) set_named_string(env, error, "path", path);
  napi_throw(env, error);
}

static void throw_type(napi_env env, const char *code, const char *msg) {
  napi_throw_type_error(env, code, msg);
}

static void throw_range(napi_env env, const char *msg) {
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
}

/* ---- argument helpers --------------------------------------------------- */

/*
 * A string or Buffer/Uint8Array argument as a freshly malloc'd NUL-terminated
 * byte string (caller frees). Strings are encoded as UTF-8; Buffers are taken
 * as raw bytes. Embedded NUL bytes are rejected as Node rejects them.
 */
static char *get_cstring_arg(napi_env env, napi_value v, const char *argname) {
  napi_valuetype t;
  char msg[160];
  if (napi_typeof(env, v, &t) != napi_ok) {
    throw_napi_failure(env, "napi_typeof");
    return NULL;
  }
  char *out = NULL;
  size_t len = 0;
  if (t == napi_string) {
    if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
      throw_napi_failure(env, "napi_get_value_string_utf8");
      return NULL;
    }
    out = malloc(len + 1);
    if (!out) {
      throw_errno(env, ENOMEM, "malloc", NULL);
      return NULL;
    }
    size_t got = 0;
    if (napi_get_value_string_utf8(env, v, out, len + 1, &got) != napi_ok) {
      free(out);
      throw_napi_failure(env, "napi_get_value_string_utf8");
      return NULL;
    }
    len = got;
  } else {
    bool is_ta = false;
    if (t == napi_object) napi_is_typedarray(env, v, &is_ta);
    napi_typedarray_type tat = napi_int8_array;
    void *data = NULL;
    if (is_ta && napi_get_typedarray_info(env, v, &tat, &len, &data, NULL, NULL) != napi_ok) {
      throw_napi_failure(env, "napi_get_typedarray_info");
      return NULL;
    }
    if (!is_ta || tat != napi_uint8_array) {
      snprintf(msg, sizeof msg,
               "The \"%s\" argument must be of type string or an instance of Buffer or Uint8Array",
               argname);
      throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
      return NULL;
    }
    out = malloc(len + 1);
    if (!out) {
      throw_errno(env, ENOMEM, "malloc", NULL);
      return NULL;
    }
    if (len) memcpy(out, data, len);
    out[len] = 0;
  }
  if (memchr(out, 0, len) != NULL) {
    free(out);
    snprintf(msg, sizeof msg,
             "The argument '%s' must be a string, Uint8Array, or Buffer without null bytes", argname);
    throw_type(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }
  return out;
}

/* A Buffer/Uint8Array argument's bytes, borrowed for the duration of the call. */
static bool get_bytes_arg(napi_env env, napi_value v, const char *argname, void **data, size_t *len) {
  bool is_ta = false;
  napi_valuetype t;
  napi_typedarray_type tat = napi_int8_array;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_object) napi_is_typedarray(env, v, &is_ta);
  if (is_ta && napi_get_typedarray_info(env, v, &tat, len, data, NULL, NULL) != napi_ok) {
    throw_napi_failure(env, "napi_get_typedarray_info");
    return false;
  }
  if (!is_ta || tat != napi_uint8_array) {
    char msg[160];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be an instance of Buffer or Uint8Array", argname);
    throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return true;
}

/* An integral number argument within [lo, hi]. */
static bool get_integer_arg(napi_env env, napi_value v, const char *argname, double lo, double hi,
                            double *out) {
  napi_valuetype t;
  char msg[200];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be of type number", argname);
    throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  double d = 0;
  napi_get_value_double(env, v, &d);
  if (!isfinite(d) || d != trunc(d) || d < lo || d > hi) {
    snprintf(msg, sizeof msg,
             "The value of \"%s\" is out of range. It must be an integer >= %.0f and <= %.0f. Received %.17g",
             argname, lo, hi, d);
    throw_range(env, msg);
    return false;
  }
  *out = d;
  return true;
}

static bool get_fd_arg(napi_env env, napi_value v, int *fd) {
  double d;
  if (!get_integer_arg(env, v, "fd", 0, 2147483647.0, &d)) return false;
  *fd = (int)d;
  return true;
}

static bool get_bool_arg(napi_env env, napi_value v, const char *argname, bool *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_boolean) {
    char msg[160];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be of type boolean", argname);
    throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  napi_get_value_bool(env, v, out);
  return true;
}

#define GET_ARGS(env, info, n)                                              \
  size_t argc = (n);                                                        \
  napi_value argv[(n) > 0 ? (n) : 1];                                       \
  if (napi_get_cb_info((env), (info), &argc, argv, NULL, NULL) != napi_ok) { \
    throw_napi_failure((env), "napi_get_cb_info");                          \
    return NULL;                                                            \
  }                                                                         \
  for (size_t i_ = argc; i_ < (size_t)(n); i_++) napi_get_undefined((env), &argv[i_])

/* A fresh Float64Array of `count` doubles copied from `src`. */
static napi_value make_f64_array(napi_env env, const double *src, size_t count) {
  void *data = NULL;
  napi_value ab, ta;
  NAPI_TRY(env, napi_create_arraybuffer(env, count * sizeof(double), &data, &ab), fail);
  if (count) memcpy(data, src, count * sizeof(double));
  NAPI_TRY(env, napi_create_typedarray(env, napi_float64_array, count, ab, 0, &ta), fail);
  return ta;
fail:
  return NULL;
}

/* ---- scanDir ------------------------------------------------------------ */

typedef struct {
  char *names;      /* all names back to back, no separators */
  size_t names_len, names_cap;
  uint32_t *name_end; /* end offset of name i in `names` (a directory's names fit in 4 GiB) */
  double *recs;     /* STAT_FIELDS doubles per entry */
  size_t n, cap;
} scan_t;

static void scan_free(scan_t *s) {
  free(s->names);
  free(s->name_end);
  free(s->recs);
}

/* Reads the directory into `s`; on failure returns the errno (and the failed call in *what),
 * `s` freed and zeroed. No N-API call: it also runs on a threadpool thread (scanDirAsync). */
static int scan_collect_raw(const char *path, scan_t *s, const char **what) {
  memset(s, 0, sizeof *s);
  /* O_NOATIME: reading the directory must not move its atime (a backup that changes its
   * source would see the change next time: format 2 rewrites the parent's piece). Not the
   * owner and no CAP_FOWNER: EPERM, then without it. */
  int fd = openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = openat(AT_FDCWD, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    *what = "opendir";
    return errno;
  }
  DIR *dir = fdopendir(fd);
  if (!dir) {
    int e = errno;
    close(fd);
    *what = "fdopendir";
    return e;
  }
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent *de = readdir(dir);
    if (!de) {
      if (errno) {
        err = errno;
        *what = "readdir";
        goto fail;
      }
      break;
    }
    const char *nm = de->d_name;
    if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0))) continue;
    size_t nl = strlen(nm);

    if (s->n == s->cap) {
      size_t ncap = s->cap ? s->cap * 2 : 256;
      uint32_t *ne = realloc(s->name_end, ncap * sizeof *ne);
      if (ne) s->name_end = ne;
      double *nr = ne ? realloc(s->recs, ncap * STAT_FIELDS * sizeof *nr) : NULL;
      if (!ne || !nr) {
        err = ENOMEM;
        *what = "malloc";
        goto fail;
      }
      s->recs = nr;
      s->cap = ncap;
    }
    if (s->names_len + nl > s->names_cap) {
      size_t ncap = s->names_cap ? s->names_cap * 2 : 8192;
      while (ncap < s->names_len + nl) ncap *= 2;
      char *nn = realloc(s->names, ncap);
      if (!nn || ncap > UINT32_MAX) {
        if (nn) s->names = nn;
        err = ENOMEM;
        *what = "malloc";
        goto fail;
      }
      s->names = nn;
      s->names_cap = ncap;
    }
    memcpy(s->names + s->names_len, nm, nl);
    s->names_len += nl;
    s->name_end[s->n] = (uint32_t)s->names_len;

    double *r = s->recs + s->n * STAT_FIELDS;
    struct stat st;
    if (fstatat(dirfd(dir), nm, &st, AT_SYMLINK_NOFOLLOW) == 0) {
      fill_record(r, &st);
    } else {
      memset(r, 0, STAT_FIELDS * sizeof *r);
      r[R_ERRNO] = (double)errno;
    }
    s->n++;
  }
  closedir(dir);
  return 0;
fail:
  closedir(dir);
  scan_free(s);
  memset(s, 0, sizeof *s);
  return err;
}

/* Bytewise name order (as Buffer.compare): for scan_sort's qsort_r. */
static int scan_cmp(const void *a, const void *b, void *arg) {
  const scan_t *s = arg;
  uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
  uint32_t si = i ? s->name_end[i - 1] : 0, sj = j ? s->name_end[j - 1] : 0;
  uint32_t li = s->name_end[i] - si, lj = s->name_end[j] - sj;
  int d = memcmp(s->names + si, s->names + sj, li < lj ? li : lj);
  return d ? d : (li < lj ? -1 : li > lj);
}

/* Puts a scan's entries in bytewise name order (the walk's order), off the main thread. 0 or ENOMEM. */
static int scan_sort(scan_t *s) {
  if (s->n < 2) return 0;
  uint32_t *idx = malloc(s->n * sizeof *idx);
  char *names = malloc(s->names_len ? s->names_len : 1);
  uint32_t *ends = malloc(s->n * sizeof *ends);
  double *recs = malloc(s->n * STAT_FIELDS * sizeof *recs);
  if (!idx || !names || !ends || !recs) {
    free(idx), free(names), free(ends), free(recs);
    return ENOMEM;
  }
  for (uint32_t i = 0; i < s->n; i++) idx[i] = i;
  qsort_r(idx, s->n, sizeof *idx, scan_cmp, s);
  size_t len = 0;
  for (size_t k = 0; k < s->n; k++) {
    uint32_t i = idx[k], st = i ? s->name_end[i - 1] : 0, l = s->name_end[i] - st;
    memcpy(names + len, s->names + st, l);
    len += l;
    ends[k] = (uint32_t)len;
    memcpy(recs + k * STAT_FIELDS, s->recs + (size_t)i * STAT_FIELDS, STAT_FIELDS * sizeof *recs);
  }
  free(idx);
  free(s->names), free(s->name_end), free(s->recs);
  s->names = names, s->name_end = ends, s->recs = recs;
  s->names_cap = s->names_len ? s->names_len : 1;
  s->cap = s->n;
  return 0;
}

/* Reads the directory into `s`; on failure throws and returns false. */
static bool scan_collect(napi_env env, const char *path, scan_t *s) {
  const char *what = NULL;
  int err = scan_collect_raw(path, s, &what);
  if (err) throw_errno(env, err, what, strcmp(what, "malloc") ? path : NULL);
  return err == 0;
}

/* The { blob, ends, stats } object of a scan (scanDirPacked's result), or NULL (thrown). */
static napi_value scan_result(napi_env env, scan_t *s) {
  napi_value obj, blob, ends_ab, ends, stats;
  void *data = NULL;
  NAPI_TRY(env, napi_create_object(env, &obj), fail);
  NAPI_TRY(env, napi_create_buffer_copy(env, s->names_len, s->names_len ? s->names : "", NULL, &blob), fail);
  NAPI_TRY(env, napi_create_arraybuffer(env, s->n * sizeof(uint32_t), &data, &ends_ab), fail);
  if (s->n) memcpy(data, s->name_end, s->n * sizeof(uint32_t));
  NAPI_TRY(env, napi_create_typedarray(env, napi_uint32_array, s->n, ends_ab, 0, &ends), fail);
  stats = make_f64_array(env, s->recs, s->n * STAT_FIELDS);
  if (!stats) goto fail;
  NAPI_TRY(env, napi_set_named_property(env, obj, "blob", blob), fail);
  NAPI_TRY(env, napi_set_named_property(env, obj, "ends", ends), fail);
  NAPI_TRY(env, napi_set_named_property(env, obj, "stats", stats), fail);
  return obj;
fail:
  return NULL;
}

/*
 * scanDirPacked(dirPath) -> { blob: Buffer, ends: Uint32Array, stats: Float64Array }:
 * all names in one Buffer, name i being blob[ends[i-1] .. ends[i]) (ends[-1] = 0).
 * One native Buffer per directory instead of one per name: a napi_create_buffer_copy
 * per name costs a malloc'd backing store, an ArrayBuffer and GC sweeping each,
 * which doubled the user CPU of a tree walk (native-notes/native-addon.md).
 * src/native/index.ts slices the blob into per-name Buffers (views, no copies).
 * scanDirPacked(dirPath, true): the entries in bytewise name order, as scanDirAsync gives them
 * (a sort in C: the format 2 walk's sort in JavaScript, Buffer.compare per comparison, cost
 * ~0.1 s of a no-change backup of the Linux tree).
 */
static napi_value js_scan_dir_packed(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 2);
  bool sorted = false;
  if (napi_get_value_bool(env, argv[1], &sorted) != napi_ok) sorted = false; /* (absent: unsorted) */
  char *path = get_cstring_arg(env, argv[0], "dirPath");
  if (!path) return NULL;
  scan_t s;
  napi_value result = NULL;
  if (scan_collect(env, path, &s)) {
    int err = sorted ? scan_sort(&s) : 0;
    if (err) throw_errno(env, err, "malloc", NULL);
    else result = scan_result(env, &s);
  }
  scan_free(&s);
  free(path);
  return result;
}

/* ---- on the threadpool: scanDirAsync, readFilesAsync ----------------------- */

/* Rejects `deferred` with the Error throw_errno would throw. */
static void reject_errno(napi_env env, napi_deferred deferred, int err, const char *syscall, const char *path) {
  napi_value e;
  throw_errno(env, err, syscall, path);
  if (napi_get_and_clear_last_exception(env, &e) == napi_ok) napi_reject_deferred(env, deferred, e);
}

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *path;
  scan_t s;
  int err;
  const char *what;
} scan_job_t;

static void scan_job_execute(napi_env env, void *data) {
  (void)env;
  scan_job_t *j = data;
  j->err = scan_collect_raw(j->path, &j->s, &j->what);
  if (!j->err && (j->err = scan_sort(&j->s)) != 0) {
    j->what = "malloc";
    scan_free(&j->s);
    memset(&j->s, 0, sizeof j->s);
  }
}

static void scan_job_complete(napi_env env, napi_status status, void *data) {
  scan_job_t *j = data;
  if (status != napi_ok) {
    reject_errno(env, j->deferred, ECANCELED, "scandir", j->path);
  } else if (j->err) {
    reject_errno(env, j->deferred, j->err, j->what, strcmp(j->what, "malloc") ? j->path : NULL);
  } else {
    napi_value r = scan_result(env, &j->s), e;
    if (r) napi_resolve_deferred(env, j->deferred, r);
    else if (napi_get_and_clear_last_exception(env, &e) == napi_ok) napi_reject_deferred(env, j->deferred, e);
  }
  napi_delete_async_work(env, j->work);
  scan_free(&j->s);
  free(j->path);
  free(j);
}

/* scanDirAsync(dirPath) -> Promise of scanDirPacked's result, the directory read on the
 * threadpool and its entries put in bytewise name order there. */
static napi_value js_scan_dir_async(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  char *path = get_cstring_arg(env, argv[0], "dirPath");
  if (!path) return NULL;
  scan_job_t *j = calloc(1, sizeof *j);
  napi_value promise, name;
  if (!j) {
    free(path);
    throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  j->path = path;
  NAPI_TRY(env, napi_create_promise(env, &j->deferred, &promise), fail);
  NAPI_TRY(env, napi_create_string_utf8(env, "bfs.scanDir", NAPI_AUTO_LENGTH, &name), fail);
  NAPI_TRY(env, napi_create_async_work(env, NULL, name, scan_job_execute, scan_job_complete, j, &j->work), fail);
  NAPI_TRY(env, napi_queue_async_work(env, j->work), fail);
  return promise;
fail:
  /* (a promise made before the failure is dropped unsettled: the call threw) */
  free(path);
  free(j);
  return NULL;
}

/*
 * readFilesAsync(dirPath, blob, ends, slots, out, recs, info) -> Promise<void>: the small
 * regular files of one directory read on the threadpool, names as scanDirPacked gives them
 * (name i = blob[ends[i-1] .. ends[i])). Per file i: openat(dir, name, O_RDONLY|O_NOATIME),
 * fstat (st1), the data (st1.st_size bytes) into out at block slots[2i] (4 KiB blocks),
 * zero-filled to the end of its last block, fstat again (st2), flistxattr's size, close.
 * recs: 2 × STAT_FIELDS doubles per file (st1, st2). info: 5 int32 per file: errno, the step
 * it failed at (RF_*), bytes read, flags (RF_XATTRS, RF_SHORT), and a mask of the all-zero
 * blocks (bit b: block b of the file). A file not read whole here (any failure, not regular,
 * larger than its slot of slots[2i+1] blocks or more than 32 blocks, sparse) says why in
 * info and is left to the caller's general path. The caller keeps every argument alive and
 * untouched until the promise settles (they are referenced here too).
 */
enum { RF_OK = 0, RF_DIR = 1, RF_OPEN = 2, RF_FSTAT = 3, RF_READ = 4, RF_BIG = 5, RF_SPARSE = 6, RF_NOTREG = 7 };
enum { RF_XATTRS = 1, RF_SHORT = 2 };
#define RF_INFO 5
#define RF_MAX_BLOCKS 32

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  char *dir;
  napi_ref refs[6];
  const char *blob;
  size_t blob_len;
  const uint32_t *ends;
  const uint32_t *slots;
  uint8_t *out;
  size_t out_len;
  double *recs;
  int32_t *info;
  size_t n;
} rf_job_t;

static void rf_one(int dfd, rf_job_t *j, size_t i, char *name) {
  int32_t *inf = j->info + i * RF_INFO;
  double *r1 = j->recs + i * 2 * STAT_FIELDS, *r2 = r1 + STAT_FIELDS;
  memset(inf, 0, RF_INFO * sizeof *inf);
  int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOATIME);
  if (fd < 0 && errno == EPERM) fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    inf[0] = errno;
    inf[1] = RF_OPEN;
    return;
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    inf[0] = errno;
    inf[1] = RF_FSTAT;
    goto out;
  }
  fill_record(r1, &st);
  if (!S_ISREG(st.st_mode)) {
    inf[1] = RF_NOTREG;
    goto out;
  }
  uint64_t first = j->slots[2 * i], cap = j->slots[2 * i + 1];
  uint64_t size = (uint64_t)st.st_size, blocks = (size + 4095) / 4096;
  if (blocks > cap || blocks > RF_MAX_BLOCKS || (first + blocks) * 4096 > j->out_len) {
    inf[1] = RF_BIG;
    goto out;
  }
  if ((uint64_t)st.st_blocks * 512 < size) {
    inf[1] = RF_SPARSE;
    goto out;
  }
  uint8_t *dst = j->out + first * 4096;
  uint64_t got = 0;
  while (got < size) {
    ssize_t k = pread(fd, dst + got, size - got, (off_t)got);
    if (k < 0) {
      if (errno == EINTR) continue;
      inf[0] = errno;
      inf[1] = RF_READ;
      goto out;
    }
    if (k == 0) break;
    got += (uint64_t)k;
  }
  if (got < size) inf[3] |= RF_SHORT;
  memset(dst + got, 0, blocks * 4096 - got);
  inf[2] = (int32_t)got;
  uint32_t zero = 0;
  for (uint64_t b = 0; b < blocks; b++) {
    const uint64_t *w = (const uint64_t *)(dst + b * 4096);
    uint64_t acc = 0;
    for (size_t k = 0; k < 512; k++) acc |= w[k];
    if (!acc) zero |= 1u << b;
  }
  inf[4] = (int32_t)zero;
  if (fstat(fd, &st) != 0) {
    inf[0] = errno;
    inf[1] = RF_FSTAT;
    goto out;
  }
  fill_record(r2, &st);
  ssize_t xl = flistxattr(fd, NULL, 0);
  if (xl != 0) inf[3] |= RF_XATTRS; /* any error too: the caller's getXattrs decides */
out:
  close(fd);
}

static void rf_job_execute(napi_env env, void *data) {
  (void)env;
  rf_job_t *j = data;
  int dfd = openat(AT_FDCWD, j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
  char name[NAME_MAX + 1];
  uint32_t start = 0;
  for (size_t i = 0; i < j->n; i++) {
    uint32_t end = j->ends[i];
    if (dfd < 0) {
      memset(j->info + i * RF_INFO, 0, RF_INFO * sizeof *j->info);
      j->info[i * RF_INFO] = errno;
      j->info[i * RF_INFO + 1] = RF_DIR;
    } else if (end < start || end > j->blob_len || end - start > NAME_MAX || end == start) {
      memset(j->info + i * RF_INFO, 0, RF_INFO * sizeof *j->info);
      j->info[i * RF_INFO] = ENAMETOOLONG;
      j->info[i * RF_INFO + 1] = RF_OPEN;
    } else {
      memcpy(name, j->blob + start, end - start);
      name[end - start] = 0;
      if (memchr(name, 0, end - start)) {
        memset(j->info + i * RF_INFO, 0, RF_INFO * sizeof *j->info);
        j->info[i * RF_INFO] = EINVAL;
        j->info[i * RF_INFO + 1] = RF_OPEN;
      } else {
        rf_one(dfd, j, i, name);
      }
    }
    start = end;
  }
  if (dfd >= 0) close(dfd);
}

static void rf_job_complete(napi_env env, napi_status status, void *data) {
  rf_job_t *j = data;
  napi_value undef;
  if (status != napi_ok) {
    reject_errno(env, j->deferred, ECANCELED, "readFiles", j->dir);
  } else {
    napi_get_undefined(env, &undef);
    napi_resolve_deferred(env, j->deferred, undef);
  }
  for (size_t k = 0; k < 6; k++)
    if (j->refs[k]) napi_delete_reference(env, j->refs[k]);
  napi_delete_async_work(env, j->work);
  free(j->dir);
  free(j);
}

/* A typed array argument of the given type: its data and element count. */
static bool get_typed_arg(napi_env env, napi_value v, napi_typedarray_type want, const char *argname, void **data, size_t *len) {
  bool is_ta = false;
  napi_typedarray_type tat = napi_int8_array;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_object) napi_is_typedarray(env, v, &is_ta);
  if (is_ta && napi_get_typedarray_info(env, v, &tat, len, data, NULL, NULL) != napi_ok) {
    throw_napi_failure(env, "napi_get_typedarray_info");
    return false;
  }
  if (!is_ta || tat != want) {
    char msg[160];
    snprintf(msg, sizeof msg, "The \"%s\" argument has the wrong type", argname);
    throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  return true;
}

static napi_value js_read_files_async(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 7);
  rf_job_t *j = calloc(1, sizeof *j);
  if (!j) {
    throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  void *p;
  size_t ends_n, slots_n, recs_n, info_n;
  napi_value promise, name;
  j->dir = get_cstring_arg(env, argv[0], "dirPath");
  if (!j->dir) goto fail;
  if (!get_bytes_arg(env, argv[1], "blob", &p, &j->blob_len)) goto fail;
  j->blob = p;
  if (!get_typed_arg(env, argv[2], napi_uint32_array, "ends", &p, &ends_n)) goto fail;
  j->ends = p;
  if (!get_typed_arg(env, argv[3], napi_uint32_array, "slots", &p, &slots_n)) goto fail;
  j->slots = p;
  if (!get_bytes_arg(env, argv[4], "out", &p, &j->out_len)) goto fail;
  j->out = p;
  if (!get_typed_arg(env, argv[5], napi_float64_array, "recs", &p, &recs_n)) goto fail;
  j->recs = p;
  if (!get_typed_arg(env, argv[6], napi_int32_array, "info", &p, &info_n)) goto fail;
  j->info = p;
  j->n = ends_n;
  if (slots_n < 2 * j->n || recs_n < 2 * STAT_FIELDS * j->n || info_n < RF_INFO * j->n) {
    throw_range(env, "readFilesAsync: slots, recs or info too short for the names");
    goto fail;
  }
  for (size_t k = 0; k < 6; k++) NAPI_TRY(env, napi_create_reference(env, argv[k + 1], 1, &j->refs[k]), fail);
  NAPI_TRY(env, napi_create_promise(env, &j->deferred, &promise), fail);
  NAPI_TRY(env, napi_create_string_utf8(env, "bfs.readFiles", NAPI_AUTO_LENGTH, &name), fail);
  NAPI_TRY(env, napi_create_async_work(env, NULL, name, rf_job_execute, rf_job_complete, j, &j->work), fail);
  NAPI_TRY(env, napi_queue_async_work(env, j->work), fail);
  return promise;
fail:
  for (size_t k = 0; k < 6; k++)
    if (j->refs[k]) napi_delete_reference(env, j->refs[k]);
  free(j->dir);
  free(j);
  return NULL;
}

/* ---- lstatRecord / fstatRecord ------------------------------------------ */

static napi_value js_lstat_record(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  char *path = get_cstring_arg(env, argv[0], "path");
  if (!path) return NULL;
  struct stat st;
  napi_value result = NULL;
  if (lstat(path, &st) != 0) {
    throw_errno(env, errno, "lstat", path);
  } else {
    double r[STAT_FIELDS];
    fill_record(r, &st);
    result = make_f64_array(env, r, STAT_FIELDS);
  }
  free(path);
  return result;
}

static napi_value js_fstat_record(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  int fd;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    throw_errno(env, errno, "fstat", NULL);
    return NULL;
  }
  double r[STAT_FIELDS];
  fill_record(r, &st);
  return make_f64_array(env, r, STAT_FIELDS);
}

/* ---- xattrs ------------------------------------------------------------- */

/* Linux caps a name list and a value at 64 KiB (XATTR_LIST_MAX / XATTR_SIZE_MAX). */
#define XATTR_BUF 65536

static napi_value js_get_xattrs(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  char *path = get_cstring_arg(env, argv[0], "path");
  if (!path) return NULL;

  napi_value result = NULL, arr;
  char *list = NULL, *value = NULL;
  size_t list_cap = XATTR_BUF, value_cap = XATTR_BUF;
  ssize_t list_len;

  list = malloc(list_cap);
  value = malloc(value_cap);
  if (!list || !value) {
    throw_errno(env, ENOMEM, "malloc", NULL);
    goto done;
  }

  for (int attempt = 0;; attempt++) {
    list_len = llistxattr(path, list, list_cap);
    if (list_len >= 0) break;
    if (errno == ENOTSUP) {
      list_len = 0; /* filesystem without xattrs: same as "none" */
      break;
    }
    if (errno == ERANGE && attempt < 8) {
      /* Cannot happen with a 64 KiB buffer on Linux, but be safe. */
      ssize_t need = llistxattr(path, NULL, 0);
      if (need < 0) continue;
      char *nl = realloc(list, (size_t)need + 1);
      if (!nl) {
        throw_errno(env, ENOMEM, "malloc", NULL);
        goto done;
      }
      list = nl;
      list_cap = (size_t)need + 1;
      continue;
    }
    throw_errno(env, errno, "llistxattr", path);
    goto done;
  }

  NAPI_TRY(env, napi_create_array(env, &arr), done);
  uint32_t count = 0;
  for (ssize_t off = 0; off < list_len;) {
    const char *name = list + off;
    size_t nl = strnlen(name, (size_t)(list_len - off));
    off += (ssize_t)nl + 1;
    if (nl == 0) continue;

    ssize_t vlen;
    for (int attempt = 0;; attempt++) {
      vlen = lgetxattr(path, name, value, value_cap);
      if (vlen >= 0) break;
      if (errno == ERANGE && attempt < 8) {
        ssize_t need = lgetxattr(path, name, NULL, 0);
        if (need < 0) continue;
        char *nv = realloc(value, (size_t)need + 1);
        if (!nv) {
          throw_errno(env, ENOMEM, "malloc", NULL);
          goto done;
        }
        value = nv;
        value_cap = (size_t)need + 1;
        continue;
      }
      break;
    }
    if (vlen < 0) {
      /* Removed between list and get, or a listed name this fs will not read back. */
      if (errno == ENODATA || errno == ENOTSUP) continue;
      throw_errno(env, errno, "lgetxattr", path);
      goto done;
    }

    napi_value pair, nb, vb;
    NAPI_TRY(env, napi_create_buffer_copy(env, nl, name, NULL, &nb), done);
    NAPI_TRY(env, napi_create_buffer_copy(env, (size_t)vlen, value, NULL, &vb), done);
    NAPI_TRY(env, napi_create_array_with_length(env, 2, &pair), done);
    NAPI_TRY(env, napi_set_element(env, pair, 0, nb), done);
    NAPI_TRY(env, napi_set_element(env, pair, 1, vb), done);
    NAPI_TRY(env, napi_set_element(env, arr, count++, pair), done);
  }
  result = arr;

done:
  free(list);
  free(value);
  free(path);
  return result;
}

static napi_value js_set_xattr(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 3);
  napi_value result = NULL;
  char *name = NULL;
  void *data = NULL;
  size_t len = 0;
  char *path = get_cstring_arg(env, argv[0], "path");
  if (!path) return NULL;
  name = get_cstring_arg(env, argv[1], "name");
  if (!name) goto done;
  if (!get_bytes_arg(env, argv[2], "value", &data, &len)) goto done;
  if (lsetxattr(path, name, len ? data : "", len, 0) != 0) {
    throw_errno(env, errno, "lsetxattr", path);
    goto done;
  }
  napi_get_undefined(env, &result);
done:
  free(name);
  free(path);
  return result;
}

/* ---- dataRegions -------------------------------------------------------- */

static napi_value js_data_regions(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 2);
  int fd;
  double size_d;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  if (!get_integer_arg(env, argv[1], "sizeBytes", 0, MAX_SAFE_INTEGER, &size_d)) return NULL;
  off_t size = (off_t)size_d;

  /* Regions as int64 pairs; a file rarely has many, grow as needed. */
  off_t *reg = NULL;
  size_t nreg = 0, regcap = 0;
  napi_value result = NULL;

  off_t saved = lseek(fd, 0, SEEK_CUR);
  if (saved < 0) {
    throw_errno(env, errno, "lseek", NULL);
    return NULL;
  }

  off_t pos = 0;
  bool failed = false;
  while (pos < size) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    off_t hole;
    if (data < 0) {
      int e = errno;
      if (e == ENXIO) break; /* no data at or after pos */
      if (e == EINVAL || e == EOPNOTSUPP) {
        /* SEEK_DATA not supported here: treat the rest as data. */
        data = pos;
        hole = size;
        goto add;
      }
      throw_errno(env, e, "lseek", NULL);
      failed = true;
      break;
    }
    if (data >= size) break;
    hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) {
      int e = errno;
      if (e == ENXIO) {
        hole = size; /* file shrank under us; clamp */
      } else if (e == EINVAL || e == EOPNOTSUPP) {
        hole = size;
      } else {
        throw_errno(env, e, "lseek", NULL);
        failed = true;
        break;
      }
    }
    if (hole > size) hole = size;
  add:
    if (hole <= data) break; /* defensive: never loop without progress */
    if (nreg > 0 && reg[nreg - 1] == data) {
      reg[nreg - 1] = hole; /* merge touching regions */
    } else {
      if (nreg + 2 > regcap) {
        size_t ncap = regcap ? regcap * 2 : 16;
        off_t *nr = realloc(reg, ncap * sizeof *nr);
        if (!nr) {
          throw_errno(env, ENOMEM, "malloc", NULL);
          failed = true;
          break;
        }
        reg = nr;
        regcap = ncap;
      }
      reg[nreg++] = data;
      reg[nreg++] = hole;
    }
    pos = hole;
  }

  /* Put the file offset back where the caller had it. */
  if (lseek(fd, saved, SEEK_SET) < 0 && !failed) {
    throw_errno(env, errno, "lseek", NULL);
    failed = true;
  }

  if (!failed) {
    napi_value arr;
    NAPI_TRY(env, napi_create_array_with_length(env, nreg, &arr), out);
    for (size_t i = 0; i < nreg; i++) {
      napi_value v;
      NAPI_TRY(env, napi_create_double(env, (double)reg[i], &v), out);
      NAPI_TRY(env, napi_set_element(env, arr, (uint32_t)i, v), out);
    }
    result = arr;
  }
out:
  free(reg);
  return result;
}

/* ---- setTimes ----------------------------------------------------------- */

static napi_value js_set_times(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 6);
  double as, an, ms, mn;
  bool nofollow;
  /* time_t is 64-bit; keep seconds within what a double holds exactly. */
  if (!get_integer_arg(env, argv[1], "atimeSec", -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, &as) ||
      !get_integer_arg(env, argv[2], "atimeNsec", 0, 999999999, &an) ||
      !get_integer_arg(env, argv[3], "mtimeSec", -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, &ms) ||
      !get_integer_arg(env, argv[4], "mtimeNsec", 0, 999999999, &mn) ||
      !get_bool_arg(env, argv[5], "nofollow", &nofollow))
    return NULL;
  char *path = get_cstring_arg(env, argv[0], "path");
  if (!path) return NULL;
  struct timespec ts[2];
  ts[0].tv_sec = (time_t)as;
  ts[0].tv_nsec = (long)an;
  ts[1].tv_sec = (time_t)ms;
  ts[1].tv_nsec = (long)mn;
  napi_value result = NULL;
  if (utimensat(AT_FDCWD, path, ts, nofollow ? AT_SYMLINK_NOFOLLOW : 0) != 0)
    throw_errno(env, errno, "utimensat", path);
  else
    napi_get_undefined(env, &result);
  free(path);
  return result;
}

/* ---- mknod -------------------------------------------------------------- */

static napi_value js_mknod(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  double mode, maj, min;
  if (!get_integer_arg(env, argv[1], "mode", 0, 4294967295.0, &mode) ||
      !get_integer_arg(env, argv[2], "rdevMajor", 0, 4294967295.0, &maj) ||
      !get_integer_arg(env, argv[3], "rdevMinor", 0, 4294967295.0, &min))
    return NULL;
  char *path = get_cstring_arg(env, argv[0], "path");
  if (!path) return NULL;
  napi_value result = NULL;
  if (mknod(path, (mode_t)mode, makedev((unsigned int)maj, (unsigned int)min)) != 0)
    throw_errno(env, errno, "mknod", path);
  else
    napi_get_undefined(env, &result);
  free(path);
  return result;
}

/* ---- directory-fd-relative calls ----------------------------------------- */
/*
 * The *at family, for a restore that never follows a symlink it did not create
 * (src/repo/restore.ts): every path is resolved relative to a directory fd, or to the
 * current directory when the fd is AT_FDCWD (-100). A path that is not absolute and
 * has one component is looked up in that directory only; openat2 with RESOLVE_* flags
 * decides how longer paths may be resolved. Errors carry the path as given (usually
 * relative). native-notes/native-addon.md, "Directory-fd-relative calls", says why
 * each call is made the way it is.
 */

/* Newer than the kernel headers this is built against (Debian 12: 6.1); the numbers
 * are the same on every architecture that uses the common table (x86_64, arm64, ...). */
#ifndef __NR_fchmodat2
#define __NR_fchmodat2 452
#endif
#ifndef __NR_setxattrat
#define __NR_setxattrat 463
#endif

/* struct xattr_args of <linux/xattr.h> (6.13). */
struct bfs_xattr_args {
  uint64_t value;
  uint32_t size;
  uint32_t flags;
};

/* A directory fd argument: a descriptor >= 0, or AT_FDCWD. */
static bool get_dirfd_arg(napi_env env, napi_value v, const char *argname, int *fd) {
  napi_valuetype t;
  double d = 0;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_number &&
      napi_get_value_double(env, v, &d) == napi_ok && d == (double)AT_FDCWD) {
    *fd = AT_FDCWD;
    return true;
  }
  if (!get_integer_arg(env, v, argname, 0, 2147483647.0, &d)) return false;
  *fd = (int)d;
  return true;
}

static bool get_flags_arg(napi_env env, napi_value v, const char *argname, unsigned int *out) {
  double d;
  if (!get_integer_arg(env, v, argname, 0, 4294967295.0, &d)) return false;
  *out = (unsigned int)d;
  return true;
}

/* Four integers (atimeSec, atimeNsec, mtimeSec, mtimeNsec) from argv[0..3]. */
static bool get_times_args(napi_env env, napi_value *argv, struct timespec ts[2]) {
  double as, an, ms, mn;
  if (!get_integer_arg(env, argv[0], "atimeSec", -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, &as) ||
      !get_integer_arg(env, argv[1], "atimeNsec", 0, 999999999, &an) ||
      !get_integer_arg(env, argv[2], "mtimeSec", -MAX_SAFE_INTEGER, MAX_SAFE_INTEGER, &ms) ||
      !get_integer_arg(env, argv[3], "mtimeNsec", 0, 999999999, &mn))
    return false;
  ts[0].tv_sec = (time_t)as;
  ts[0].tv_nsec = (long)an;
  ts[1].tv_sec = (time_t)ms;
  ts[1].tv_nsec = (long)mn;
  return true;
}

static napi_value make_int(napi_env env, int v) {
  napi_value r;
  NAPI_TRY(env, napi_create_int32(env, v, &r), fail);
  return r;
fail:
  return NULL;
}

static napi_value make_undefined(napi_env env) {
  napi_value r;
  napi_get_undefined(env, &r);
  return r;
}

/*
 * What openat2(RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH) guarantees, done one component at
 * a time, for a kernel without openat2 (before 5.6, or a seccomp filter answering
 * ENOSYS): each directory on the way is opened O_PATH | O_NOFOLLOW | O_DIRECTORY
 * relative to the one before, so no symlink is ever followed; an absolute path or a
 * ".." component is refused with EXDEV (stricter than RESOLVE_BENEATH, which allows a
 * ".." that stays below). A symlink on the way fails with ELOOP as openat2 says.
 * Returns the fd, or -1 with errno set.
 */
static int open_beneath_walk(int dirfd, const char *path, int flags, mode_t mode) {
  if (path[0] == '/') {
    errno = EXDEV;
    return -1;
  }
  if (path[0] == 0) {
    errno = ENOENT;
    return -1;
  }
  char *copy = strdup(path);
  if (!copy) {
    errno = ENOMEM;
    return -1;
  }
  int cur = dirfd, result = -1, err = 0;
  char *p = copy;
  for (;;) {
    char *next = strchr(p, '/');
    if (next) {
      *next++ = 0;
      while (*next == '/') next++;
      if (*next == 0) next = NULL; /* "a/b/": b is the last component (it must be a directory) */
    }
    if (!strcmp(p, "..")) {
      err = EXDEV;
      break;
    }
    if (!next) {
      bool want_path_nofollow = (flags & O_PATH) && (flags & O_NOFOLLOW);
      int fd = openat(cur, p, flags | O_NOFOLLOW | O_CLOEXEC, mode);
      if (fd < 0) {
        err = errno;
        /* O_DIRECTORY | O_NOFOLLOW on a symlink says ENOTDIR; openat2 says ELOOP. */
        struct stat st;
        if (err == ENOTDIR && fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
        break;
      }
      if ((flags & O_PATH) && !want_path_nofollow) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISLNK(st.st_mode)) {
          close(fd);
          err = ELOOP;
          break;
        }
      }
      result = fd;
      break;
    }
    int nfd = openat(cur, p, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (nfd < 0) {
      err = errno;
      struct stat st;
      if (err == ENOTDIR && fstatat(cur, p, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
      break;
    }
    if (cur != dirfd) close(cur);
    cur = nfd;
    p = next;
  }
  if (cur != dirfd) close(cur);
  free(copy);
  if (result < 0) errno = err;
  return result;
}

#define RESOLVE_WALKABLE (RESOLVE_NO_SYMLINKS | RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)

/*
 * openat2(dirFd, path, flags | O_CLOEXEC, mode, resolve[, quietErrno]) -> fd, or -quietErrno
 * when the call fails with that errno (an expected outcome, such as EEXIST for a restore
 * with --overwrite: a thrown error costs ~30 us of Error and stack capture per file).
 */
static napi_value js_openat2(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 6);
  int dirfd;
  unsigned int flags, resolve;
  double mode, quiet = 0;
  napi_valuetype qt;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_flags_arg(env, argv[2], "flags", &flags) ||
      !get_integer_arg(env, argv[3], "mode", 0, 07777, &mode) || !get_flags_arg(env, argv[4], "resolve", &resolve))
    return NULL;
  if (napi_typeof(env, argv[5], &qt) == napi_ok && qt != napi_undefined &&
      !get_integer_arg(env, argv[5], "quietErrno", 1, 4095, &quiet))
    return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (uint64_t)(flags | O_CLOEXEC);
  /* openat2 rejects a mode without O_CREAT / O_TMPFILE (EINVAL), unlike openat. */
  how.mode = (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (uint64_t)mode : 0;
  how.resolve = resolve;
  long fd;
  /* EAGAIN: a rename raced a ".." lookup under RESOLVE_BENEATH; the kernel asks for a retry. */
  for (int attempt = 0;; attempt++) {
    fd = syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0 || errno != EAGAIN || attempt >= 16) break;
  }
  if (fd < 0 && errno == ENOSYS && (resolve & RESOLVE_NO_SYMLINKS) && (resolve & RESOLVE_BENEATH) &&
      !(resolve & ~RESOLVE_WALKABLE))
    fd = open_beneath_walk(dirfd, path, (int)flags, (mode_t)how.mode);
  napi_value result = NULL;
  if (fd < 0 && quiet > 0 && errno == (int)quiet) result = make_int(env, -(int)quiet);
  else if (fd < 0) throw_errno(env, errno, "openat2", path);
  else result = make_int(env, (int)fd);
  free(path);
  return result;
}

/* openBeneathWalk(dirFd, path, flags, mode): the openat2 fallback above, callable on its own (for tests). */
static napi_value js_open_beneath_walk(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  int dirfd;
  unsigned int flags;
  double mode;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_flags_arg(env, argv[2], "flags", &flags) ||
      !get_integer_arg(env, argv[3], "mode", 0, 07777, &mode))
    return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  int fd = open_beneath_walk(dirfd, path, (int)flags, (mode_t)mode);
  napi_value result = NULL;
  if (fd < 0) throw_errno(env, errno, "openat", path);
  else result = make_int(env, fd);
  free(path);
  return result;
}

/*
 * close(fd). Node's fs.closeSync works on any fd, but in a worker thread it warns about
 * an fd that thread's fs did not open ("closed but not opened in unmanaged mode").
 * EINTR is not retried: on Linux the fd is closed anyway.
 */
static napi_value js_close(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  int fd;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  if (close(fd) != 0 && errno != EINTR) {
    throw_errno(env, errno, "close", NULL);
    return NULL;
  }
  return make_undefined(env);
}

/* mkdirat(dirFd, path, mode) */
static napi_value js_mkdirat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 3);
  int dirfd;
  double mode;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_integer_arg(env, argv[2], "mode", 0, 07777, &mode))
    return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  napi_value result = NULL;
  if (mkdirat(dirfd, path, (mode_t)mode) != 0) throw_errno(env, errno, "mkdirat", path);
  else result = make_undefined(env);
  free(path);
  return result;
}

/* symlinkat(target, dirFd, path) */
static napi_value js_symlinkat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 3);
  int dirfd;
  if (!get_dirfd_arg(env, argv[1], "dirFd", &dirfd)) return NULL;
  char *target = get_cstring_arg(env, argv[0], "target");
  if (!target) return NULL;
  char *path = get_cstring_arg(env, argv[2], "path");
  napi_value result = NULL;
  if (!path) goto done;
  if (symlinkat(target, dirfd, path) != 0) throw_errno(env, errno, "symlinkat", path);
  else result = make_undefined(env);
done:
  free(path);
  free(target);
  return result;
}

/* mknodat(dirFd, path, mode, rdevMajor, rdevMinor) */
static napi_value js_mknodat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 5);
  int dirfd;
  double mode, maj, min;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) ||
      !get_integer_arg(env, argv[2], "mode", 0, 4294967295.0, &mode) ||
      !get_integer_arg(env, argv[3], "rdevMajor", 0, 4294967295.0, &maj) ||
      !get_integer_arg(env, argv[4], "rdevMinor", 0, 4294967295.0, &min))
    return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  napi_value result = NULL;
  if (mknodat(dirfd, path, (mode_t)mode, makedev((unsigned int)maj, (unsigned int)min)) != 0)
    throw_errno(env, errno, "mknodat", path);
  else
    result = make_undefined(env);
  free(path);
  return result;
}

/* Shared shape of linkat / renameat2: (oldDirFd, oldPath, newDirFd, newPath, flags). */
static napi_value two_path_call(napi_env env, napi_callback_info info, bool is_link) {
  GET_ARGS(env, info, 5);
  int olddir, newdir;
  unsigned int flags;
  if (!get_dirfd_arg(env, argv[0], "oldDirFd", &olddir) || !get_dirfd_arg(env, argv[2], "newDirFd", &newdir) ||
      !get_flags_arg(env, argv[4], "flags", &flags))
    return NULL;
  char *oldp = get_cstring_arg(env, argv[1], "oldPath");
  if (!oldp) return NULL;
  char *newp = get_cstring_arg(env, argv[3], "newPath");
  napi_value result = NULL;
  if (!newp) goto done;
  int rc = is_link ? linkat(olddir, oldp, newdir, newp, (int)flags) : renameat2(olddir, oldp, newdir, newp, flags);
  if (rc != 0) throw_errno(env, errno, is_link ? "linkat" : "renameat2", newp);
  else result = make_undefined(env);
done:
  free(newp);
  free(oldp);
  return result;
}

static napi_value js_linkat(napi_env env, napi_callback_info info) { return two_path_call(env, info, true); }
static napi_value js_renameat2(napi_env env, napi_callback_info info) { return two_path_call(env, info, false); }

/* unlinkat(dirFd, path, flags) */
static napi_value js_unlinkat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 3);
  int dirfd;
  unsigned int flags;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_flags_arg(env, argv[2], "flags", &flags)) return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  napi_value result = NULL;
  if (unlinkat(dirfd, path, (int)flags) != 0) throw_errno(env, errno, "unlinkat", path);
  else result = make_undefined(env);
  free(path);
  return result;
}

/* fstatatRecord(dirFd, path, flags) -> the 18-double record */
static napi_value js_fstatat_record(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 3);
  int dirfd;
  unsigned int flags;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_flags_arg(env, argv[2], "flags", &flags)) return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  struct stat st;
  napi_value result = NULL;
  if (fstatat(dirfd, path, &st, (int)flags) != 0) {
    throw_errno(env, errno, "fstatat", path);
  } else {
    double r[STAT_FIELDS];
    fill_record(r, &st);
    result = make_f64_array(env, r, STAT_FIELDS);
  }
  free(path);
  return result;
}

/* fchownat(dirFd, path, uid, gid, flags); -1 leaves an id unchanged */
static napi_value js_fchownat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 5);
  int dirfd;
  double uid, gid;
  unsigned int flags;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_integer_arg(env, argv[2], "uid", -1, 4294967294.0, &uid) ||
      !get_integer_arg(env, argv[3], "gid", -1, 4294967294.0, &gid) || !get_flags_arg(env, argv[4], "flags", &flags))
    return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  napi_value result = NULL;
  if (fchownat(dirfd, path, uid < 0 ? (uid_t)-1 : (uid_t)uid, gid < 0 ? (gid_t)-1 : (gid_t)gid, (int)flags) != 0)
    throw_errno(env, errno, "fchownat", path);
  else
    result = make_undefined(env);
  free(path);
  return result;
}

/*
 * fchmodat(dirFd, path, mode, flags): the fchmodat2 system call (Linux 6.6), which
 * honours AT_SYMLINK_NOFOLLOW (a symlink then fails with EOPNOTSUPP instead of its
 * target changing) and AT_EMPTY_PATH. Without it (ENOSYS), glibc's fchmodat, which
 * emulates AT_SYMLINK_NOFOLLOW safely (O_PATH open, fstat refuses a symlink, chmod of
 * /proc/self/fd/N), or fchmod for AT_EMPTY_PATH with an empty path.
 */
static napi_value js_fchmodat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  int dirfd;
  double mode;
  unsigned int flags;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_integer_arg(env, argv[2], "mode", 0, 07777, &mode) ||
      !get_flags_arg(env, argv[3], "flags", &flags))
    return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  long rc = syscall(__NR_fchmodat2, dirfd, path, (mode_t)mode, flags);
  const char *call = "fchmodat2";
  if (rc != 0 && errno == ENOSYS) {
    call = "fchmodat";
    if ((flags & AT_EMPTY_PATH) && path[0] == 0) rc = fchmod(dirfd, (mode_t)mode);
    else rc = fchmodat(dirfd, path, (mode_t)mode, (int)(flags & ~(unsigned int)AT_EMPTY_PATH));
  }
  napi_value result = NULL;
  if (rc != 0) throw_errno(env, errno, call, path);
  else result = make_undefined(env);
  free(path);
  return result;
}

/* utimensat(dirFd, path, atimeSec, atimeNsec, mtimeSec, mtimeNsec, flags) */
static napi_value js_utimensat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 7);
  int dirfd;
  unsigned int flags;
  struct timespec ts[2];
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_times_args(env, argv + 2, ts) ||
      !get_flags_arg(env, argv[6], "flags", &flags))
    return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  napi_value result = NULL;
  if (utimensat(dirfd, path, ts, (int)flags) != 0) throw_errno(env, errno, "utimensat", path);
  else result = make_undefined(env);
  free(path);
  return result;
}

/* futimens(fd, atimeSec, atimeNsec, mtimeSec, mtimeNsec) */
static napi_value js_futimens(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 5);
  int fd;
  struct timespec ts[2];
  if (!get_fd_arg(env, argv[0], &fd) || !get_times_args(env, argv + 1, ts)) return NULL;
  if (futimens(fd, ts) != 0) {
    throw_errno(env, errno, "futimens", NULL);
    return NULL;
  }
  return make_undefined(env);
}

/* fsetxattr(fd, name, value) */
static napi_value js_fsetxattr(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 3);
  int fd;
  void *data = NULL;
  size_t len = 0;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  char *name = get_cstring_arg(env, argv[1], "name");
  if (!name) return NULL;
  napi_value result = NULL;
  if (!get_bytes_arg(env, argv[2], "value", &data, &len)) goto done;
  if (fsetxattr(fd, name, len ? data : "", len, 0) != 0) throw_errno(env, errno, "fsetxattr", NULL);
  else result = make_undefined(env);
done:
  free(name);
  return result;
}

/*
 * setxattrat(dirFd, path, name, value, flags): the setxattrat system call (Linux 6.13),
 * which takes AT_SYMLINK_NOFOLLOW and AT_EMPTY_PATH. Without it (ENOSYS): fsetxattr
 * for AT_EMPTY_PATH with an empty path, else [l]setxattr of /proc/self/fd/<dirFd>/<path>
 * (the magic link is followed to the directory fd refers to; the last component of
 * path is not followed with AT_SYMLINK_NOFOLLOW).
 */
static napi_value js_setxattrat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 5);
  int dirfd;
  unsigned int flags;
  void *data = NULL;
  size_t len = 0;
  char *name = NULL, *procpath = NULL;
  napi_value result = NULL;
  if (!get_dirfd_arg(env, argv[0], "dirFd", &dirfd) || !get_flags_arg(env, argv[4], "flags", &flags)) return NULL;
  char *path = get_cstring_arg(env, argv[1], "path");
  if (!path) return NULL;
  name = get_cstring_arg(env, argv[2], "name");
  if (!name || !get_bytes_arg(env, argv[3], "value", &data, &len)) goto done;
  struct bfs_xattr_args a = {.value = (uint64_t)(uintptr_t)(len ? data : ""), .size = (uint32_t)len, .flags = 0};
  long rc = syscall(__NR_setxattrat, dirfd, path, flags, name, &a, sizeof a);
  if (rc != 0 && errno == ENOSYS) {
    bool nofollow = flags & AT_SYMLINK_NOFOLLOW;
    if ((flags & AT_EMPTY_PATH) && path[0] == 0) {
      rc = fsetxattr(dirfd, name, len ? data : "", len, 0);
    } else {
      const char *p = path;
      if (dirfd != AT_FDCWD && path[0] != '/') {
        size_t n = strlen(path) + 40;
        procpath = malloc(n);
        if (!procpath) {
          throw_errno(env, ENOMEM, "malloc", NULL);
          goto done;
        }
        snprintf(procpath, n, "/proc/self/fd/%d/%s", dirfd, path);
        p = procpath;
      }
      rc = nofollow ? lsetxattr(p, name, len ? data : "", len, 0) : setxattr(p, name, len ? data : "", len, 0);
    }
  }
  if (rc != 0) throw_errno(env, errno, "setxattrat", path);
  else result = make_undefined(env);
done:
  free(procpath);
  free(name);
  free(path);
  return result;
}

/* The constants the calls above take, as this build's headers define them. */
static napi_value make_at_constants(napi_env env) {
  static const struct {
    const char *name;
    int64_t value;
  } table[] = {
    {"O_RDONLY", O_RDONLY}, {"O_WRONLY", O_WRONLY}, {"O_RDWR", O_RDWR}, {"O_CREAT", O_CREAT},
    {"O_EXCL", O_EXCL}, {"O_TRUNC", O_TRUNC}, {"O_NOFOLLOW", O_NOFOLLOW}, {"O_DIRECTORY", O_DIRECTORY},
    {"O_PATH", O_PATH}, {"O_NONBLOCK", O_NONBLOCK},
    {"RESOLVE_NO_XDEV", RESOLVE_NO_XDEV}, {"RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS},
    {"RESOLVE_NO_SYMLINKS", RESOLVE_NO_SYMLINKS}, {"RESOLVE_BENEATH", RESOLVE_BENEATH},
    {"RESOLVE_IN_ROOT", RESOLVE_IN_ROOT},
    {"AT_FDCWD", AT_FDCWD}, {"AT_SYMLINK_NOFOLLOW", AT_SYMLINK_NOFOLLOW}, {"AT_SYMLINK_FOLLOW", AT_SYMLINK_FOLLOW},
    {"AT_REMOVEDIR", AT_REMOVEDIR}, {"AT_EMPTY_PATH", AT_EMPTY_PATH},
    {"RENAME_NOREPLACE", RENAME_NOREPLACE}, {"RENAME_EXCHANGE", RENAME_EXCHANGE},
  };
  napi_value obj;
  NAPI_TRY(env, napi_create_object(env, &obj), fail);
  for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
    napi_value v;
    NAPI_TRY(env, napi_create_int64(env, table[i].value, &v), fail);
    NAPI_TRY(env, napi_set_named_property(env, obj, table[i].name, v), fail);
  }
  return obj;
fail:
  return NULL;
}

/* ---- blockDeviceSize ---------------------------------------------------- */

static napi_value js_block_device_size(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  int fd;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  uint64_t bytes = 0;
  if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
    throw_errno(env, errno, "ioctl", NULL);
    return NULL;
  }
  napi_value v;
  NAPI_TRY(env, napi_create_double(env, (double)bytes, &v), fail);
  return v;
fail:
  return NULL;
}

/* ---- block devices: logical block size, buffer flush ------------------- */

/* blockDeviceSectorSize(fd) -> ioctl(BLKSSZGET): the logical block size, the unit an
 * O_DIRECT read's offset, length and buffer address must be multiples of. */
static napi_value js_block_device_sector_size(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  int fd;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  int bytes = 0;
  if (ioctl(fd, BLKSSZGET, &bytes) != 0) {
    throw_errno(env, errno, "ioctl", NULL);
    return NULL;
  }
  napi_value v;
  NAPI_TRY(env, napi_create_int32(env, bytes, &v), fail);
  return v;
fail:
  return NULL;
}

/* flushBlockDevice(fd) -> ioctl(BLKFLSBUF): writes the device's dirty page-cache pages
 * and drops the clean ones (needs CAP_SYS_ADMIN). */
static napi_value js_flush_block_device(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  int fd;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  if (ioctl(fd, BLKFLSBUF, 0) != 0) {
    throw_errno(env, errno, "ioctl", NULL);
    return NULL;
  }
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

/* dirListing's and dirListingLazyForTest's arguments (payload, inoBase): 1, or 0 with a
 * JavaScript exception pending. */
static int listing_args(napi_env env, napi_callback_info info, void **data, size_t *len, double *ino_base) {
  size_t argc = 2;
  napi_value argv[2];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_napi_failure(env, "napi_get_cb_info");
    return 0;
  }
  for (size_t i = argc; i < 2; i++) napi_get_undefined(env, &argv[i]);
  bool is_buf = false;
  if (napi_is_buffer(env, argv[0], &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, argv[0], data, len) != napi_ok) {
    throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"payload\" argument must be an instance of Buffer");
    return 0;
  }
  return get_integer_arg(env, argv[1], "inoBase", 0, 9007199254740991.0, ino_base) ? 1 : 0;
}

/* ---- dirListing ----------------------------------------------------------- */

/*
 * dirListing(payload, inoBase) -> [names, stats] | null: a format 2 DIR piece's listing in the
 * form the patched binding's readdir takes (dirlist.c): names = one Buffer, ".", ".." and
 * each entry's name, each ended by a NUL; stats = Float64Array of STAT_FIELDS doubles per
 * name, slots 0 and 1 (".", "..") left zero for the caller. null: declined (a hard-linked
 * entry, or anything the JavaScript decoder would refuse): list it in JavaScript.
 */
static napi_value js_dir_listing(napi_env env, napi_callback_info info) {
  void *data = NULL;
  size_t len = 0;
  double ino_base;
  if (!listing_args(env, info, &data, &len, &ino_base)) return NULL;
  napi_value nul;
  napi_get_null(env, &nul);
  size_t n = dl_count((const uint8_t *)data, len);
  if (n == 0) return nul;
  /* names take at most the payload's bytes (each name is stored with its length) */
  size_t cap = 5 + len;
  char *names = malloc(cap);
  napi_value ab, stats, out_names, out;
  void *sdata = NULL;
  if (names == NULL) return nul;
  if (napi_create_arraybuffer(env, (n + 2) * DL_STAT_FIELDS * sizeof(double), &sdata, &ab) != napi_ok) {
    free(names);
    return NULL;
  }
  memcpy(names, ".\0..\0", 5);
  size_t used = 0;
  double *st = (double *)sdata;
  memset(st, 0, 2 * DL_STAT_FIELDS * sizeof(double));
  if (!dl_parse((const uint8_t *)data, len, ino_base, names + 5, cap - 5, &used, st + 2 * DL_STAT_FIELDS, n, NULL)) {
    free(names);
    return nul;
  }
  void *nb = NULL;
  if (napi_create_buffer_copy(env, 5 + used, names, &nb, &out_names) != napi_ok ||
      napi_create_typedarray(env, napi_float64_array, (n + 2) * DL_STAT_FIELDS, ab, 0, &stats) != napi_ok ||
      napi_create_array_with_length(env, 2, &out) != napi_ok) {
    free(names);
    return NULL;
  }
  free(names);
  napi_set_element(env, out, 0, out_names);
  napi_set_element(env, out, 1, stats);
  return out;
}

/* ---- dirListingLazyForTest ------------------------------------------------ */

/*
 * dirListingLazyForTest(payload, inoBase) -> [names, stats, heads, declined] | null: the
 * listing dirListing gives, read the way the native readdir and its lookups read it
 * (dirsrc.c): names and heads (st_mode and inode number per entry) from dl_heads' quick pass,
 * each stat from dl_entry_stat at the entry's offset, packed as dl_parse packs it (left zero
 * for an entry it declines: `declined` counts them; a lookup of one goes to JavaScript).
 * null: the quick pass declines. Tests hold it to dirListing on damaged pieces.
 */
typedef struct {
  size_t *offs;
  double *heads;
  const uint8_t **np;
  size_t *nl;
  double ino_base;
} lazy_heads_t;

static int lazy_head(void *ctx, size_t k, size_t off, const uint8_t *name, size_t nl, uint32_t mode, uint64_t ord) {
  lazy_heads_t *h = (lazy_heads_t *)ctx;
  h->offs[k] = off;
  h->np[k] = name;
  h->nl[k] = nl;
  h->heads[2 * k] = mode;
  h->heads[2 * k + 1] = h->ino_base + (double)ord;
  return 1;
}

static napi_value js_dir_listing_lazy(napi_env env, napi_callback_info info) {
  void *data = NULL;
  size_t len = 0;
  double ino_base;
  if (!listing_args(env, info, &data, &len, &ino_base)) return NULL;
  napi_value nul;
  napi_get_null(env, &nul);
  const uint8_t *p = (const uint8_t *)data;
  size_t n = dl_count(p, len);
  if (n == 0) return nul;
  lazy_heads_t h = {malloc(n * sizeof(size_t)), malloc(2 * n * sizeof(double)), malloc(n * sizeof(uint8_t *)),
                    malloc(n * sizeof(size_t)), ino_base};
  char *names = malloc(5 + len);
  double *st = calloc((n + 2) * DL_STAT_FIELDS, sizeof(double));
  napi_value out = nul;
  if (h.offs && h.heads && h.np && h.nl && names && st && dl_heads(p, len, n, lazy_head, &h)) {
    memcpy(names, ".\0..\0", 5);
    size_t used = 5;
    double declined = 0;
    for (size_t k = 0; k < n; k++) {
      memcpy(names + used, h.np[k], h.nl[k]);
      used += h.nl[k];
      names[used++] = 0;
      struct stat s;
      uint32_t flags;
      if (!dl_entry_stat(p, len, h.offs[k], ino_base, &s, &flags, NULL)) {
        declined++;
        continue;
      }
      double *o = st + (k + 2) * DL_STAT_FIELDS;
      o[0] = s.st_mode, o[1] = s.st_uid, o[2] = s.st_gid, o[3] = (double)s.st_size, o[5] = (double)s.st_nlink;
      o[6] = (double)(s.st_ino & 0xffffffffu), o[7] = (double)(s.st_ino >> 32), o[8] = (double)s.st_rdev;
      o[9] = (double)s.st_blksize, o[10] = (double)s.st_blocks;
      o[11] = (double)s.st_atim.tv_sec, o[12] = (double)s.st_atim.tv_nsec, o[13] = (double)s.st_mtim.tv_sec;
      o[14] = (double)s.st_mtim.tv_nsec, o[15] = (double)s.st_ctim.tv_sec, o[16] = (double)s.st_ctim.tv_nsec;
      o[17] = flags;
    }
    napi_value a, b, c, dn;
    void *nb = NULL;
    if (napi_create_buffer_copy(env, used, names, &nb, &a) == napi_ok) {
      b = make_f64_array(env, st, (n + 2) * DL_STAT_FIELDS);
      c = make_f64_array(env, h.heads, 2 * n);
      if (b && c && napi_create_double(env, declined, &dn) == napi_ok && napi_create_array_with_length(env, 4, &out) == napi_ok) {
        napi_set_element(env, out, 0, a);
        napi_set_element(env, out, 1, b);
        napi_set_element(env, out, 2, c);
        napi_set_element(env, out, 3, dn);
      } else {
        out = NULL;
      }
    }
  }
  free(h.offs);
  free(h.heads);
  free(h.np);
  free(h.nl);
  free(names);
  free(st);
  return out;
}

/* ---- dirScan -------------------------------------------------------------- */

/*
 * dirScan(payload, base, keep) -> Float64Array | null: a format 2 DIR page (base null) or
 * DIRDELTA page (base: the raw payload of the DIR it names) as dl_scan's rows (dirlist.h:
 * DL_ROW doubles an entry, offsets into payload or base) after one double, the page's entry
 * count; with keep (a name), only the rows of directories with a piece and of entries named
 * keep. baseRows (or null): what dirScan(base, null, null) returned, so that a base shared by
 * many deltas is parsed once. For find (cli/find.ts): names are matched in place and only
 * matches decoded in JavaScript. null: declined (read it in JavaScript).
 */
static int buffer_arg(napi_env env, napi_value v, const char *what, void **data, size_t *len) {
  bool is_buf = false;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, v, data, len) != napi_ok) {
    char m[96];
    snprintf(m, sizeof m, "The \"%s\" argument must be an instance of Buffer", what);
    throw_type(env, "ERR_INVALID_ARG_TYPE", m);
    return 0;
  }
  return 1;
}

static napi_value js_dir_scan(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  void *data = NULL, *bdata = NULL, *keep = NULL;
  size_t len = 0, blen = 0, keep_len = 0;
  if (!buffer_arg(env, argv[0], "payload", &data, &len)) return NULL;
  napi_valuetype bt, kt;
  napi_typeof(env, argv[1], &bt);
  if (bt != napi_null && bt != napi_undefined && !buffer_arg(env, argv[1], "base", &bdata, &blen)) return NULL;
  napi_typeof(env, argv[2], &kt);
  if (kt != napi_null && kt != napi_undefined && !buffer_arg(env, argv[2], "keep", &keep, &keep_len)) return NULL;
  /* baseRows: a Float64Array that dirScan(base, null, null) returned (count, then every row) */
  const double *base_rows = NULL;
  size_t base_n = 0;
  napi_valuetype rt;
  napi_typeof(env, argv[3], &rt);
  if (rt != napi_null && rt != napi_undefined) {
    bool is_ta = false;
    napi_typedarray_type tt;
    size_t tl = 0;
    void *td = NULL;
    if (napi_is_typedarray(env, argv[3], &is_ta) != napi_ok || !is_ta ||
        napi_get_typedarray_info(env, argv[3], &tt, &tl, &td, NULL, NULL) != napi_ok || tt != napi_float64_array || tl < 1 ||
        (tl - 1) % DL_ROW != 0 || ((double *)td)[0] != (double)((tl - 1) / DL_ROW)) {
      throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"baseRows\" argument must be a Float64Array dirScan returned for the base");
      return NULL;
    }
    base_rows = (const double *)td + 1;
    base_n = (tl - 1) / DL_ROW;
  }
  napi_value nul;
  napi_get_null(env, &nul);
  const uint8_t *p = data;
  size_t cap;
  if (len >= 2 && p[0] == 1) cap = dl_count(p, len);
  else if (bdata) cap = dl_count(bdata, blen) + len / 2 + 1;
  else return nul;
  if (cap == 0) return nul;
  double *rows = malloc(cap * DL_ROW * sizeof(double));
  if (!rows) return nul;
  size_t n = dl_scan(p, len, bdata, blen, base_rows, base_n, rows, cap);
  if (n == 0) {
    free(rows);
    return nul;
  }
  size_t kept = n;
  if (keep) { /* only directories with a piece and entries named keep */
    kept = 0;
    for (size_t i = 0; i < n; i++) {
      double *r = rows + i * DL_ROW;
      const uint8_t *src = r[DL_ROW_SRC] ? (const uint8_t *)bdata : p;
      if (r[DL_ROW_REF] >= 0 ||
          ((size_t)r[DL_ROW_NAME_LEN] == keep_len && memcmp(src + (size_t)r[DL_ROW_NAME], keep, keep_len) == 0)) {
        if (kept != i) memcpy(rows + kept * DL_ROW, r, DL_ROW * sizeof(double));
        kept++;
      }
    }
  }
  napi_value ab, out;
  void *adata = NULL;
  if (napi_create_arraybuffer(env, (1 + kept * DL_ROW) * sizeof(double), &adata, &ab) != napi_ok) {
    free(rows);
    return NULL;
  }
  ((double *)adata)[0] = (double)n;
  memcpy((double *)adata + 1, rows, kept * DL_ROW * sizeof(double));
  free(rows);
  if (napi_create_typedarray(env, napi_float64_array, 1 + kept * DL_ROW, ab, 0, &out) != napi_ok) return NULL;
  return out;
}

/* ---- dirDiff -------------------------------------------------------------- */

/*
 * dirDiff(payloadA, baseA, baseRowsA, payloadB, baseB, baseRowsB) -> Float64Array | null: two
 * directory pages (each a DIR, or a DIRDELTA with its base DIR, as dirScan takes them) merged
 * by name in C, for bfs diff (cli/diff2.ts): element 0 and 1 the entry counts of A and B,
 * then DIFF_ROW doubles for each name whose entries differ: kind (1 only in A, 2 only in B,
 * 3 in both with other bytes), A's payload number (0 payload, 1 base) and entry offset, B's.
 * Entries with the same bytes (the same name, metadata, map and directory piece: nothing
 * below changed) are left out without a JavaScript object. null: declined (read them in
 * JavaScript, which names any damage).
 */
static double *dd_scan(const uint8_t *p, size_t len, const uint8_t *b, size_t blen, const double *brows, size_t bn, size_t *n) {
  size_t cap;
  if (len >= 2 && p[0] == 1) cap = dl_count(p, len);
  else if (b) cap = dl_count(b, blen) + len / 2 + 1;
  else return NULL;
  if (cap == 0) return NULL;
  double *rows = malloc(cap * DL_ROW * sizeof(double));
  if (!rows) return NULL;
  *n = dl_scan(p, len, b, blen, brows, bn, rows, cap);
  if (*n == 0) {
    free(rows);
    return NULL;
  }
  return rows;
}

static int dd_base_rows(napi_env env, napi_value v, const double **rows, size_t *n) {
  napi_valuetype rt;
  napi_typeof(env, v, &rt);
  *rows = NULL, *n = 0;
  if (rt == napi_null || rt == napi_undefined) return 1;
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t tl = 0;
  void *td = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta || napi_get_typedarray_info(env, v, &tt, &tl, &td, NULL, NULL) != napi_ok ||
      tt != napi_float64_array || tl < 1 || (tl - 1) % DL_ROW != 0 || ((double *)td)[0] != (double)((tl - 1) / DL_ROW)) {
    throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"baseRows\" argument must be a Float64Array dirScan returned for the base");
    return 0;
  }
  *rows = (const double *)td + 1, *n = (tl - 1) / DL_ROW;
  return 1;
}

#define DIFF_ROW 5

static napi_value js_dir_diff(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 6);
  void *pd[2] = {NULL, NULL}, *bd[2] = {NULL, NULL};
  size_t pl[2] = {0, 0}, bl[2] = {0, 0};
  const double *br[2];
  size_t bn[2];
  for (int s = 0; s < 2; s++) {
    if (!buffer_arg(env, argv[3 * s], "payload", &pd[s], &pl[s])) return NULL;
    napi_valuetype bt;
    napi_typeof(env, argv[3 * s + 1], &bt);
    if (bt != napi_null && bt != napi_undefined && !buffer_arg(env, argv[3 * s + 1], "base", &bd[s], &bl[s])) return NULL;
    if (!dd_base_rows(env, argv[3 * s + 2], &br[s], &bn[s])) return NULL;
  }
  napi_value nul, out = NULL;
  napi_get_null(env, &nul);
  size_t n[2] = {0, 0};
  double *rows[2];
  rows[0] = dd_scan(pd[0], pl[0], bd[0], bl[0], br[0], bn[0], &n[0]);
  rows[1] = rows[0] ? dd_scan(pd[1], pl[1], bd[1], bl[1], br[1], bn[1], &n[1]) : NULL;
  double *res = rows[1] ? malloc((2 + (n[0] + n[1]) * DIFF_ROW) * sizeof(double)) : NULL;
  size_t k = 2;
  int ok = res != NULL;
  size_t i = 0, j = 0;
  while (ok && (i < n[0] || j < n[1])) {
    const double *ra = i < n[0] ? rows[0] + i * DL_ROW : NULL, *rb = j < n[1] ? rows[1] + j * DL_ROW : NULL;
    const uint8_t *sa = ra ? (ra[DL_ROW_SRC] ? bd[0] : pd[0]) : NULL, *sb = rb ? (rb[DL_ROW_SRC] ? bd[1] : pd[1]) : NULL;
    int c;
    if (!ra) c = 1;
    else if (!rb) c = -1;
    else {
      size_t al = (size_t)ra[DL_ROW_NAME_LEN], blen = (size_t)rb[DL_ROW_NAME_LEN];
      int m = memcmp(sa + (size_t)ra[DL_ROW_NAME], sb + (size_t)rb[DL_ROW_NAME], al < blen ? al : blen);
      c = m ? m : (al < blen ? -1 : al > blen ? 1 : 0);
    }
    double *o = res + k;
    if (c < 0) {
      o[0] = 1, o[1] = ra[DL_ROW_SRC], o[2] = ra[DL_ROW_ENTRY], o[3] = -1, o[4] = -1;
      k += DIFF_ROW, i++;
    } else if (c > 0) {
      o[0] = 2, o[1] = -1, o[2] = -1, o[3] = rb[DL_ROW_SRC], o[4] = rb[DL_ROW_ENTRY];
      k += DIFF_ROW, j++;
    } else {
      size_t ea, eb;
      size_t xa = (size_t)ra[DL_ROW_ENTRY], xb = (size_t)rb[DL_ROW_ENTRY];
      if (!dl_entry_at(sa, ra[DL_ROW_SRC] ? bl[0] : pl[0], xa, &ea, NULL) || !dl_entry_at(sb, rb[DL_ROW_SRC] ? bl[1] : pl[1], xb, &eb, NULL)) {
        ok = 0;
        break;
      }
      if (ea - xa != eb - xb || memcmp(sa + xa, sb + xb, ea - xa) != 0) {
        o[0] = 3, o[1] = ra[DL_ROW_SRC], o[2] = (double)xa, o[3] = rb[DL_ROW_SRC], o[4] = (double)xb;
        k += DIFF_ROW;
      }
      i++, j++;
    }
  }
  free(rows[0]);
  free(rows[1]);
  if (!ok || !res) {
    free(res);
    return nul;
  }
  res[0] = (double)n[0], res[1] = (double)n[1];
  napi_value ab;
  void *adata = NULL;
  if (napi_create_arraybuffer(env, k * sizeof(double), &adata, &ab) == napi_ok) {
    memcpy(adata, res, k * sizeof(double));
    if (napi_create_typedarray(env, napi_float64_array, k, ab, 0, &out) != napi_ok) out = NULL;
  }
  free(res);
  return out;
}

/* ---- findWalk ------------------------------------------------------------- */

/*
 * findWalk(root, key, spec, refs, ids) -> [counts, paths, rows, ents, entOffs, piecesRead]:
 * bfs find's walk of generations in C (findwalk.c). root: the repository's directory (bytes);
 * key: the 32-byte piece id key; spec: the pattern (findwalk.h); refs: five doubles a
 * generation (run, pack, offset, stored length, entry count of its root directory's piece),
 * ids: 32 bytes a generation. counts[g]: the generation's matches (its rows, in order after
 * those of the generations before), or -1: declined (walk it in JavaScript). rows: three
 * doubles a match (path offset and length in paths, entry number); entOffs: two doubles an
 * entry (start, end in ents). Throws only for bad arguments.
 */
static napi_value fw_f64(napi_env env, const void *src, size_t doubles) {
  napi_value ab, out;
  void *d = NULL;
  if (napi_create_arraybuffer(env, (doubles ? doubles : 1) * sizeof(double), &d, &ab) != napi_ok) return NULL;
  if (doubles) memcpy(d, src, doubles * sizeof(double));
  if (napi_create_typedarray(env, napi_float64_array, doubles, ab, 0, &out) != napi_ok) return NULL;
  return out;
}

static napi_value fw_buf(napi_env env, const void *src, size_t len) {
  napi_value out;
  void *d = NULL;
  if (napi_create_buffer_copy(env, len, len ? src : "", &d, &out) != napi_ok) return NULL;
  return out;
}

static napi_value js_find_walk(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 5);
  void *root = NULL, *key = NULL, *spec = NULL, *ids = NULL;
  size_t root_len = 0, key_len = 0, spec_len = 0, ids_len = 0;
  if (!buffer_arg(env, argv[0], "root", &root, &root_len) || !buffer_arg(env, argv[1], "key", &key, &key_len) ||
      !buffer_arg(env, argv[2], "spec", &spec, &spec_len) || !buffer_arg(env, argv[4], "ids", &ids, &ids_len))
    return NULL;
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t tl = 0;
  void *td = NULL;
  if (napi_is_typedarray(env, argv[3], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[3], &tt, &tl, &td, NULL, NULL) != napi_ok || tt != napi_float64_array || tl % 5 != 0 ||
      ids_len != tl / 5 * 32 || key_len != 32 || root_len == 0 || root_len > 4000 || memchr(root, 0, root_len)) {
    throw_type(env, "ERR_INVALID_ARG_TYPE", "findWalk(root, key, spec, refs, ids): bad arguments");
    return NULL;
  }
  char path[4096];
  memcpy(path, root, root_len);
  path[root_len] = 0;
  fw_t *w = fw_new(path, key, spec, spec_len);
  if (!w) {
    throw_type(env, "ERR_INVALID_ARG_VALUE", "findWalk: a bad pattern spec");
    return NULL;
  }
  size_t gens = tl / 5;
  const double *refs = td;
  double *counts = malloc((gens ? gens : 1) * sizeof(double));
  fw_vec_t paths = {0}, rows = {0};
  napi_value out = NULL;
  if (!counts) goto end;
  for (size_t g = 0; g < gens; g++) {
    const double *r = refs + g * 5;
    dl_ref_t ref = {.run = (uint64_t)r[0], .pack = (uint64_t)r[1], .offset = (uint64_t)r[2], .stored_len = (uint32_t)r[3], .entries = (uint32_t)r[4], .has = 1};
    memcpy(ref.id, (uint8_t *)ids + g * 32, 32);
    size_t before = rows.len;
    int32_t node = fw_walk(w, &ref);
    if (node == -2) {
      counts[g] = -1;
      continue;
    }
    if (!fw_flatten(w, node, &paths, &rows)) goto end;
    counts[g] = (double)((rows.len - before) / (3 * sizeof(double)));
  }
  {
    napi_value a[6];
    a[0] = fw_f64(env, counts, gens);
    a[1] = fw_buf(env, paths.p, paths.len);
    a[2] = fw_f64(env, rows.p, rows.len / sizeof(double));
    a[3] = fw_buf(env, fw_entries(w)->p, fw_entries(w)->len);
    a[4] = fw_f64(env, fw_entry_offsets(w)->p, fw_entry_offsets(w)->len / sizeof(double));
    if (napi_create_double(env, (double)fw_pieces_read(w), &a[5]) != napi_ok) goto end;
    for (int i = 0; i < 6; i++)
      if (!a[i]) goto end;
    if (napi_create_array_with_length(env, 6, &out) != napi_ok) {
      out = NULL;
      goto end;
    }
    for (uint32_t i = 0; i < 6; i++) napi_set_element(env, out, i, a[i]);
  }
end:
  free(counts);
  free(paths.p);
  free(rows.p);
  fw_free(w);
  if (!out) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) throw_range(env, "findWalk: out of memory");
  }
  return out;
}

/* ---- pieceRaw ------------------------------------------------------------- */

/*
 * pieceRaw(stored, maxRaw, key, id) -> Buffer | null: a stored piece (one zstd frame with its
 * content size, format.md §2.11) decompressed and checked against its id (keyed BLAKE3 of
 * the raw payload, §2.5) in one call: PieceReader's checks without three calls into two
 * addons and a hash object per piece (find reads tens of thousands of small pieces). null:
 * anything wrong (not one whole frame, over maxRaw, the id differs): the caller's JavaScript
 * checks read it again and name the damage.
 */
static int get_blake3_key_arg(napi_env env, napi_value v, const uint8_t **key);
static __thread ZSTD_DCtx *piece_dctx;

static napi_value js_piece_raw(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  void *data = NULL, *id = NULL;
  size_t len = 0, id_len = 0;
  double max_raw;
  const uint8_t *key;
  if (!buffer_arg(env, argv[0], "stored", &data, &len) || !get_integer_arg(env, argv[1], "maxRaw", 0, 1 << 30, &max_raw) ||
      !get_blake3_key_arg(env, argv[2], &key) || !buffer_arg(env, argv[3], "id", &id, &id_len))
    return NULL;
  napi_value nul, out;
  napi_get_null(env, &nul);
  if (id_len != 32) return nul;
  unsigned long long size = ZSTD_getFrameContentSize(data, len);
  if (size == ZSTD_CONTENTSIZE_UNKNOWN || size == ZSTD_CONTENTSIZE_ERROR || size > (unsigned long long)max_raw) return nul;
  if (ZSTD_findFrameCompressedSize(data, len) != len) return nul;
  if (!piece_dctx && !(piece_dctx = ZSTD_createDCtx())) return nul;
  void *raw = NULL;
  if (napi_create_buffer(env, size ? (size_t)size : 1, &raw, &out) != napi_ok) return NULL;
  size_t n = ZSTD_decompressDCtx(piece_dctx, raw, (size_t)size, data, len);
  if (ZSTD_isError(n) || n != size) return nul;
  uint8_t got[32];
  blake3_hasher h;
  if (key) blake3_hasher_init_keyed(&h, key);
  else blake3_hasher_init(&h);
  blake3_hasher_update(&h, raw, n);
  blake3_hasher_finalize(&h, got, 32);
  if (memcmp(got, id, 32) != 0) return nul;
  if (size == 0) return nul; /* (no piece is empty) */
  return out;
}

/* ---- trainDictionary ---------------------------------------------------- */

/*
 * trainDictionary(samples, sizes, capacity) -> Buffer: a zstd dictionary of at most
 * `capacity` bytes trained on the samples concatenated in `samples`, whose lengths are the
 * u32 LE values of `sizes` (ZDICT_trainFromBuffer: fastCover with zstd's defaults, as
 * `zstd --train`; its id is derived from its content). Throws RangeError when zstd cannot
 * train one (too few or too small samples). Compact's per-stream dictionaries, format.md
 * §2.9.1. Runs on the calling thread (compact's, never a mount's).
 */
static napi_value js_train_dictionary(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 3);
  void *data = NULL, *sz = NULL;
  size_t len = 0, sz_len = 0;
  double capacity;
  if (!get_bytes_arg(env, argv[0], "samples", &data, &len) || !get_bytes_arg(env, argv[1], "sizes", &sz, &sz_len) ||
      !get_integer_arg(env, argv[2], "capacity", 256, 1 << 20, &capacity))
    return NULL;
  if (sz_len % 4 != 0 || sz_len / 4 > 0xffffffu) {
    throw_range(env, "sizes must hold u32 values");
    return NULL;
  }
  unsigned n = (unsigned)(sz_len / 4);
  size_t *sizes = malloc(sizeof(size_t) * (n ? n : 1));
  if (!sizes) {
    throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  size_t total = 0;
  for (unsigned k = 0; k < n; k++) {
    uint32_t v;
    memcpy(&v, (const char *)sz + 4 * k, 4);
    sizes[k] = v;
    total += v;
  }
  if (total != len) {
    free(sizes);
    throw_range(env, "sizes do not add up to the samples' length");
    return NULL;
  }
  void *dict = malloc((size_t)capacity);
  if (!dict) {
    free(sizes);
    throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  size_t got = ZDICT_trainFromBuffer(dict, (size_t)capacity, data, sizes, n);
  free(sizes);
  if (ZDICT_isError(got)) {
    char msg[160];
    snprintf(msg, sizeof msg, "cannot train a dictionary: %s", ZDICT_getErrorName(got));
    free(dict);
    throw_range(env, msg);
    return NULL;
  }
  napi_value out;
  void *copy = NULL;
  if (napi_create_buffer_copy(env, got, dict, &copy, &out) != napi_ok) {
    free(dict);
    throw_napi_failure(env, "napi_create_buffer_copy");
    return NULL;
  }
  free(dict);
  return out;
}

/* ---- alignedBuffer ------------------------------------------------------ */

static void free_aligned(napi_env env, void *data, void *hint) {
  int64_t adjusted;
  napi_adjust_external_memory(env, -(int64_t)(uintptr_t)hint, &adjusted);
  free(data);
}

/*
 * alignedBuffer(bytes) -> a zero-filled Buffer whose memory starts on a 4096-byte
 * boundary (posix_memalign), freed when the Buffer is collected. O_DIRECT reads need
 * the buffer address aligned to the device's logical block size (≤ 4096); Node's own
 * Buffers are not. Any 4096-multiple offset into it stays aligned.
 */
/*
 * adviseHugePages(buffer) -> bool: madvise(MADV_HUGEPAGE) on the 2 MiB-aligned part of a large
 * long-lived buffer (a stream's unit buffers): with transparent huge pages in "madvise" mode,
 * its first touch then costs one fault per 2 MiB instead of one per 4 KiB (in a VM a fault
 * is tens of microseconds: 20 MiB touched took ~190 ms, ~2 ms with the advice). False when
 * nothing was advised (too small, or the kernel refused): harmless either way.
 */
static napi_value js_advise_huge_pages(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  bool is_ta = false;
  void *data = NULL;
  size_t len = 0;
  napi_typedarray_type tat;
  napi_valuetype t;
  if (napi_typeof(env, argv[0], &t) == napi_ok && t == napi_object) napi_is_typedarray(env, argv[0], &is_ta);
  if (!is_ta || napi_get_typedarray_info(env, argv[0], &tat, &len, &data, NULL, NULL) != napi_ok || tat != napi_uint8_array) {
    throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"buffer\" argument must be an instance of Buffer or Uint8Array");
    return NULL;
  }
  const uintptr_t huge = 2u << 20;
  uintptr_t start = ((uintptr_t)data + huge - 1) & ~(huge - 1);
  uintptr_t end = ((uintptr_t)data + len) & ~(huge - 1);
  bool ok = false;
#ifdef MADV_HUGEPAGE
  if (end > start) ok = madvise((void *)start, end - start, MADV_HUGEPAGE) == 0;
#endif
  napi_value r;
  napi_get_boolean(env, ok, &r);
  return r;
}

static napi_value js_aligned_buffer(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  double bytes_d;
  if (!get_integer_arg(env, argv[0], "bytes", 1, 1073741824.0, &bytes_d)) return NULL;
  size_t bytes = (size_t)bytes_d;
  void *mem = NULL;
  int rc = posix_memalign(&mem, 4096, bytes);
  if (rc != 0) {
    throw_errno(env, rc, "posix_memalign", NULL);
    return NULL;
  }
  memset(mem, 0, bytes);
  napi_value buf;
  if (napi_create_external_buffer(env, bytes, mem, free_aligned, (void *)(uintptr_t)bytes, &buf) != napi_ok) {
    free(mem);
    throw_napi_failure(env, "napi_create_external_buffer");
    return NULL;
  }
  int64_t adjusted;
  napi_adjust_external_memory(env, (int64_t)bytes, &adjusted);
  return buf;
}

/* ---- freezeFs / thawFs --------------------------------------------------- */

/* freezeFs(fd) / thawFs(fd): ioctl(FIFREEZE / FITHAW) on an fd of a file or directory
 * of the filesystem (its mount point): freeze syncs it and blocks every writer until the
 * thaw. Needs CAP_SYS_ADMIN. */
static napi_value freeze_thaw(napi_env env, napi_callback_info info, unsigned long req) {
  GET_ARGS(env, info, 1);
  int fd;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  if (ioctl(fd, req, 0) != 0) {
    throw_errno(env, errno, "ioctl", NULL);
    return NULL;
  }
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}
static napi_value js_freeze_fs(napi_env env, napi_callback_info info) { return freeze_thaw(env, info, FIFREEZE); }
static napi_value js_thaw_fs(napi_env env, napi_callback_info info) { return freeze_thaw(env, info, FITHAW); }

/* ---- detach ------------------------------------------------------------- */

/*
 * detach(fd): become a daemon in place. setsid() (leave the terminal's session,
 * so its Ctrl-C and hang-up no longer reach us; EPERM when already a session
 * leader is fine), then dup2(fd, 1) and dup2(fd, 2) so stdout and stderr go to
 * `fd` (a log file) and whoever waits on the old ones sees end-of-file; stdin
 * becomes /dev/null (bin/bfs leaves a terminal there until now: an encrypted
 * repository's passphrase may have been asked on it).
 */
static napi_value js_detach(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  int fd;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  if (setsid() < 0 && errno != EPERM) {
    throw_errno(env, errno, "setsid", NULL);
    return NULL;
  }
  if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0) {
    throw_errno(env, errno, "dup2", NULL);
    return NULL;
  }
  int nul = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (nul >= 0) {
    if (nul != 0) {
      dup2(nul, 0);
      close(nul);
    }
  }
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

/* ---- exit watchdog -------------------------------------------------------- */

/*
 * exitWatchdog(ms, code): a detached thread that ends the process with _exit(code) after ms,
 * for a process about to exit normally. exit() runs C and C++ exit handlers, which take
 * stdio's stderr lock; libfuse cancels its worker threads when its loop ends, and one
 * cancelled inside a write to stderr leaves that lock held: the mount server then hung in
 * exit() for good (seen once: a lazily detached mount whose last file closed). Nothing the
 * handlers would do is worth a process that never ends.
 */
static void *exit_watchdog_main(void *arg) {
  struct {
    long ms;
    int code;
  } *w = arg;
  struct timespec ts = {w->ms / 1000, (w->ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
  _exit(w->code);
  return NULL;
}

static napi_value js_exit_watchdog(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 2);
  double ms, code;
  if (!get_integer_arg(env, argv[0], "ms", 0, 86400000, &ms) || !get_integer_arg(env, argv[1], "code", 0, 255, &code)) return NULL;
  static struct {
    long ms;
    int code;
  } w;
  w.ms = (long)ms;
  w.code = (int)code;
  pthread_attr_t attr;
  pthread_t t;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  int rc = pthread_create(&t, &attr, exit_watchdog_main, &w);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    throw_errno(env, rc, "pthread_create", NULL);
    return NULL;
  }
  napi_value v;
  napi_get_undefined(env, &v);
  return v;
}

/* ---- fadvise ------------------------------------------------------------ */

static napi_value js_fadvise(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  int fd;
  double off, len;
  if (!get_fd_arg(env, argv[0], &fd) ||
      !get_integer_arg(env, argv[1], "offsetBytes", 0, MAX_SAFE_INTEGER, &off) ||
      !get_integer_arg(env, argv[2], "lengthBytes", 0, MAX_SAFE_INTEGER, &len))
    return NULL;
  char advice_s[16];
  size_t got = 0;
  napi_valuetype t;
  int advice = -1;
  if (napi_typeof(env, argv[3], &t) == napi_ok && t == napi_string &&
      napi_get_value_string_utf8(env, argv[3], advice_s, sizeof advice_s, &got) == napi_ok) {
    if (!strcmp(advice_s, "sequential")) advice = POSIX_FADV_SEQUENTIAL;
    else if (!strcmp(advice_s, "willneed")) advice = POSIX_FADV_WILLNEED;
    else if (!strcmp(advice_s, "dontneed")) advice = POSIX_FADV_DONTNEED;
    else if (!strcmp(advice_s, "normal")) advice = POSIX_FADV_NORMAL;
  }
  if (advice < 0) {
    throw_type(env, "ERR_INVALID_ARG_VALUE",
               "The argument 'advice' must be one of: 'sequential', 'willneed', 'dontneed', 'normal'");
    return NULL;
  }
  int rc = posix_fadvise(fd, (off_t)off, (off_t)len, advice);
  napi_value v;
  NAPI_TRY(env, napi_get_boolean(env, rc == 0, &v), fail);
  return v;
fail:
  return NULL;
}

/* ---- cachestat ---------------------------------------------------------- */

/*
 * cachestat(fd, offsetBytes, lengthBytes) -> [cached, dirty, writeback] pages of the file's
 * range in the page cache (length 0: to the end of the file), or null where the kernel has
 * no cachestat(2) (Linux < 6.5: ENOSYS) or the file cannot say (EOPNOTSUPP, EBADF...). One
 * syscall, no mapping of the file (mincore would need one). Volume backups of image files
 * use it to leave the page cache as they found it (src/repo/cache-guard.ts).
 */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct bfs_cachestat_range { uint64_t off, len; };
struct bfs_cachestat { uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted; };

static napi_value js_cachestat(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 3);
  int fd;
  double off, len;
  if (!get_fd_arg(env, argv[0], &fd) ||
      !get_integer_arg(env, argv[1], "offsetBytes", 0, MAX_SAFE_INTEGER, &off) ||
      !get_integer_arg(env, argv[2], "lengthBytes", 0, MAX_SAFE_INTEGER, &len))
    return NULL;
  struct bfs_cachestat_range r = {(uint64_t)off, (uint64_t)len};
  struct bfs_cachestat cs;
  memset(&cs, 0, sizeof cs);
  napi_value v;
  if (syscall(__NR_cachestat, fd, &r, &cs, 0) != 0) {
    NAPI_TRY(env, napi_get_null(env, &v), fail);
    return v;
  }
  NAPI_TRY(env, napi_create_array_with_length(env, 3, &v), fail);
  uint64_t f[3] = {cs.nr_cache, cs.nr_dirty, cs.nr_writeback};
  for (uint32_t i = 0; i < 3; i++) {
    napi_value n;
    NAPI_TRY(env, napi_create_double(env, (double)f[i], &n), fail);
    NAPI_TRY(env, napi_set_element(env, v, i, n), fail);
  }
  return v;
fail:
  return NULL;
}

/* ---- flock ------------------------------------------------------------- */

/*
 * flock(fd, mode): mode 'exclusive' | 'shared' | 'unlock', never blocking (LOCK_NB):
 * true when the lock is taken (or released), false when another open file description
 * holds a conflicting lock (EWOULDBLOCK). Callers that must wait poll from JS, so the
 * event loop never blocks in the kernel. The lock belongs to the open file description:
 * it goes with the last close of the fd, and with the process when it dies (kill -9).
 */
static napi_value js_flock(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 2);
  int fd;
  if (!get_fd_arg(env, argv[0], &fd)) return NULL;
  char mode_s[16];
  size_t got = 0;
  napi_valuetype t;
  int op = -1;
  if (napi_typeof(env, argv[1], &t) == napi_ok && t == napi_string &&
      napi_get_value_string_utf8(env, argv[1], mode_s, sizeof mode_s, &got) == napi_ok) {
    if (!strcmp(mode_s, "exclusive")) op = LOCK_EX;
    else if (!strcmp(mode_s, "shared")) op = LOCK_SH;
    else if (!strcmp(mode_s, "unlock")) op = LOCK_UN;
  }
  if (op < 0) {
    throw_type(env, "ERR_INVALID_ARG_VALUE", "The argument 'mode' must be one of: 'exclusive', 'shared', 'unlock'");
    return NULL;
  }
  int rc;
  do rc = flock(fd, op | LOCK_NB); while (rc != 0 && errno == EINTR);
  if (rc != 0 && errno != EWOULDBLOCK) {
    throw_errno(env, errno, "flock", NULL);
    return NULL;
  }
  napi_value v;
  NAPI_TRY(env, napi_get_boolean(env, rc == 0, &v), fail);
  return v;
fail:
  return NULL;
}

/* ---- XXH64 block hashes ------------------------------------------------- */
/* XXH64, written from the public xxHash specification. Used for bfs's block hashes, frame
 * checks and page cuts: ~10x faster than SHA-256, 64 bits suffice to tell a block from the
 * previous version at the same position and to detect corruption. The seed is 0 in
 * unencrypted repositories and the repository's blockSeed in encrypted ones (format.md
 * §2.22); callers pass it as an optional BigInt. */

#define XXP1 11400714785074694791ULL
#define XXP2 14029467366897019727ULL
#define XXP3 1609587929392839161ULL
#define XXP4 9650029242287828579ULL
#define XXP5 2870177450012600261ULL

static inline uint64_t xx_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t xx_read64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; } /* little-endian hosts */
static inline uint32_t xx_read32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t xx_round(uint64_t acc, uint64_t in) {
  acc += in * XXP2;
  acc = xx_rotl(acc, 31);
  return acc * XXP1;
}
static inline uint64_t xx_merge(uint64_t acc, uint64_t v) {
  acc ^= xx_round(0, v);
  return acc * XXP1 + XXP4;
}

static uint64_t xxh64(const uint8_t *p, size_t len, uint64_t seed) {
  const uint8_t *end = p + len;
  uint64_t h;
  if (len >= 32) {
    const uint8_t *limit = end - 32;
    uint64_t v1 = seed + XXP1 + XXP2, v2 = seed + XXP2, v3 = seed, v4 = seed - XXP1;
    do {
      v1 = xx_round(v1, xx_read64(p));
      v2 = xx_round(v2, xx_read64(p + 8));
      v3 = xx_round(v3, xx_read64(p + 16));
      v4 = xx_round(v4, xx_read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = xx_rotl(v1, 1) + xx_rotl(v2, 7) + xx_rotl(v3, 12) + xx_rotl(v4, 18);
    h = xx_merge(h, v1);
    h = xx_merge(h, v2);
    h = xx_merge(h, v3);
    h = xx_merge(h, v4);
  } else {
    h = seed + XXP5;
  }
  h += (uint64_t)len;
  while (p + 8 <= end) {
    h ^= xx_round(0, xx_read64(p));
    h = xx_rotl(h, 27) * XXP1 + XXP4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= (uint64_t)xx_read32(p) * XXP1;
    h = xx_rotl(h, 23) * XXP2 + XXP3;
    p += 4;
  }
  while (p < end) {
    h ^= (uint64_t)(*p) * XXP5;
    h = xx_rotl(h, 11) * XXP1;
    p++;
  }
  h ^= h >> 33;
  h *= XXP2;
  h ^= h >> 29;
  h *= XXP3;
  h ^= h >> 32;
  return h;
}

static int get_buffer_arg(napi_env env, napi_value v, const char *name, uint8_t **data, size_t *len) {
  bool is_buf = false;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf ||
      napi_get_buffer_info(env, v, (void **)data, len) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "The argument '%s' must be a Buffer", name);
    throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  return 1;
}

/* The optional seed argument of hashBlocks and xxh64Into: undefined is 0, else a BigInt in
 * 0 … 2^64-1 (anything else is a TypeError/RangeError). */
static int get_seed_arg(napi_env env, napi_value v, uint64_t *seed) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) {
    throw_napi_failure(env, "napi_typeof");
    return 0;
  }
  if (t == napi_undefined) {
    *seed = 0;
    return 1;
  }
  bool lossless = false;
  if (t != napi_bigint || napi_get_value_bigint_uint64(env, v, seed, &lossless) != napi_ok) {
    throw_type(env, "ERR_INVALID_ARG_TYPE", "The argument 'seed' must be a BigInt");
    return 0;
  }
  if (!lossless) {
    throw_range(env, "seed: outside 0 … 2^64-1");
    return 0;
  }
  return 1;
}

/* hashBlocks(src, srcOffset, blocks, out, outOffset, seed?): XXH64 (seed, default 0) of each
 * 4096-byte block, 8 bytes LE each. */
static napi_value js_hash_blocks(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 6);
  uint8_t *src, *out;
  size_t src_len, out_len;
  double src_off, blocks, out_off;
  if (!get_buffer_arg(env, argv[0], "src", &src, &src_len) ||
      !get_integer_arg(env, argv[1], "srcOffset", 0, MAX_SAFE_INTEGER, &src_off) ||
      !get_integer_arg(env, argv[2], "blocks", 0, MAX_SAFE_INTEGER, &blocks) ||
      !get_buffer_arg(env, argv[3], "out", &out, &out_len) ||
      !get_integer_arg(env, argv[4], "outOffset", 0, MAX_SAFE_INTEGER, &out_off))
    return NULL;
  uint64_t seed;
  if (!get_seed_arg(env, argv[5], &seed)) return NULL;
  size_t n = (size_t)blocks;
  if ((size_t)src_off + n * 4096 > src_len || (size_t)out_off + n * 8 > out_len) {
    throw_range(env, "hashBlocks: range outside the buffers");
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    uint64_t h = xxh64(src + (size_t)src_off + i * 4096, 4096, seed);
    memcpy(out + (size_t)out_off + i * 8, &h, 8);
  }
  return NULL;
}

/* xxh64Into(src, out, outOffset, seed?): XXH64 (seed, default 0) of the whole of src, 8 bytes LE. */
static napi_value js_xxh64_into(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  uint8_t *src, *out;
  size_t src_len, out_len;
  double out_off;
  if (!get_buffer_arg(env, argv[0], "src", &src, &src_len) ||
      !get_buffer_arg(env, argv[1], "out", &out, &out_len) ||
      !get_integer_arg(env, argv[2], "outOffset", 0, MAX_SAFE_INTEGER, &out_off))
    return NULL;
  uint64_t seed;
  if (!get_seed_arg(env, argv[3], &seed)) return NULL;
  if ((size_t)out_off + 8 > out_len) {
    throw_range(env, "xxh64Into: output outside the buffer");
    return NULL;
  }
  uint64_t h = xxh64(src, src_len, seed);
  memcpy(out + (size_t)out_off, &h, 8);
  return NULL;
}

/* ---- BLAKE3 -------------------------------------------------------------- */

/*
 * The official C implementation (blake3.c + runtime SIMD dispatch). Outputs are 1 … 65536
 * bytes (the extended output; 32 is the standard digest); a key is exactly 32 bytes, or
 * null/undefined for the plain hash.
 */
#define BLAKE3_MAX_OUT 65536

/* Tags the externals blake3HasherNew returns, so that no other external passes for one. */
static const napi_type_tag BLAKE3_HASHER_TAG = {0x62667362336861ULL, 0x7368657231ULL};

/* key argument: null/undefined = plain hash (returns 1, *key NULL); a 32-byte Buffer = keyed. */
static int get_blake3_key_arg(napi_env env, napi_value v, const uint8_t **key) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && (t == napi_null || t == napi_undefined)) {
    *key = NULL;
    return 1;
  }
  void *data;
  size_t len;
  if (!get_bytes_arg(env, v, "key", &data, &len)) return 0;
  if (len != BLAKE3_KEY_LEN) {
    throw_range(env, "blake3: a key is exactly 32 bytes");
    return 0;
  }
  *key = data;
  return 1;
}

/* A byte range [offset, offset+length) of a Buffer argument, checked against its size. */
static int get_range_args(napi_env env, napi_value buf, napi_value off, napi_value len, const char *what,
                          uint8_t **data, size_t *start, size_t *count) {
  void *p;
  size_t size;
  double o, n;
  if (!get_bytes_arg(env, buf, what, &p, &size) ||
      !get_integer_arg(env, off, "offset", 0, MAX_SAFE_INTEGER, &o) ||
      !get_integer_arg(env, len, "length", 0, MAX_SAFE_INTEGER, &n))
    return 0;
  if (o + n > (double)size) {
    char msg[160];
    snprintf(msg, sizeof msg, "blake3: %s range [%.0f, %.0f) is outside its %zu bytes", what, o, o + n, size);
    throw_range(env, msg);
    return 0;
  }
  *data = p;
  *start = (size_t)o;
  *count = (size_t)n;
  return 1;
}

static int get_out_range_args(napi_env env, napi_value buf, napi_value off, napi_value len,
                              uint8_t **out, size_t *out_len) {
  uint8_t *p;
  size_t start, count;
  if (!get_range_args(env, buf, off, len, "out", &p, &start, &count)) return 0;
  if (count < 1 || count > BLAKE3_MAX_OUT) {
    throw_range(env, "blake3: the output length must be 1 ... 65536 bytes");
    return 0;
  }
  *out = p + start;
  *out_len = count;
  return 1;
}

/* ---- scrypt (scrypt.c) ---- */

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  uint8_t *pass, *salt, *out;
  size_t pass_len, salt_len, out_len;
  uint64_t n;
  uint32_t r, p;
  int err;
} scrypt_job_t;

static void scrypt_job_free(scrypt_job_t *j) {
  if (j->pass) sodium_memzero(j->pass, j->pass_len), free(j->pass);
  if (j->out) sodium_memzero(j->out, j->out_len), free(j->out);
  free(j->salt);
  free(j);
}

static void scrypt_job_execute(napi_env env, void *data) {
  (void)env;
  scrypt_job_t *j = data;
  j->err = bfs_scrypt(j->pass, j->pass_len, j->salt, j->salt_len, j->n, j->r, j->p, j->out, j->out_len);
}

static void scrypt_job_complete(napi_env env, napi_status status, void *data) {
  scrypt_job_t *j = data;
  napi_value v, e;
  if (status != napi_ok) j->err = ECANCELED;
  if (j->err) {
    reject_errno(env, j->deferred, j->err, "scrypt", NULL);
  } else {
    void *copy;
    if (napi_create_buffer_copy(env, j->out_len, j->out, &copy, &v) == napi_ok) napi_resolve_deferred(env, j->deferred, v);
    else {
      throw_napi_failure(env, "napi_create_buffer_copy");
      if (napi_get_and_clear_last_exception(env, &e) == napi_ok) napi_reject_deferred(env, j->deferred, e);
    }
  }
  napi_delete_async_work(env, j->work);
  scrypt_job_free(j);
}

/* scryptAsync(pass, salt, N, r, p, outLen) -> Promise<Buffer>: scrypt on the threadpool
 * (libsodium's); rejects with an errno Error (EINVAL for parameters it refuses, ENOMEM). */
static napi_value js_scrypt_async(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 6);
  void *pass, *salt;
  size_t pass_len, salt_len;
  double n, r, p, out_len;
  if (!get_bytes_arg(env, argv[0], "pass", &pass, &pass_len) || !get_bytes_arg(env, argv[1], "salt", &salt, &salt_len) ||
      !get_integer_arg(env, argv[2], "N", 2, MAX_SAFE_INTEGER, &n) || !get_integer_arg(env, argv[3], "r", 1, 4294967295.0, &r) ||
      !get_integer_arg(env, argv[4], "p", 1, 4294967295.0, &p) || !get_integer_arg(env, argv[5], "outLen", 1, 1 << 20, &out_len))
    return NULL;
  scrypt_job_t *j = calloc(1, sizeof *j);
  napi_value promise, name;
  if (!j || !(j->pass = malloc(pass_len ? pass_len : 1)) || !(j->salt = malloc(salt_len ? salt_len : 1)) || !(j->out = malloc((size_t)out_len))) {
    if (j) scrypt_job_free(j);
    throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  memcpy(j->pass, pass, pass_len);
  memcpy(j->salt, salt, salt_len);
  j->pass_len = pass_len, j->salt_len = salt_len, j->out_len = (size_t)out_len;
  j->n = (uint64_t)n, j->r = (uint32_t)r, j->p = (uint32_t)p;
  NAPI_TRY(env, napi_create_promise(env, &j->deferred, &promise), fail);
  NAPI_TRY(env, napi_create_string_utf8(env, "bfs.scrypt", NAPI_AUTO_LENGTH, &name), fail);
  NAPI_TRY(env, napi_create_async_work(env, NULL, name, scrypt_job_execute, scrypt_job_complete, j, &j->work), fail);
  NAPI_TRY(env, napi_queue_async_work(env, j->work), fail);
  return promise;
fail:
  if (j->work) napi_delete_async_work(env, j->work);
  scrypt_job_free(j);
  return NULL;
}

/* ---- AEAD (aead.c) ---- */

/*
 * aeadSeal(alg, key, nonce, aad, src, srcOffset, srcLength, out, outOffset): seals the source
 * range into out at outOffset (ciphertext ‖ 16-byte tag); returns srcLength + 16.
 * aeadOpen(same): opens the source range (ciphertext ‖ tag) into out at outOffset; returns
 * srcLength - 16, or -1 when it does not authenticate (out's bytes there are then garbage).
 * alg: 0 AES-256-GCM, 1 ChaCha20-Poly1305. out's range may be the source's exactly (in
 * place), or not overlap it at all. Runs on the calling thread.
 */
static napi_value aead_call(napi_env env, napi_callback_info info, int seal) {
  GET_ARGS(env, info, 9);
  double alg, so, sn, oo;
  void *key, *nonce, *aad, *src, *out;
  size_t key_len, nonce_len, aad_len, src_size, out_size;
  if (!get_integer_arg(env, argv[0], "alg", 0, 1, &alg) || !get_bytes_arg(env, argv[1], "key", &key, &key_len) ||
      !get_bytes_arg(env, argv[2], "nonce", &nonce, &nonce_len) || !get_bytes_arg(env, argv[3], "aad", &aad, &aad_len) ||
      !get_bytes_arg(env, argv[4], "src", &src, &src_size) ||
      !get_integer_arg(env, argv[5], "srcOffset", 0, MAX_SAFE_INTEGER, &so) ||
      !get_integer_arg(env, argv[6], "srcLength", 0, MAX_SAFE_INTEGER, &sn) ||
      !get_bytes_arg(env, argv[7], "out", &out, &out_size) ||
      !get_integer_arg(env, argv[8], "outOffset", 0, MAX_SAFE_INTEGER, &oo))
    return NULL;
  if (key_len != BFS_AEAD_KEY_BYTES || nonce_len != BFS_AEAD_NONCE_BYTES) {
    throw_range(env, "aead: the key is 32 bytes and the nonce 12");
    return NULL;
  }
  if (so + sn > (double)src_size) {
    throw_range(env, "aead: the source range is outside its buffer");
    return NULL;
  }
  if (!seal && sn < BFS_AEAD_TAG_BYTES) {
    throw_range(env, "aead: a sealed message is at least its 16-byte tag");
    return NULL;
  }
  double need = seal ? sn + BFS_AEAD_TAG_BYTES : sn - BFS_AEAD_TAG_BYTES;
  if (oo + need > (double)out_size) {
    throw_range(env, "aead: the output does not fit in its buffer");
    return NULL;
  }
  const uint8_t *in = (const uint8_t *)src + (size_t)so;
  uint8_t *dst = (uint8_t *)out + (size_t)oo;
  /* in place, or apart: [in, in + sn) against [dst, dst + need) */
  if (dst != in && dst < in + (size_t)sn && in < dst + (size_t)need) {
    throw_range(env, "aead: the output overlaps the source (only in place is allowed)");
    return NULL;
  }
  long long r = seal ? bfs_aead_seal((int)alg, key, nonce, aad, aad_len, in, (size_t)sn, dst)
                     : bfs_aead_open((int)alg, key, nonce, aad, aad_len, in, (size_t)sn, dst);
  if (r == BFS_AEAD_ERROR) {
    napi_throw_error(env, NULL, "aead: OpenSSL could not set up the cipher");
    return NULL;
  }
  napi_value v;
  napi_create_double(env, (double)r, &v);
  return v;
}

static napi_value js_aead_seal(napi_env env, napi_callback_info info) { return aead_call(env, info, 1); }
static napi_value js_aead_open(napi_env env, napi_callback_info info) { return aead_call(env, info, 0); }

/* blake3Into(src, srcOffset, srcLength, key|null, out, outOffset, outLength) */
static napi_value js_blake3_into(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 7);
  uint8_t *src, *out;
  size_t src_start, src_len, out_len;
  const uint8_t *key;
  if (!get_range_args(env, argv[0], argv[1], argv[2], "src", &src, &src_start, &src_len) ||
      !get_blake3_key_arg(env, argv[3], &key) ||
      !get_out_range_args(env, argv[4], argv[5], argv[6], &out, &out_len))
    return NULL;
  blake3_hasher h;
  if (key) blake3_hasher_init_keyed(&h, key);
  else blake3_hasher_init(&h);
  blake3_hasher_update(&h, src + src_start, src_len);
  blake3_hasher_finalize(&h, out, out_len);
  return NULL;
}

static void blake3_hasher_free(napi_env env, void *data, void *hint) {
  free(data);
}

/* blake3HasherNew(key|null): an opaque incremental hasher (freed with its JS object). */
static napi_value js_blake3_hasher_new(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  const uint8_t *key;
  if (!get_blake3_key_arg(env, argv[0], &key)) return NULL;
  blake3_hasher *h = malloc(sizeof *h);
  if (!h) {
    throw_errno(env, ENOMEM, "malloc", NULL);
    return NULL;
  }
  if (key) blake3_hasher_init_keyed(h, key);
  else blake3_hasher_init(h);
  napi_value ext;
  if (napi_create_external(env, h, blake3_hasher_free, NULL, &ext) != napi_ok) {
    free(h);
    throw_napi_failure(env, "napi_create_external");
    return NULL;
  }
  if (napi_type_tag_object(env, ext, &BLAKE3_HASHER_TAG) != napi_ok) {
    throw_napi_failure(env, "napi_type_tag_object");
    return NULL;
  }
  return ext;
}

static blake3_hasher *get_blake3_hasher_arg(napi_env env, napi_value v) {
  napi_valuetype t;
  bool tagged = false;
  void *data = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_check_object_type_tag(env, v, &BLAKE3_HASHER_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, v, &data) != napi_ok) {
    throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"hasher\" argument must be a hasher from blake3HasherNew");
    return NULL;
  }
  return data;
}

/* blake3HasherUpdate(hasher, src, srcOffset, srcLength) */
static napi_value js_blake3_hasher_update(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  blake3_hasher *h = get_blake3_hasher_arg(env, argv[0]);
  uint8_t *src;
  size_t start, len;
  if (!h || !get_range_args(env, argv[1], argv[2], argv[3], "src", &src, &start, &len)) return NULL;
  blake3_hasher_update(h, src + start, len);
  return NULL;
}

/* blake3HasherFinal(hasher, out, outOffset, outLength): the digest so far (the hasher may go on). */
static napi_value js_blake3_hasher_final(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 4);
  blake3_hasher *h = get_blake3_hasher_arg(env, argv[0]);
  uint8_t *out;
  size_t out_len;
  if (!h || !get_out_range_args(env, argv[1], argv[2], argv[3], &out, &out_len)) return NULL;
  blake3_hasher_finalize(h, out, out_len);
  return NULL;
}

/* blake3HasherReset(hasher): back to no input, same key. */
static napi_value js_blake3_hasher_reset(napi_env env, napi_callback_info info) {
  GET_ARGS(env, info, 1);
  blake3_hasher *h = get_blake3_hasher_arg(env, argv[0]);
  if (h) blake3_hasher_reset(h);
  return NULL;
}

/* ---- module ------------------------------------------------------------- */

/* fastpath_napi.c: the native read path and the fuse-native hook table */
napi_value bfs_fastpath_init(napi_env env, napi_value exports);
/* bilog_napi.c: the before-image capture engine (bilog.c) */
napi_value bfs_bilog_init(napi_env env, napi_value exports);

NAPI_MODULE_INIT() {
  napi_value stat_fields;
  if (napi_create_uint32(env, STAT_FIELDS, &stat_fields) != napi_ok) return NULL;
  napi_value at_constants = make_at_constants(env);
  if (!at_constants) return NULL;
  napi_value scrypt_version_v;
  if (napi_create_string_utf8(env, bfs_scrypt_version(), NAPI_AUTO_LENGTH, &scrypt_version_v) != napi_ok) return NULL;
  napi_value aead_version_v;
  if (napi_create_string_utf8(env, bfs_aead_version(), NAPI_AUTO_LENGTH, &aead_version_v) != napi_ok) return NULL;
  napi_value blake3_version_v;
  if (napi_create_string_utf8(env, blake3_version(), NAPI_AUTO_LENGTH, &blake3_version_v) != napi_ok) return NULL;
  napi_property_descriptor props[] = {
    {"scanDirPacked", NULL, js_scan_dir_packed, NULL, NULL, NULL, napi_enumerable, NULL},
    {"scanDirAsync", NULL, js_scan_dir_async, NULL, NULL, NULL, napi_enumerable, NULL},
    {"readFilesAsync", NULL, js_read_files_async, NULL, NULL, NULL, napi_enumerable, NULL},
    {"lstatRecord", NULL, js_lstat_record, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fstatRecord", NULL, js_fstat_record, NULL, NULL, NULL, napi_enumerable, NULL},
    {"getXattrs", NULL, js_get_xattrs, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setXattr", NULL, js_set_xattr, NULL, NULL, NULL, napi_enumerable, NULL},
    {"dataRegions", NULL, js_data_regions, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setTimes", NULL, js_set_times, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mknod", NULL, js_mknod, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blockDeviceSize", NULL, js_block_device_size, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blockDeviceSectorSize", NULL, js_block_device_sector_size, NULL, NULL, NULL, napi_enumerable, NULL},
    {"flushBlockDevice", NULL, js_flush_block_device, NULL, NULL, NULL, napi_enumerable, NULL},
    {"alignedBuffer", NULL, js_aligned_buffer, NULL, NULL, NULL, napi_enumerable, NULL},
    {"adviseHugePages", NULL, js_advise_huge_pages, NULL, NULL, NULL, napi_enumerable, NULL},
    {"dirListing", NULL, js_dir_listing, NULL, NULL, NULL, napi_enumerable, NULL},
    {"dirListingLazyForTest", NULL, js_dir_listing_lazy, NULL, NULL, NULL, napi_enumerable, NULL},
    {"dirScan", NULL, js_dir_scan, NULL, NULL, NULL, napi_enumerable, NULL},
    {"findWalk", NULL, js_find_walk, NULL, NULL, NULL, napi_enumerable, NULL},
    {"dirDiff", NULL, js_dir_diff, NULL, NULL, NULL, napi_enumerable, NULL},
    {"pieceRaw", NULL, js_piece_raw, NULL, NULL, NULL, napi_enumerable, NULL},
    {"trainDictionary", NULL, js_train_dictionary, NULL, NULL, NULL, napi_enumerable, NULL},
    {"freezeFs", NULL, js_freeze_fs, NULL, NULL, NULL, napi_enumerable, NULL},
    {"thawFs", NULL, js_thaw_fs, NULL, NULL, NULL, napi_enumerable, NULL},
    {"detach", NULL, js_detach, NULL, NULL, NULL, napi_enumerable, NULL},
    {"exitWatchdog", NULL, js_exit_watchdog, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fadvise", NULL, js_fadvise, NULL, NULL, NULL, napi_enumerable, NULL},
    {"cachestat", NULL, js_cachestat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"flock", NULL, js_flock, NULL, NULL, NULL, napi_enumerable, NULL},
    {"hashBlocks", NULL, js_hash_blocks, NULL, NULL, NULL, napi_enumerable, NULL},
    {"xxh64Into", NULL, js_xxh64_into, NULL, NULL, NULL, napi_enumerable, NULL},
    {"openat2", NULL, js_openat2, NULL, NULL, NULL, napi_enumerable, NULL},
    {"openBeneathWalk", NULL, js_open_beneath_walk, NULL, NULL, NULL, napi_enumerable, NULL},
    {"close", NULL, js_close, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mkdirat", NULL, js_mkdirat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"symlinkat", NULL, js_symlinkat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"mknodat", NULL, js_mknodat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"linkat", NULL, js_linkat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"renameat2", NULL, js_renameat2, NULL, NULL, NULL, napi_enumerable, NULL},
    {"unlinkat", NULL, js_unlinkat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fstatatRecord", NULL, js_fstatat_record, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fchownat", NULL, js_fchownat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fchmodat", NULL, js_fchmodat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"utimensat", NULL, js_utimensat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"futimens", NULL, js_futimens, NULL, NULL, NULL, napi_enumerable, NULL},
    {"fsetxattr", NULL, js_fsetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
    {"setxattrat", NULL, js_setxattrat, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blake3Into", NULL, js_blake3_into, NULL, NULL, NULL, napi_enumerable, NULL},
    {"aeadSeal", NULL, js_aead_seal, NULL, NULL, NULL, napi_enumerable, NULL},
    {"aeadOpen", NULL, js_aead_open, NULL, NULL, NULL, napi_enumerable, NULL},
    {"aeadVersion", NULL, NULL, NULL, NULL, aead_version_v, napi_enumerable, NULL},
    {"scryptAsync", NULL, js_scrypt_async, NULL, NULL, NULL, napi_enumerable, NULL},
    {"scryptVersion", NULL, NULL, NULL, NULL, scrypt_version_v, napi_enumerable, NULL},
    {"blake3HasherNew", NULL, js_blake3_hasher_new, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blake3HasherUpdate", NULL, js_blake3_hasher_update, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blake3HasherFinal", NULL, js_blake3_hasher_final, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blake3HasherReset", NULL, js_blake3_hasher_reset, NULL, NULL, NULL, napi_enumerable, NULL},
    {"blake3Version", NULL, NULL, NULL, NULL, blake3_version_v, napi_enumerable, NULL},
    {"atConstants", NULL, NULL, NULL, NULL, at_constants, napi_enumerable, NULL},
    {"STAT_FIELDS", NULL, NULL, NULL, NULL, stat_fields, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok)
    return NULL;
  if (!bfs_fastpath_init(env, exports)) return NULL;
  return bfs_bilog_init(env, exports);
}
