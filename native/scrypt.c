/* See scrypt.h. */
#include "scrypt.h"

#include <errno.h>
#include <pthread.h>
#include <sodium.h>

static pthread_once_t inited = PTHREAD_ONCE_INIT;
static int init_rc = -1;

static void init(void) { init_rc = sodium_init(); /* 0, or 1 when done already; -1: failed */ }

int bfs_scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len, uint64_t N, uint32_t r,
               uint32_t p, uint8_t *out, size_t out_len) {
  pthread_once(&inited, init);
  if (init_rc < 0) return EIO;
  errno = 0;
  if (crypto_pwhash_scryptsalsa208sha256_ll(pass, pass_len, salt, salt_len, N, r, p, out, out_len) != 0)
    return errno ? errno : EINVAL;
  return 0;
}

const char *bfs_scrypt_version(void) { return sodium_version_string(); }
