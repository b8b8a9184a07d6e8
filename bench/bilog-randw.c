/* bench/bilog-randw.c: the writer of bench/bilog-latency.sh. N random 4 KiB buffered pwrites
 * into FILE (which must exist and be at least SIZE bytes), each timed; prints p50, p99 and
 * max in microseconds and the throughput (writes/s over the whole run). With RATE > 0 the
 * writes are paced at RATE per second (a writer with a fixed rate: the throughput shows
 * whether it kept up). usage: bilog-randw FILE SIZE N SEED [RATE] */
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

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

int main(int argc, char **argv) {
  if (argc != 5 && argc != 6) return 2;
  uint64_t size = strtoull(argv[2], NULL, 10), n = strtoull(argv[3], NULL, 10);
  double rate = argc == 6 ? strtod(argv[5], NULL) : 0;
  srand((unsigned)atoi(argv[4]));
  int fd = open(argv[1], O_WRONLY);
  if (fd < 0) return perror(argv[1]), 1;
  char buf[4096];
  memset(buf, 0x5a, sizeof buf);
  uint64_t *lat = malloc(n * sizeof *lat), *t0s = malloc(n * sizeof *t0s);
  uint64_t start = now_ns();
  for (uint64_t i = 0; i < n; i++) {
    off_t off = (off_t)(((uint64_t)rand() * 4096) % (size - 4096)) / 4096 * 4096;
    if (rate > 0) { /* the i-th write is due at start + i / rate */
      uint64_t due = start + (uint64_t)((double)i * 1e9 / rate), t = now_ns();
      if (due > t) {
        struct timespec ts = {(time_t)((due - t) / 1000000000ULL), (long)((due - t) % 1000000000ULL)};
        nanosleep(&ts, NULL);
      }
    }
    uint64_t a = now_ns();
    if (pwrite(fd, buf, sizeof buf, off) != (ssize_t)sizeof buf) return perror("pwrite"), 1;
    lat[i] = now_ns() - a;
    t0s[i] = a;
  }
  const char *tf = getenv("RANDW_TRACE"); /* (start, latency) per write, for bilog-cap's trace */
  FILE *o = tf ? fopen(tf, "w") : NULL;
  for (uint64_t i = 0; o && i < n; i++) fprintf(o, "%llu %llu\n", (unsigned long long)t0s[i], (unsigned long long)lat[i]);
  if (o) fclose(o);
  double secs = (double)(now_ns() - start) / 1e9;
  qsort(lat, n, sizeof *lat, cmp);
  printf("p50_us=%.1f p99_us=%.1f max_us=%.0f writes_per_s=%.0f n=%llu\n", lat[n / 2] / 1000.0,
         lat[n * 99 / 100] / 1000.0, lat[n - 1] / 1000.0, (double)n / secs, (unsigned long long)n);
  return 0;
}
