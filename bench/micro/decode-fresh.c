// What one whole-frame decode of the native read path (native/nread.c) costs by where its
// output goes (issue 15, native-notes/v2-mount.md "Cold pread: the 4 ms whole-frame
// decodes"): zstd frames are found in the given files by their magic (a unit file's frames,
// gens/N/unit-*), and every frame of 512 KiB to 1 MiB raw is decoded once, alone, with one
// ZSTD_DCtx, timing the decode's thread CPU and counting its minor faults.
//
//   cc -O2 -o /tmp/decode-fresh bench/micro/decode-fresh.c -lzstd
//   /tmp/decode-fresh MODE REPO/gens/00000001/unit-*      (LIMIT=n: at most n frames; DUMP=1: every decode)
//
// MODE, the output buffer: reuse (one, reused), fresh-free (malloc + free per decode),
// fresh-keep (malloc per decode, never freed: fresh memory each time), mmap (mmap + munmap per
// decode), dctx-new (reused buffer, a new DCtx per decode), huge (2 MiB aligned,
// MADV_HUGEPAGE), populate (mmap MAP_POPULATE), popw (malloc + MADV_POPULATE_WRITE), touch
// (no decode: malloc + memset only, which gcc may turn into calloc). Prints CPU µs p10 /
// median / p90 / p99 / max / mean, wall median / p99, decodes over 2 ms and faults per decode.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

static double now (clockid_t c) { struct timespec t; clock_gettime(c, &t); return t.tv_sec * 1e6 + t.tv_nsec / 1e3; }
static long minflt (void) { struct rusage r; getrusage(RUSAGE_THREAD, &r); return r.ru_minflt; }
static int cmp (const void *a, const void *b) { double x = *(double *) a, y = *(double *) b; return x < y ? -1 : x > y; }

int main (int argc, char **argv) {
  const char *mode = argv[1];
  static double cpu[100000], wall[100000]; static long flt[100000]; int n = 0;
  ZSTD_DCtx *dctx = ZSTD_createDCtx();
  char *reuse = malloc(1 << 20);
  memset(reuse, 1, 1 << 20);
  int limit = getenv("LIMIT") ? atoi(getenv("LIMIT")) : 100000;
  for (int a = 2; a < argc && n < limit; a++) {
    int fd = open(argv[a], O_RDONLY);
    struct stat st; fstat(fd, &st);
    unsigned char *m = mmap(NULL, st.st_size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
    close(fd);
    size_t p = 0;
    while (p + 4 <= (size_t) st.st_size && n < limit) {
      if (!(m[p] == 0x28 && m[p+1] == 0xb5 && m[p+2] == 0x2f && m[p+3] == 0xfd)) { p++; continue; }
      size_t cs = ZSTD_findFrameCompressedSize(m + p, st.st_size - p);
      unsigned long long rs = ZSTD_getFrameContentSize(m + p, st.st_size - p);
      if (ZSTD_isError(cs) || rs == ZSTD_CONTENTSIZE_UNKNOWN || rs == ZSTD_CONTENTSIZE_ERROR) { p++; continue; }
      if (rs >= 512 << 10 && rs <= 1 << 20) {
        char *out = reuse;
        ZSTD_DCtx *d = dctx;
        double c0 = now(CLOCK_THREAD_CPUTIME_ID), w0 = now(CLOCK_MONOTONIC); long f0 = minflt();
        if (!strcmp(mode, "fresh-free") || !strcmp(mode, "fresh-keep")) out = malloc(rs);
        else if (!strcmp(mode, "mmap")) out = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        else if (!strcmp(mode, "dctx-new")) d = ZSTD_createDCtx();
        else if (!strcmp(mode, "popw")) { out = malloc(rs); uintptr_t a = ((uintptr_t) out + 4095) & ~(uintptr_t) 4095, e = ((uintptr_t) out + rs) & ~(uintptr_t) 4095; if (madvise((void *) a, e - a, 23 /* MADV_POPULATE_WRITE */)) perror("madvise"); }
        else if (!strcmp(mode, "huge")) { out = aligned_alloc(2 << 20, 2 << 20); madvise(out, 2 << 20, MADV_HUGEPAGE); }
        else if (!strcmp(mode, "populate")) { out = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0); }
        size_t r;
        if (!strcmp(mode, "touch")) { out = malloc(rs); memset(out, 0, rs); r = rs; }
        else r = ZSTD_decompressDCtx(d, out, rs, m + p, cs);
        double c1 = now(CLOCK_THREAD_CPUTIME_ID), w1 = now(CLOCK_MONOTONIC); long f1 = minflt();
        if (ZSTD_isError(r) || r != rs) { fprintf(stderr, "decode error %s\n", ZSTD_getErrorName(r)); return 1; }
        if (!strcmp(mode, "fresh-free")) free(out);
        else if (!strcmp(mode, "mmap") || !strcmp(mode, "populate")) munmap(out, 1 << 20);
        else if (!strcmp(mode, "dctx-new")) ZSTD_freeDCtx(d);
        cpu[n] = c1 - c0; wall[n] = w1 - w0; flt[n] = f1 - f0; n++;
      }
      p += cs;
    }
    munmap(m, st.st_size);
  }
  long ft = 0; for (int i = 0; i < n; i++) ft += flt[i];
  double sc = 0; for (int i = 0; i < n; i++) sc += cpu[i];
  if (getenv("DUMP")) for (int i = 0; i < n; i++) printf("%d %.0f %.0f %ld\n", i, cpu[i], wall[i], flt[i]);
  qsort(cpu, n, sizeof(double), cmp); qsort(wall, n, sizeof(double), cmp);
  int slow = 0; for (int i = 0; i < n; i++) if (cpu[i] > 2000) slow++;
  printf("%-10s n %d cpu us p10 %.0f med %.0f p90 %.0f p99 %.0f max %.0f mean %.0f | wall med %.0f p99 %.0f | >2ms %d | minflt/decode %.1f\n",
         mode, n, cpu[n / 10], cpu[n / 2], cpu[n * 9 / 10], cpu[n * 99 / 100], cpu[n - 1], sc / n, wall[n / 2], wall[n * 99 / 100], slow, (double) ft / n);
  return 0;
}
