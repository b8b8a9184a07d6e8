/* bench/online-writer.c: the writer of the `online` bench step (bench/online.sh).
 *
 * Paced random 4 KiB buffered pwrites at 4 KiB-aligned offsets into one file or into files
 * picked at random from a list, each write timed, until it is told to stop: SIGTERM/SIGINT,
 * a stop file appearing, or a duration running out. The i-th write is due at
 * start + i / RATE; a writer that fell behind (blocked by the capture) writes the late ones
 * back to back, so its throughput over the run says whether it kept its rate. Files never
 * grow: a write ends at or before the file's size rounded down to 4 KiB. Each file is
 * opened (O_WRONLY) on its first write, after the writer started, so with --start-file set
 * to `bfs backup --t0-file` it opens nothing before T0 (an fd open at T0 is not covered).
 *
 * usage: online-writer [options] FILE...      (or --list PATHS: one path per line)
 *   --rate N          writes per second (default 2000)
 *   --seed N          PRNG seed (default 1): the same seed writes the same blocks
 *   --start-file P    wait for P to exist before the first write (polled every 0.2 ms)
 *   --stop-file P     stop once P exists (checked every 100 writes and while waiting)
 *   --duration S      stop after S seconds of writing
 *   --data P          write 4 KiB slices (at random 4 KiB-aligned offsets) of the first
 *                     64 MiB of P, e.g. the source's own kind of bytes; without it, a
 *                     letter pattern (which compresses ~1000:1, and, left in the source,
 *                     makes later before-images compress like it)
 *   --trace P         write "start_ns latency_ns" per write to P
 *   --warm            write nothing: read each FILE whole into the page cache with
 *                     POSIX_FADV_RANDOM (no read-ahead), so its pages are cached in small
 *                     folios, as a live image's working set is, and exit (online.sh: why)
 * Prints one JSON line: writes, seconds, writes_per_s, p50/p90/p99/p999/max µs, the largest
 * lag behind the schedule (ms), the distinct 4 KiB blocks written, files touched. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_sig;
static void on_sig(int s) { (void)s; stop_sig = 1; }

static uint64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}
static void sleep_ns(uint64_t ns) {
  struct timespec ts = {(time_t)(ns / 1000000000ULL), (long)(ns % 1000000000ULL)};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR && !stop_sig) {}
}
static int exists(const char *p) { return p && access(p, F_OK) == 0; }

static uint64_t rng_state;
static uint64_t rnd(void) { /* splitmix64 */
  uint64_t z = (rng_state += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct target {
  char *path;
  uint64_t blocks; /* whole 4 KiB blocks in the file */
  int fd;          /* -1 until the first write */
  uint8_t *seen;   /* bitmap of blocks written */
};

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
  double rate = 2000, duration = 0;
  uint64_t seed = 1;
  const char *start_file = NULL, *stop_file = NULL, *list = NULL, *trace = NULL, *data = NULL;
  int warm = 0;
  struct target *t = NULL;
  size_t nt = 0, cap = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int opt = a[0] == '-' && a[1] == '-';
    if (opt && !v && strcmp(a, "--warm")) return fprintf(stderr, "online-writer: %s needs a value\n", a), 64;
    if (!strcmp(a, "--rate")) rate = strtod(v, NULL), i++;
    else if (!strcmp(a, "--seed")) seed = strtoull(v, NULL, 10), i++;
    else if (!strcmp(a, "--start-file")) start_file = v, i++;
    else if (!strcmp(a, "--stop-file")) stop_file = v, i++;
    else if (!strcmp(a, "--duration")) duration = strtod(v, NULL), i++;
    else if (!strcmp(a, "--list")) list = v, i++;
    else if (!strcmp(a, "--trace")) trace = v, i++;
    else if (!strcmp(a, "--data")) data = v, i++;
    else if (!strcmp(a, "--warm")) warm = 1;
    else if (opt) return fprintf(stderr, "online-writer: unknown option %s\n", a), 64;
    else {
      if (nt == cap) t = realloc(t, (cap = cap ? cap * 2 : 64) * sizeof *t);
      t[nt++] = (struct target){.path = strdup(a)};
    }
  }
  if (list) {
    FILE *f = fopen(list, "r");
    if (!f) return perror(list), 1;
    char *line = NULL;
    size_t n = 0;
    ssize_t len;
    while ((len = getline(&line, &n, f)) > 0) {
      if (line[len - 1] == '\n') line[--len] = 0;
      if (!len) continue;
      if (nt == cap) t = realloc(t, (cap = cap ? cap * 2 : 64) * sizeof *t);
      t[nt++] = (struct target){.path = strdup(line)};
    }
    free(line);
    fclose(f);
  }
  if (warm) { /* 1 MiB preads without read-ahead: the page cache gets order-0 folios */
    static char wbuf[1 << 20];
    for (size_t i = 0; i < nt; i++) {
      int fd = open(t[i].path, O_RDONLY | O_CLOEXEC);
      if (fd < 0) return perror(t[i].path), 1;
      posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
      off_t pos = 0;
      ssize_t r;
      while ((r = pread(fd, wbuf, sizeof wbuf, pos)) > 0) pos += r;
      if (r < 0) return perror(t[i].path), 1;
      close(fd);
    }
    return 0;
  }
  if (!nt || rate <= 0) return fprintf(stderr, "usage: online-writer [--rate N] [--seed N] [--start-file P] [--stop-file P] [--duration S] [--list PATHS] FILE...\n"), 64;
  /* sizes now (stat opens nothing); a file under 4 KiB cannot take a write */
  size_t keep = 0;
  for (size_t i = 0; i < nt; i++) {
    struct stat st;
    if (stat(t[i].path, &st) != 0) return perror(t[i].path), 1;
    if (st.st_size < 4096) continue;
    t[i].blocks = (uint64_t)st.st_size / 4096;
    t[i].fd = -1;
    t[keep++] = t[i];
  }
  nt = keep;
  if (!nt) return fprintf(stderr, "online-writer: no file of 4 KiB or more\n"), 64;
  char *donor = NULL;
  uint64_t donor_blocks = 0;
  if (data) { /* read before the start: the writer's first writes must not wait for it */
    int dfd = open(data, O_RDONLY | O_CLOEXEC);
    if (dfd < 0) return perror(data), 1;
    donor = malloc(64 << 20);
    ssize_t got = 0, r;
    while (got < (64 << 20) && (r = read(dfd, donor + got, (size_t)(64 << 20) - (size_t)got)) > 0) got += r;
    close(dfd);
    donor_blocks = (uint64_t)got / 4096;
    if (!donor_blocks) return fprintf(stderr, "online-writer: %s is under 4 KiB\n", data), 64;
  }
  signal(SIGTERM, on_sig);
  signal(SIGINT, on_sig);
  rng_state = seed;

  while (start_file && !exists(start_file)) {
    if (stop_sig || exists(stop_file)) break;
    sleep_ns(200000);
  }
  size_t cap_lat = 1 << 16, n = 0;
  uint64_t *lat = malloc(cap_lat * sizeof *lat), *t0s = trace ? malloc(cap_lat * sizeof *t0s) : NULL;
  char buf[4096];
  uint64_t start = now_ns(), max_lag = 0, distinct = 0, touched = 0;
  uint64_t end = duration > 0 ? start + (uint64_t)(duration * 1e9) : UINT64_MAX;
  while (!stop_sig) {
    if (n % 100 == 0 && exists(stop_file)) break;
    uint64_t due = start + (uint64_t)((double)n * 1e9 / rate), now = now_ns();
    if (due >= end || now >= end) break;
    if (due > now) {
      /* wait in slices so that a stop file or signal is seen within 50 ms */
      uint64_t d = due - now;
      sleep_ns(d > 50000000ULL ? 50000000ULL : d);
      if (d > 50000000ULL) {
        if (exists(stop_file)) break;
        continue;
      }
      if (stop_sig) break;
    } else if (now - due > max_lag) max_lag = now - due;
    struct target *x = &t[nt > 1 ? rnd() % nt : 0];
    uint64_t blk = rnd() % x->blocks;
    if (x->fd < 0) {
      x->fd = open(x->path, O_WRONLY | O_CLOEXEC);
      if (x->fd < 0) return perror(x->path), 1;
      x->seen = calloc((x->blocks + 7) / 8, 1);
      touched++;
    }
    if (!(x->seen[blk / 8] & (1u << (blk % 8)))) x->seen[blk / 8] |= (uint8_t)(1u << (blk % 8)), distinct++;
    const char *src = buf;
    if (donor) src = donor + (rnd() % donor_blocks) * 4096;
    else { /* new bytes each write (a counter and the target) */
      memset(buf, 'a' + (int)(n % 26), sizeof buf);
      snprintf(buf, 64, "online-writer %zu %llu\n", n, (unsigned long long)blk);
    }
    uint64_t a = now_ns();
    if (pwrite(x->fd, src, 4096, (off_t)(blk * 4096)) != 4096) return perror("pwrite"), 1;
    uint64_t b = now_ns();
    if (n == cap_lat) {
      cap_lat *= 2;
      lat = realloc(lat, cap_lat * sizeof *lat);
      if (t0s) t0s = realloc(t0s, cap_lat * sizeof *t0s);
    }
    if (t0s) t0s[n] = a;
    lat[n++] = b - a;
  }
  double secs = (double)(now_ns() - start) / 1e9;
  if (trace) {
    FILE *o = fopen(trace, "w");
    for (size_t i = 0; o && i < n; i++) fprintf(o, "%llu %llu\n", (unsigned long long)t0s[i], (unsigned long long)lat[i]);
    if (o) fclose(o);
  }
  for (size_t i = 0; i < nt; i++)
    if (t[i].fd >= 0) close(t[i].fd);
  qsort(lat, n, sizeof *lat, cmp_u64);
#define PCT(p) (n ? lat[(size_t)((double)(n - 1) * (p))] / 1000.0 : 0)
  printf("{\"writes\":%zu,\"seconds\":%.3f,\"writes_per_s\":%.1f,\"rate\":%.0f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,"
         "\"p999_us\":%.1f,\"max_us\":%.0f,\"max_lag_ms\":%.1f,\"distinct_blocks\":%llu,\"files\":%zu,\"files_touched\":%llu}\n",
         n, secs, secs > 0 ? (double)n / secs : 0, rate, PCT(0.5), PCT(0.9), PCT(0.99), PCT(0.999), n ? lat[n - 1] / 1000.0 : 0,
         max_lag / 1e6, (unsigned long long)distinct, nt, (unsigned long long)touched);
  return 0;
}
