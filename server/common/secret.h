/*
 * secret.h - memory for key material.
 *
 * Secrets live in OpenSSL's secure heap: one mlock()ed, MADV_DONTDUMP arena
 * with guard pages, wiped on free.  The same arena holds the private halves
 * of RSA keys that OpenSSL decodes (CBIGNUMs), so one init covers both.
 * Never free() a secret; use kw_secret_free.  A process that holds keys also
 * calls kw_secret_harden_process() (no core dumps, not ptrace-attachable).
 */
#ifndef KW_SECRET_H
#define KW_SECRET_H

#include <stddef.h>
#include <stdint.h>

#include "result.h"

struct kw_secret {
        uint8_t *p;
        size_t len;
};

/*
 * Sets up the secure arena (size rounded up to a power of two).  Returns
 * KW_OK and *ret_locked = 1 when the arena is locked in RAM, 0 when mlock
 * was refused (RLIMIT_MEMLOCK) and the arena is only excluded from dumps.
 */
KW_MUST_USE kw_result kw_secret_init(size_t arena_bytes, int *ret_locked);
/* PR_SET_DUMPABLE 0 and RLIMIT_CORE 0. */
KW_MUST_USE kw_result kw_secret_harden_process(void);

/* Zeroed secret of len bytes (len may be 0). *ret set only on success. */
KW_MUST_USE kw_result kw_secret_alloc(size_t len, struct kw_secret *ret);
/* Copy of src into a new secret. */
KW_MUST_USE kw_result kw_secret_dup(const void *src, size_t len, struct kw_secret *ret);
/* Wipes and frees; s becomes empty.  NULL-safe, empty-safe. */
void kw_secret_free(struct kw_secret *s);

/* Wipes n bytes that cannot be optimised away. */
void kw_wipe(void *p, size_t n);

/* For __attribute__((cleanup)): _cleanup_secret_ struct kw_secret k = {0}; */
static inline void kw_secret_freep(struct kw_secret *s) { kw_secret_free(s); }
#define _cleanup_secret_ __attribute__((cleanup(kw_secret_freep)))

#endif
