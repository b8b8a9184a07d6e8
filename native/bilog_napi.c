/*
 * N-API glue of the BI capture engine (bilog.h): what src/native/index.ts calls. Part of
 * bfs_native.node (bfs_native.c calls bfs_bilog_init from its module init). Conventions as in
 * bfs_native.c: synchronous calls; failed system calls throw an Error shaped like Node's fs
 * errors ({ code: 'ENOTSUP', errno: -95, syscall: 'fanotify_mark', path }); wrong argument
 * types TypeError (ERR_INVALID_ARG_TYPE), wrong values RangeError (ERR_OUT_OF_RANGE).
 *
 *   bilogStart(watchPath, logPath, stallMs, fifoPriority) -> handle (an external)
 *   bilogInfo(h) -> Float64Array [t0Sec, t0Nsec, fifo, schedErrno, fsDev, watchdogPid, quietTreeErrno]
 *   bilogStats(h) -> Float64Array (BILOG_STATS order, see index.ts)
 *   bilogUncovered(h) -> Array<[reason, pid, fd, dev, ino, path]>
 *   bilogReadT0(h, fd, buf, bufOffset, length, position, markRead) -> bytes read
 *   bilogReadLive(h, fd, buf, bufOffset, length, position) -> [bytes read, blocks logged]
 *   bilogIgnore(h, dev, inoHi, inoLo)
 *   bilogOpenQuiet(h, path) -> fd; bilogOpenQuietShared(id, path) -> fd (any thread);
 *   bilogT0StatIno(h, dev, inoHi, inoLo) -> [found, size, mtimeSec, mtimeNsec, ctimeSec, ctimeNsec, igen, uncovered],
 *     or undefined when not found and covered (found 0, uncovered 0: most files);
 *   bilogShare(h) -> id; bilogUnshare(h); bilogReadLiveShared(id, fd, buf, bufOffset, length, position) -> [bytes, logged] (any thread)
 *   bilogReadFileShared(id, path, dev, inoHi, inoLo, buf, bufOffset, length, position, out) (any thread): open quietly,
 *     read live, close; out (a Float64Array of 2) = [bytes, logged]; errors thrown with syscall 'open' or 'read'
 *   bilogMarkRead(h, fd, offset, length)
 *   bilogT0Stat(h, fd) -> Float64Array [size, mtimeSec, mtimeNsec, ctimeSec, ctimeNsec, igen, uncovered]
 *   bilogStop(h) -> Float64Array (stats after the stop)
 *
 * A handle is freed with its JS object (after an implicit stop); bilogStop may come first.
 */
#include <node_api.h>

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bilog.h"
#include <pthread.h>

/* Captures shared with worker threads (bilogShare): the addon's statics are one per process,
 * so a worker's instance finds the capture by id. A read holds the slot (active) so that
 * unsharing, stop and the finalizer wait for reads in progress before the engine can go. */
#define BL_SHARED_MAX 8
static pthread_mutex_t bl_sh_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t bl_sh_cv = PTHREAD_COND_INITIALIZER;
static struct {
  bilog_t *b;
  uint32_t id;
  int active;
} bl_sh[BL_SHARED_MAX];
static uint32_t bl_sh_next = 1;

/* Removes every share of b, waiting for its reads in progress. */
static void bl_unshare_ptr(bilog_t *b) {
  pthread_mutex_lock(&bl_sh_mu);
  for (int i = 0; i < BL_SHARED_MAX; i++) {
    if (bl_sh[i].b != b) continue;
    while (bl_sh[i].active) pthread_cond_wait(&bl_sh_cv, &bl_sh_mu);
    bl_sh[i].b = NULL;
    bl_sh[i].id = 0;
  }
  pthread_mutex_unlock(&bl_sh_mu);
}

static const napi_type_tag BILOG_TAG = {0x62696c6f67686e64ULL, 0x6266732d62696c67ULL};

typedef struct {
  bilog_t *b;
} bl_handle_t;

static const char *bl_errno_name(int err) {
  if (err == EOPNOTSUPP) return "ENOTSUP";
  const char *n = strerrorname_np(err);
  return n ? n : "EUNKNOWN";
}

