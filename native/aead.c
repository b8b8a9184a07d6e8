/* See aead.h. */
#include "aead.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>

/* The two ciphers, each fetched once it is first needed (EVP_aes_256_gcm() and the like would
 * look the implementation up again at every init); a fetched cipher is shared by every
 * thread. A fetch that fails (no memory) is tried again by the next call. */
static EVP_CIPHER *ciphers[2];
static const char *const names[2] = {"AES-256-GCM", "ChaCha20-Poly1305"};
static pthread_mutex_t fetch_mu = PTHREAD_MUTEX_INITIALIZER;

static EVP_CIPHER *cipher(int alg) {
  EVP_CIPHER *c = __atomic_load_n(&ciphers[alg], __ATOMIC_ACQUIRE);
  if (c) return c;
  pthread_mutex_lock(&fetch_mu);
  if (!(c = ciphers[alg]) && (c = EVP_CIPHER_fetch(NULL, names[alg], NULL)) != NULL) __atomic_store_n(&ciphers[alg], c, __ATOMIC_RELEASE);
  pthread_mutex_unlock(&fetch_mu);
  return c;
}

/* A failure: OpenSSL's error queue of this thread emptied (node:crypto's calls on the same
 * thread would otherwise find our errors there). */
static long long failed(EVP_CIPHER_CTX *ctx, long long rc) {
  EVP_CIPHER_CTX_free(ctx);
  ERR_clear_error();
  return rc;
}

static EVP_CIPHER_CTX *start(int alg, int enc, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len) {
  if (alg != BFS_AEAD_AES256GCM && alg != BFS_AEAD_CHACHA20POLY1305) return NULL;
  EVP_CIPHER *c = aad_len <= INT_MAX ? cipher(alg) : NULL;
  EVP_CIPHER_CTX *ctx = c ? EVP_CIPHER_CTX_new() : NULL;
  int n;
  /* (both take a 12-byte IV by default) */
  if (!ctx || EVP_CipherInit_ex(ctx, c, NULL, key, nonce, enc) != 1 || (aad_len && EVP_CipherUpdate(ctx, NULL, &n, aad, (int)aad_len) != 1)) {
    failed(ctx, 0);
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
  else
    return failed(ctx, rc);
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
  if (rc < 0) return failed(ctx, rc);
  EVP_CIPHER_CTX_free(ctx);
  return rc;
}

const char *bfs_aead_version(void) { return OpenSSL_version(OPENSSL_VERSION); }
