/*
 * keystore_keys.c - the key store's keys: their rows, versions, listing and
 * deletion schedule (contract in keystore.h; the choices keystore.c lists
 * for key_* hold here).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>
#include <sqlite3.h>

#include "keyrow.h"
#include "keystore_int.h"

#define KS_DUE_MAX 1000u

/* Filters are bound, never spliced: NULL parameters disable a condition. */
#define SQL_KEY_LIST                                                        \
        "SELECT " KEY_COLS " FROM keys"                                     \
        " WHERE name > ?1"                                                  \
        " AND (?2 IS NULL OR state = ?2)"                                   \
        " AND (?3 IS NULL OR type = ?3)"                                    \
        " AND (?4 IS NULL OR substr(name, 1, length(?4)) = ?4)"             \
        " AND (?5 OR ?2 IS NOT NULL OR state <> 'destroyed')"               \
        " ORDER BY name"

static kw_result col_dup_text(sqlite3_stmt *st, int col, char **ret)
{
        const unsigned char *s = sqlite3_column_text(st, col);
        int n = sqlite3_column_bytes(st, col);
        if (s == NULL || n < 0) {
                kw_err_set_detail("key store: a stored %s is missing", sqlite3_column_name(st, col));
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        char *p = malloc((size_t)n + 1);
        KW_ENSURE(p != NULL, KW_ERR_NOMEM);
        memcpy(p, s, (size_t)n);
        p[n] = '\0';
        *ret = p;
        return KW_OK;
}

static kw_result col_u32(sqlite3_stmt *st, int col, uint32_t *ret)
{
        sqlite3_int64 v = sqlite3_column_int64(st, col);
        if (sqlite3_column_type(st, col) != SQLITE_INTEGER || v < 0 || v > (sqlite3_int64)UINT32_MAX) {
                kw_err_set_detail("key store: a stored %s is out of range", sqlite3_column_name(st, col));
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        *ret = (uint32_t)v;
        return KW_OK;
}

/* Fills *ret from a row of KEY_COLS; *ret untouched on failure. */
static kw_result key_row_from_stmt(sqlite3_stmt *st, struct kw_key_row *ret)
{
        struct kw_key_row r;
        memset(&r, 0, sizeof r);
        kw_result res;
        KW_TRY_GOTO(res, ks_col_text(st, 0, r.id, sizeof r.id), fail);
        KW_TRY_GOTO(res, ks_col_text(st, 1, r.name, sizeof r.name), fail);
        KW_TRY_GOTO(res, ks_col_text(st, 2, r.type, sizeof r.type), fail);
        KW_TRY_GOTO(res, col_u32(st, 3, &r.size), fail);
        KW_TRY_GOTO(res, ks_col_text(st, 4, r.state, sizeof r.state), fail);
        KW_TRY_GOTO(res, col_u32(st, 5, &r.ops), fail);
        KW_TRY_GOTO(res, col_u32(st, 6, &r.current_version), fail);
        r.created = sqlite3_column_int64(st, 7);
        r.updated = sqlite3_column_int64(st, 8);
        r.delete_at = sqlite3_column_int64(st, 9);
        KW_TRY_GOTO(res, col_dup_text(st, 10, &r.tags_json), fail);
        KW_TRY_GOTO(res, col_dup_text(st, 11, &r.rules_json), fail);
        if (sqlite3_column_type(st, 12) != SQLITE_NULL) {
                const void *p = sqlite3_column_blob(st, 12);
                int n = sqlite3_column_bytes(st, 12);
                if (p != NULL && n > 0) {
                        r.public_der = malloc((size_t)n);
                        if (r.public_der == NULL) {
                                res = KW_RESULT(KW_ERR_NOMEM);
                                goto fail;
                        }
                        memcpy(r.public_der, p, (size_t)n);
                        r.public_der_len = (size_t)n;
                }
        }
        *ret = r;
        return KW_OK;
fail:
        kw_key_row_clear(&r);
        return res;
}

void kw_key_row_clear(struct kw_key_row *row)
{
        if (row == NULL)
                return;
        free(row->tags_json);
        free(row->rules_json);
        free(row->public_der);
        memset(row, 0, sizeof *row);
}

/* ------------------------------------------------------------------ keys */

static kw_result key_insert_tx(struct kw_keystore *ks, struct ks_tx *tx, const struct kw_key_row *row,
                               const uint8_t *blob, size_t blob_len, const struct kw_audit_entry *audit)
{
        int64_t created = row->created != 0 ? row->created : ks_now_s();
        int64_t updated = row->updated != 0 ? row->updated : created;
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "INSERT INTO keys (" KEY_COLS ") VALUES "
                          "(?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?8, ?9, ?10, ?11, ?12)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, row->id));
        KW_TRY(ks_bind_text(ks, st, 2, row->name));
        KW_TRY(ks_bind_text(ks, st, 3, row->type));
        KW_TRY(ks_bind_i64(ks, st, 4, row->size));
        KW_TRY(ks_bind_text(ks, st, 5, row->state));
        KW_TRY(ks_bind_i64(ks, st, 6, row->ops));
        KW_TRY(ks_bind_i64(ks, st, 7, created));
        KW_TRY(ks_bind_i64(ks, st, 8, updated));
        KW_TRY(ks_bind_i64(ks, st, 9, row->delete_at));
        KW_TRY(ks_bind_text(ks, st, 10, kw_keyrow_json_or_empty(row->tags_json)));
        KW_TRY(ks_bind_text(ks, st, 11, kw_keyrow_json_or_empty(row->rules_json)));
        KW_TRY(ks_bind_blob(ks, st, 12, row->public_der_len ? row->public_der : NULL, row->public_der_len));
        kw_result r = ks_step_done(ks, st, "key insert");
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("the key name or id is already in use (%s)", sqlite3_errmsg(ks->db));
        KW_TRY(r);

        sqlite3_stmt *sv _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "INSERT INTO key_versions (key_id, version, blob, created)"
                              " VALUES (?1, 1, ?2, ?3)", &sv));
        KW_TRY(ks_bind_text(ks, sv, 1, row->id));
        KW_TRY(ks_bind_blob(ks, sv, 2, blob, blob_len));
        KW_TRY(ks_bind_i64(ks, sv, 3, created));
        KW_TRY(ks_step_done(ks, sv, "key version insert"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "key.create", row->name, NULL));
}

