/*
 * keyrow.c - the key store's row checks, shared by both engines (contract
 * in keyrow.h).
 */
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../common/names.h"
#include "keyrow.h"

int kw_keyrow_valid_id(const char *s)
{
        if (s == NULL)
                return 0;
        for (size_t i = 0; i < 32; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
                        return 0;
        return s[32] == '\0';
}

int kw_keyrow_valid_state(const char *s)
{
        static const char *const states[] = { "enabled", "disabled", "pending_deletion", "destroyed" };
        if (s == NULL)
                return 0;
        for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
                if (strcmp(s, states[i]) == 0)
                        return 1;
        return 0;
}

int kw_keyrow_valid_type(const char *s)
{
        return s != NULL && (strcmp(s, "AES") == 0 || strcmp(s, "RSA") == 0);
}

kw_result kw_keyrow_check_json_object(const char *s, const char *what)
{
        if (s == NULL)
                return KW_OK;
        if (strnlen(s, KW_KEYROW_JSON_MAX + 1) > KW_KEYROW_JSON_MAX) {
                kw_err_set_detail("%s is longer than %u bytes", what, KW_KEYROW_JSON_MAX);
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        cJSON *j = cJSON_Parse(s);
        int ok = j != NULL && cJSON_IsObject(j);
        cJSON_Delete(j);
        if (!ok) {
                kw_err_set_detail("%s is not a JSON object", what);
                KW_BAIL(KW_ERR_BAD_JSON);
        }
        return KW_OK;
}

const char *kw_keyrow_json_or_empty(const char *s) { return s != NULL ? s : "{}"; }

kw_result kw_keyrow_check_mutables(const struct kw_key_row *row)
{
        if (!kw_keyrow_valid_state(row->state)) {
                kw_err_set_detail("unknown key state");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_TRY(kw_keyrow_check_json_object(row->tags_json, "tags"));
        KW_TRY(kw_keyrow_check_json_object(row->rules_json, "rules"));
        return KW_OK;
}

kw_result kw_keyrow_check_blob(const uint8_t *blob, size_t blob_len)
{
        KW_ENSURE(blob != NULL && blob_len > 0, KW_ERR_INPUT);
        if (blob_len > KW_KEYROW_BLOB_MAX) {
                kw_err_set_detail("a sealed key version is longer than %u bytes", KW_KEYROW_BLOB_MAX);
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        return KW_OK;
}

kw_result kw_keyrow_check_insert(const struct kw_key_row *row, const uint8_t *blob, size_t blob_len)
{
        KW_ENSURE(kw_keyrow_valid_id(row->id), KW_ERR_BAD_FIELD);
        KW_ENSURE(kw_name_valid(row->name), KW_ERR_BAD_NAME);
        KW_ENSURE(kw_keyrow_valid_type(row->type), KW_ERR_BAD_FIELD);
        KW_ENSURE(row->size > 0, KW_ERR_BAD_FIELD);
        KW_TRY(kw_keyrow_check_mutables(row));
        if (strcmp(row->state, "destroyed") == 0) {
                kw_err_set_detail("a new key cannot be destroyed");
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        KW_ENSURE(row->public_der != NULL || row->public_der_len == 0, KW_ERR_INPUT);
        KW_ENSURE(row->public_der_len <= KW_KEYROW_DER_MAX, KW_ERR_TOO_LARGE);
        return kw_keyrow_check_blob(blob, blob_len);
}

int kw_keyrow_tags_match(const char *tags_json, const char *k, size_t klen, const char *v)
{
        cJSON *j = cJSON_Parse(tags_json);
        int match = 0;
        if (j != NULL && cJSON_IsObject(j)) {
                const cJSON *it;
                cJSON_ArrayForEach(it, j)
                {
                        if (it->string != NULL && strlen(it->string) == klen &&
                            memcmp(it->string, k, klen) == 0) {
                                match = cJSON_IsString(it) && it->valuestring != NULL &&
                                        strcmp(it->valuestring, v) == 0;
                                break;
                        }
                }
        }
        cJSON_Delete(j);
        return match;
}

kw_result kw_keyrow_check_filter(const struct kw_key_filter *f, uint32_t *ret_limit)
{
        uint32_t limit = f->limit != 0 ? f->limit : KW_KEYROW_LIST_DEFAULT;
        if (limit > KW_KEYROW_LIST_MAX) {
                kw_err_set_detail("limit must be 1..%u", KW_KEYROW_LIST_MAX);
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        KW_ENSURE(f->state == NULL || kw_keyrow_valid_state(f->state), KW_ERR_BAD_FIELD);
        KW_ENSURE(f->type == NULL || kw_keyrow_valid_type(f->type), KW_ERR_BAD_FIELD);
        KW_ENSURE(f->name_prefix == NULL || strnlen(f->name_prefix, 65) <= 64, KW_ERR_BAD_NAME);
        KW_ENSURE(f->after_name == NULL || strnlen(f->after_name, 65) <= 64, KW_ERR_BAD_NAME);
        *ret_limit = limit;
        return KW_OK;
}

kw_result kw_keyrow_parse_tag(const char *tag, struct kw_keyrow_tag *ret)
{
        if (tag == NULL)
                return KW_OK;
        const char *eq = strchr(tag, '=');
        if (eq == NULL || eq == tag || strnlen(tag, 1025) > 1024) {
                kw_err_set_detail("a tag filter is k=v with a non-empty k");
                KW_BAIL(KW_ERR_BAD_FIELD);
        }
        *ret = (struct kw_keyrow_tag){ .k = tag, .klen = (size_t)(eq - tag), .v = eq + 1 };
        return KW_OK;
}

void kw_keyrow_vec_free(struct kw_keyrow_vec *v)
{
        for (size_t i = 0; i < v->n; i++)
                kw_key_row_clear(&v->rows[i]);
        free(v->rows);
        memset(v, 0, sizeof *v);
}

void kw_keyrow_list_deliver(const struct kw_key_row *rows, size_t n, int more,
                            int (*cb)(const struct kw_key_row *row, void *arg), void *arg,
                            char next[65])
{
        size_t i = 0;
        int stopped = 0;
        for (; i < n; i++) {
                if (cb(&rows[i], arg) != 0) {
                        stopped = 1;
                        break;
                }
        }
        next[0] = '\0';
        if (stopped)
                memcpy(next, rows[i].name, sizeof rows[i].name);
        else if (more && n > 0)
                memcpy(next, rows[n - 1].name, sizeof rows[n - 1].name);
}

int kw_keyrow_valid_token_id(const char *s)
{
        return s != NULL && kw_name_valid(s) && strlen(s) <= 32;
}

int kw_keyrow_valid_role(const char *s)
{
        return s != NULL &&
               (strcmp(s, "admin") == 0 || strcmp(s, "operator") == 0 || strcmp(s, "auditor") == 0);
}

int kw_keyrow_user_hash_ok(const char *s)
{
        size_t n = strlen(s);
        return n > 10 && n < KW_USER_HASH_MAX && strncmp(s, "$argon2id$", 10) == 0;
}

void kw_keyrow_user_login_apply(struct kw_user_row *u, int ok, int64_t now,
                                const struct kw_lockout_policy *pol)
{
        if (ok) {
                u->failed = 0;
                u->locked_until = 0;
                u->last_login = now;
        } else {
                if (u->failed < UINT32_MAX)
                        u->failed++;
                int64_t lock = kw_lockout_seconds(u->failed, pol);
                if (lock > 0)
                        u->locked_until = now + lock;
        }
}
