/*
 * session.h - console sessions, in the custody process's memory only (a
 * restart of custody ends them all).  A session id and its CSRF token are
 * 32 bytes from the CSPRNG each, base64url (43 characters); only the
 * SHA-256 of the id is kept.  A session ends when unused for idle seconds,
 * at created + absolute, or when ended by its account (sign-out, token
 * revocation, user deletion, password change).  At most max sessions: a
 * new one first drops the expired, then the least recently used.
 * Thread-safe (one mutex).  Times are the caller's (`now`: monotonic
 * milliseconds, for the expiry; `wall`: unix seconds, for the documents), so
 * tests can move them.
 */
#ifndef KW_SESSION_H
#define KW_SESSION_H

#include <stddef.h>
#include <stdint.h>

#include "../common/result.h"

#define KW_SESSIONS_MAX 4096
#define KW_SESSION_ID_LEN 43          /* base64url of 32 bytes, unpadded */

enum kw_session_kind { KW_SESSION_USER = 1, KW_SESSION_TOKEN = 2 };

/* What a session is of: the verified account, as custody saw it at sign-in. */
struct kw_session_info {
        enum kw_session_kind kind;
        char account[65];             /* USER: the user name; TOKEN: the token id */
        char name[65];                /* the user name, or the token's name        */
        char role[16];                /* "admin" | "operator" | "auditor"          */
        char actor[257];              /* the audit actor: "user:<name>" or the token's */
        uint8_t token_hash[32];       /* TOKEN: SHA-256 of the token (still active?) */
        /* set by the table: */
        char csrf[KW_SESSION_ID_LEN + 1];
        int64_t created_wall, expires_wall;   /* unix seconds (expires: absolute) */
        uint8_t id_hash[32];          /* SHA-256 of the session id                 */
};

struct kw_sessions;

/* idle_seconds, max_seconds: 1 .. 10^9. */
KW_MUST_USE kw_result kw_sessions_new(size_t max, int64_t idle_seconds, int64_t max_seconds,
                                      struct kw_sessions **ret);
void kw_sessions_free(struct kw_sessions *s);   /* wipes; NULL-safe */
int64_t kw_sessions_idle_seconds(const struct kw_sessions *s);

/* A new session of who (kind, account, name, role, actor, token_hash) at
 * now (monotonic) / wall: its id into ret_id (NUL-terminated), the full
 * record into *ret.  KW_ERR_RANDOM. */
KW_MUST_USE kw_result kw_sessions_create(struct kw_sessions *s, const struct kw_session_info *who,
                                         int64_t now, int64_t wall,
                                         char ret_id[KW_SESSION_ID_LEN + 1],
                                         struct kw_session_info *ret);
/* The live session with this id (as received: any bytes), touched (its idle
 * time starts again): KW_ERR_AUTH when there is none or it has expired
 * (then it is dropped).  *ret set only on success. */
KW_MUST_USE kw_result kw_sessions_find(struct kw_sessions *s, const uint8_t *id, size_t len,
                                       int64_t now, struct kw_session_info *ret);
/* Ends every session of (kind, account) but the one whose id hash is keep
 * (NULL: none kept); returns how many ended. */
size_t kw_sessions_end_account(struct kw_sessions *s, enum kw_session_kind kind,
                               const char *account, const uint8_t *keep_id_hash);
/* Live sessions now (expired ones dropped first). */
size_t kw_sessions_count(struct kw_sessions *s, int64_t now);

/* 1 when a and b (b of n bytes, as received) are the same CSRF token,
 * compared in constant time over the token's length. */
int kw_session_csrf_ok(const char *expected, const uint8_t *got, size_t n);

#endif
