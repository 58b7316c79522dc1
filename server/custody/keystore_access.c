/*
 * keystore_access.c - the key store's access records: admin API tokens and
 * XKS key stores with their credentials (contract in keystore.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <sqlite3.h>

#include "keyrow.h"
#include "keystore_int.h"

/* ---------------------------------------------------------------- tokens */

static kw_result token_row_from_stmt(sqlite3_stmt *st, struct kw_token_row *ret)
{
        struct kw_token_row t;
        memset(&t, 0, sizeof t);
        KW_TRY(ks_col_text(st, 0, t.id, sizeof t.id));
        KW_TRY(ks_col_text(st, 1, t.name, sizeof t.name));
        KW_TRY(ks_col_text(st, 2, t.role, sizeof t.role));
        t.created = sqlite3_column_int64(st, 3);
        t.revoked = sqlite3_column_int64(st, 4);
        *ret = t;
        return KW_OK;
}

static kw_result token_insert_tx(struct kw_keystore *ks, struct ks_tx *tx,
                                 const struct kw_token_row *row, const uint8_t hash[32],
                                 const struct kw_audit_entry *audit)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "INSERT INTO tokens (id, name, role, hash, created, revoked)"
                          " VALUES (?1, ?2, ?3, ?4, ?5, 0)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, row->id));
        KW_TRY(ks_bind_text(ks, st, 2, row->name));
        KW_TRY(ks_bind_text(ks, st, 3, row->role));
        KW_TRY(ks_bind_blob(ks, st, 4, hash, KS_HASH_LEN));
        KW_TRY(ks_bind_i64(ks, st, 5, row->created != 0 ? row->created : ks_now_s()));
        KW_TRY(ks_step_done(ks, st, "token insert"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "token.create", NULL, row->name));
}

kw_result kw_keystore_token_insert(struct kw_keystore *ks, const struct kw_token_row *row,
                                   const uint8_t hash[32], const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_token_insert(ks->pg, row, hash, audit));
        KW_ENSURE(ks != NULL && row != NULL && hash != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_token_id(row->id), KW_ERR_BAD_FIELD);
        KW_ENSURE(ks_valid_name(row->name), KW_ERR_BAD_NAME);
        KW_ENSURE(kw_keyrow_valid_role(row->role), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        kw_result r = KS_RUN_TX(ks, tx, token_insert_tx(ks, tx, row, hash, audit));
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("the token name, id or hash is already in use");
        return r;
}

kw_result kw_keystore_token_find(struct kw_keystore *ks, const uint8_t hash[32],
                                 struct kw_token_row *ret)
{
        KS_PG(ks, kw_pg_token_find(ks->pg, hash, ret));
        KW_ENSURE(ks != NULL && hash != NULL && ret != NULL, KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r;
        {
                _cleanup_reset_ sqlite3_stmt *st = ks->st_token_find;
                int row = 0;
                r = ks_bind_blob(ks, st, 1, hash, KS_HASH_LEN);
                if (kw_ok(r))
                        r = ks_step_row(ks, st, "token find", &row);
                if (kw_ok(r)) {
                        /* The index found the row; confirm in constant time. */
                        const void *h = row ? sqlite3_column_blob(st, 5) : NULL;
                        if (h == NULL || sqlite3_column_bytes(st, 5) != KS_HASH_LEN ||
                            CRYPTO_memcmp(h, hash, KS_HASH_LEN) != 0) { /* lint: allow (constant time) */
                                kw_err_set_detail("no active token with this value");
                                r = KW_RESULT(KW_ERR_NOT_FOUND);
                        }
                }
                if (kw_ok(r))
                        r = token_row_from_stmt(st, ret);
        }
        ks_unlock(ks);
        return r;
}

struct token_vec {
        struct kw_token_row *rows;
        size_t n, cap;
};

static kw_result token_list_read(struct kw_keystore *ks, struct token_vec *v)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT id, name, role, created, revoked FROM tokens ORDER BY name", &st));
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "token list", &row));
                if (!row)
                        break;
                KW_TRY(ks_grow((void **)&v->rows, &v->cap, v->n, sizeof *v->rows));
                KW_TRY(token_row_from_stmt(st, &v->rows[v->n]));
                v->n++;
        }
        return KW_OK;
}

