/*
 * keyrow.h - the key store's row checks, shared by both engines (SQLCipher,
 * keystore_*.c, and PostgreSQL, pgstore_*.c), so that both validate a key,
 * token or console-user row identically: same rules, same errors, same
 * details.  Engine-independent: no SQL here.
 */
#ifndef KW_KEYROW_H
#define KW_KEYROW_H

#include <stddef.h>
#include <stdint.h>

#include "../common/result.h"
#include "keystore.h"

#define KW_KEYROW_BLOB_MAX (64u * 1024u) /* one sealed key version          */
#define KW_KEYROW_DER_MAX (16u * 1024u)  /* RSA SubjectPublicKeyInfo         */
#define KW_KEYROW_JSON_MAX (16u * 1024u) /* tags_json / rules_json           */
#define KW_KEYROW_LIST_MAX 1000u         /* key_list: rows a page at most     */
#define KW_KEYROW_LIST_DEFAULT 100u

/* 1 when s is 32 lower-case hex chars (a key id), else 0 (NULL too). */
int kw_keyrow_valid_id(const char *s);
/* 1 when s is a key state ("enabled" ... "destroyed"), else 0 (NULL too). */
int kw_keyrow_valid_state(const char *s);
/* 1 when s is "AES" or "RSA", else 0 (NULL too). */
int kw_keyrow_valid_type(const char *s);

/* NULL is "{}"; otherwise a JSON object of at most KW_KEYROW_JSON_MAX
 * bytes: KW_ERR_TOO_LARGE or KW_ERR_BAD_JSON, with a detail naming what. */
KW_MUST_USE kw_result kw_keyrow_check_json_object(const char *s, const char *what);
/* s, or "{}" when s is NULL (a static string, not to be freed). */
const char *kw_keyrow_json_or_empty(const char *s);

/* A row's mutable fields (state, tags, rules): KW_ERR_BAD_FIELD for an
 * unknown state, else kw_keyrow_check_json_object's errors. */
KW_MUST_USE kw_result kw_keyrow_check_mutables(const struct kw_key_row *row);
/* A sealed key version: KW_ERR_INPUT when empty, KW_ERR_TOO_LARGE over
 * KW_KEYROW_BLOB_MAX. */
KW_MUST_USE kw_result kw_keyrow_check_blob(const uint8_t *blob, size_t blob_len);
/* Everything key_insert checks of a new row (row non-NULL) and its first
 * version, in the engines' order: KW_ERR_BAD_FIELD, KW_ERR_BAD_NAME,
 * KW_ERR_BAD_JSON, KW_ERR_BAD_STATE (a new key cannot be destroyed),
 * KW_ERR_INPUT, KW_ERR_TOO_LARGE. */
KW_MUST_USE kw_result kw_keyrow_check_insert(const struct kw_key_row *row, const uint8_t *blob,
                                             size_t blob_len);

/* "k=v": 1 when tags_json is an object with key k (klen bytes) whose value
 * is the string v, else 0 (unparsable JSON too). */
int kw_keyrow_tags_match(const char *tags_json, const char *k, size_t klen, const char *v);

/* key_list's filter (non-NULL): *ret_limit its page size (limit, or
 * KW_KEYROW_LIST_DEFAULT when 0).  KW_ERR_BAD_FIELD for a limit over
 * KW_KEYROW_LIST_MAX, an unknown state or type; KW_ERR_BAD_NAME for a
 * name_prefix or after_name over 64 bytes.  *ret_limit set only on success. */
KW_MUST_USE kw_result kw_keyrow_check_filter(const struct kw_key_filter *f, uint32_t *ret_limit);

/* A parsed "k=v" tag filter, pointing into the filter's string. */
struct kw_keyrow_tag {
        const char *k, *v;
        size_t klen;
};
/* Parses tag (NULL: *ret stays as it is, no filter) into *ret;
 * KW_ERR_BAD_FIELD when it is not k=v with a non-empty k of at most 1024
 * bytes in all (*ret untouched). */
KW_MUST_USE kw_result kw_keyrow_parse_tag(const char *tag, struct kw_keyrow_tag *ret);

/* A growing array of key rows (a key_list page). */
struct kw_keyrow_vec {
        struct kw_key_row *rows;
        size_t n, cap;
};
/* Clears every row, frees the array and zeroes *v (reusable). */
void kw_keyrow_vec_free(struct kw_keyrow_vec *v);

/* Hands rows[0..n) to cb in order until it returns non-zero, then sets
 * next (a key_list page's cursor): the name of the row cb stopped at, or,
 * when more rows follow the page (more), the last row's name, else "". */
void kw_keyrow_list_deliver(const struct kw_key_row *rows, size_t n, int more,
                            int (*cb)(const struct kw_key_row *row, void *arg), void *arg,
                            char next[65]);

/* Token ids: the header fixes no format (custody uses 16 hex chars): a
 * valid name of at most 32 chars.  0 for NULL. */
int kw_keyrow_valid_token_id(const char *s);
/* 1 for "admin", "operator", "auditor", else 0 (NULL too). */
int kw_keyrow_valid_role(const char *s);
/* The encoded password hash's shape only (password.c makes and checks it);
 * s non-NULL. */
int kw_keyrow_user_hash_ok(const char *s);
/* Applies one sign-in (ok or failed) at now to *u: resets or counts the
 * failures and sets the lock per pol. */
void kw_keyrow_user_login_apply(struct kw_user_row *u, int ok, int64_t now,
                                const struct kw_lockout_policy *pol);

#endif