static void bl_throw_errno(napi_env env, int err, const char *syscall, const char *path) {
  char descbuf[128], msg[PATH_MAX + 256];
  const char *d = strerror_r(err, descbuf, sizeof descbuf);
  char desc[128];
  snprintf(desc, sizeof desc, "%s", d ? d : "unknown error");
  if (desc[0] >= 'A' && desc[0] <= 'Z') desc[0] = (char)(desc[0] - 'A' + 'a');
  if (path) snprintf(msg, sizeof msg, "%s: %s, %s '%s'", bl_errno_name(err), desc, syscall, path);
  else snprintf(msg, sizeof msg, "%s: %s, %s", bl_errno_name(err), desc, syscall);
  napi_value code_v, msg_v, error, v;
  if (napi_create_string_utf8(env, bl_errno_name(err), NAPI_AUTO_LENGTH, &code_v) != napi_ok ||
      napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &msg_v) != napi_ok ||
      napi_create_error(env, code_v, msg_v, &error) != napi_ok) {
    napi_throw_error(env, "ERR_BFS_NATIVE", "bilog: could not create an error");
    return;
  }
  if (napi_create_int32(env, -err, &v) == napi_ok) napi_set_named_property(env, error, "errno", v);
  if (napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, error, "syscall", v);
  if (path && napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &v) == napi_ok) napi_set_named_property(env, error, "path", v);
  napi_throw(env, error);
}

static bool bl_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return false;
  for (size_t i = argc; i < n; i++) napi_get_undefined(env, &argv[i]);
  return true;
}

static bool bl_integer(napi_env env, napi_value v, const char *name, double lo, double hi, double *out) {
  napi_valuetype t;
  char msg[200];
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    snprintf(msg, sizeof msg, "The \"%s\" argument must be of type number", name);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return false;
  }
  double d = 0;
  napi_get_value_double(env, v, &d);
  if (!isfinite(d) || d != trunc(d) || d < lo || d > hi) {
    snprintf(msg, sizeof msg, "The value of \"%s\" is out of range. It must be an integer >= %.0f and <= %.0f. Received %.17g",
             name, lo, hi, d);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", msg);
    return false;
  }
  *out = d;
  return true;
}

/* A path: a string (UTF-8) or a Buffer (raw bytes), no NUL inside. Returns a malloc'd string. */
static char *bl_path(napi_env env, napi_value v, const char *name) {
  napi_valuetype t;
  char msg[160];
  bool isbuf = false;
  napi_typeof(env, v, &t);
  if (t == napi_string) {
    size_t len = 0;
    napi_get_value_string_utf8(env, v, NULL, 0, &len);
    char *s = malloc(len + 1);
    if (!s) return NULL;
    napi_get_value_string_utf8(env, v, s, len + 1, &len);
    if (strlen(s) != len) {
      free(s);
      goto nul;
    }
    return s;
  }
  if (napi_is_typedarray(env, v, &isbuf) == napi_ok && isbuf) {
    void *data;
    size_t len;
    napi_typedarray_type tt;
    napi_get_typedarray_info(env, v, &tt, &len, &data, NULL, NULL);
    if (tt == napi_uint8_array) {
      if (memchr(data, 0, len)) goto nul;
      char *s = malloc(len + 1);
      if (!s) return NULL;
      memcpy(s, data, len);
      s[len] = 0;
      return s;
    }
  }
  snprintf(msg, sizeof msg, "The \"%s\" argument must be of type string or an instance of Buffer", name);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
  return NULL;
nul:
  snprintf(msg, sizeof msg, "The argument '%s' must be a string or Uint8Array without null bytes", name);
  napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
  return NULL;
}

static bilog_t *bl_get(napi_env env, napi_value v, bool running) {
  napi_valuetype t;
  bool tagged = false;
  void *data = NULL;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_external ||
      napi_check_object_type_tag(env, v, &BILOG_TAG, &tagged) != napi_ok || !tagged ||
      napi_get_value_external(env, v, &data) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"capture\" argument must be a handle from bilogStart");
    return NULL;
  }
  bl_handle_t *h = data;
  if (!h->b) {
    napi_throw_error(env, "ERR_BFS_BILOG_STOPPED", "bilog: this capture was stopped");
    return NULL;
  }
  (void)running;
  return h->b;
}