kw_result kw_keystore_token_list(struct kw_keystore *ks,
                                 int (*cb)(const struct kw_token_row *row, void *arg), void *arg)
{
        KS_PG(ks, kw_pg_token_list(ks->pg, cb, arg));
        KW_ENSURE(ks != NULL && cb != NULL, KW_ERR_INPUT);
        struct token_vec v = { 0 };
        ks_lock(ks);
        kw_result r = token_list_read(ks, &v);
        ks_unlock(ks);
        for (size_t i = 0; kw_ok(r) && i < v.n; i++)
                if (cb(&v.rows[i], arg) != 0)
                        break;
        free(v.rows);
        return r;
}

struct token_hash_vec {
        struct kw_token_row *rows;
        uint8_t (*hashes)[KS_HASH_LEN];
        size_t n, cap, hcap;
};

static kw_result token_hashes_read(struct kw_keystore *ks, struct token_hash_vec *v)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT id, name, role, created, revoked, hash FROM tokens"
                              " ORDER BY name", &st));
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "token list", &row));
                if (!row)
                        break;
                const void *h = sqlite3_column_blob(st, 5);
                if (h == NULL || sqlite3_column_bytes(st, 5) != KS_HASH_LEN) {
                        kw_err_set_detail("key store: a token's stored hash is not %d bytes",
                                          KS_HASH_LEN);
                        KW_BAIL(KW_ERR_DB_CORRUPT);
                }
                KW_TRY(ks_grow((void **)&v->rows, &v->cap, v->n, sizeof *v->rows));
                KW_TRY(ks_grow((void **)&v->hashes, &v->hcap, v->n, sizeof *v->hashes));
                KW_TRY(token_row_from_stmt(st, &v->rows[v->n]));
                memcpy(v->hashes[v->n], h, KS_HASH_LEN);
                v->n++;
        }
        return KW_OK;
}

kw_result kw_keystore_token_list_hashes(struct kw_keystore *ks,
                                        int (*cb)(const struct kw_token_row *row,
                                                  const uint8_t hash[32], void *arg),
                                        void *arg)
{
        KS_PG(ks, kw_pg_token_list_hashes(ks->pg, cb, arg));
        KW_ENSURE(ks != NULL && cb != NULL, KW_ERR_INPUT);
        struct token_hash_vec v = { 0 };
        ks_lock(ks);
        kw_result r = token_hashes_read(ks, &v);
        ks_unlock(ks);
        for (size_t i = 0; kw_ok(r) && i < v.n; i++)
                if (cb(&v.rows[i], v.hashes[i], arg) != 0)
                        break;
        if (v.hashes != NULL)
                kw_wipe(v.hashes, v.n * sizeof *v.hashes);
        free(v.hashes);
        free(v.rows);
        return r;
}

static kw_result token_revoke_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *id,
                                 const struct kw_audit_entry *audit)
{
        char name[65], role[17];
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT name, role FROM tokens WHERE id = ?1 AND revoked = 0",
                                  &st));
                KW_TRY(ks_bind_text(ks, st, 1, id));
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "token lookup", &row));
                if (!row) {
                        kw_err_set_detail("no active token with this id");
                        KW_BAIL(KW_ERR_NOT_FOUND);
                }
                KW_TRY(ks_col_text(st, 0, name, sizeof name));
                KW_TRY(ks_col_text(st, 1, role, sizeof role));
        }
        if (strcmp(role, "admin") == 0) {
                /* in the same transaction as the revocation: two concurrent
                 * revocations cannot both see another admin left */
                uint64_t admins = 0;
                KW_TRY(ks_admin_credentials(ks, &admins));
                if (admins <= 1) {
                        kw_err_set_detail("%s is the last active admin token and there is no "
                                          "admin user: create another admin first (or recover "
                                          "with keywardd --recover-admin)",
                                          name);
                        KW_BAIL(KW_ERR_BAD_STATE);
                }
        }
        sqlite3_stmt *su _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "UPDATE tokens SET revoked = ?2 WHERE id = ?1", &su));
        KW_TRY(ks_bind_text(ks, su, 1, id));
        KW_TRY(ks_bind_i64(ks, su, 2, ks_now_s()));
        KW_TRY(ks_step_done(ks, su, "token revoke"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "token.revoke", NULL, name));
}

