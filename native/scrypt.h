/*
 * scrypt (RFC 7914) by libsodium's escrypt (crypto_pwhash_scryptsalsa208sha256_ll: its SSE2
 * salsa20/8 where the CPU has it), for the key files' KEK (format.md §2.21). The same bytes as
 * OpenSSL's EVP_PBE_scrypt, which node:crypto's scrypt runs: ~0.26 s instead of ~0.37 s of a
 * core for N = 2^17, r = 8, p = 1 here, paid by every command that unlocks a repository.
 * Any thread may call it.
 */
#ifndef BFS_SCRYPT_H
#define BFS_SCRYPT_H

#include <stddef.h>
#include <stdint.h>

/* out[0 .. out_len) = scrypt(pass, salt, N, r, p). 0, or an errno: EINVAL (N not a power of
 * 2 above 1, r * p >= 2^30, ...), ENOMEM, or EIO when libsodium cannot start. */
int bfs_scrypt(const uint8_t *pass, size_t pass_len, const uint8_t *salt, size_t salt_len, uint64_t N, uint32_t r,
               uint32_t p, uint8_t *out, size_t out_len);

/* The libsodium this was built with ("1.0.18"). */
const char *bfs_scrypt_version(void);

#endif
