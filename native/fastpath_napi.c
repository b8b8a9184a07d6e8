/*
 * N-API glue of the fast path (hooks.h, nread.h): what src/native/fastpath.ts calls.
 * Part of bfs_native.node (bfs_native.c calls bfs_fastpath_init from its module init).
 * Conventions as in bfs_native.c: synchronous calls; wrong argument types throw TypeError
 * (ERR_INVALID_ARG_TYPE), wrong values TypeError (ERR_INVALID_ARG_VALUE) or RangeError
 * (ERR_OUT_OF_RANGE); no memory throws an Error with code ENOMEM.
 *
 *   fastPathNew(readCacheBytes, statEntries, statGetattr) -> fp (an external);
 *                                      readCacheBytes -1: no read path; statEntries 0: no stat cache
 *   fastPathId(fp) -> id               fastPathById(id) -> fp (the same state, e.g. in a worker)
 *   fastPathCache(fp, bytes)           frame cache bound
 *   fastPathUnit(fp, id, fd, frameBytes, Float64Array [offset, comp, raw] per frame)
 *   fastPathRetire(fp, id) -> int      fastPathFile(fp, fh, size, Float64Array extents)
 *   fastPathRelease(fp, fh)            fastPathInfo(fp) -> Float64Array
 *   fastPathClose(fp) -> int           fastPathRead(fp, fh, dst, pos) -> int (tests)
 *   fastPathHooks(fp) -> external of the fuse_native_hooks_t table
 *   fastPathTestLoadDelay(fp, us)      tests: every frame load sleeps first
 *   fastPathStatInfo(fp) -> Float64Array [entries, hits, misses, inserts]
 *   fastPathStatSeen(fp, dir|null, name, Float64Array [mode, size, ino, nlink, mtimeSec, mtimeNsec], flags)
 *   fastPathStatGet(fp, path) -> Float64Array (as above, + flags) | null     (tests)
 *   fastPathUnit(..., stream, unit, unitBlocks) also says where the unit is (the native open)
 *   fastPathOpenFiles(fp, on)          opens answered in C (hooks.c hook_open)
 *   fastPathAdopt(fp, fh) -> bool      JavaScript serves native handle fh too (release goes there)
 *   fastPathOpenForTest(fp, path) -> fh | -1      fastPathReleaseForTest(fp, fh) -> 0 | -1
 *   fastPathClose also empties the stat cache.
 *
 * Fast paths are never freed (a libfuse thread may call a hook of one at any time until the
 * process exits); closing one frees its tables. At most FP_MAX per process.
 */
#include <node_api.h>

#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aead.h"
#include "hooks.h"
#include "dirlist.h"

#define FP_MAGIC 0x6874617074736166ULL /* "fastpath" */
#define FP_MAX 4096

typedef struct {
  uint64_t magic;
  uint32_t id;
  bfs_hooks_t hooks;
} fastpath_t;

static fastpath_t *fp_registry[FP_MAX];
static uint32_t fp_count;
static pthread_mutex_t fp_registry_mu = PTHREAD_MUTEX_INITIALIZER;

static void fp_throw_type(napi_env env, const char *code, const char *msg) { napi_throw_type_error(env, code, msg); }

static void fp_throw_enomem(napi_env env) { napi_throw_error(env, "ENOMEM", "ENOMEM: out of memory, malloc"); }

static bool fp_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  for (size_t i = argc; i < n; i++) napi_get_undefined(env, &argv[i]);
  return true;
}

static bool fp_integer(napi_env env, napi_value v, const char *name, double lo, double hi, double *out) {
  napi_valuetype t;
  char msg[200];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be of type number", name);
    fp_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  double d = 0;
  napi_get_value_double(env, v, &d);
  if (!isfinite(d) || d != trunc(d) || d < lo || d > hi) {
    snprintf(msg, sizeof msg,
             "The value of \"%s\" is out of range. It must be an integer >= %.0f and <= %.0f. Received %.17g", name,
             lo, hi, d);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = d;
  return true;
}

static bool fp_f64(napi_env env, napi_value v, const char *name, const double **data, size_t *count) {
  bool is_ta = false;
  napi_typedarray_type tat = napi_int8_array;
  void *d = NULL;
  if (napi_is_typedarray(env, v, &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, v, &tat, count, &d, NULL, NULL) != napi_ok || tat != napi_float64_array) {
    char msg[160];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be an instance of Float64Array", name);
    fp_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  *data = (const double *)d;
  return true;
}

static fastpath_t *fp_of(napi_env env, napi_value v) {
  void *p = NULL;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external || napi_get_value_external(env, v, &p) != napi_ok ||
      p == NULL || ((fastpath_t *)p)->magic != FP_MAGIC) {
    fp_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"fp\" argument must be a fast path (from fastPathNew)");
    return NULL;
  }
  return (fastpath_t *)p;
}

