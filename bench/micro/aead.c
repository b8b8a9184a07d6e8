// What the native read path (native/nread.c, libfuse threads) would pay to open one AEAD
// message in C with OpenSSL's EVP API (format.md §2.22.1): AES-256-GCM and ChaCha20-Poly1305
// decrypt + tag check of 4 KiB, 128 KiB and 1 MiB, one EVP_CIPHER_CTX reused per thread and
// the cipher fetched once (OpenSSL 3's implicit fetch per init costs a lookup).
//
//   cc -O2 -o /tmp/aead bench/micro/aead.c -lcrypto && /tmp/aead [passes]
//
// Built against the system's libssl-dev (3.0.19 here, the version /usr/bin/node links
// statically and exports). Prints the median µs of CPU (this thread) per message.
#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double cpu_us (void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp (const void *a, const void *b) {
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

int main (int argc, char **argv) {
  int passes = argc > 1 ? atoi(argv[1]) : 7;
  const char *names[] = { "AES-256-GCM", "ChaCha20-Poly1305" };
  const size_t sizes[] = { 4096, 128 * 1024, 1 << 20 };
  unsigned char key[32], nonce[12] = { 1 }, aad[32] = { 2 }, tag[16];
  for (int i = 0; i < 32; i++) key[i] = (unsigned char) (i * 7 + 1);
  unsigned char *pt = malloc(1 << 20), *ct = malloc(1 << 20), *out = malloc(1 << 20);
  for (size_t i = 0; i < 1u << 20; i++) pt[i] = (unsigned char) (i * 31 + 7);
  printf("%s\n", OpenSSL_version(OPENSSL_VERSION));
  for (int c = 0; c < 2; c++) {
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(NULL, names[c], NULL);
    if (!cipher) { fprintf(stderr, "no %s\n", names[c]); return 1; }
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    for (int s = 0; s < 3; s++) {
      size_t n = sizes[s];
      int len;
      // seal once
      EVP_EncryptInit_ex2(ctx, cipher, key, nonce, NULL);
      EVP_EncryptUpdate(ctx, NULL, &len, aad, sizeof aad);
      EVP_EncryptUpdate(ctx, ct, &len, pt, (int) n);
      EVP_EncryptFinal_ex(ctx, ct + len, &len);
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, 16, tag);
      size_t reps = (64u << 20) / n;
      double med[64];
      for (int p = 0; p < passes && p < 64; p++) {
        double t0 = cpu_us();
        for (size_t r = 0; r < reps; r++) {
          EVP_DecryptInit_ex2(ctx, cipher, key, nonce, NULL);
          EVP_DecryptUpdate(ctx, NULL, &len, aad, sizeof aad);
          EVP_DecryptUpdate(ctx, out, &len, ct, (int) n);
          EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, 16, tag);
          if (EVP_DecryptFinal_ex(ctx, out + len, &len) != 1) { fprintf(stderr, "tag check failed\n"); return 1; }
        }
        med[p] = (cpu_us() - t0) / reps;
      }
      qsort(med, passes, sizeof med[0], cmp);
      if (memcmp(out, pt, n)) { fprintf(stderr, "mismatch\n"); return 1; }
      printf("open %-18s %8zu B  %9.2f µs CPU/msg\n", names[c], n, med[passes / 2]);
    }
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
  }
  return 0;
}