kw_result kw_keystore_key_insert(struct kw_keystore *ks, const struct kw_key_row *row,
                                 const uint8_t *blob, size_t blob_len,
                                 const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_key_insert(ks->pg, row, blob, blob_len, audit));
        KW_ENSURE(ks != NULL && row != NULL, KW_ERR_INPUT);
        KW_TRY(kw_keyrow_check_insert(row, blob, blob_len));
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_insert_tx(ks, tx, row, blob, blob_len, audit));
}

kw_result kw_keystore_key_get(struct kw_keystore *ks, const char *name, struct kw_key_row *ret)
{
        KS_PG(ks, kw_pg_key_get(ks->pg, name, ret));
        KW_ENSURE(ks != NULL && name != NULL && ret != NULL, KW_ERR_INPUT);
        KW_ENSURE(strnlen(name, 65) <= 64, KW_ERR_BAD_NAME);
        ks_lock(ks);
        kw_result r;
        {
                _cleanup_reset_ sqlite3_stmt *st = ks->st_key_get;
                int row = 0;
                r = ks_bind_text(ks, st, 1, name);
                if (kw_ok(r))
                        r = ks_step_row(ks, st, "key get", &row);
                if (kw_ok(r) && !row) {
                        kw_err_set_detail("no key with this name");
                        r = KW_RESULT(KW_ERR_NOT_FOUND);
                }
                if (kw_ok(r))
                        r = key_row_from_stmt(st, ret);
        }
        ks_unlock(ks);
        return r;
}