kw_result kw_keystore_token_revoke(struct kw_keystore *ks, const char *id,
                                   const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_token_revoke(ks->pg, id, audit));
        KW_ENSURE(ks != NULL && id != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_token_id(id), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, token_revoke_tx(ks, tx, id, audit));
}

kw_result kw_keystore_token_count(struct kw_keystore *ks, uint64_t *ret)
{
        KS_PG(ks, kw_pg_token_count(ks->pg, ret));
        KW_ENSURE(ks != NULL && ret != NULL, KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r = ks_count(ks, "SELECT count(*) FROM tokens", ret);
        ks_unlock(ks);
        return r;
}

/* ------------------------------------------------------------ xks stores */

static kw_result xks_cred_insert(struct kw_keystore *ks, const struct kw_xks_cred_row *c)
{
        if (!c->is_sealed || c->secret_len == 0 || c->secret_len > sizeof c->secret) {
                kw_err_set_detail("an XKS secret is stored sealed only");
                KW_BAIL(KW_ERR_INPUT);
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "INSERT INTO xks_credentials (akid, store, secret, created, seq, sealed)"
                          " VALUES (?1, ?2, ?3, ?4,"
                          " (SELECT coalesce(max(seq), 0) + 1 FROM xks_credentials), 1)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, c->akid));
        KW_TRY(ks_bind_text(ks, st, 2, c->store));
        KW_TRY(ks_bind_blob(ks, st, 3, c->secret, c->secret_len));
        KW_TRY(ks_bind_i64(ks, st, 4, c->created != 0 ? c->created : ks_now_s()));
        return ks_step_done(ks, st, "xks credential insert");
}

static kw_result xks_store_insert_tx(struct kw_keystore *ks, struct ks_tx *tx,
                                     const struct kw_xks_store_row *s,
                                     const struct kw_xks_cred_row *c,
                                     const struct kw_audit_entry *audit)
{
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks,
                                  "INSERT INTO xks_stores (name, uri_prefix, region, created)"
                                  " VALUES (?1, ?2, ?3, ?4)",
                                  &st));
                KW_TRY(ks_bind_text(ks, st, 1, s->name));
                KW_TRY(ks_bind_text(ks, st, 2, s->uri_prefix));
                KW_TRY(ks_bind_text(ks, st, 3, s->region));
                KW_TRY(ks_bind_i64(ks, st, 4, s->created != 0 ? s->created : ks_now_s()));
                KW_TRY(ks_step_done(ks, st, "xks store insert"));
        }
        KW_TRY(xks_cred_insert(ks, c));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "xks.store.create", NULL, s->name));
}

kw_result kw_keystore_xks_store_insert(struct kw_keystore *ks, const struct kw_xks_store_row *store,
                                       const struct kw_xks_cred_row *cred,
                                       const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_xks_store_insert(ks->pg, store, cred, audit));
        KW_ENSURE(ks != NULL && store != NULL && cred != NULL, KW_ERR_INPUT);
        KW_ENSURE(strcmp(store->name, cred->store) == 0, KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(audit));
        kw_result r = KS_RUN_TX(ks, tx, xks_store_insert_tx(ks, tx, store, cred, audit));
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("an XKS key store with this name or URI prefix exists");
        return r;
}