static void bl_finalize(napi_env env, void *data, void *hint) {
  bl_handle_t *h = data;
  if (h->b) bl_unshare_ptr(h->b);
  if (h->b) bilog_free(h->b);
  free(h);
}

static napi_value bl_f64(napi_env env, const double *vals, size_t n) {
  napi_value ab, arr;
  void *p;
  if (napi_create_arraybuffer(env, n * sizeof(double), &p, &ab) != napi_ok) return NULL;
  memcpy(p, vals, n * sizeof(double));
  if (napi_create_typedarray(env, napi_float64_array, n, ab, 0, &arr) != napi_ok) return NULL;
  return arr;
}

static napi_value js_bilog_start(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!bl_args(env, info, 5, argv)) return NULL;
  double stall, prio, pre;
  char *watch = bl_path(env, argv[0], "watchPath");
  if (!watch) return NULL;
  char *logp = bl_path(env, argv[1], "logPath");
  if (!logp) {
    free(watch);
    return NULL;
  }
  napi_value ret = NULL;
  if (bl_integer(env, argv[2], "stallMs", 0, 86400000, &stall) && bl_integer(env, argv[3], "fifoPriority", -1, 99, &prio) &&
      bl_integer(env, argv[4], "preReadMax", -1, 1 << 30, &pre)) {
    bilog_opts_t o = {.stall_ms = (int)stall, .fifo_priority = (int)prio, .preread_max = (long long)pre};
    bilog_t *b = NULL;
    const char *sc = "bilog_start";
    int err = bilog_start(watch, logp, &o, &b, &sc);
    if (err) {
      bl_throw_errno(env, err, sc, strcmp(sc, "open") == 0 || strcmp(sc, "write") == 0 ? logp : watch);
    } else {
      bl_handle_t *h = malloc(sizeof *h);
      napi_value ext;
      if (!h) {
        bilog_free(b);
        bl_throw_errno(env, ENOMEM, "malloc", NULL);
      } else {
        h->b = b;
        if (napi_create_external(env, h, bl_finalize, NULL, &ext) != napi_ok ||
            napi_type_tag_object(env, ext, &BILOG_TAG) != napi_ok) {
          napi_throw_error(env, "ERR_BFS_NATIVE", "bilog: could not create the handle");
        } else {
          ret = ext;
        }
      }
    }
  }
  free(watch);
  free(logp);
  return ret;
}

static napi_value js_bilog_info(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!bl_args(env, info, 1, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], false);
  if (!b) return NULL;
  bilog_info_t i;
  bilog_info(b, &i);
  double v[7] = {(double)i.t0_sec, i.t0_nsec, i.fifo, i.sched_errno, (double)i.fs_dev, i.watchdog_pid, i.quiet_tree_errno};
  return bl_f64(env, v, 7);
}

static napi_value stats_array(napi_env env, bilog_t *b) {
  bilog_stats_t s;
  bilog_stats(b, &s);
  double v[23] = {(double)s.events, (double)s.own_events, (double)s.open_events, (double)s.skipped,
                  (double)s.first_sights, (double)s.images, (double)s.image_bytes, (double)s.truncates,
                  (double)s.uncovered, (double)s.log_bytes, (double)s.records, (double)s.stale_blocks,
                  (double)s.void_reason, (double)s.log_errno, (double)s.settled,
                  (double)s.tree_opens, (double)s.follow_events, (double)s.follow_remote,
                  (double)s.follow_hops, (double)s.follow_reorders, (double)s.follow_allwake,
                  (double)s.prereads, (double)s.preread_bytes};
  return bl_f64(env, v, 23);
}

static napi_value js_bilog_stats(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!bl_args(env, info, 1, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], false);
  return b ? stats_array(env, b) : NULL;
}

