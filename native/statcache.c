/*
 * The mount's stat cache: see statcache.h and native-notes/native-addon.md.
 *
 * Two stores. A readdir reply is kept whole, as one listing of its directory (one block:
 * entries, their names, and a small open-addressing index by name), so a reply costs one
 * allocation and one short write-lock, not one of each per entry; a listing from the native
 * readdir (sc_begin) is the DIR payload itself with its entries' offsets, each entry read
 * from it at its lookup. Listings are bounded by their entries in all (max_entries; a raw
 * listing counts at least one per SC_RAW_BYTES_PER_ENTRY of payload) and evicted whole by CLOCK (a lookup sets the
 * listing's reference bit; eviction gives a referenced listing a second turn). getattr
 * replies (a whole path, dir NULL) go to the per-path tables of before: two generations,
 * inserts to the young table; when it holds max_entries/2 entries the old table is dropped
 * and the young one becomes old. Lookups check the path tables, then the listing of the
 * path's directory. One rwlock: readers are the libfuse threads, the writer the JavaScript
 * thread, which builds a reply's listing without the lock and takes it once to publish it.
 */
#include "statcache.h"
#include "dirlist.h"

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

/* A raw listing (sc_begin: the DIR payload kept whole) counts at least one entry for every
 * this many bytes of its payload against the bound, about what an entry of the decoded form
 * takes: the bound (entries) stays a bound on memory when a few entries hold large xattrs or
 * symlink targets (a payload may be 1 MiB). */
#define SC_RAW_BYTES_PER_ENTRY 256u

/* One entry of a decoded listing (a readdir reply JavaScript answered, or one it published
 * ahead): its stat and flags, its name at names + name_off. Piece references are only in raw
 * listings (sc_begin), read from their payload. */
typedef struct {
  struct stat st;
  uint32_t flags;
  uint32_t name_off;
  uint32_t name_len;
} sc_lent_t;

/* A directory's last readdir reply: one malloc'd block holding this header, then n entries,
 * then the index (mask + 1 slots of entry number + 1, 0 = empty), then the names, then the
 * directory's path. A raw listing (sc_begin; payload set, ents and names NULL): this header,
 * then n entry offsets, the index, the directory's path, then the payload. */
typedef struct sc_listing_s {
  struct sc_listing_s *hnext;          /* bucket chain */
  struct sc_listing_s *cnext, *cprev;  /* the CLOCK ring (insertion order) */
  uint64_t hash;                       /* of the directory's path */
  uint32_t n, mask, dir_len;
  uint32_t w;                          /* what it counts against the bound: n, or for a raw listing at
                                        * least its payload's bytes / SC_RAW_BYTES_PER_ENTRY */
  uint32_t cap;                        /* raw: entries sc_begin made room for (n: added so far) */
  const uint8_t *payload;              /* raw (sc_begin): the DIR payload its entries are read from, at offs[k] */
  uint32_t payload_len;
  uint32_t *offs;
  double ino_base;
  int ref;                             /* set by lookups (under the read lock: atomic) */
  int full;                            /* sc_publish_full: the whole listing, `.` and `..` too (sc_readdir) */
  struct stat dot, dotdot;             /* full: the stats of `.` and `..` */
  sc_lent_t *ents;
  uint32_t *index;
  char *names;
  char *dir;
} sc_listing_t;

/* The reply being received (JS thread only, no lock): grows by doubling. */
typedef struct {
  int active;
  char *dir;
  size_t dir_len;
  sc_lent_t *ents;
  size_t n, cap;
  char *names;
  size_t names_len, names_cap;
  int failed; /* an allocation failed: the reply is not kept */
} sc_build_t;

struct sc_s {
  pthread_rwlock_t lock;
  sc_table_t gen[2]; /* getattr replies: 0 = young, 1 = old */
  sc_listing_t **lbuckets;
  size_t nlbuckets; /* power of two */
  size_t nlistings, lentries;
  sc_listing_t *hand; /* the CLOCK ring's oldest listing (NULL: none) */
  size_t max_entries;
  int getattr;
  sc_build_t b;
  uint64_t hits, misses, inserts;
  uint64_t listed; /* readdirs served by sc_readdir (atomic) */
};