static napi_value fp_external(napi_env env, fastpath_t *fp) {
  napi_value out;
  /* no finalizer: the fast path outlives every JS value that names it */
  if (napi_create_external(env, fp, NULL, NULL, &out) != napi_ok) return NULL;
  return out;
}

static napi_value fp_number(napi_env env, double d) {
  napi_value out;
  if (napi_create_double(env, d, &out) != napi_ok) return NULL;
  return out;
}

static napi_value js_fp_new(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double cache, entries;
  bool getattr = false;
  napi_valuetype t;
  if (!fp_args(env, info, 3, argv) || !fp_integer(env, argv[0], "readCacheBytes", -1, 9007199254740991.0, &cache) ||
      !fp_integer(env, argv[1], "statEntries", 0, 1e9, &entries))
    return NULL;
  if (napi_typeof(env, argv[2], &t) != napi_ok || t != napi_boolean) {
    fp_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"statGetattr\" argument must be of type boolean");
    return NULL;
  }
  napi_get_value_bool(env, argv[2], &getattr);
  fastpath_t *fp = calloc(1, sizeof *fp);
  nr_t *nr = cache >= 0 ? nr_new((uint64_t)cache) : NULL;
  if (nr) nr_set_opener(nr, bfs_aead_open); /* encrypted units' frames (native/aead.c) */
  sc_t *sc = entries > 0 ? sc_new((size_t)entries, getattr) : NULL;
  if (fp == NULL || (cache >= 0 && nr == NULL) || (entries > 0 && sc == NULL)) {
    free(fp);
    nr_free(nr);
    sc_free(sc);
    fp_throw_enomem(env);
    return NULL;
  }
  pthread_mutex_lock(&fp_registry_mu);
  if (fp_count >= FP_MAX) {
    pthread_mutex_unlock(&fp_registry_mu);
    free(fp);
    nr_free(nr);
    sc_free(sc);
    napi_throw_error(env, "EMFILE", "bfs_native: too many fast paths in this process");
    return NULL;
  }
  fp->magic = FP_MAGIC;
  fp->id = fp_count;
  bfs_hooks_init(&fp->hooks, nr, sc);
  __atomic_store_n(&fp_registry[fp_count++], fp, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&fp_registry_mu);
  return fp_external(env, fp);
}

static napi_value js_fp_id(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!fp_args(env, info, 1, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  return fp ? fp_number(env, fp->id) : NULL;
}

static napi_value js_fp_by_id(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  double id;
  if (!fp_args(env, info, 1, argv) || !fp_integer(env, argv[0], "id", 0, FP_MAX - 1, &id)) return NULL;
  fastpath_t *fp = __atomic_load_n(&fp_registry[(uint32_t)id], __ATOMIC_ACQUIRE);
  if (fp == NULL) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "bfs_native: no fast path has this id");
    return NULL;
  }
  return fp_external(env, fp);
}

static napi_value js_fp_cache(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double bytes;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "bytes", 0, 9007199254740991.0, &bytes)) return NULL;
  if (fp->hooks.nr) nr_set_cache(fp->hooks.nr, (uint64_t)bytes);
  return NULL;
}

/* A table nread refused: a wrong value from the caller (or no memory). */
static void fp_refused(napi_env env, const char *why) {
  if (strcmp(why, "out of memory") == 0) {
    fp_throw_enomem(env);
    return;
  }
  char msg[160];
  snprintf(msg, sizeof msg, "bfs_native fast path: %s", why);
  fp_throw_type(env, "ERR_INVALID_ARG_VALUE", msg);
}