static napi_value js_bilog_uncovered(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!bl_args(env, info, 1, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], false);
  if (!b) return NULL;
  size_t n;
  const bilog_uncovered_t *u = bilog_uncovered(b, &n);
  napi_value arr;
  if (napi_create_array_with_length(env, n, &arr) != napi_ok) return NULL;
  for (size_t i = 0; i < n; i++) {
    napi_value row, v;
    napi_create_array_with_length(env, 6, &row);
    napi_create_int32(env, u[i].reason, &v);
    napi_set_element(env, row, 0, v);
    napi_create_int32(env, u[i].pid, &v);
    napi_set_element(env, row, 1, v);
    napi_create_int32(env, u[i].fd, &v);
    napi_set_element(env, row, 2, v);
    napi_create_double(env, (double)u[i].dev, &v);
    napi_set_element(env, row, 3, v);
    napi_create_double(env, (double)u[i].ino, &v);
    napi_set_element(env, row, 4, v);
    napi_create_string_utf8(env, u[i].path, NAPI_AUTO_LENGTH, &v);
    napi_set_element(env, row, 5, v);
    napi_set_element(env, arr, (uint32_t)i, row);
  }
  return arr;
}

/* A read's arguments at argv[0…4]: fd, buf, bufOffset, length, position. false after throwing. */
typedef struct {
  int fd;
  uint8_t *dst;
  size_t len;
  uint64_t pos;
} bl_read_args_t;

static bool bl_read_args(napi_env env, napi_value *argv, bl_read_args_t *a) {
  double fd, boff, len, pos;
  void *data;
  size_t size;
  bool isbuf = false;
  if (!bl_integer(env, argv[0], "fd", 0, 2147483647, &fd)) return false;
  if (napi_is_buffer(env, argv[1], &isbuf) != napi_ok || !isbuf || napi_get_buffer_info(env, argv[1], &data, &size) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"buffer\" argument must be a Buffer");
    return false;
  }
  if (!bl_integer(env, argv[2], "bufOffset", 0, (double)size, &boff) ||
      !bl_integer(env, argv[3], "length", 0, (double)size - boff, &len) ||
      !bl_integer(env, argv[4], "position", 0, 9007199254740991.0, &pos))
    return false;
  a->fd = (int)fd;
  a->dst = (uint8_t *)data + (size_t)boff;
  a->len = (size_t)len;
  a->pos = (uint64_t)pos;
  return true;
}

static napi_value js_bilog_read_t0(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!bl_args(env, info, 7, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], true);
  if (!b) return NULL;
  bl_read_args_t a;
  if (!bl_read_args(env, argv + 1, &a)) return NULL;
  bool mark = false;
  napi_get_value_bool(env, argv[6], &mark);
  ssize_t r = bilog_read_t0(b, a.fd, a.dst, a.len, a.pos, mark);
  if (r < 0) {
    bl_throw_errno(env, (int)-r, "bilogReadT0", NULL);
    return NULL;
  }
  napi_value v;
  napi_create_double(env, (double)r, &v);
  return v;
}

/* bilog_read_live with a read's arguments at argv[0…4] -> [bytes read, blocks logged (read as zeros)] */
static napi_value bl_read_live(napi_env env, bilog_t *b, napi_value *argv, const char *what) {
  bl_read_args_t a;
  if (!bl_read_args(env, argv, &a)) return NULL;
  uint64_t logged = 0;
  ssize_t r = bilog_read_live(b, a.fd, a.dst, a.len, a.pos, &logged);
  if (r < 0) {
    bl_throw_errno(env, (int)-r, what, NULL);
    return NULL;
  }
  napi_value arr, v;
  napi_create_array_with_length(env, 2, &arr);
  napi_create_double(env, (double)r, &v);
  napi_set_element(env, arr, 0, v);
  napi_create_double(env, (double)logged, &v);
  napi_set_element(env, arr, 1, v);
  return arr;
}

/* bilogReadLive(h, fd, buf, bufOffset, length, position) -> [bytes read, blocks logged (read as zeros)] */
static napi_value js_bilog_read_live(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!bl_args(env, info, 6, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], true);
  if (!b) return NULL;
  return bl_read_live(env, b, argv + 1, "bilogReadLive");
}

