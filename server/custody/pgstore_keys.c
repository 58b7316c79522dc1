/*
 * pgstore_keys.c - keys on PostgreSQL: their rows, versions, listing and
 * deletion schedule (contract in keystore.h and pgstore.h; every choice
 * keystore.c lists for key_* holds here, with the same errors).
 *
 * Every row read is checked against its MAC before it is used or handed
 * out (KW_ERR_DB_TAMPERED, for lists too: a list refuses rather than hides);
 * every write recomputes the MAC of the whole row, from a row read and
 * verified in the same transaction, so a tampered row is never laundered.
 *
 * Differences from SQLCipher worth knowing:
 *   - key_destroy deletes the version rows; PostgreSQL keeps dead tuples
 *     until VACUUM (the blobs are sealed under the HSM master key either way).
 *   - key_list with a tag filter reads the candidates in chunks of 256 rows
 *     (the filter is applied here, as keystore_keys.c does).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cJSON.h>

#include "../common/names.h"
#include "keyrow.h"
#include "pgstore_int.h"

#define PG_DUE_MAX 1000u
#define PG_LIST_CHUNK 256u

/* The keys table's columns in the contract's order, then mac (13). */
#define KEY_COLS                                                                         \
        "id, name, type, size, state, ops, current_version, created, updated, delete_at, " \
        "tags, rules, public_der, mac"
#define KEY_NCOLS 13
#define VERSION_COLS "key_id, version, blob, created, mac"

/* ---------------------------------------------------------------- key rows */

/* Fills *ret from row i of a KEY_COLS result after checking its MAC; *ret
 * untouched on failure. */
static kw_result key_row_from_res(struct kw_pgstore *pg, const PGresult *res, int i,
                                  struct kw_key_row *ret)
{
        struct kw_key_row r;
        memset(&r, 0, sizeof r);
        kw_result e;
        KW_TRY_GOTO(e, pg_col_text(res, i, 0, r.id, sizeof r.id), fail);
        KW_TRY_GOTO(e, pg_res_verify(pg, res, i, "keys", r.id, KEY_NCOLS, KEY_NCOLS), fail);
        KW_TRY_GOTO(e, pg_col_text(res, i, 1, r.name, sizeof r.name), fail);
        KW_TRY_GOTO(e, pg_col_text(res, i, 2, r.type, sizeof r.type), fail);
        KW_TRY_GOTO(e, pg_col_u32(res, i, 3, &r.size), fail);
        KW_TRY_GOTO(e, pg_col_text(res, i, 4, r.state, sizeof r.state), fail);
        KW_TRY_GOTO(e, pg_col_u32(res, i, 5, &r.ops), fail);
        KW_TRY_GOTO(e, pg_col_u32(res, i, 6, &r.current_version), fail);
        KW_TRY_GOTO(e, pg_col_i64(res, i, 7, &r.created), fail);
        KW_TRY_GOTO(e, pg_col_i64(res, i, 8, &r.updated), fail);
        KW_TRY_GOTO(e, pg_col_i64(res, i, 9, &r.delete_at), fail);
        KW_TRY_GOTO(e, pg_col_strdup(res, i, 10, &r.tags_json), fail);
        KW_TRY_GOTO(e, pg_col_strdup(res, i, 11, &r.rules_json), fail);
        const uint8_t *der = NULL;
        size_t n = 0;
        KW_TRY_GOTO(e, pg_col_bytes(res, i, 12, &der, &n), fail);
        if (der != NULL && n > 0) {
                r.public_der = malloc(n);
                if (r.public_der == NULL) {
                        e = KW_RESULT(KW_ERR_NOMEM);
                        goto fail;
                }
                memcpy(r.public_der, der, n);
                r.public_der_len = n;
        }
        *ret = r;
        return KW_OK;
fail:
        kw_key_row_clear(&r);
        return e;
}

/* The row's stored form: what is written and MAC'd. */
struct key_db {
        const char *id, *name, *type, *state, *tags, *rules;
        int64_t size, ops, current_version, created, updated, delete_at;
        const uint8_t *der;                /* NULL: SQL NULL */
        size_t der_len;
};