static napi_value js_fp_unit(napi_env env, napi_callback_info info) {
  napi_value argv[12];
  double id, fd, frame_bytes, dict = 0;
  const double *frames;
  size_t count;
  if (!fp_args(env, info, 12, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "id", 0, NR_MAX_UNITS - 1, &id) ||
      !fp_integer(env, argv[2], "fd", 1, 2147483647.0, &fd) ||
      !fp_integer(env, argv[3], "frameBytes", 1, 4294967295.0, &frame_bytes) ||
      !fp_f64(env, argv[4], "frames", &frames, &count))
    return NULL;
  if (fp->hooks.nr == NULL) return NULL;
  /* optional: where the unit is (stream, unit, unitBlocks), for the native open */
  napi_valuetype t = napi_undefined;
  napi_typeof(env, argv[5], &t);
  double stream = 0, unit = 0, unit_blocks = 0;
  bool at = t != napi_undefined;
  if (at && (!fp_integer(env, argv[5], "stream", 0, 4294967295.0, &stream) || !fp_integer(env, argv[6], "unit", 0, 4294967295.0, &unit) ||
             !fp_integer(env, argv[7], "unitBlocks", 1, 4294967295.0, &unit_blocks)))
    return NULL;
  /* optional: the dictionary slot its frames need (fastPathDict) */
  napi_valuetype dt = napi_undefined;
  napi_typeof(env, argv[8], &dt);
  if (dt != napi_undefined && !fp_integer(env, argv[8], "dict", 0, NR_MAX_DICTS - 1, &dict)) return NULL;
  /* optional: an encrypted unit's AEAD (0/1, native/aead.h), 32-byte key and revision (the
   * frames' AAD, with stream and unit: `at` is then required) */
  napi_valuetype st = napi_undefined;
  napi_typeof(env, argv[9], &st);
  nr_seal_t seal, *sealp = NULL;
  if (st != napi_undefined) {
    double alg, rev;
    bool is_buf = false;
    void *key = NULL;
    size_t key_len = 0;
    if (!fp_integer(env, argv[9], "sealAlg", 0, 1, &alg) || !fp_integer(env, argv[11], "revision", 0, 4294967295.0, &rev)) return NULL;
    if (napi_is_buffer(env, argv[10], &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, argv[10], &key, &key_len) != napi_ok || key_len != sizeof seal.key || !at) {
      fp_throw_type(env, "ERR_INVALID_ARG_TYPE", "a sealed unit needs its place and a 32-byte key Buffer");
      return NULL;
    }
    seal.alg = (int)alg;
    memcpy(seal.key, key, sizeof seal.key);
    seal.stream = (uint32_t)stream, seal.unit = (uint32_t)unit, seal.revision = (uint32_t)rev;
    sealp = &seal;
  }
  const char *why = nr_unit(fp->hooks.nr, (uint32_t)id, (int)fd, (uint64_t)frame_bytes, frames, count, (uint32_t)dict, sealp);
  if (sealp) explicit_bzero(&seal, sizeof seal);
  if (why == NULL && at) why = nr_unit_at(fp->hooks.nr, (uint32_t)id, (uint64_t)stream, (uint64_t)unit, (uint64_t)unit_blocks);
  if (why) fp_refused(env, why);
  return NULL;
}

static char *fp_bytes(napi_env env, napi_value v, const char *name, size_t *len);

/* fastPathDict(fp, slot, dict): slot (1 … 255) holds the zstd dictionary `dict` (a Buffer,
 * copied) for the units registered with it (format.md §2.9.1) */
static napi_value js_fp_dict(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  double slot;
  size_t len = 0;
  if (!fp_args(env, info, 3, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "slot", 1, NR_MAX_DICTS - 1, &slot)) return NULL;
  char *bytes = fp_bytes(env, argv[2], "dict", &len);
  if (bytes == NULL) return NULL;
  const char *why = fp->hooks.nr ? nr_dict(fp->hooks.nr, (uint32_t)slot, bytes, len) : NULL;
  free(bytes);
  if (why) fp_refused(env, why);
  return NULL;
}

/* fastPathOpenFiles(fp, on): opens of files a C listing holds the map of are answered in C */
static napi_value js_fp_open_files(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  bool on = false;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  if (napi_get_value_bool(env, argv[1], &on) != napi_ok) {
    fp_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"on\" argument must be of type boolean");
    return NULL;
  }
  __atomic_store_n(&fp->hooks.open_files, on && fp->hooks.nr && fp->hooks.sc ? 1 : 0, __ATOMIC_RELEASE);
  return NULL;
}