/* The shared capture `id` (argv), held until bl_sh_release: its slot, or -1 after throwing. */
static int bl_sh_acquire(napi_env env, napi_value idv, const char *what) {
  double idd;
  if (!bl_integer(env, idv, "id", 1, 4294967295.0, &idd)) return -1;
  int slot = -1;
  pthread_mutex_lock(&bl_sh_mu);
  for (int i = 0; i < BL_SHARED_MAX; i++)
    if (bl_sh[i].b && bl_sh[i].id == (uint32_t)idd) {
      slot = i;
      bl_sh[i].active++;
    }
  pthread_mutex_unlock(&bl_sh_mu);
  if (slot < 0) bl_throw_errno(env, ECANCELED, what, NULL);
  return slot;
}

static void bl_sh_release(int slot) {
  pthread_mutex_lock(&bl_sh_mu);
  if (--bl_sh[slot].active == 0) pthread_cond_broadcast(&bl_sh_cv);
  pthread_mutex_unlock(&bl_sh_mu);
}

/* bilogShare(h) -> id: worker threads read through the capture with bilogReadLiveShared(id, …) */
static napi_value js_bilog_share(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!bl_args(env, info, 1, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], true);
  if (!b) return NULL;
  uint32_t id = 0;
  pthread_mutex_lock(&bl_sh_mu);
  for (int i = 0; i < BL_SHARED_MAX && !id; i++)
    if (!bl_sh[i].b) {
      bl_sh[i].b = b;
      bl_sh[i].id = id = bl_sh_next++;
      bl_sh[i].active = 0;
    }
  pthread_mutex_unlock(&bl_sh_mu);
  if (!id) {
    bl_throw_errno(env, EMFILE, "bilogShare", NULL);
    return NULL;
  }
  napi_value v;
  napi_create_uint32(env, id, &v);
  return v;
}

/* bilogUnshare(h): waits for the shared reads in progress */
static napi_value js_bilog_unshare(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!bl_args(env, info, 1, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], false);
  if (!b) return NULL;
  bl_unshare_ptr(b);
  return NULL;
}

/* bilogReadLiveShared(id, fd, buf, bufOffset, length, position) -> [bytes read, blocks logged] (any thread) */
static napi_value js_bilog_read_live_shared(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!bl_args(env, info, 6, argv)) return NULL;
  int slot = bl_sh_acquire(env, argv[0], "bilogReadLiveShared");
  if (slot < 0) return NULL;
  napi_value r = bl_read_live(env, bl_sh[slot].b, argv + 1, "bilogReadLiveShared");
  bl_sh_release(slot);
  return r;
}

static char *bl_path_arg(napi_env env, napi_value v);

/* bilogReadFileShared(id, path, dev, inoHi, inoLo, buf, bufOffset, length, position, out) (any thread):
 * bilog_read_file; out[0] = bytes read, out[1] = blocks logged (read as zeros). One call per
 * file range: no fd, no result array to make. */