static struct key_db key_db_of(const struct kw_key_row *r)
{
        return (struct key_db){
                .id = r->id, .name = r->name, .type = r->type, .state = r->state,
                .tags = kw_keyrow_json_or_empty(r->tags_json), .rules = kw_keyrow_json_or_empty(r->rules_json),
                .size = r->size, .ops = r->ops, .current_version = r->current_version,
                .created = r->created, .updated = r->updated, .delete_at = r->delete_at,
                .der = r->public_der_len ? r->public_der : NULL, .der_len = r->public_der_len,
        };
}

/* INSERT (insert = 1) or rewrite (0) the whole row with a fresh MAC. */
static kw_result key_write(struct kw_pgstore *pg, struct pg_conn *c, const struct key_db *k,
                           int insert)
{
        struct pg_field f[KEY_NCOLS] = {
                PG_FSTR(k->id),     PG_FSTR(k->name),    PG_FSTR(k->type),
                PG_FINT(k->size),   PG_FSTR(k->state),   PG_FINT(k->ops),
                PG_FINT(k->current_version), PG_FINT(k->created), PG_FINT(k->updated),
                PG_FINT(k->delete_at), PG_FSTR(k->tags), PG_FSTR(k->rules),
                PG_FBYTES(k->der, k->der_len),
        };
        uint8_t mac[PG_MAC_LEN];
        KW_TRY(pg_row_mac(pg, "keys", f, KEY_NCOLS, mac));
        struct pg_params p = { 0 };
        pg_param_text(&p, k->id);
        pg_param_text(&p, k->name);
        pg_param_text(&p, k->type);
        pg_param_i64(&p, k->size);
        pg_param_text(&p, k->state);
        pg_param_i64(&p, k->ops);
        pg_param_i64(&p, k->current_version);
        pg_param_i64(&p, k->created);
        pg_param_i64(&p, k->updated);
        pg_param_i64(&p, k->delete_at);
        pg_param_text(&p, k->tags);
        pg_param_text(&p, k->rules);
        pg_param_bytes(&p, k->der, k->der_len);
        pg_param_bytes(&p, mac, sizeof mac);
        if (insert)
                return pg_exec(pg, c,
                               "INSERT INTO keys (" KEY_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7,"
                               " $8, $9, $10, $11, $12, $13, $14)",
                               &p, "key insert", NULL);
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c,
                       "UPDATE keys SET name = $2, type = $3, size = $4, state = $5, ops = $6,"
                       " current_version = $7, created = $8, updated = $9, delete_at = $10,"
                       " tags = $11, rules = $12, public_der = $13, mac = $14 WHERE id = $1",
                       &p, "key update", &res));
        if (pg_affected(res) != 1) {
                kw_err_set_detail("no key with this id");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return KW_OK;
}

static kw_result version_insert(struct kw_pgstore *pg, struct pg_conn *c, const char *key_id,
                                uint32_t version, const uint8_t *blob, size_t blob_len,
                                int64_t created)
{
        struct pg_field f[4] = { PG_FSTR(key_id), PG_FINT(version), PG_FBYTES(blob, blob_len),
                                 PG_FINT(created) };
        uint8_t mac[PG_MAC_LEN];
        KW_TRY(pg_row_mac(pg, "key_versions", f, 4, mac));
        struct pg_params p = { 0 };
        pg_param_text(&p, key_id);
        pg_param_i64(&p, version);
        pg_param_bytes(&p, blob, blob_len);
        pg_param_i64(&p, created);
        pg_param_bytes(&p, mac, sizeof mac);
        return pg_exec(pg, c,
                       "INSERT INTO key_versions (" VERSION_COLS ") VALUES ($1, $2, $3, $4, $5)",
                       &p, "key version insert", NULL);
}

/* ------------------------------------------------------------------ insert */

static kw_result key_insert_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                               const struct kw_key_row *row, const uint8_t *blob, size_t blob_len,
                               const struct kw_audit_entry *audit)
{
        struct key_db k = key_db_of(row);
        k.current_version = 1;
        k.created = row->created != 0 ? row->created : pg_now_s();
        k.updated = row->updated != 0 ? row->updated : k.created;
        kw_result r = key_write(pg, c, &k, 1);
        if (r.code == KW_ERR_EXISTS) {
                char why[256];
                snprintf(why, sizeof why, "%s", kw_err_detail());
                kw_err_set_detail("the key name or id is already in use (%s)", why);
        }
        KW_TRY(r);
        KW_TRY(version_insert(pg, c, row->id, 1, blob, blob_len, k.created));
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "key.create", row->name, NULL)));
        return pg_notify(pg, c, gen, KW_PG_CHANGE_KEY, row->name);
}

