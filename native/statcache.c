/*
 * The mount's stat cache: see statcache.h. The tables and the locking are those of the
 * fuse-native patch's fn_cache (patch 3), without what bfs never used (ttl, invalidation,
 * preloading): two generations bound the memory; inserts go to the young table, and when
 * it holds max_entries/2 entries the old table is dropped and the young one becomes old.
 * Lookups check young, then old. One rwlock: readers are the libfuse threads, the writer
 * the JavaScript thread (readdir and getattr replies).
 */
#include "statcache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct sc_entry_s {
  struct sc_entry_s *next;
  uint64_t hash;
  struct stat st;
  uint32_t flags;
  uint32_t len;
  char path[];
} sc_entry_t;

typedef struct {
  sc_entry_t **buckets;
  size_t nbuckets; /* power of two */
  size_t count;
} sc_table_t;

struct sc_s {
  pthread_rwlock_t lock;
  sc_table_t gen[2]; /* 0 = young, 1 = old */
  size_t max_entries;
  int getattr;
  /* The JS thread holds the write lock from a readdir reply's first entry to its end (one
   * lock per reply, as the binding's cache took it); only that thread reads or sets it. */
  int writing;
  uint64_t hits, misses, inserts;
};

static uint64_t sc_hash(const char *a, size_t alen) {
  uint64_t h = 14695981039346656037ULL; /* FNV-1a */
  for (size_t i = 0; i < alen; i++) {
    h ^= (unsigned char)a[i];
    h *= 1099511628211ULL;
  }
  return h;
}

static int sc_table_init(sc_table_t *t, size_t nbuckets) {
  t->buckets = nbuckets ? calloc(nbuckets, sizeof(sc_entry_t *)) : NULL;
  t->nbuckets = t->buckets ? nbuckets : 0;
  t->count = 0;
  return t->buckets ? 0 : -1;
}

static void sc_table_free(sc_table_t *t) {
  for (size_t i = 0; i < t->nbuckets; i++) {
    sc_entry_t *e = t->buckets[i];
    while (e) {
      sc_entry_t *n = e->next;
      free(e);
      e = n;
    }
  }
  free(t->buckets);
  t->buckets = NULL;
  t->nbuckets = 0;
  t->count = 0;
}

static sc_entry_t *sc_table_find(sc_table_t *t, uint64_t h, const char *path, size_t len) {
  if (t->nbuckets == 0) return NULL;
  for (sc_entry_t *e = t->buckets[h & (t->nbuckets - 1)]; e; e = e->next)
    if (e->hash == h && e->len == len && memcmp(e->path, path, len) == 0) return e;
  return NULL;
}

static int sc_table_remove(sc_table_t *t, uint64_t h, const char *path, size_t len) {
  if (t->nbuckets == 0) return 0;
  sc_entry_t **pp = &t->buckets[h & (t->nbuckets - 1)];
  while (*pp) {
    sc_entry_t *e = *pp;
    if (e->hash == h && e->len == len && memcmp(e->path, path, len) == 0) {
      *pp = e->next;
      free(e);
      t->count--;
      return 1;
    }
    pp = &e->next;
  }
  return 0;
}

static void sc_table_grow(sc_table_t *t) {
  size_t n = t->nbuckets * 2;
  sc_entry_t **b = calloc(n, sizeof(sc_entry_t *));
  if (b == NULL) return; /* keep the longer chains */
  for (size_t i = 0; i < t->nbuckets; i++) {
    sc_entry_t *e = t->buckets[i];
    while (e) {
      sc_entry_t *next = e->next;
      e->next = b[e->hash & (n - 1)];
      b[e->hash & (n - 1)] = e;
      e = next;
    }
  }
  free(t->buckets);
  t->buckets = b;
  t->nbuckets = n;
}