/* fastPathAdopt(fp, fh) -> bool: JavaScript serves native handle fh too (its release goes there) */
static napi_value js_fp_adopt(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  double fh;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "fh", 0, 9007199254740991.0, &fh)) return NULL;
  napi_get_boolean(env, fp->hooks.nr ? nr_adopt(fp->hooks.nr, (uint64_t)fh) : false, &out);
  return out;
}

/* Tests: the open hook as a libfuse thread calls it (read-only): the handle, or -1 (JavaScript) */
static napi_value js_fp_open_for_test(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  size_t len = 0;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  char *path = fp_bytes(env, argv[1], "path", &len);
  if (path == NULL) return NULL;
  uint64_t fh = 0;
  int rc = fp->hooks.table.open ? fp->hooks.table.open(&fp->hooks, path, O_RDONLY, &fh) : -1;
  free(path);
  return fp_number(env, rc == 0 ? (double)fh : -1);
}

/* Tests: the release hook: 0 (released in C) or -1 (JavaScript's) */
static napi_value js_fp_release_for_test(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double fh;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "fh", 0, 9007199254740991.0, &fh)) return NULL;
  return fp_number(env, fp->hooks.table.release ? fp->hooks.table.release(&fp->hooks, (uint64_t)fh) : -1);
}

static napi_value js_fp_retire(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double id;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "id", 0, NR_MAX_UNITS - 1, &id)) return NULL;
  return fp_number(env, fp->hooks.nr ? nr_retire(fp->hooks.nr, (uint32_t)id) : 0);
}

static napi_value js_fp_file(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double fh, size;
  const double *ext;
  size_t count;
  if (!fp_args(env, info, 4, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "fh", 0, 9007199254740991.0, &fh) ||
      !fp_integer(env, argv[2], "size", 0, 9007199254740991.0, &size) || !fp_f64(env, argv[3], "extents", &ext, &count))
    return NULL;
  if (fp->hooks.nr == NULL) return NULL;
  const char *why = nr_file(fp->hooks.nr, (uint64_t)fh, (uint64_t)size, ext, count);
  if (why) fp_refused(env, why);
  return NULL;
}

static napi_value js_fp_release(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double fh;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "fh", 0, 9007199254740991.0, &fh)) return NULL;
  if (fp->hooks.nr) nr_release(fp->hooks.nr, (uint64_t)fh);
  return NULL;
}

#define FP_INFO_FIELDS 10

static napi_value js_fp_info(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!fp_args(env, info, 1, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  nr_info_t i;
  memset(&i, 0, sizeof i);
  uint64_t opens = 0, declined = 0, releases = 0;
  if (fp->hooks.nr) {
    nr_info(fp->hooks.nr, &i);
    nr_open_info(fp->hooks.nr, &opens, &declined, &releases);
  }
  double v[FP_INFO_FIELDS] = {(double)i.served, (double)i.fallbacks, (double)i.hits, (double)i.misses,
                              (double)i.cached_bytes, (double)i.shared_loads, (double)opens, (double)declined,
                              (double)releases, (double)i.buffers};
  void *data = NULL;
  napi_value ab, ta;
  if (napi_create_arraybuffer(env, sizeof v, &data, &ab) != napi_ok) return NULL;
  memcpy(data, v, sizeof v);
  if (napi_create_typedarray(env, napi_float64_array, FP_INFO_FIELDS, ab, 0, &ta) != napi_ok) return NULL;
  return ta;
}

static napi_value js_fp_close(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!fp_args(env, info, 1, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  int active = fp->hooks.nr ? nr_close(fp->hooks.nr) : 0;
  if (fp->hooks.sc) sc_clear(fp->hooks.sc);
  return fp_number(env, active);
}

static napi_value js_fp_read(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  double fh, pos;
  void *dst = NULL;
  size_t len = 0;
  bool is_buf = false;
  if (!fp_args(env, info, 4, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "fh", 0, 9007199254740991.0, &fh)) return NULL;
  if (napi_is_buffer(env, argv[2], &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, argv[2], &dst, &len) != napi_ok) {
    fp_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"dst\" argument must be a Buffer");
    return NULL;
  }
  if (!fp_integer(env, argv[3], "pos", 0, 9007199254740991.0, &pos)) return NULL;
  int n = fp->hooks.nr ? nr_read(fp->hooks.nr, (uint64_t)fh, dst, len, (int64_t)pos) : -1;
  return fp_number(env, n);
}

static napi_value js_fp_test_delay(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  double us;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || !fp_integer(env, argv[1], "us", 0, 60e6, &us)) return NULL;
  if (fp->hooks.nr) nr_set_test_load_delay_us(fp->hooks.nr, (uint32_t)us);
  return NULL;
}