static kw_result xks_store_delete_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *name,
                                     const struct kw_audit_entry *audit)
{
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "DELETE FROM xks_credentials WHERE store = ?1", &st));
                KW_TRY(ks_bind_text(ks, st, 1, name));
                KW_TRY(ks_step_done(ks, st, "xks credential delete"));
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "DELETE FROM xks_stores WHERE name = ?1", &st));
        KW_TRY(ks_bind_text(ks, st, 1, name));
        KW_TRY(ks_step_done(ks, st, "xks store delete"));
        if (sqlite3_changes(ks->db) != 1) {
                kw_err_set_detail("no XKS key store named %s (created through the API)", name);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "xks.store.delete", NULL, name));
}

kw_result kw_keystore_xks_store_delete(struct kw_keystore *ks, const char *name,
                                       const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_xks_store_delete(ks->pg, name, audit));
        KW_ENSURE(ks != NULL && name != NULL, KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, xks_store_delete_tx(ks, tx, name, audit));
}

static kw_result xks_cred_add_tx(struct kw_keystore *ks, struct ks_tx *tx,
                                 const struct kw_xks_cred_row *c, unsigned keep,
                                 const struct kw_audit_entry *audit)
{
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT 1 FROM xks_stores WHERE name = ?1", &st));
                KW_TRY(ks_bind_text(ks, st, 1, c->store));
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "xks store lookup", &row));
                if (!row) {
                        kw_err_set_detail("no XKS key store named %s (created through the API)",
                                          c->store);
                        KW_BAIL(KW_ERR_NOT_FOUND);
                }
        }
        KW_TRY(xks_cred_insert(ks, c));
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "DELETE FROM xks_credentials WHERE store = ?1 AND akid NOT IN"
                          " (SELECT akid FROM xks_credentials WHERE store = ?1"
                          "  ORDER BY seq DESC LIMIT ?2)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, c->store));
        KW_TRY(ks_bind_i64(ks, st, 2, keep));
        KW_TRY(ks_step_done(ks, st, "xks credential prune"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "xks.credential.create", NULL, c->store));
}

kw_result kw_keystore_xks_cred_add(struct kw_keystore *ks, const struct kw_xks_cred_row *cred,
                                   unsigned keep, const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_xks_cred_add(ks->pg, cred, keep, audit));
        KW_ENSURE(ks != NULL && cred != NULL && keep >= 1, KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, xks_cred_add_tx(ks, tx, cred, keep, audit));
}

static kw_result xks_cred_delete_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *store,
                                    const char *akid, const struct kw_audit_entry *audit)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "DELETE FROM xks_credentials WHERE store = ?1 AND akid = ?2", &st));
        KW_TRY(ks_bind_text(ks, st, 1, store));
        KW_TRY(ks_bind_text(ks, st, 2, akid));
        KW_TRY(ks_step_done(ks, st, "xks credential delete"));
        if (sqlite3_changes(ks->db) != 1) {
                kw_err_set_detail("store %s has no credential %s", store, akid);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "xks.credential.delete", NULL, store));
}

kw_result kw_keystore_xks_cred_delete(struct kw_keystore *ks, const char *store, const char *akid,
                                      const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_xks_cred_delete(ks->pg, store, akid, audit));
        KW_ENSURE(ks != NULL && store != NULL && akid != NULL, KW_ERR_INPUT);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, xks_cred_delete_tx(ks, tx, store, akid, audit));
}