sc_t *sc_new(size_t max_entries, int getattr) {
  sc_t *c = calloc(1, sizeof(sc_t));
  if (c == NULL) return NULL;
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
#if defined(__GLIBC__)
  /* Readers (libfuse threads) never nest; let the writer (the JS thread, inserting a
   * readdir's entries) in promptly instead of queueing behind readers. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
  int rc = pthread_rwlock_init(&c->lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  if (rc != 0 || sc_table_init(&c->gen[0], 1024) != 0) {
    free(c);
    return NULL;
  }
  sc_table_init(&c->gen[1], 0);
  c->max_entries = max_entries < 2 ? 2 : max_entries;
  c->getattr = getattr;
  return c;
}

/* Write lock held. */
static void sc_put_locked(sc_t *c, const char *full, size_t len, const struct stat *st, uint32_t flags) {
  uint64_t h = sc_hash(full, len);
  sc_table_t *young = &c->gen[0];
  sc_entry_t *e = sc_table_find(young, h, full, len);
  if (e != NULL) {
    e->st = *st;
    e->flags = flags;
    return;
  }
  sc_table_remove(&c->gen[1], h, full, len);
  if (young->count >= c->max_entries / 2) {
    sc_table_free(&c->gen[1]);
    c->gen[1] = *young;
    if (sc_table_init(young, 1024) != 0) return;
  }
  if (young->nbuckets == 0) return;
  e = malloc(sizeof(sc_entry_t) + len + 1);
  if (e == NULL) return;
  e->hash = h;
  e->st = *st;
  e->flags = flags;
  e->len = (uint32_t)len;
  memcpy(e->path, full, len);
  e->path[len] = 0;
  e->next = young->buckets[h & (young->nbuckets - 1)];
  young->buckets[h & (young->nbuckets - 1)] = e;
  young->count++;
  c->inserts++;
  if (young->count > young->nbuckets) sc_table_grow(young);
}

void sc_seen(sc_t *c, const char *dir, const char *name, size_t nlen, const struct stat *st, uint32_t flags) {
  if (c == NULL) return;
  if (name == NULL) { /* the end of a readdir reply's entries */
    if (c->writing) {
      c->writing = 0;
      pthread_rwlock_unlock(&c->lock);
    }
    return;
  }
  if (st == NULL || st->st_mode == 0 || (flags & SC_NO_CACHE)) return;
  if (dir == NULL && !c->getattr) return;
  if (dir != NULL && (nlen == 0 || (nlen == 1 && name[0] == '.') || (nlen == 2 && name[0] == '.' && name[1] == '.')))
    return;
  size_t plen = dir ? strlen(dir) : 0;
  int sep = plen > 0 && dir[plen - 1] != '/';
  size_t len = plen + (size_t)sep + nlen;
  char stackbuf[4096];
  char *full = len < sizeof stackbuf ? stackbuf : malloc(len + 1);
  if (full == NULL) return;
  if (plen) memcpy(full, dir, plen);
  if (sep) full[plen] = '/';
  memcpy(full + plen + sep, name, nlen);
  full[len] = 0;
  if (!c->writing) {
    pthread_rwlock_wrlock(&c->lock);
    c->writing = dir != NULL; /* a readdir entry: held until the reply's end */
  }
  sc_put_locked(c, full, len, st, flags);
  if (!c->writing) pthread_rwlock_unlock(&c->lock);
  if (full != stackbuf) free(full);
}

int sc_get(sc_t *c, const char *path, struct stat *st, uint32_t *flags, int count) {
  if (c == NULL || path == NULL) return 0;
  size_t len = strlen(path);
  uint64_t h = sc_hash(path, len);
  int found = 0;
  pthread_rwlock_rdlock(&c->lock);
  sc_entry_t *e = sc_table_find(&c->gen[0], h, path, len);
  if (e == NULL) e = sc_table_find(&c->gen[1], h, path, len);
  if (e != NULL) {
    if (st) *st = e->st;
    if (flags) *flags = e->flags;
    found = 1;
  }
  pthread_rwlock_unlock(&c->lock);
  if (count) __atomic_fetch_add(found ? &c->hits : &c->misses, 1, __ATOMIC_RELAXED);
  return found;
}

void sc_info(sc_t *c, sc_info_t *out) {
  pthread_rwlock_rdlock(&c->lock);
  out->entries = c->gen[0].count + c->gen[1].count;
  out->inserts = c->inserts;
  pthread_rwlock_unlock(&c->lock);
  out->hits = __atomic_load_n(&c->hits, __ATOMIC_RELAXED);
  out->misses = __atomic_load_n(&c->misses, __ATOMIC_RELAXED);
}

void sc_clear(sc_t *c) {
  pthread_rwlock_wrlock(&c->lock);
  sc_table_free(&c->gen[0]);
  sc_table_free(&c->gen[1]);
  sc_table_init(&c->gen[0], 1024);
  pthread_rwlock_unlock(&c->lock);
}

void sc_free(sc_t *c) {
  if (c == NULL) return;
  sc_table_free(&c->gen[0]);
  sc_table_free(&c->gen[1]);
  pthread_rwlock_destroy(&c->lock);
  free(c);
}
