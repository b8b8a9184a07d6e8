/* See aead.h. */
#include "aead.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

/* The two ciphers, fetched once (EVP_aes_256_gcm() and the like would look the implementation
 * up again at every init); a fetched cipher is shared by every thread. */
static EVP_CIPHER *ciphers[2];
static pthread_once_t fetched = PTHREAD_ONCE_INIT;

static void fetch(void) {
  ciphers[BFS_AEAD_AES256GCM] = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
  ciphers[BFS_AEAD_CHACHA20POLY1305] = EVP_CIPHER_fetch(NULL, "ChaCha20-Poly1305", NULL);
}

static EVP_CIPHER_CTX *start(int alg, int enc, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len) {
  if (alg != BFS_AEAD_AES256GCM && alg != BFS_AEAD_CHACHA20POLY1305) return NULL;
  pthread_once(&fetched, fetch);
  if (!ciphers[alg] || aad_len > INT_MAX) return NULL;
  EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
  if (!ctx) return NULL;
  int n;
  /* (both take a 12-byte IV by default) */
  if (EVP_CipherInit_ex(ctx, ciphers[alg], NULL, key, nonce, enc) != 1 || (aad_len && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)) {
    EVP_CIPHER_CTX_free(ctx);
    return NULL;
  }
  return ctx;
}

/* The whole of in through the cipher into out (in pieces below INT_MAX); 0 or -1. */
static int run(EVP_CIPHER_CTX *ctx, const uint8_t *in, size_t len, uint8_t *out) {
  size_t done = 0;
  while (done < len) {
    size_t k = len - done > (1u << 30) ? (1u << 30) : len - done;
    int n = 0;
    if (EVP_CipherUpdate(ctx, out + done, &n, in + done, (int)k) != 1 || (size_t)n != k) return -1; /* stream modes: as many out as in */
    done += k;
  }
  return 0;
}

long long bfs_aead_seal(int alg, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                        const uint8_t *in, size_t len, uint8_t *out) {
  EVP_CIPHER_CTX *ctx = start(alg, 1, key, nonce, aad, aad_len);
  if (!ctx) return BFS_AEAD_ERROR;
  int n = 0;
  long long rc = BFS_AEAD_ERROR;
  if (run(ctx, in, len, out) == 0 && EVP_CipherFinal_ex(ctx, out + len, &n) == 1 && n == 0 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, BFS_AEAD_TAG_BYTES, out + len) == 1)
    rc = (long long)len + BFS_AEAD_TAG_BYTES;
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

long long bfs_aead_open(int alg, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                        const uint8_t *in, size_t len, uint8_t *out) {
  if (len < BFS_AEAD_TAG_BYTES) return BFS_AEAD_AUTH;
  size_t ct = len - BFS_AEAD_TAG_BYTES;
  uint8_t tag[BFS_AEAD_TAG_BYTES];
  memcpy(tag, in + ct, sizeof tag); /* (before out, which may be in, is written) */
  EVP_CIPHER_CTX *ctx = start(alg, 0, key, nonce, aad, aad_len);
  if (!ctx) return BFS_AEAD_ERROR;
  long long rc = BFS_AEAD_ERROR;
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, BFS_AEAD_TAG_BYTES, tag) == 1 && run(ctx, in, ct, out) == 0) {
    int n = 0;
    rc = EVP_CipherFinal_ex(ctx, out + ct, &n) == 1 && n == 0 ? (long long)ct : BFS_AEAD_AUTH;
  }
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

const char *bfs_aead_version(void) { return OpenSSL_version(OPENSSL_VERSION); }