/* A path's or name's hash (this process only: nothing stores it). Eight bytes a step, not
 * FNV-1a's one: a listing hashes every name it publishes. */
static uint64_t sc_hash(const char *a, size_t alen) {
  uint64_t h = 0x9e3779b97f4a7c15ULL ^ ((uint64_t)alen * 0xff51afd7ed558ccdULL);
  while (alen >= 8) {
    uint64_t w;
    memcpy(&w, a, 8);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    a += 8;
    alen -= 8;
  }
  uint64_t w = 0;
  memcpy(&w, a, alen);
  h = (h ^ w) * 0xff51afd7ed558ccdULL;
  h ^= h >> 33; /* murmur3's fmix64: the index takes the low bits */
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
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

/* The directory part of a stored path: "/" stays, a trailing '/' goes. */
static size_t sc_dir_len(const char *dir, size_t len) {
  while (len > 1 && dir[len - 1] == '/') len--;
  return len;
}

static sc_listing_t *sc_listing_find(sc_t *c, uint64_t h, const char *dir, size_t len) {
  if (c->nlbuckets == 0) return NULL;
  for (sc_listing_t *l = c->lbuckets[h & (c->nlbuckets - 1)]; l; l = l->hnext)
    if (l->hash == h && l->dir_len == len && memcmp(l->dir, dir, len) == 0) return l;
  return NULL;
}

/* Write lock held: takes l out of the table and the ring (the caller frees it). */
static void sc_listing_unlink(sc_t *c, sc_listing_t *l) {
  sc_listing_t **pp = &c->lbuckets[l->hash & (c->nlbuckets - 1)];
  while (*pp && *pp != l) pp = &(*pp)->hnext;
  if (*pp) *pp = l->hnext;
  if (l->cnext == l) {
    c->hand = NULL;
  } else {
    l->cprev->cnext = l->cnext;
    l->cnext->cprev = l->cprev;
    if (c->hand == l) c->hand = l->cnext;
  }
  c->nlistings--;
  c->lentries -= l->w;
}

/* Write lock held: publishes l (replacing the directory's older listing, which goes on
 * *dead), then evicts by CLOCK until the entries fit (evicted listings go on *dead too,
 * chained through hnext, to be freed after the lock is dropped). */
static int sc_listing_put(sc_t *c, sc_listing_t *l, sc_listing_t **dead) {
  sc_listing_t *old = sc_listing_find(c, l->hash, l->dir, l->dir_len);
  if (old) {
    sc_listing_unlink(c, old);
    old->hnext = *dead;
    *dead = old;
  }
  while (c->hand && c->lentries + l->w > c->max_entries) {
    sc_listing_t *v = c->hand;
    if (__atomic_exchange_n(&v->ref, 0, __ATOMIC_RELAXED) && c->nlistings > 1) {
      c->hand = v->cnext; /* referenced since its last turn: a second chance */
      continue;
    }
    sc_listing_unlink(c, v);
    v->hnext = *dead;
    *dead = v;
  }
  if (c->nlistings + 1 > c->nlbuckets) {
    size_t n = c->nlbuckets ? c->nlbuckets * 2 : 256;
    sc_listing_t **b = calloc(n, sizeof(sc_listing_t *));
    if (b != NULL) {
      for (size_t i = 0; i < c->nlbuckets; i++) {
        sc_listing_t *x = c->lbuckets[i];
        while (x) {
          sc_listing_t *next = x->hnext;
          x->hnext = b[x->hash & (n - 1)];
          b[x->hash & (n - 1)] = x;
          x = next;
        }
      }
      free(c->lbuckets);
      c->lbuckets = b;
      c->nlbuckets = n;
    }
  }
  if (c->nlbuckets == 0) {
    l->hnext = *dead;
    *dead = l;
    return 0;
  }
  l->hnext = c->lbuckets[l->hash & (c->nlbuckets - 1)];
  c->lbuckets[l->hash & (c->nlbuckets - 1)] = l;
  if (c->hand == NULL) {
    l->cnext = l->cprev = l;
    c->hand = l;
  } else { /* newest: just before the hand */
    l->cnext = c->hand;
    l->cprev = c->hand->cprev;
    c->hand->cprev->cnext = l;
    c->hand->cprev = l;
  }
  c->nlistings++;
  c->lentries += l->w;
  return 1;
}

static void sc_free_chain(sc_listing_t *l) {
  while (l) {
    sc_listing_t *next = l->hnext;
    free(l);
    l = next;
  }
}

/* Index of name in l (entry number), or -1. */
static long sc_listing_lookup(const sc_listing_t *l, const char *name, size_t nlen) {
  uint64_t h = sc_hash(name, nlen);
  for (uint32_t i = (uint32_t)h & l->mask;; i = (i + 1) & l->mask) {
    uint32_t k = l->index[i];
    if (k == 0) return -1;
    if (l->payload) {
      size_t el;
      const uint8_t *en = dl_entry_name(l->payload, l->payload_len, l->offs[k - 1], &el);
      if (el == nlen && memcmp(en, name, nlen) == 0) return (long)(k - 1);
      continue;
    }
    const sc_lent_t *e = &l->ents[k - 1];
    if (e->name_len == nlen && memcmp(l->names + e->name_off, name, nlen) == 0) return (long)(k - 1);
  }
}

/* Entry k of l: its stat, flags and piece reference (any may be NULL; a decoded listing has
 * no references: ref->has = ref->file = 0). 0: a raw entry the full read declines
 * (dl_entry_stat): nothing written. */
static int sc_lent(const sc_listing_t *l, long k, struct stat *st, uint32_t *flags, dl_ref_t *ref) {
  if (l->payload) {
    struct stat s;
    uint32_t f;
    dl_ref_t r;
    if (!dl_entry_stat(l->payload, l->payload_len, l->offs[k], l->ino_base, &s, &f, &r)) return 0;
    if (st) *st = s;
    if (flags) *flags = f;
    if (ref) *ref = r;
    return 1;
  }
  if (st) *st = l->ents[k].st;
  if (flags) *flags = l->ents[k].flags;
  if (ref) ref->has = ref->file = 0;
  return 1;
}

/* The reply received so far as one listing block (NULL: nothing to keep, or no memory). */
static sc_listing_t *sc_build_finish(sc_t *c) {
  sc_build_t *b = &c->b;
  if (b->failed || b->n == 0 || b->n > c->max_entries) return NULL;
  uint32_t slots = 4;
  while (slots < b->n * 2) slots *= 2;
  size_t sz = sizeof(sc_listing_t) + b->n * sizeof(sc_lent_t) + (size_t)slots * sizeof(uint32_t) + b->names_len + b->dir_len + 1;
  sc_listing_t *l = malloc(sz);
  if (l == NULL) return NULL;
  memset(l, 0, sizeof *l);
  l->ents = (sc_lent_t *)(l + 1);
  l->index = (uint32_t *)(l->ents + b->n);
  l->names = (char *)(l->index + slots);
  l->dir = l->names + b->names_len;
  memcpy(l->ents, b->ents, b->n * sizeof(sc_lent_t));
  memcpy(l->names, b->names, b->names_len);
  memcpy(l->dir, b->dir, b->dir_len);
  l->dir[b->dir_len] = 0;
  l->dir_len = (uint32_t)b->dir_len;
  l->hash = sc_hash(l->dir, l->dir_len);
  l->mask = slots - 1;
  memset(l->index, 0, (size_t)slots * sizeof(uint32_t));
  for (uint32_t k = 0; k < b->n; k++) {
    const sc_lent_t *e = &l->ents[k];
    uint64_t h = sc_hash(l->names + e->name_off, e->name_len);
    uint32_t i = (uint32_t)h & l->mask;
    int dup = 0;
    for (; l->index[i]; i = (i + 1) & l->mask) {
      sc_lent_t *o = &l->ents[l->index[i] - 1];
      if (o->name_len == e->name_len && memcmp(l->names + o->name_off, l->names + e->name_off, e->name_len) == 0) {
        /* a name twice in one reply: the later stat wins, as a later insert did */
        o->st = e->st;
        o->flags = e->flags;
        dup = 1;
        break;
      }
    }
    if (!dup) l->index[i] = k + 1;
  }
  l->n = l->w = (uint32_t)b->n; /* entries counted against the bound (duplicates too: they take room) */
  return l;
}

static void sc_build_reset(sc_build_t *b) {
  b->active = 0;
  b->failed = 0;
  b->n = 0;
  b->names_len = 0;
  b->dir_len = 0;
}

sc_t *sc_new(size_t max_entries, int getattr) {
  sc_t *c = calloc(1, sizeof(sc_t));
  if (c == NULL) return NULL;
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
#if defined(__GLIBC__)
  /* Readers (libfuse threads) never nest; let the writer (the JS thread, publishing a
   * readdir's listing) in promptly instead of queueing behind readers. */
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

/* Starts receiving a reply: records its directory (JS thread, no lock). */
static void sc_build_open(sc_t *c, const char *dir) {
  sc_build_t *b = &c->b;
  size_t dl = sc_dir_len(dir, strlen(dir));
  char *d = realloc(b->dir, dl + 1);
  b->active = 1;
  if (d == NULL) {
    b->failed = 1;
    return;
  }
  b->dir = d;
  memcpy(b->dir, dir, dl);
  b->dir[dl] = 0;
  b->dir_len = dl;
}

/* Appends one entry to the reply being built (JS thread, no lock). */
static void sc_build_add(sc_t *c, const char *name, size_t nlen, const struct stat *st, uint32_t flags) {
  sc_build_t *b = &c->b;
  if (b->failed) return;
  if (b->n == b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 256;
    sc_lent_t *e = realloc(b->ents, cap * sizeof(sc_lent_t));
    if (e == NULL) {
      b->failed = 1;
      return;
    }
    b->ents = e;
    b->cap = cap;
  }
  if (b->names_len + nlen > b->names_cap || b->names_len + nlen > UINT32_MAX) {
    size_t cap = b->names_cap ? b->names_cap : 4096;
    while (cap < b->names_len + nlen) cap *= 2;
    char *n = cap <= UINT32_MAX ? realloc(b->names, cap) : NULL;
    if (n == NULL) {
      b->failed = 1;
      return;
    }
    b->names = n;
    b->names_cap = cap;
  }
  sc_lent_t *e = &b->ents[b->n++];
  e->st = *st;
  e->flags = flags;
  e->name_off = (uint32_t)b->names_len;
  e->name_len = (uint32_t)nlen;
  memcpy(b->names + b->names_len, name, nlen);
  b->names_len += nlen;
}

void sc_seen(sc_t *c, const char *dir, const char *name, size_t nlen, const struct stat *st, uint32_t flags) {
  if (c == NULL) return;
  if (name == NULL) { /* the end of a readdir reply's entries: publish its listing */
    if (!c->b.active) return;
    sc_listing_t *l = sc_build_finish(c);
    sc_listing_t *dead = NULL;
    pthread_rwlock_wrlock(&c->lock);
    if (l != NULL) {
      sc_listing_put(c, l, &dead);
      c->inserts += l->n;
    } else if (c->b.dir_len > 0) {
      /* nothing kept for this reply: a listing of before would be stale */
      sc_listing_t *old = sc_listing_find(c, sc_hash(c->b.dir, c->b.dir_len), c->b.dir, c->b.dir_len);
      if (old) {
        sc_listing_unlink(c, old);
        dead = old;
        old->hnext = NULL;
      }
    }
    pthread_rwlock_unlock(&c->lock);
    sc_free_chain(dead);
    sc_build_reset(&c->b);
    return;
  }
  if (dir != NULL) {
    if (!c->b.active) sc_build_open(c, dir);
    if (st == NULL || st->st_mode == 0 || (flags & SC_NO_CACHE)) return;
    if (nlen == 0 || (nlen == 1 && name[0] == '.') || (nlen == 2 && name[0] == '.' && name[1] == '.')) return;
    sc_build_add(c, name, nlen, st, flags);
    return;
  }
  if (st == NULL || st->st_mode == 0 || (flags & SC_NO_CACHE) || !c->getattr) return;
  pthread_rwlock_wrlock(&c->lock);
  sc_put_locked(c, name, nlen, st, flags);
  pthread_rwlock_unlock(&c->lock);
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
  } else if (c->nlistings > 0) {
    const char *slash = NULL;
    for (size_t i = len; i > 0; i--)
      if (path[i - 1] == '/') {
        slash = path + i - 1;
        break;
      }
    if (slash != NULL && (size_t)(slash - path) + 1 < len) {
      size_t dl = slash == path ? 1 : (size_t)(slash - path);
      sc_listing_t *l = sc_listing_find(c, sc_hash(path, dl), path, dl);
      if (l != NULL) {
        long k = sc_listing_lookup(l, slash + 1, len - (size_t)(slash - path) - 1);
        if (k >= 0) found = sc_lent(l, k, st, flags, NULL);
        if (!__atomic_load_n(&l->ref, __ATOMIC_RELAXED)) __atomic_store_n(&l->ref, 1, __ATOMIC_RELAXED);
      }
    }
  }
  pthread_rwlock_unlock(&c->lock);
  if (count) __atomic_fetch_add(found ? &c->hits : &c->misses, 1, __ATOMIC_RELAXED);
  return found;
}

/* sc_begin's block: header, n entry offsets, the index, the directory's path, then a copy
 * of the payload. */
sc_listing_t *sc_begin(const char *dir, size_t dir_len, size_t n, const uint8_t *payload, size_t len, double ino_base,
                       const uint8_t **copy) {
  if (n == 0 || n > UINT32_MAX / 4 || len > UINT32_MAX) return NULL;
  dir_len = sc_dir_len(dir, dir_len);
  uint32_t slots = 4;
  while (slots < n * 2) slots *= 2;
  size_t sz = sizeof(sc_listing_t) + n * sizeof(uint32_t) + (size_t)slots * sizeof(uint32_t) + dir_len + 1 + len;
  sc_listing_t *l = malloc(sz);
  if (l == NULL) return NULL;
  memset(l, 0, sizeof *l);
  l->offs = (uint32_t *)(l + 1);
  l->index = l->offs + n;
  l->dir = (char *)(l->index + slots);
  uint8_t *p = (uint8_t *)l->dir + dir_len + 1;
  memcpy(p, payload, len);
  l->payload = p;
  l->payload_len = (uint32_t)len;
  l->ino_base = ino_base;
  memcpy(l->dir, dir, dir_len);
  l->dir[dir_len] = 0;
  l->dir_len = (uint32_t)dir_len;
  l->hash = sc_hash(l->dir, l->dir_len);
  l->mask = slots - 1;
  l->cap = (uint32_t)n;
  memset(l->index, 0, (size_t)slots * sizeof(uint32_t));
  *copy = p;
  return l;
}

int sc_add(sc_listing_t *l, size_t off, const char *name, size_t name_len) {
  if (l->n >= l->cap || off >= l->payload_len) return 0;
  uint32_t k = l->n;
  l->offs[k] = (uint32_t)off;
  uint32_t i = (uint32_t)sc_hash(name, name_len) & l->mask;
  while (l->index[i]) i = (i + 1) & l->mask; /* names of a DIR piece are distinct */
  l->index[i] = k + 1;
  l->n = k + 1;
  return 1;
}

size_t sc_off(const sc_listing_t *l, size_t k) { return l->offs[k]; }

void sc_abandon(sc_listing_t *l) { free(l); }

int sc_commit(sc_t *c, sc_listing_t *l) {
  l->w = l->n;
  if (l->payload_len / SC_RAW_BYTES_PER_ENTRY > l->w) l->w = l->payload_len / SC_RAW_BYTES_PER_ENTRY;
  if (c == NULL || l->n == 0 || l->n != l->cap || l->w > c->max_entries) {
    free(l);
    return 0;
  }
  sc_listing_t *dead = NULL;
  pthread_rwlock_wrlock(&c->lock);
  int kept = sc_listing_put(c, l, &dead);
  if (kept) c->inserts += l->n;
  pthread_rwlock_unlock(&c->lock);
  sc_free_chain(dead);
  return kept;
}

int sc_readdir(sc_t *c, const char *path, void *buf, int (*fill)(void *buf, const char *name, const struct stat *st, off_t off)) {
  if (c == NULL || path == NULL) return -1;
  size_t len = sc_dir_len(path, strlen(path));
  int served = -1;
  pthread_rwlock_rdlock(&c->lock);
  sc_listing_t *l = c->nlistings ? sc_listing_find(c, sc_hash(path, len), path, len) : NULL;
  if (l != NULL && l->full) {
    /* the filler (libfuse's) copies name and stat into its own buffer: nothing of the
     * listing is kept past the read lock */
    fill(buf, ".", &l->dot, 0);
    fill(buf, "..", &l->dotdot, 0);
    char name[4097];
    for (uint32_t k = 0; k < l->n; k++) {
      const sc_lent_t *e = &l->ents[k];
      if (e->name_len >= sizeof name) continue;
      memcpy(name, l->names + e->name_off, e->name_len);
      name[e->name_len] = 0;
      struct stat st = e->st;
      if (st.st_ino == 0) st.st_ino = 0xffffffff; /* readdir(3) hides d_ino 0 (as the binding) */
      if (fill(buf, name, &st, 0) == 1) break;
    }
    if (!__atomic_load_n(&l->ref, __ATOMIC_RELAXED)) __atomic_store_n(&l->ref, 1, __ATOMIC_RELAXED);
    served = 0;
    __atomic_fetch_add(&c->listed, 1, __ATOMIC_RELAXED);
  }
  pthread_rwlock_unlock(&c->lock);
  return served;
}

void sc_publish_full(sc_t *c, const char *dir, size_t dir_len, size_t n, const char *const *names,
                     const size_t *name_lens, const struct stat *stats, const uint32_t *flags, const struct stat *dot,
                     const struct stat *dotdot) {
  if (c == NULL || n > c->max_entries) return;
  dir_len = sc_dir_len(dir, dir_len);
  size_t names_len = 0;
  for (size_t k = 0; k < n; k++) names_len += name_lens[k];
  uint32_t slots = 4;
  while (slots < n * 2) slots *= 2;
  size_t sz = sizeof(sc_listing_t) + n * sizeof(sc_lent_t) + (size_t)slots * sizeof(uint32_t) + names_len + dir_len + 1;
  sc_listing_t *l = malloc(sz);
  if (l == NULL) return;
  memset(l, 0, sizeof *l);
  l->ents = (sc_lent_t *)(l + 1);
  l->index = (uint32_t *)(l->ents + n);
  l->names = (char *)(l->index + slots);
  l->dir = l->names + names_len;
  memcpy(l->dir, dir, dir_len);
  l->dir[dir_len] = 0;
  l->dir_len = (uint32_t)dir_len;
  l->hash = sc_hash(l->dir, l->dir_len);
  l->mask = slots - 1;
  memset(l->index, 0, (size_t)slots * sizeof(uint32_t));
  size_t off = 0;
  for (size_t k = 0; k < n; k++) {
    sc_lent_t *e = &l->ents[k];
    e->st = stats[k];
    e->flags = flags[k];
    e->name_off = (uint32_t)off;
    e->name_len = (uint32_t)name_lens[k];
    memcpy(l->names + off, names[k], name_lens[k]);
    off += name_lens[k];
    uint64_t h = sc_hash(l->names + e->name_off, e->name_len);
    uint32_t i = (uint32_t)h & l->mask;
    while (l->index[i]) i = (i + 1) & l->mask; /* names of a DIR piece are distinct */
    l->index[i] = (uint32_t)k + 1;
  }
  l->n = l->w = (uint32_t)n;
  l->full = 1;
  l->dot = *dot;
  l->dotdot = *dotdot;
  sc_listing_t *dead = NULL;
  pthread_rwlock_wrlock(&c->lock);
  if (sc_listing_put(c, l, &dead)) c->inserts += n;
  pthread_rwlock_unlock(&c->lock);
  sc_free_chain(dead);
}

/* The listing entry of path (write nothing when there is none): its stat and reference. */
static int sc_get_lent(sc_t *c, const char *path, struct stat *st, void *ref, int want_file) {
  if (c == NULL || path == NULL) return 0;
  size_t len = strlen(path);
  const char *slash = NULL;
  for (size_t i = len; i > 0; i--)
    if (path[i - 1] == '/') {
      slash = path + i - 1;
      break;
    }
  if (slash == NULL || (size_t)(slash - path) + 1 >= len) return 0;
  size_t dl = slash == path ? 1 : (size_t)(slash - path);
  int found = 0;
  pthread_rwlock_rdlock(&c->lock);
  sc_listing_t *l = c->nlistings ? sc_listing_find(c, sc_hash(path, dl), path, dl) : NULL;
  if (l != NULL) {
    long k = sc_listing_lookup(l, slash + 1, len - (size_t)(slash - path) - 1);
    struct stat s;
    dl_ref_t r;
    if (k >= 0 && sc_lent(l, k, &s, NULL, &r) && (want_file ? r.file : r.has)) {
      *st = s;
      memcpy(ref, &r, sizeof(dl_ref_t));
      found = 1;
    }
    if (!__atomic_load_n(&l->ref, __ATOMIC_RELAXED)) __atomic_store_n(&l->ref, 1, __ATOMIC_RELAXED);
  }
  pthread_rwlock_unlock(&c->lock);
  return found;
}

int sc_get_dir(sc_t *c, const char *path, struct stat *st, void *ref) { return sc_get_lent(c, path, st, ref, 0); }

int sc_get_file(sc_t *c, const char *path, struct stat *st, void *ref) { return sc_get_lent(c, path, st, ref, 1); }

int sc_has_listing(sc_t *c, const char *dir, size_t len) {
  if (c == NULL || dir == NULL || len == 0) return 0;
  len = sc_dir_len(dir, len);
  pthread_rwlock_rdlock(&c->lock);
  sc_listing_t *l = c->nlistings ? sc_listing_find(c, sc_hash(dir, len), dir, len) : NULL;
  if (l != NULL && !__atomic_load_n(&l->ref, __ATOMIC_RELAXED)) __atomic_store_n(&l->ref, 1, __ATOMIC_RELAXED);
  pthread_rwlock_unlock(&c->lock);
  return l != NULL;
}

void sc_info(sc_t *c, sc_info_t *out) {
  pthread_rwlock_rdlock(&c->lock);
  out->entries = c->gen[0].count + c->gen[1].count + c->lentries;
  out->inserts = c->inserts;
  pthread_rwlock_unlock(&c->lock);
  out->hits = __atomic_load_n(&c->hits, __ATOMIC_RELAXED);
  out->misses = __atomic_load_n(&c->misses, __ATOMIC_RELAXED);
  out->listed = __atomic_load_n(&c->listed, __ATOMIC_RELAXED);
}

/* Write lock held: every listing goes on the returned chain. */
static sc_listing_t *sc_listings_take(sc_t *c) {
  sc_listing_t *dead = NULL;
  while (c->hand) {
    sc_listing_t *l = c->hand;
    sc_listing_unlink(c, l);
    l->hnext = dead;
    dead = l;
  }
  return dead;
}

void sc_clear(sc_t *c) {
  pthread_rwlock_wrlock(&c->lock);
  sc_table_free(&c->gen[0]);
  sc_table_free(&c->gen[1]);
  sc_table_init(&c->gen[0], 1024);
  sc_listing_t *dead = sc_listings_take(c);
  pthread_rwlock_unlock(&c->lock);
  sc_free_chain(dead);
}

void sc_free(sc_t *c) {
  if (c == NULL) return;
  sc_table_free(&c->gen[0]);
  sc_table_free(&c->gen[1]);
  sc_free_chain(sc_listings_take(c));
  free(c->lbuckets);
  free(c->b.dir);
  free(c->b.ents);
  free(c->b.names);
  pthread_rwlock_destroy(&c->lock);
  free(c);
}