static napi_value js_bilog_read_file_shared(napi_env env, napi_callback_info info) {
  napi_value argv[10];
  if (!bl_args(env, info, 10, argv)) return NULL;
  double dev, hi, lo;
  if (!bl_integer(env, argv[2], "dev", 0, 9007199254740991.0, &dev) ||
      !bl_integer(env, argv[3], "inoHi", 0, 4294967295.0, &hi) || !bl_integer(env, argv[4], "inoLo", 0, 4294967295.0, &lo))
    return NULL;
  /* (fd is checked by bl_read_args: a placeholder 0 in its slot) */
  napi_value rargv[5];
  napi_create_int32(env, 0, &rargv[0]);
  rargv[1] = argv[5];
  rargv[2] = argv[6];
  rargv[3] = argv[7];
  rargv[4] = argv[8];
  bl_read_args_t a;
  if (!bl_read_args(env, rargv, &a)) return NULL;
  bool is_ta = false;
  napi_typedarray_type tt;
  size_t tlen = 0;
  void *tdata = NULL;
  if (napi_is_typedarray(env, argv[9], &is_ta) != napi_ok || !is_ta ||
      napi_get_typedarray_info(env, argv[9], &tt, &tlen, &tdata, NULL, NULL) != napi_ok || tt != napi_float64_array || tlen < 2) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"out\" argument must be a Float64Array of 2");
    return NULL;
  }
  char *path = bl_path_arg(env, argv[1]);
  if (!path) return NULL;
  int slot = bl_sh_acquire(env, argv[0], "bilogReadFileShared");
  if (slot < 0) {
    free(path);
    return NULL;
  }
  uint64_t logged = 0;
  int at_open = 0;
  ssize_t r = bilog_read_file(bl_sh[slot].b, path, (uint64_t)dev, ((uint64_t)hi << 32) | (uint64_t)lo, a.dst, a.len, a.pos,
                              &logged, &at_open);
  bl_sh_release(slot);
  free(path);
  if (r < 0) {
    bl_throw_errno(env, (int)-r, at_open ? "open" : "read", NULL);
    return NULL;
  }
  ((double *)tdata)[0] = (double)r;
  ((double *)tdata)[1] = (double)logged;
  return NULL;
}

/* bilogIgnore(h, dev, inoHi, inoLo) */
static napi_value js_bilog_ignore(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!bl_args(env, info, 4, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], true);
  if (!b) return NULL;
  double dev, hi, lo;
  if (!bl_integer(env, argv[1], "dev", 0, 9007199254740991.0, &dev) ||
      !bl_integer(env, argv[2], "inoHi", 0, 4294967295.0, &hi) ||
      !bl_integer(env, argv[3], "inoLo", 0, 4294967295.0, &lo))
    return NULL;
  int rc = bilog_ignore(b, (uint64_t)dev, ((uint64_t)hi << 32) | (uint64_t)lo);
  if (rc < 0) {
    bl_throw_errno(env, -rc, "bilogIgnore", NULL);
    return NULL;
  }
  return NULL;
}

static napi_value js_bilog_mark_read(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!bl_args(env, info, 4, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], true);
  if (!b) return NULL;
  double fd, off, len;
  if (!bl_integer(env, argv[1], "fd", 0, 2147483647, &fd) ||
      !bl_integer(env, argv[2], "offset", 0, 9007199254740991.0, &off) ||
      !bl_integer(env, argv[3], "length", 0, 9007199254740991.0, &len))
    return NULL;
  int r = bilog_mark_read(b, (int)fd, (uint64_t)off, (uint64_t)len);
  if (r < 0) bl_throw_errno(env, -r, "bilogMarkRead", NULL);
  return NULL;
}

static napi_value js_bilog_t0_stat(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!bl_args(env, info, 2, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], true);
  if (!b) return NULL;
  double fd;
  if (!bl_integer(env, argv[1], "fd", 0, 2147483647, &fd)) return NULL;
  bilog_t0stat_t s;
  int r = bilog_t0_stat(b, (int)fd, &s);
  if (r < 0) {
    bl_throw_errno(env, -r, "bilogT0Stat", NULL);
    return NULL;
  }
  double v[7] = {(double)s.size, (double)s.mtime_sec, s.mtime_nsec, (double)s.ctime_sec, s.ctime_nsec, s.igen, s.uncovered};
  return bl_f64(env, v, 7);
}

/* A path argument (Buffer of raw bytes, or string) as a NUL-terminated copy; NULL after throwing. */
static char *bl_path_arg(napi_env env, napi_value v) {
  bool isbuf = false;
  if (napi_is_buffer(env, v, &isbuf) == napi_ok && isbuf) {
    void *data;
    size_t n;
    napi_get_buffer_info(env, v, &data, &n);
    if (n == 0 || n >= PATH_MAX || memchr(data, 0, n)) {
      napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "bad path");
      return NULL;
    }
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, data, n);
    p[n] = 0;
    return p;
  }
  size_t n = 0;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &n) != napi_ok || n == 0 || n >= PATH_MAX) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"path\" argument must be a Buffer or a string");
    return NULL;
  }
  char *p = malloc(n + 1);
  if (!p) return NULL;
  napi_get_value_string_utf8(env, v, p, n + 1, &n);
  return p;
}