static kw_result xks_list_locked(struct kw_keystore *ks,
                                 int (*store_cb)(const struct kw_xks_store_row *, void *),
                                 int (*cred_cb)(const struct kw_xks_cred_row *, void *), void *arg)
{
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                KW_TRY(ks_prepare(ks, "SELECT name, uri_prefix, region, created FROM xks_stores"
                                      " ORDER BY name", &st));
                for (;;) {
                        int row = 0;
                        KW_TRY(ks_step_row(ks, st, "xks store list", &row));
                        if (!row)
                                break;
                        struct kw_xks_store_row s;
                        memset(&s, 0, sizeof s);
                        KW_TRY(ks_col_text(st, 0, s.name, sizeof s.name));
                        KW_TRY(ks_col_text(st, 1, s.uri_prefix, sizeof s.uri_prefix));
                        KW_TRY(ks_col_text(st, 2, s.region, sizeof s.region));
                        s.created = sqlite3_column_int64(st, 3);
                        if (store_cb != NULL && store_cb(&s, arg) != 0)
                                break;
                }
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT store, akid, secret, created, sealed FROM xks_credentials"
                              " ORDER BY store, seq", &st));
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "xks credential list", &row));
                if (!row)
                        break;
                struct kw_xks_cred_row c;
                memset(&c, 0, sizeof c);
                kw_result r = ks_col_text(st, 0, c.store, sizeof c.store);
                if (kw_ok(r))
                        r = ks_col_text(st, 1, c.akid, sizeof c.akid);
                const void *sec = sqlite3_column_blob(st, 2);
                int sn = sqlite3_column_bytes(st, 2);
                if (kw_ok(r) && (sec == NULL || sn <= 0 || (size_t)sn > sizeof c.secret)) {
                        kw_err_set_detail("XKS credential %s: bad stored secret", c.akid);
                        r = KW_RESULT(KW_ERR_DB_CORRUPT);
                }
                if (kw_ok(r)) {
                        memcpy(c.secret, sec, (size_t)sn);
                        c.secret_len = (size_t)sn;
                }
                c.created = sqlite3_column_int64(st, 3);
                c.is_sealed = sqlite3_column_int(st, 4) != 0;
                int stop = kw_ok(r) && cred_cb != NULL ? cred_cb(&c, arg) : 0;
                kw_wipe(&c, sizeof c);
                KW_TRY(r);
                if (stop)
                        break;
        }
        return KW_OK;
}

kw_result kw_keystore_xks_cred_reseal(struct kw_keystore *ks, const char *store, const char *akid,
                                      const uint8_t *sealed, size_t sealed_len)
{
        KS_PG(ks, kw_pg_xks_cred_reseal(ks->pg, store, akid, sealed, sealed_len));
        KW_ENSURE(ks != NULL && store != NULL && akid != NULL && sealed != NULL &&
                          sealed_len != 0 && sealed_len <= sizeof ((struct kw_xks_cred_row *)0)->secret,
                  KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r;
        {
                sqlite3_stmt *st _cleanup_finalize_ = NULL;
                r = ks_prepare(ks, "UPDATE xks_credentials SET secret = ?3, sealed = 1"
                                   " WHERE store = ?1 AND akid = ?2 AND sealed = 0", &st);
                if (kw_ok(r))
                        r = ks_bind_text(ks, st, 1, store);
                if (kw_ok(r))
                        r = ks_bind_text(ks, st, 2, akid);
                if (kw_ok(r))
                        r = ks_bind_blob(ks, st, 3, sealed, sealed_len);
                if (kw_ok(r))
                        r = ks_step_done(ks, st, "xks credential reseal");
                if (kw_ok(r) && sqlite3_changes(ks->db) != 1) {
                        kw_err_set_detail("no clear XKS credential %s in store %s", akid, store);
                        r = KW_RESULT(KW_ERR_NOT_FOUND);
                }
        }
        ks_unlock(ks);
        return r;
}

kw_result kw_keystore_xks_list(struct kw_keystore *ks,
                               int (*store_cb)(const struct kw_xks_store_row *row, void *arg),
                               int (*cred_cb)(const struct kw_xks_cred_row *row, void *arg),
                               void *arg)
{
        KS_PG(ks, kw_pg_xks_list(ks->pg, store_cb, cred_cb, arg));
        KW_ENSURE(ks != NULL, KW_ERR_INPUT);
        ks_lock(ks);
        kw_result r = xks_list_locked(ks, store_cb, cred_cb, arg);
        ks_unlock(ks);
        return r;
}