kw_result kw_pg_key_insert(struct kw_pgstore *pg, const struct kw_key_row *row, const uint8_t *blob,
                           size_t blob_len, const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && row != NULL, KW_ERR_INPUT);
        KW_TRY(kw_keyrow_check_insert(row, blob, blob_len));
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, key_insert_tx(pg, c, gen, row, blob, blob_len, audit));
}

/* -------------------------------------------------------------------- reads */

kw_result kw_pg_key_get(struct kw_pgstore *pg, const char *name, struct kw_key_row *ret)
{
        KW_ENSURE(pg != NULL && name != NULL && ret != NULL, KW_ERR_INPUT);
        KW_ENSURE(strnlen(name, 65) <= 64, KW_ERR_BAD_NAME);
        if (!kw_name_valid(name)) {
                /* no such name can have been stored (key_insert checks it) */
                kw_err_set_detail("no key with this name");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        struct pg_params p = { 0 };
        pg_param_text(&p, name);
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, "SELECT " KEY_COLS " FROM keys WHERE name = $1", &p, "key get", &res);
        pg_release(pg, c);
        KW_TRY(r);
        if (PQntuples(res) != 1) {
                kw_err_set_detail("no key with this name");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return key_row_from_res(pg, res, 0, ret);
}

static void version_pk(const char *key_id, uint32_t version, char out[48])
{
        snprintf(out, 48, "%s/%u", key_id, version);
}

kw_result kw_pg_key_get_blob(struct kw_pgstore *pg, const char *key_id, uint32_t version,
                             struct kw_buf *out)
{
        KW_ENSURE(pg != NULL && key_id != NULL && out != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        if (version > INT32_MAX) {
                kw_err_set_detail("no such key version");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        struct pg_params p = { 0 };
        pg_param_text(&p, key_id);
        pg_param_i64(&p, version);
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, "SELECT " VERSION_COLS " FROM key_versions WHERE key_id = $1 AND version = $2",
                    &p, "key blob get", &res);
        pg_release(pg, c);
        KW_TRY(r);
        if (PQntuples(res) != 1) {
                kw_err_set_detail("no such key version");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        char pk[48];
        version_pk(key_id, version, pk);
        KW_TRY(pg_res_verify(pg, res, 0, "key_versions", pk, 4, 4));
        const uint8_t *b = NULL;
        size_t n = 0;
        KW_TRY(pg_col_bytes(res, 0, 2, &b, &n));
        if (b == NULL || n == 0) {
                kw_err_set_detail("key store: an empty sealed key version");
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        return kw_buf_put(out, b, n);
}

struct version_item {
        uint32_t version;
        int64_t created;
};

kw_result kw_pg_key_versions(struct kw_pgstore *pg, const char *key_id,
                             int (*cb)(uint32_t version, int64_t created, void *arg), void *arg)
{
        KW_ENSURE(pg != NULL && key_id != NULL && cb != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        struct pg_params p = { 0 };
        pg_param_text(&p, key_id);
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, "SELECT " VERSION_COLS " FROM key_versions WHERE key_id = $1 ORDER BY version",
                    &p, "key versions", &res);
        pg_release(pg, c);
        KW_TRY(r);
        int n = PQntuples(res);
        struct version_item *v = calloc(n > 0 ? (size_t)n : 1, sizeof *v);
        KW_ENSURE(v != NULL, KW_ERR_NOMEM);
        for (int i = 0; kw_ok(r) && i < n; i++) {
                r = pg_col_u32(res, i, 1, &v[i].version);
                char pk[48];
                version_pk(key_id, v[i].version, pk);
                if (kw_ok(r))
                        r = pg_res_verify(pg, res, i, "key_versions", pk, 4, 4);
                if (kw_ok(r))
                        r = pg_col_i64(res, i, 3, &v[i].created);
        }
        pg_clearp(&res);
        for (int i = 0; kw_ok(r) && i < n; i++)
                if (cb(v[i].version, v[i].created, arg) != 0)
                        break;
        free(v);
        return r;
}

/* -------------------------------------------------------------------- list */

/* Filters are bound, never spliced: NULL parameters disable a condition. */
#define SQL_KEY_LIST                                                             \
        "SELECT " KEY_COLS " FROM keys"                                          \
        " WHERE name COLLATE \"C\" > $1"                                         \
        " AND ($2::text IS NULL OR state = $2)"                                  \
        " AND ($3::text IS NULL OR type = $3)"                                   \
        " AND ($4::text IS NULL OR left(name, length($4)) = $4)"                 \
        " AND ($5::int <> 0 OR $2::text IS NOT NULL OR state <> 'destroyed')"    \
        " ORDER BY name COLLATE \"C\" LIMIT $6"

/* Reads up to limit matching rows into out, each verified; *ret_more = 1
 * when at least one more matching row follows. */
static kw_result key_list_read(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_key_filter *f,
                               uint32_t limit, const struct kw_keyrow_tag *tag, struct kw_keyrow_vec *out,
                               int *ret_more)
{
        char after[65];
        snprintf(after, sizeof after, "%s", f->after_name != NULL ? f->after_name : "");
        /* without a tag filter, limit + 1 rows say all; with one, chunks */
        uint32_t chunk = tag->k != NULL ? PG_LIST_CHUNK : limit + 1;
        for (;;) {
                struct pg_params p = { 0 };
                pg_param_text(&p, after);
                pg_param_text(&p, f->state);
                pg_param_text(&p, f->type);
                pg_param_text(&p, f->name_prefix);
                pg_param_i64(&p, f->include_destroyed ? 1 : 0);
                pg_param_i64(&p, chunk);
                PGresult *res _cleanup_pgresult_ = NULL;
                KW_TRY(pg_exec(pg, c, SQL_KEY_LIST, &p, "key list", &res));
                int n = PQntuples(res);
                for (int i = 0; i < n; i++) {
                        struct kw_key_row row;
                        KW_TRY(key_row_from_res(pg, res, i, &row));
                        memcpy(after, row.name, sizeof after);
                        if (tag->k != NULL && !kw_keyrow_tags_match(row.tags_json, tag->k, tag->klen, tag->v)) {
                                kw_key_row_clear(&row);
                                continue;
                        }
                        if (out->n == limit) {
                                kw_key_row_clear(&row);
                                *ret_more = 1;
                                return KW_OK;
                        }
                        kw_result r = pg_grow((void **)&out->rows, &out->cap, out->n, sizeof *out->rows);
                        if (!kw_ok(r)) {
                                kw_key_row_clear(&row);
                                return r;
                        }
                        out->rows[out->n++] = row;
                }
                if ((uint32_t)n < chunk)
                        break;
        }
        *ret_more = 0;
        return KW_OK;
}

kw_result kw_pg_key_list(struct kw_pgstore *pg, const struct kw_key_filter *f,
                         int (*cb)(const struct kw_key_row *row, void *arg), void *arg,
                         char next[65])
{
        static const struct kw_key_filter none = { 0 };
        KW_ENSURE(pg != NULL && cb != NULL && next != NULL, KW_ERR_INPUT);
        if (f == NULL)
                f = &none;
        uint32_t limit;
        KW_TRY(kw_keyrow_check_filter(f, &limit));
        /* a prefix or an after_name outside the name alphabet (not valid
         * UTF-8 for the database) matches as SQLite would: byte-wise */
        KW_ENSURE(f->name_prefix == NULL || kw_utf8_printable(f->name_prefix), KW_ERR_BAD_NAME);
        KW_ENSURE(f->after_name == NULL || kw_utf8_printable(f->after_name), KW_ERR_BAD_NAME);
        struct kw_keyrow_tag tag = { 0 };
        KW_TRY(kw_keyrow_parse_tag(f->tag, &tag));

        struct kw_keyrow_vec v = { 0 };
        int more = 0;
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        r = pg_tx_begin_read(pg, c);     /* one snapshot across the chunks */
        if (kw_ok(r))
                r = key_list_read(pg, c, f, limit, &tag, &v, &more);
        if (kw_ok(r))
                r = pg_tx_commit(pg, c);
        pg_release(pg, c);
        if (!kw_ok(r)) {
                kw_keyrow_vec_free(&v);
                return r;
        }
        kw_keyrow_list_deliver(v.rows, v.n, more, cb, arg, next);
        kw_keyrow_vec_free(&v);
        return KW_OK;
}

static kw_result count_of(struct kw_pgstore *pg, const char *sql, uint64_t *ret)
{
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, sql, NULL, "count", &res);
        pg_release(pg, c);
        KW_TRY(r);
        int64_t n = 0;
        KW_ENSURE(PQntuples(res) == 1, KW_ERR_STORAGE);
        KW_TRY(pg_col_i64(res, 0, 0, &n));
        *ret = n < 0 ? 0 : (uint64_t)n;
        return KW_OK;
}

kw_result kw_pg_key_count(struct kw_pgstore *pg, uint64_t *ret)
{
        KW_ENSURE(pg != NULL && ret != NULL, KW_ERR_INPUT);
        return count_of(pg, "SELECT count(*) FROM keys WHERE state <> 'destroyed'", ret);
}

/* ---------------------------------------------------------------- mutations */

/* Inside a transaction: the verified row of key_id (ret cleared by the
 * caller), NOT_FOUND or KEY_DESTROYED. */
static kw_result tx_live_key(struct kw_pgstore *pg, struct pg_conn *c, const char *key_id,
                             struct kw_key_row *ret)
{
        struct pg_params p = { 0 };
        pg_param_text(&p, key_id);
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, "SELECT " KEY_COLS " FROM keys WHERE id = $1", &p, "key lookup", &res));
        if (PQntuples(res) != 1) {
                kw_err_set_detail("no key with this id");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        KW_TRY(key_row_from_res(pg, res, 0, ret));
        if (strcmp(ret->state, "destroyed") == 0) {
                kw_key_row_clear(ret);
                kw_err_set_detail("the key is destroyed");
                KW_BAIL(KW_ERR_KEY_DESTROYED);
        }
        return KW_OK;
}

static kw_result key_update_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                               const struct kw_key_row *row, const struct kw_audit_entry *audit)
{
        struct kw_key_row cur;
        memset(&cur, 0, sizeof cur);
        KW_TRY(tx_live_key(pg, c, row->id, &cur));
        struct key_db k = key_db_of(&cur);
        k.state = row->state;
        k.ops = row->ops;
        k.tags = kw_keyrow_json_or_empty(row->tags_json);
        k.rules = kw_keyrow_json_or_empty(row->rules_json);
        k.delete_at = row->delete_at;
        k.updated = row->updated != 0 ? row->updated : pg_now_s();
        kw_result r = key_write(pg, c, &k, 0);
        struct kw_audit_entry def;
        if (kw_ok(r))
                r = pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "key.update", cur.name, NULL));
        if (kw_ok(r))
                r = pg_notify(pg, c, gen, KW_PG_CHANGE_KEY, cur.name);
        kw_key_row_clear(&cur);
        return r;
}

