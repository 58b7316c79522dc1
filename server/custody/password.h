/*
 * password.h - console users' passwords: argon2id through Debian's
 * libargon2 (t=3, m=65536 KiB, p=1, 16-byte salt, 32-byte tag), in the
 * custody process only.  At most KW_PASSWORD_CONCURRENCY hashes run at a
 * time (64 MiB each) and at most KW_PASSWORD_QUEUE wait their turn; beyond,
 * KW_ERR_OVERLOAD (a sign-in flood cannot hold the custody workers).  Nothing here
 * keeps or logs a password; callers wipe theirs.
 */
#ifndef KW_PASSWORD_H
#define KW_PASSWORD_H

#include <stddef.h>

#include "../common/result.h"
#include "keystore.h"

#define KW_PASSWORD_MIN 12
#define KW_PASSWORD_MAX 128
#define KW_PASSWORD_CONCURRENCY 2
#define KW_PASSWORD_QUEUE 2         /* waiting beyond the running ones */

/* 1 when p (n bytes) is an acceptable password: 12..128 bytes of UTF-8
 * without NUL or control characters. */
int kw_password_acceptable(const uint8_t *p, size_t n);
/* The argon2id encoded hash of p with a fresh salt into ret (NUL-terminated,
 * fits KW_USER_HASH_MAX).  KW_ERR_CRYPTO / KW_ERR_RANDOM / KW_ERR_NOMEM. */
KW_MUST_USE kw_result kw_password_hash(const uint8_t *p, size_t n, char ret[KW_USER_HASH_MAX]);
/* *ret_match 1 when p matches the encoded hash (constant time inside
 * libargon2), 0 otherwise (a mismatch or a hash that does not decode).
 * encoded NULL: the same work against a dummy hash, and 0 (an unknown user
 * name costs what a known one does).  KW_ERR_OVERLOAD, *ret_match 0, when
 * KW_PASSWORD_CONCURRENCY checks run and KW_PASSWORD_QUEUE wait already. */
KW_MUST_USE kw_result kw_password_verify(const char *encoded, const uint8_t *p, size_t n,
                                         int *ret_match);

#endif
