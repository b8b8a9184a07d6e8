/* bench/bilog-randw.c: the writer of bench/bilog-latency.sh. N random 4 KiB buffered pwrites
 * into FILE (which must exist and be at least SIZE bytes), each timed; prints p50 and p99 in
 * microseconds. usage: bilog-randw FILE SIZE N SEED */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int cmp(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  if (argc != 5) return 2;
  uint64_t size = strtoull(argv[2], NULL, 10), n = strtoull(argv[3], NULL, 10);
  srand((unsigned)atoi(argv[4]));
  int fd = open(argv[1], O_WRONLY);
  if (fd < 0) return perror(argv[1]), 1;
  char buf[4096];
  memset(buf, 0x5a, sizeof buf);
  uint64_t *lat = malloc(n * sizeof *lat);
  for (uint64_t i = 0; i < n; i++) {
    off_t off = (off_t)(((uint64_t)rand() * 4096) % (size - 4096)) / 4096 * 4096;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf) return perror("pwrite"), 1;
    clock_gettime(CLOCK_MONOTONIC, &b);
    lat[i] = (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000ULL + (uint64_t)(b.tv_nsec - a.tv_nsec);
  }
  qsort(lat, n, sizeof *lat, cmp);
  printf("p50_us=%.1f p99_us=%.1f n=%llu\n", lat[n / 2] / 1000.0, lat[n * 99 / 100] / 1000.0, (unsigned long long)n);
  return 0;
}