kw_result kw_pg_key_update(struct kw_pgstore *pg, const struct kw_key_row *row,
                           const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(row->id), KW_ERR_BAD_FIELD);
        KW_TRY(kw_keyrow_check_mutables(row));
        if (strcmp(row->state, "destroyed") == 0) {
                kw_err_set_detail("keys are destroyed with key_destroy, not by an update");
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, key_update_tx(pg, c, gen, row, audit));
}

static kw_result key_add_version_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                    const char *key_id, uint32_t version, const uint8_t *blob,
                                    size_t blob_len, const uint8_t *public_der,
                                    size_t public_der_len, const struct kw_audit_entry *audit)
{
        struct kw_key_row cur;
        memset(&cur, 0, sizeof cur);
        KW_TRY(tx_live_key(pg, c, key_id, &cur));
        kw_result r = KW_OK;
        if (cur.current_version == UINT32_MAX || version != cur.current_version + 1) {
                r = KW_FAIL(KW_ERR_BAD_STATE, "version %u is not the current version %u plus one",
                            version, cur.current_version);
                kw_key_row_clear(&cur);
                return r;
        }
        int64_t now = pg_now_s();
        r = version_insert(pg, c, key_id, version, blob, blob_len, now);
        struct key_db k = key_db_of(&cur);
        k.current_version = version;
        k.updated = now;
        if (public_der != NULL) {
                k.der = public_der;
                k.der_len = public_der_len;
        }
        if (kw_ok(r))
                r = key_write(pg, c, &k, 0);
        struct kw_audit_entry def;
        if (kw_ok(r))
                r = pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "key.rotate", cur.name, NULL));
        if (kw_ok(r))
                r = pg_notify(pg, c, gen, KW_PG_CHANGE_KEY, cur.name);
        kw_key_row_clear(&cur);
        return r;
}

