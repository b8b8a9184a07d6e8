/*
 * aead: one AEAD message sealed or opened with the OpenSSL that Node.js carries (its libcrypto
 * symbols are exported by the node binary; the headers come with Node's, in include/node).
 * The same messages as node:crypto's createCipheriv/createDecipheriv make (format.md §2.22):
 * AES-256-GCM or ChaCha20-Poly1305, a 32-byte key, a 12-byte nonce, ciphertext ‖ 16-byte tag.
 * Written into the caller's buffer, with no allocation but the cipher context: the unit
 * frames a restore or a mount opens by the thousand, and that backup seals.
 *
 * Any thread may call these at once.
 */
#ifndef BFS_AEAD_H
#define BFS_AEAD_H

#include <stddef.h>
#include <stdint.h>

#define BFS_AEAD_AES256GCM 0
#define BFS_AEAD_CHACHA20POLY1305 1
#define BFS_AEAD_KEY_BYTES 32
#define BFS_AEAD_NONCE_BYTES 12
#define BFS_AEAD_TAG_BYTES 16

/* the message does not authenticate (bytes, tag, AAD, nonce or key not what sealed it) */
#define BFS_AEAD_AUTH (-1)
/* the cipher could not be set up (not in this OpenSSL, or out of memory) */
#define BFS_AEAD_ERROR (-2)

/* Seals in[0 .. len) into out: len bytes of ciphertext then the 16-byte tag. out may be in
 * itself (and then has room for the tag), else must not overlap it. Returns len + 16 or
 * BFS_AEAD_ERROR. */
long long bfs_aead_seal(int alg, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                        const uint8_t *in, size_t len, uint8_t *out);

/* Opens in[0 .. len) (ciphertext ‖ tag, len >= 16) into out: len - 16 bytes of plaintext.
 * out may be in itself, else must not overlap it. Returns len - 16, BFS_AEAD_AUTH (out then
 * holds bytes that did not authenticate: never use them) or BFS_AEAD_ERROR. */
long long bfs_aead_open(int alg, const uint8_t *key, const uint8_t *nonce, const uint8_t *aad, size_t aad_len,
                        const uint8_t *in, size_t len, uint8_t *out);

/* The OpenSSL these use ("OpenSSL 3.0.x ..."). */
const char *bfs_aead_version(void);

#endif