static napi_value fp_f64_array(napi_env env, const double *v, size_t n) {
  void *data = NULL;
  napi_value ab, ta;
  if (napi_create_arraybuffer(env, n * sizeof(double), &data, &ab) != napi_ok) return NULL;
  memcpy(data, v, n * sizeof(double));
  if (napi_create_typedarray(env, napi_float64_array, n, ab, 0, &ta) != napi_ok) return NULL;
  return ta;
}

static napi_value js_fp_stat_info(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!fp_args(env, info, 1, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  sc_info_t i;
  memset(&i, 0, sizeof i);
  if (fp->hooks.sc) sc_info(fp->hooks.sc, &i);
  double v[5] = {(double)i.entries, (double)i.hits, (double)i.misses, (double)i.inserts, (double)i.listed};
  return fp_f64_array(env, v, 5);
}

/* A Buffer argument's bytes as a NUL-terminated copy (caller frees); NULL after throwing. */
static char *fp_bytes(napi_env env, napi_value v, const char *name, size_t *len) {
  bool is_buf = false;
  void *data = NULL;
  if (napi_is_buffer(env, v, &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, v, &data, len) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "The \"%s\" argument must be a Buffer", name);
    fp_throw_type(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  char *out = malloc(*len + 1);
  if (out == NULL) {
    fp_throw_enomem(env);
    return NULL;
  }
  memcpy(out, data, *len);
  out[*len] = 0;
  return out;
}

static napi_value js_fp_stat_seen(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  napi_valuetype t;
  const double *f;
  size_t count, dlen = 0, nlen = 0;
  double flags;
  if (!fp_args(env, info, 6, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL || napi_typeof(env, argv[1], &t) != napi_ok) return NULL;
  bool more = false; /* argv[5] true: the reply goes on (its end is a later call with name null) */
  napi_get_value_bool(env, argv[5], &more);
  napi_valuetype nt;
  if (napi_typeof(env, argv[2], &nt) == napi_ok && nt == napi_null) {
    sc_seen(fp->hooks.sc, NULL, NULL, 0, NULL, 0); /* the end of a reply */
    return NULL;
  }
  char *dir = t == napi_null ? NULL : fp_bytes(env, argv[1], "dir", &dlen);
  if (t != napi_null && dir == NULL) return NULL;
  char *name = fp_bytes(env, argv[2], "name", &nlen);
  if (name == NULL || !fp_f64(env, argv[3], "fields", &f, &count) || !fp_integer(env, argv[4], "flags", 0, 3, &flags)) {
    free(dir);
    free(name);
    return NULL;
  }
  if (count >= 6) {
    struct stat st;
    memset(&st, 0, sizeof st);
    st.st_mode = (mode_t)f[0];
    st.st_size = (off_t)f[1];
    st.st_ino = (ino_t)f[2];
    st.st_nlink = (nlink_t)f[3];
    st.st_mtim.tv_sec = (time_t)f[4];
    st.st_mtim.tv_nsec = (long)f[5];
    sc_seen(fp->hooks.sc, dir, name, nlen, &st, (uint32_t)flags);
    if (!more) sc_seen(fp->hooks.sc, dir, NULL, 0, NULL, 0); /* a reply of one entry */
  }
  free(dir);
  free(name);
  return NULL;
}

/* fastPathPublishListing(fp, dir, names, stats): a directory's whole readdir answer,
 * published ahead of its readdir (format 1's mount): names a Buffer of NUL-ended names,
 * `.` and `..` first; stats a Float64Array of STAT_FIELDS (18) doubles per name, in the
 * binding's layout (vfs/statpack.ts). The libfuse threads then serve the directory's readdir
 * (sc_readdir) and its entries' getattr from it. Returns the entries published (0: names and
 * stats disagree, or no stat cache: nothing published). */
#define FP_STAT_FIELDS 18
static napi_value js_fp_publish_listing(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  const double *f;
  size_t count = 0, dlen = 0;
  if (!fp_args(env, info, 4, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  bool is_buf = false;
  void *nd = NULL;
  size_t nlen = 0;
  if (napi_is_buffer(env, argv[2], &is_buf) != napi_ok || !is_buf || napi_get_buffer_info(env, argv[2], &nd, &nlen) != napi_ok) {
    fp_throw_type(env, "ERR_INVALID_ARG_TYPE", "The \"names\" argument must be a Buffer");
    return NULL;
  }
  if (!fp_f64(env, argv[3], "stats", &f, &count)) return NULL;
  char *dir = fp_bytes(env, argv[1], "dir", &dlen);
  if (dir == NULL) return NULL;
  size_t total = count / FP_STAT_FIELDS;
  size_t published = 0;
  if (fp->hooks.sc != NULL && total >= 2 && count % FP_STAT_FIELDS == 0) {
    size_t n = total - 2;
    const char **np = malloc((n ? n : 1) * sizeof(char *));
    size_t *nl = malloc((n ? n : 1) * sizeof(size_t));
    struct stat *sts = malloc((n ? n : 1) * sizeof(struct stat));
    uint32_t *fl = malloc((n ? n : 1) * sizeof(uint32_t));
    struct stat dot, dotdot;
    const char *p = (const char *)nd, *end = p + nlen;
    int ok = np && nl && sts && fl;
    for (size_t k = 0; ok && k < total; k++) {
      const char *z = p < end ? memchr(p, 0, (size_t)(end - p)) : NULL;
      if (z == NULL) {
        ok = 0;
        break;
      }
      const double *s = f + k * FP_STAT_FIELDS;
      if (s[0] == 0) ok = 0; /* an entry without a type: not a listing the binding would keep */
      if (k == 0) dl_to_stat(s, &dot);
      else if (k == 1) dl_to_stat(s, &dotdot);
      else {
        np[k - 2] = p;
        nl[k - 2] = (size_t)(z - p);
        dl_to_stat(s, &sts[k - 2]);
        fl[k - 2] = (uint32_t)s[17] & SC_NO_XATTRS;
      }
      p = z + 1;
    }
    if (ok && p == end) {
      sc_publish_full(fp->hooks.sc, dir, dlen, n, np, nl, sts, fl, &dot, &dotdot);
      published = n;
    }
    free(np);
    free(nl);
    free(sts);
    free(fl);
  }
  free(dir);
  return fp_number(env, (double)published);
}

static napi_value js_fp_stat_get(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  size_t len = 0;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  char *path = fp_bytes(env, argv[1], "path", &len);
  if (path == NULL) return NULL;
  struct stat st;
  uint32_t flags = 0;
  int found = sc_get(fp->hooks.sc, path, &st, &flags, 0);
  free(path);
  if (!found) {
    napi_get_null(env, &out);
    return out;
  }
  /* the summary, then the whole stat packed as statpack.ts packs it (flags at its field 17) */
  double v[7 + DL_STAT_FIELDS] = {(double)st.st_mode, (double)st.st_size, (double)st.st_ino, (double)st.st_nlink,
                                  (double)st.st_mtim.tv_sec, (double)st.st_mtim.tv_nsec, (double)flags,
                                  (double)st.st_mode, (double)st.st_uid, (double)st.st_gid, (double)st.st_size, 0,
                                  (double)st.st_nlink, (double)(st.st_ino & 0xffffffffu), (double)(st.st_ino >> 32),
                                  (double)st.st_rdev, (double)st.st_blksize, (double)st.st_blocks,
                                  (double)st.st_atim.tv_sec, (double)st.st_atim.tv_nsec, (double)st.st_mtim.tv_sec,
                                  (double)st.st_mtim.tv_nsec, (double)st.st_ctim.tv_sec, (double)st.st_ctim.tv_nsec,
                                  (double)flags};
  return fp_f64_array(env, v, 7 + DL_STAT_FIELDS);
}

static napi_value js_fp_hooks(napi_env env, napi_callback_info info) {
  napi_value argv[1], out;
  if (!fp_args(env, info, 1, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  if (napi_create_external(env, &fp->hooks.table, NULL, NULL, &out) != napi_ok) return NULL;
  return out;
}

/* fastPathDirSource(fp, root, key, inoBase, rootStat, rootRef, rootId): readdir of this
 * generation in C from now on (dirsrc.c). rootStat: STAT_FIELDS doubles (statpack.ts);
 * rootRef: Float64Array [run, pack, offset, storedLen, entries] or null (an empty root);
 * rootId: the root piece's 32-byte id (ignored without rootRef). Once per fast path. */
static napi_value js_fp_dir_source(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!fp_args(env, info, 7, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  size_t rlen = 0, klen = 0, count = 0, rcount = 0;
  const double *st = NULL, *rf = NULL;
  double ino_base;
  char *root = fp_bytes(env, argv[1], "root", &rlen);
  if (root == NULL) return NULL;
  char *key = fp_bytes(env, argv[2], "key", &klen);
  if (key == NULL) {
    free(root);
    return NULL;
  }
  napi_valuetype t;
  napi_typeof(env, argv[5], &t);
  dl_ref_t ref;
  memset(&ref, 0, sizeof ref);
  bool ok = klen == 32 && fp_integer(env, argv[3], "inoBase", 0, 9007199254740991.0, &ino_base) &&
            fp_f64(env, argv[4], "rootStat", &st, &count) && count >= DL_STAT_FIELDS;
  if (ok && t != napi_null) {
    size_t idlen = 0;
    char *id = NULL;
    ok = fp_f64(env, argv[5], "rootRef", &rf, &rcount) && rcount >= 5 && (id = fp_bytes(env, argv[6], "rootId", &idlen)) != NULL && idlen == 32;
    if (ok) {
      ref.run = (uint64_t)rf[0];
      ref.pack = (uint64_t)rf[1];
      ref.offset = (uint64_t)rf[2];
      ref.stored_len = (uint32_t)rf[3];
      ref.entries = (uint32_t)rf[4];
      memcpy(ref.id, id, 32);
      ref.has = 1;
    }
    free(id);
  }
  if (!ok) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) fp_throw_type(env, "ERR_INVALID_ARG_VALUE", "fastPathDirSource: a 32-byte key, a stat of STAT_FIELDS doubles, and a root reference of 5 numbers with a 32-byte id");
    free(root);
    free(key);
    return NULL;
  }
  struct stat rst;
  dl_to_stat(st, &rst);
  ds_t *ds = fp->hooks.sc ? ds_new(root, (const uint8_t *)key, ino_base, &rst, &ref) : NULL;
  free(root);
  free(key);
  if (ds != NULL) {
    ds_t *expected = NULL;
    if (!__atomic_compare_exchange_n(&fp->hooks.ds, &expected, ds, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
      fp_throw_type(env, "ERR_INVALID_STATE", "fastPathDirSource: this fast path has one already");
      return NULL; /* (ds is leaked: once per mount, a caller's bug) */
    }
  }
  return NULL;
}

static napi_value js_fp_dir_info(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!fp_args(env, info, 1, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  uint64_t served = 0, fallbacks = 0, lookups = 0, lookup_fallbacks = 0;
  ds_t *ds = __atomic_load_n(&fp->hooks.ds, __ATOMIC_ACQUIRE);
  if (ds) ds_stats(ds, &served, &fallbacks, &lookups, &lookup_fallbacks);
  double v[4] = {(double)served, (double)fallbacks, (double)lookups, (double)lookup_fallbacks};
  return fp_f64_array(env, v, 4);
}

/* Tests: what the hook table's getattr answers on a libfuse thread for path ([ino, mode,
 * size, nlink]), or null (asks JavaScript). */
static napi_value js_fp_getattr_for_test(napi_env env, napi_callback_info info) {
  napi_value argv[2], out;
  size_t len = 0;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  char *path = fp_bytes(env, argv[1], "path", &len);
  if (path == NULL) return NULL;
  struct stat st;
  int rc = fp->hooks.table.getattr ? fp->hooks.table.getattr(fp->hooks.table.ctx, path, &st) : -1;
  free(path);
  if (rc != 0) {
    napi_get_null(env, &out);
    return out;
  }
  double v[4] = {(double)st.st_ino, (double)st.st_mode, (double)st.st_size, (double)st.st_nlink};
  return fp_f64_array(env, v, 4);
}

/* Tests: what a libfuse thread's readdir of path would fill (names and stats), or null. */
static int fp_collect(void *buf, const char *name, const struct stat *st, off_t off) {
  (void)off;
  napi_env env = ((napi_env *)buf)[0];
  napi_value arr = ((napi_value *)buf)[1];
  uint32_t n = 0;
  napi_get_array_length(env, arr, &n);
  napi_value o, v;
  napi_create_array_with_length(env, 3, &o);
  napi_create_string_latin1(env, name, NAPI_AUTO_LENGTH, &v);
  napi_set_element(env, o, 0, v);
  napi_create_double(env, (double)st->st_ino, &v);
  napi_set_element(env, o, 1, v);
  napi_create_double(env, (double)st->st_mode, &v);
  napi_set_element(env, o, 2, v);
  napi_set_element(env, arr, n, o);
  return 0;
}

static napi_value js_fp_readdir_for_test(napi_env env, napi_callback_info info) {
  napi_value argv[2], arr, nul;
  size_t len = 0;
  if (!fp_args(env, info, 2, argv)) return NULL;
  fastpath_t *fp = fp_of(env, argv[0]);
  if (fp == NULL) return NULL;
  char *path = fp_bytes(env, argv[1], "path", &len);
  if (path == NULL) return NULL;
  napi_create_array(env, &arr);
  void *buf[2] = {(void *)env, (void *)arr};
  ds_t *ds = __atomic_load_n(&fp->hooks.ds, __ATOMIC_ACQUIRE);
  int rc = ds ? ds_readdir(ds, fp->hooks.sc, path, buf, fp_collect) : sc_readdir(fp->hooks.sc, path, buf, fp_collect);
  free(path);
  napi_get_null(env, &nul);
  return rc == 0 ? arr : nul;
}

static napi_value js_fp_pack_path(napi_env env, napi_callback_info info) {
  napi_value argv[3], out;
  size_t len = 0;
  double run, pack;
  if (!fp_args(env, info, 3, argv)) return NULL;
  char *root = fp_bytes(env, argv[0], "root", &len);
  if (root == NULL) return NULL;
  char path[4096 + 64];
  bool ok = fp_integer(env, argv[1], "run", 0, 9007199254740991.0, &run) && fp_integer(env, argv[2], "pack", 0, 9007199254740991.0, &pack) &&
            ds_pack_path(root, (uint64_t)run, (uint64_t)pack, path, sizeof path) == 0;
  free(root);
  if (!ok) {
    napi_get_null(env, &out);
    return out;
  }
  napi_create_string_latin1(env, path, NAPI_AUTO_LENGTH, &out);
  return out;
}

napi_value bfs_fastpath_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"fastPathNew", NULL, js_fp_new, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathId", NULL, js_fp_id, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathById", NULL, js_fp_by_id, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathCache", NULL, js_fp_cache, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathUnit", NULL, js_fp_unit, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathDict", NULL, js_fp_dict, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathRetire", NULL, js_fp_retire, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathFile", NULL, js_fp_file, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathRelease", NULL, js_fp_release, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathInfo", NULL, js_fp_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathClose", NULL, js_fp_close, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathRead", NULL, js_fp_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathHooks", NULL, js_fp_hooks, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathTestLoadDelay", NULL, js_fp_test_delay, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathStatInfo", NULL, js_fp_stat_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathStatSeen", NULL, js_fp_stat_seen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathStatGet", NULL, js_fp_stat_get, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathPublishListing", NULL, js_fp_publish_listing, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathDirSource", NULL, js_fp_dir_source, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathDirInfo", NULL, js_fp_dir_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathReaddirForTest", NULL, js_fp_readdir_for_test, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathGetattrForTest", NULL, js_fp_getattr_for_test, NULL, NULL, NULL, napi_enumerable, NULL},
      {"packPathForTest", NULL, js_fp_pack_path, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathOpenFiles", NULL, js_fp_open_files, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathAdopt", NULL, js_fp_adopt, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathOpenForTest", NULL, js_fp_open_for_test, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fastPathReleaseForTest", NULL, js_fp_release_for_test, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