kw_result kw_keystore_key_get_blob(struct kw_keystore *ks, const char *key_id, uint32_t version,
                                   struct kw_buf *out)
{
        KS_PG(ks, kw_pg_key_get_blob(ks->pg, key_id, version, out));
        KW_ENSURE(ks != NULL && key_id != NULL && out != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        ks_lock(ks);
        kw_result r;
        {
                _cleanup_reset_ sqlite3_stmt *st = ks->st_get_blob;
                int row = 0;
                r = ks_bind_text(ks, st, 1, key_id);
                if (kw_ok(r))
                        r = ks_bind_i64(ks, st, 2, version);
                if (kw_ok(r))
                        r = ks_step_row(ks, st, "key blob get", &row);
                if (kw_ok(r) && !row) {
                        kw_err_set_detail("no such key version");
                        r = KW_RESULT(KW_ERR_NOT_FOUND);
                }
                if (kw_ok(r)) {
                        const void *p = sqlite3_column_blob(st, 0);
                        int n = sqlite3_column_bytes(st, 0);
                        if (p == NULL || n <= 0) {
                                kw_err_set_detail("key store: an empty sealed key version");
                                r = KW_RESULT(KW_ERR_DB_CORRUPT);
                        } else {
                                r = kw_buf_put(out, p, (size_t)n);
                        }
                }
        }
        ks_unlock(ks);
        return r;
}

kw_result kw_keystore_key_versions(struct kw_keystore *ks, const char *key_id,
                                   int (*cb)(uint32_t version, int64_t created, void *arg),
                                   void *arg)
{
        KS_PG(ks, kw_pg_key_versions(ks->pg, key_id, cb, arg));
        KW_ENSURE(ks != NULL && key_id != NULL && cb != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        ks_lock(ks);
        kw_result r;
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                r = ks_prepare(ks, "SELECT version, created FROM key_versions WHERE key_id = ?1"
                                   " ORDER BY version", &st);
                if (kw_ok(r))
                        r = ks_bind_text(ks, st, 1, key_id);
                int row = 1;
                while (kw_ok(r) && row) {
                        r = ks_step_row(ks, st, "key versions", &row);
                        if (kw_ok(r) && row &&
                            cb((uint32_t)sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                               arg) != 0)
                                break;
                }
        }
        ks_unlock(ks);
        return r;
}

static kw_result key_vec_push(struct kw_keyrow_vec *v, sqlite3_stmt *st)
{
        if (v->n == v->cap) {
                size_t cap = v->cap ? v->cap * 2 : 16;
                struct kw_key_row *p = realloc(v->rows, cap * sizeof *p);
                KW_ENSURE(p != NULL, KW_ERR_NOMEM);
                v->rows = p;
                v->cap = cap;
        }
        memset(&v->rows[v->n], 0, sizeof v->rows[v->n]);
        KW_TRY(key_row_from_stmt(st, &v->rows[v->n]));
        v->n++;
        return KW_OK;
}

/* Reads up to limit matching rows into out; *ret_more = 1 when at least one
 * more matching row follows. */
static kw_result key_list_read(struct kw_keystore *ks, const struct kw_key_filter *f, uint32_t limit,
                               const struct kw_keyrow_tag *tag, struct kw_keyrow_vec *out, int *ret_more)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, SQL_KEY_LIST, &st));
        KW_TRY(ks_bind_text(ks, st, 1, f->after_name != NULL ? f->after_name : ""));
        KW_TRY(ks_bind_text(ks, st, 2, f->state));
        KW_TRY(ks_bind_text(ks, st, 3, f->type));
        KW_TRY(ks_bind_text(ks, st, 4, f->name_prefix));
        KW_TRY(ks_bind_i64(ks, st, 5, f->include_destroyed ? 1 : 0));
        int more = 0;
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "key list", &row));
                if (!row)
                        break;
                if (tag->k != NULL) {
                        const unsigned char *tj = sqlite3_column_text(st, 10);
                        if (tj == NULL || !kw_keyrow_tags_match((const char *)tj, tag->k, tag->klen, tag->v))
                                continue;
                }
                if (out->n == limit) {
                        more = 1;
                        break;
                }
                KW_TRY(key_vec_push(out, st));
        }
        *ret_more = more;
        return KW_OK;
}

kw_result kw_keystore_key_list(struct kw_keystore *ks, const struct kw_key_filter *f,
                               int (*cb)(const struct kw_key_row *row, void *arg), void *arg,
                               char next[65])
{
        KS_PG(ks, kw_pg_key_list(ks->pg, f, cb, arg, next));
        static const struct kw_key_filter none = { 0 };
        KW_ENSURE(ks != NULL && cb != NULL && next != NULL, KW_ERR_INPUT);
        if (f == NULL)
                f = &none;
        uint32_t limit;
        KW_TRY(kw_keyrow_check_filter(f, &limit));
        struct kw_keyrow_tag tag = { 0 };
        KW_TRY(kw_keyrow_parse_tag(f->tag, &tag));

        struct kw_keyrow_vec v = { 0 };
        int more = 0;
        ks_lock(ks);
        kw_result r = key_list_read(ks, f, limit, &tag, &v, &more);
        ks_unlock(ks);
        if (!kw_ok(r)) {
                kw_keyrow_vec_free(&v);
                return r;
        }
        kw_keyrow_list_deliver(v.rows, v.n, more, cb, arg, next);
        kw_keyrow_vec_free(&v);
        return KW_OK;
}

