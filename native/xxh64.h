/*
 * XXH64 (seed 0) from the public xxHash specification, as a header for the parts of native/
 * that are built without Node (bilog.c and its test). The same function as bfs_native.c's
 * block hash; test/bilog-format.test.ts checks the two agree through the capture file.
 */
#ifndef BFS_XXH64_H
#define BFS_XXH64_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BX_P1 11400714785074694791ULL
#define BX_P2 14029467366897019727ULL
#define BX_P3 1609587929392839161ULL
#define BX_P4 9650029242287828579ULL
#define BX_P5 2870177450012600261ULL

static inline uint64_t bx_rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t bx_read64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t bx_read32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t bx_round(uint64_t acc, uint64_t in) { acc += in * BX_P2; acc = bx_rotl(acc, 31); return acc * BX_P1; }
static inline uint64_t bx_merge(uint64_t acc, uint64_t v) { acc ^= bx_round(0, v); return acc * BX_P1 + BX_P4; }

static inline uint64_t bfs_xxh64(const void *data, size_t len) {
  const uint8_t *p = data, *end = p + len;
  uint64_t h;
  if (len >= 32) {
    const uint8_t *limit = end - 32;
    uint64_t v1 = BX_P1 + BX_P2, v2 = BX_P2, v3 = 0, v4 = (uint64_t)0 - BX_P1;
    do {
      v1 = bx_round(v1, bx_read64(p));
      v2 = bx_round(v2, bx_read64(p + 8));
      v3 = bx_round(v3, bx_read64(p + 16));
      v4 = bx_round(v4, bx_read64(p + 24));
      p += 32;
    } while (p <= limit);
    h = bx_rotl(v1, 1) + bx_rotl(v2, 7) + bx_rotl(v3, 12) + bx_rotl(v4, 18);
    h = bx_merge(h, v1);
    h = bx_merge(h, v2);
    h = bx_merge(h, v3);
    h = bx_merge(h, v4);
  } else {
    h = BX_P5;
  }
  h += (uint64_t)len;
  while (p + 8 <= end) {
    h ^= bx_round(0, bx_read64(p));
    h = bx_rotl(h, 27) * BX_P1 + BX_P4;
    p += 8;
  }
  if (p + 4 <= end) {
    h ^= (uint64_t)bx_read32(p) * BX_P1;
    h = bx_rotl(h, 23) * BX_P2 + BX_P3;
    p += 4;
  }
  while (p < end) {
    h ^= (uint64_t)(*p) * BX_P5;
    h = bx_rotl(h, 11) * BX_P1;
    p++;
  }
  h ^= h >> 33;
  h *= BX_P2;
  h ^= h >> 29;
  h *= BX_P3;
  h ^= h >> 32;
  return h;
}

#endif