kw_result kw_pg_key_add_version(struct kw_pgstore *pg, const char *key_id, uint32_t version,
                                const uint8_t *blob, size_t blob_len, const uint8_t *public_der,
                                size_t public_der_len, const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && key_id != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        KW_TRY(kw_keyrow_check_blob(blob, blob_len));
        KW_ENSURE(public_der == NULL || (public_der_len > 0 && public_der_len <= 64 * 1024),
                  KW_ERR_BAD_FIELD);
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, key_add_version_tx(pg, c, gen, key_id, version, blob, blob_len,
                                                        public_der, public_der_len, audit));
}

/* due_by != 0: only while the key is pending deletion with delete_at <=
 * due_by.  The row was read after pg_tx_begin locked kw_change, so no other
 * mutation of the fleet can cancel the deletion before this one commits. */
static kw_result key_destroy_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                const char *key_id, int64_t due_by,
                                const struct kw_audit_entry *audit)
{
        struct kw_key_row cur;
        memset(&cur, 0, sizeof cur);
        KW_TRY(tx_live_key(pg, c, key_id, &cur));
        if (due_by != 0 && (strcmp(cur.state, "pending_deletion") != 0 || cur.delete_at > due_by)) {
                kw_key_row_clear(&cur);
                kw_err_set_detail("the key's deletion is no longer due (cancelled or moved)");
                KW_BAIL(KW_ERR_BAD_STATE);
        }
        struct key_db k = key_db_of(&cur);
        k.state = "destroyed";
        k.delete_at = 0;
        k.updated = pg_now_s();
        kw_result r = key_write(pg, c, &k, 0);
        if (kw_ok(r)) {
                struct pg_params p = { 0 };
                pg_param_text(&p, key_id);
                r = pg_exec(pg, c, "DELETE FROM key_versions WHERE key_id = $1", &p,
                            "key versions delete", NULL);
        }
        struct kw_audit_entry def;
        if (kw_ok(r))
                r = pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "key.destroy", cur.name, NULL));
        if (kw_ok(r))
                r = pg_notify(pg, c, gen, KW_PG_CHANGE_KEY, cur.name);
        kw_key_row_clear(&cur);
        return r;
}