kw_result kw_keystore_key_count(struct kw_keystore *ks, uint64_t *ret)
{
        KS_PG(ks, kw_pg_key_count(ks->pg, ret));
        KW_ENSURE(ks != NULL && ret != NULL, KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r = ks_count(ks, "SELECT count(*) FROM keys WHERE state <> 'destroyed'", ret);
        ks_unlock(ks);
        return r;
}

/* Inside a transaction: the state and name of key_id, NOT_FOUND or
 * KEY_DESTROYED. */
static kw_result tx_live_key(struct kw_keystore *ks, const char *key_id, char name[65],
                             uint32_t *ret_version)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT name, state, current_version FROM keys WHERE id = ?1", &st));
        KW_TRY(ks_bind_text(ks, st, 1, key_id));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "key lookup", &row));
        if (!row) {
                kw_err_set_detail("no key with this id");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        char state[20];
        KW_TRY(ks_col_text(st, 0, name, 65));
        KW_TRY(ks_col_text(st, 1, state, sizeof state));
        KW_TRY(col_u32(st, 2, ret_version));
        if (strcmp(state, "destroyed") == 0) {
                kw_err_set_detail("the key is destroyed");
                KW_BAIL(KW_ERR_KEY_DESTROYED);
        }
        return KW_OK;
}

static kw_result key_update_tx(struct kw_keystore *ks, struct ks_tx *tx, const struct kw_key_row *row,
                               const struct kw_audit_entry *audit)
{
        char name[65];
        uint32_t cur;
        KW_TRY(tx_live_key(ks, row->id, name, &cur));
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "UPDATE keys SET state = ?2, ops = ?3, tags = ?4, rules = ?5,"
                          " delete_at = ?6, updated = ?7 WHERE id = ?1",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, row->id));
        KW_TRY(ks_bind_text(ks, st, 2, row->state));
        KW_TRY(ks_bind_i64(ks, st, 3, row->ops));
        KW_TRY(ks_bind_text(ks, st, 4, kw_keyrow_json_or_empty(row->tags_json)));
        KW_TRY(ks_bind_text(ks, st, 5, kw_keyrow_json_or_empty(row->rules_json)));
        KW_TRY(ks_bind_i64(ks, st, 6, row->delete_at));
        KW_TRY(ks_bind_i64(ks, st, 7, row->updated != 0 ? row->updated : ks_now_s()));
        KW_TRY(ks_step_done(ks, st, "key update"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "key.update", name, NULL));
}

kw_result kw_keystore_key_update(struct kw_keystore *ks, const struct kw_key_row *row,
                                 const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_key_update(ks->pg, row, audit));
        KW_ENSURE(ks != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(row->id), KW_ERR_BAD_FIELD);
        KW_TRY(kw_keyrow_check_mutables(row));
        if (strcmp(row->state, "destroyed") == 0) {
                kw_err_set_detail("keys are destroyed with key_destroy, not by an update");
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_update_tx(ks, tx, row, audit));
}

static kw_result key_add_version_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *key_id,
                                    uint32_t version, const uint8_t *blob, size_t blob_len,
                                    const uint8_t *public_der, size_t public_der_len,
                                    const struct kw_audit_entry *audit)
{
        char name[65];
        uint32_t cur;
        KW_TRY(tx_live_key(ks, key_id, name, &cur));
        if (cur == UINT32_MAX || version != cur + 1) {
                kw_err_set_detail("version %u is not the current version %u plus one", version, cur);
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        int64_t now = ks_now_s();
        sqlite3_stmt *sv _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "INSERT INTO key_versions (key_id, version, blob, created)"
                              " VALUES (?1, ?2, ?3, ?4)", &sv));
        KW_TRY(ks_bind_text(ks, sv, 1, key_id));
        KW_TRY(ks_bind_i64(ks, sv, 2, version));
        KW_TRY(ks_bind_blob(ks, sv, 3, blob, blob_len));
        KW_TRY(ks_bind_i64(ks, sv, 4, now));
        KW_TRY(ks_step_done(ks, sv, "key version insert"));

        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, public_der != NULL
                                  ? "UPDATE keys SET current_version = ?2, updated = ?3, public_der = ?4"
                                    " WHERE id = ?1"
                                  : "UPDATE keys SET current_version = ?2, updated = ?3 WHERE id = ?1",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, key_id));
        KW_TRY(ks_bind_i64(ks, st, 2, version));
        KW_TRY(ks_bind_i64(ks, st, 3, now));
        if (public_der != NULL)
                KW_TRY(ks_bind_blob(ks, st, 4, public_der, public_der_len));
        KW_TRY(ks_step_done(ks, st, "key version update"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "key.rotate", name, NULL));
}