static napi_value bl_open_quiet(napi_env env, bilog_t *b, napi_value pathv) {
  char *path = bl_path_arg(env, pathv);
  if (!path) return NULL;
  int fd = bilog_open_quiet(b, path);
  free(path);
  if (fd < 0) {
    bl_throw_errno(env, -fd, "open", NULL);
    return NULL;
  }
  napi_value v;
  napi_create_int32(env, fd, &v);
  return v;
}

/* bilogOpenQuiet(h, path) -> fd */
static napi_value js_bilog_open_quiet(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!bl_args(env, info, 2, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], true);
  if (!b) return NULL;
  return bl_open_quiet(env, b, argv[1]);
}

/* bilogOpenQuietShared(id, path) -> fd (any thread) */
static napi_value js_bilog_open_quiet_shared(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!bl_args(env, info, 2, argv)) return NULL;
  int slot = bl_sh_acquire(env, argv[0], "bilogOpenQuietShared");
  if (slot < 0) return NULL;
  napi_value r = bl_open_quiet(env, bl_sh[slot].b, argv[1]);
  bl_sh_release(slot);
  return r;
}

/* bilogT0StatIno(h, dev, inoHi, inoLo) -> [found, size, mtimeSec, mtimeNsec, ctimeSec, ctimeNsec, igen, uncovered] */
static napi_value js_bilog_t0_stat_ino(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!bl_args(env, info, 4, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], true);
  if (!b) return NULL;
  double dev, hi, lo;
  if (!bl_integer(env, argv[1], "dev", 0, 9007199254740991.0, &dev) ||
      !bl_integer(env, argv[2], "inoHi", 0, 4294967295.0, &hi) ||
      !bl_integer(env, argv[3], "inoLo", 0, 4294967295.0, &lo))
    return NULL;
  bilog_t0stat_t s;
  int r = bilog_t0_stat_ino(b, (uint64_t)dev, ((uint64_t)hi << 32) | (uint64_t)lo, &s);
  if (r < 0) {
    bl_throw_errno(env, -r, "bilogT0StatIno", NULL);
    return NULL;
  }
  if (r == 0 && s.uncovered == 0) { /* the common case (not seen, covered): no array to make */
    napi_value u;
    napi_get_undefined(env, &u);
    return u;
  }
  double v[8] = {r, (double)s.size, (double)s.mtime_sec, s.mtime_nsec, (double)s.ctime_sec, s.ctime_nsec, s.igen, s.uncovered};
  return bl_f64(env, v, 8);
}

static napi_value js_bilog_stop(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!bl_args(env, info, 1, argv)) return NULL;
  bilog_t *b = bl_get(env, argv[0], false);
  if (!b) return NULL;
  bl_unshare_ptr(b);
  int err = bilog_stop(b);
  napi_value s = stats_array(env, b);
  if (err) {
    bl_throw_errno(env, err, "write", NULL);
    return NULL;
  }
  return s;
}

napi_value bfs_bilog_init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"bilogStart", NULL, js_bilog_start, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogInfo", NULL, js_bilog_info, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogStats", NULL, js_bilog_stats, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogUncovered", NULL, js_bilog_uncovered, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogReadT0", NULL, js_bilog_read_t0, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogReadLive", NULL, js_bilog_read_live, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogIgnore", NULL, js_bilog_ignore, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogShare", NULL, js_bilog_share, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogUnshare", NULL, js_bilog_unshare, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogReadLiveShared", NULL, js_bilog_read_live_shared, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogReadFileShared", NULL, js_bilog_read_file_shared, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogOpenQuiet", NULL, js_bilog_open_quiet, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogOpenQuietShared", NULL, js_bilog_open_quiet_shared, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogT0StatIno", NULL, js_bilog_t0_stat_ino, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogMarkRead", NULL, js_bilog_mark_read, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogT0Stat", NULL, js_bilog_t0_stat, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bilogStop", NULL, js_bilog_stop, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