kw_result kw_pg_key_destroy(struct kw_pgstore *pg, const char *key_id,
                            const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && key_id != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, key_destroy_tx(pg, c, gen, key_id, 0, audit));
}

kw_result kw_pg_key_destroy_due(struct kw_pgstore *pg, const char *key_id, int64_t now,
                                const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && key_id != NULL && now > 0, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_id(key_id), KW_ERR_BAD_FIELD);
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, key_destroy_tx(pg, c, gen, key_id, now, audit));
}

/* ----------------------------------------------------------- due deletions */

struct due_key {
        char id[33];
        char name[65];
};

kw_result kw_pg_due_deletions(struct kw_pgstore *pg, int64_t now,
                              int (*cb)(const char *key_id, const char *name, void *arg), void *arg)
{
        KW_ENSURE(pg != NULL && cb != NULL, KW_ERR_INPUT);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        struct pg_params p = { 0 };
        pg_param_i64(&p, now);
        pg_param_i64(&p, PG_DUE_MAX);
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c,
                    "SELECT " KEY_COLS " FROM keys WHERE state = 'pending_deletion'"
                    " AND delete_at <= $1 ORDER BY delete_at, name COLLATE \"C\" LIMIT $2",
                    &p, "due deletions", &res);
        pg_release(pg, c);
        KW_TRY(r);
        int n = PQntuples(res);
        KW_ENSURE(n >= 0 && (unsigned)n <= PG_DUE_MAX, KW_ERR_STORAGE);
        struct due_key *keys = calloc(n > 0 ? (size_t)n : 1, sizeof *keys);
        KW_ENSURE(keys != NULL, KW_ERR_NOMEM);
        for (int i = 0; kw_ok(r) && i < n; i++) {
                struct kw_key_row row;
                r = key_row_from_res(pg, res, i, &row);
                if (kw_ok(r)) {
                        memcpy(keys[i].id, row.id, sizeof keys[i].id);
                        memcpy(keys[i].name, row.name, sizeof keys[i].name);
                        kw_key_row_clear(&row);
                }
        }
        pg_clearp(&res);
        for (int i = 0; kw_ok(r) && i < n; i++)
                if (cb(keys[i].id, keys[i].name, arg) != 0)
                        break;
        free(keys);
        return r;
}