kw_result kw_keystore_key_add_version(struct kw_keystore *ks, const char *key_id, uint32_t version,
                                      const uint8_t *blob, size_t blob_len,
                                      const uint8_t *public_der, size_t public_der_len,
                                      const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_key_add_version(ks->pg, key_id, version, blob, blob_len, public_der,
                                        public_der_len, audit));
        KW_ENSURE(ks != NULL && key_id != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        KW_TRY(kw_keyrow_check_blob(blob, blob_len));
        KW_ENSURE(public_der == NULL || (public_der_len > 0 && public_der_len <= 64 * 1024),
                  KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_add_version_tx(ks, tx, key_id, version, blob, blob_len,
                                                    public_der, public_der_len, audit));
}

static kw_result key_destroy_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *key_id,
                                int64_t due_by, const struct kw_audit_entry *audit)
{
        char name[65];
        uint32_t cur;
        KW_TRY(tx_live_key(ks, key_id, name, &cur));
        if (due_by != 0) {   /* the deletion still scheduled and due, in this transaction */
                sqlite3_stmt *q _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT 1 FROM keys WHERE id = ?1 AND state = 'pending_deletion'"
                                      " AND delete_at <= ?2", &q));
                KW_TRY(ks_bind_text(ks, q, 1, key_id));
                KW_TRY(ks_bind_i64(ks, q, 2, due_by));
                int due = 0;
                KW_TRY(ks_step_row(ks, q, "key due", &due));
                if (!due) {
                        kw_err_set_detail("the key's deletion is no longer due (cancelled or moved)");
                        KW_BAIL(KW_ERR_BAD_STATE);
                }
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "UPDATE keys SET state = 'destroyed', delete_at = 0, updated = ?2"
                          " WHERE id = ?1",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, key_id));
        KW_TRY(ks_bind_i64(ks, st, 2, ks_now_s()));
        KW_TRY(ks_step_done(ks, st, "key destroy"));
        /* secure_delete=ON: the freed cells are overwritten with zeros. */
        sqlite3_stmt *sd _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "DELETE FROM key_versions WHERE key_id = ?1", &sd));
        KW_TRY(ks_bind_text(ks, sd, 1, key_id));
        KW_TRY(ks_step_done(ks, sd, "key versions delete"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "key.destroy", name, NULL));
}

kw_result kw_keystore_key_destroy(struct kw_keystore *ks, const char *key_id,
                                  const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_key_destroy(ks->pg, key_id, audit));
        KW_ENSURE(ks != NULL && key_id != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_destroy_tx(ks, tx, key_id, 0, audit));
}

kw_result kw_keystore_key_destroy_due(struct kw_keystore *ks, const char *key_id, int64_t now,
                                      const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_key_destroy_due(ks->pg, key_id, now, audit));
        KW_ENSURE(ks != NULL && key_id != NULL && now > 0, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, key_destroy_tx(ks, tx, key_id, now, audit));
}

struct due_key {
        char id[33];
        char name[65];
};

static kw_result due_read(struct kw_keystore *ks, int64_t now, struct due_key *out, size_t *ret_n)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "SELECT id, name FROM keys WHERE state = 'pending_deletion'"
                          " AND delete_at <= ?1 ORDER BY delete_at, name LIMIT ?2",
                          &st));
        KW_TRY(ks_bind_i64(ks, st, 1, now));
        KW_TRY(ks_bind_i64(ks, st, 2, KS_DUE_MAX));
        size_t n = 0;
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "due deletions", &row));
                if (!row || n == KS_DUE_MAX)
                        break;
                KW_TRY(ks_col_text(st, 0, out[n].id, sizeof out[n].id));
                KW_TRY(ks_col_text(st, 1, out[n].name, sizeof out[n].name));
                n++;
        }
        *ret_n = n;
        return KW_OK;
}

kw_result kw_keystore_due_deletions(struct kw_keystore *ks, int64_t now,
                                    int (*cb)(const char *key_id, const char *name, void *arg),
                                    void *arg)
{
        KS_PG(ks, kw_pg_due_deletions(ks->pg, now, cb, arg));
        KW_ENSURE(ks != NULL && cb != NULL, KW_ERR_INPUT);
        struct due_key *keys = calloc(KS_DUE_MAX, sizeof *keys);
        KW_ENSURE(keys != NULL, KW_ERR_NOMEM);
        size_t n = 0;
        ks_lock(ks);
        kw_result r = due_read(ks, now, keys, &n);
        ks_unlock(ks);
        for (size_t i = 0; kw_ok(r) && i < n; i++)
                if (cb(keys[i].id, keys[i].name, arg) != 0)
                        break;
        free(keys);
        return r;
}
