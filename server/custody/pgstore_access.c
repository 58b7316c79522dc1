/*
 * pgstore_access.c - access records on PostgreSQL: admin API tokens,
 * console users and XKS key stores with their credentials (contract in
 * keystore.h and pgstore.h; the SQLCipher store's errors and choices,
 * keystore_access.c and keystore_users.c, hold here).
 *
 * Every row is checked against its MAC when read (lists refuse a tampered
 * row rather than hide it) and written with a fresh MAC of the whole row,
 * computed from a row read and verified in the same transaction.  The
 * last-admin rule counts only rows whose MAC holds (a row forged to keep
 * "another admin" alive is refused, not counted).
 *
 * Differences from SQLCipher:
 *   - XKS credentials have no "sealed" column: every stored secret is sealed
 *     (rows read say is_sealed = 1), so xks_cred_reseal replaces the secret
 *     of an existing credential (used to re-seal under a new master key);
 *     KW_ERR_NOT_FOUND when there is none.  It is a mutation (kind xks) with
 *     no audit row, as in SQLCipher.
 *   - XKS store names must be valid names (kw_name_valid: they travel in
 *     change notifications): KW_ERR_BAD_NAME.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../common/names.h"
#include "keyrow.h"
#include "pgstore_int.h"

#define TOKEN_COLS "id, name, role, hash, created, revoked, mac"
#define TOKEN_NCOLS 6
#define USER_COLS "name, role, hash, created, last_login, failed, locked_until, mac"
#define USER_NCOLS 7
#define STORE_COLS "name, uri_prefix, region, created, mac"
#define STORE_NCOLS 4
#define CRED_COLS "akid, store, secret, created, seq, mac"
#define CRED_NCOLS 5

/* ------------------------------------------------------------------ tokens */

/* Row i of a TOKEN_COLS result, verified; *ret_hash (may be NULL) points
 * into res. */
static kw_result token_from_res(struct kw_pgstore *pg, const PGresult *res, int i,
                                struct kw_token_row *ret, const uint8_t **ret_hash)
{
        struct kw_token_row t;
        memset(&t, 0, sizeof t);
        KW_TRY(pg_col_text(res, i, 0, t.id, sizeof t.id));
        KW_TRY(pg_res_verify(pg, res, i, "tokens", t.id, TOKEN_NCOLS, TOKEN_NCOLS));
        KW_TRY(pg_col_text(res, i, 1, t.name, sizeof t.name));
        KW_TRY(pg_col_text(res, i, 2, t.role, sizeof t.role));
        const uint8_t *h = NULL;
        size_t hl = 0;
        KW_TRY(pg_col_bytes(res, i, 3, &h, &hl));
        if (h == NULL || hl != PG_HASH_LEN) {
                kw_err_set_detail("fleet database: token %s has a malformed hash", t.id);
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        KW_TRY(pg_col_i64(res, i, 4, &t.created));
        KW_TRY(pg_col_i64(res, i, 5, &t.revoked));
        *ret = t;
        if (ret_hash != NULL)
                *ret_hash = h;
        return KW_OK;
}

static kw_result token_write(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_token_row *t,
                             const uint8_t hash[32], int insert)
{
        struct pg_field f[TOKEN_NCOLS] = { PG_FSTR(t->id),        PG_FSTR(t->name),
                                           PG_FSTR(t->role),      PG_FBYTES(hash, PG_HASH_LEN),
                                           PG_FINT(t->created),   PG_FINT(t->revoked) };
        uint8_t mac[PG_MAC_LEN];
        KW_TRY(pg_row_mac(pg, "tokens", f, TOKEN_NCOLS, mac));
        struct pg_params p = { 0 };
        pg_param_text(&p, t->id);
        pg_param_text(&p, t->name);
        pg_param_text(&p, t->role);
        pg_param_bytes(&p, hash, PG_HASH_LEN);
        pg_param_i64(&p, t->created);
        pg_param_i64(&p, t->revoked);
        pg_param_bytes(&p, mac, sizeof mac);
        if (insert)
                return pg_exec(pg, c,
                               "INSERT INTO tokens (" TOKEN_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7)",
                               &p, "token insert", NULL);
        return pg_exec(pg, c,
                       "UPDATE tokens SET name = $2, role = $3, hash = $4, created = $5, revoked = $6,"
                       " mac = $7 WHERE id = $1",
                       &p, "token update", NULL);
}

static kw_result token_insert_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                 const struct kw_token_row *row, const uint8_t hash[32],
                                 const struct kw_audit_entry *audit)
{
        struct kw_token_row t = *row;
        t.created = row->created != 0 ? row->created : pg_now_s();
        t.revoked = 0;
        KW_TRY(token_write(pg, c, &t, hash, 1));
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "token.create", NULL, row->name)));
        return pg_notify(pg, c, gen, KW_PG_CHANGE_TOKEN, row->id);
}

kw_result kw_pg_token_insert(struct kw_pgstore *pg, const struct kw_token_row *row,
                             const uint8_t hash[32], const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && row != NULL && hash != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_token_id(row->id), KW_ERR_BAD_FIELD);
        KW_ENSURE(kw_name_valid(row->name), KW_ERR_BAD_NAME);
        KW_ENSURE(kw_keyrow_valid_role(row->role), KW_ERR_BAD_FIELD);
        KW_TRY(pg_check_audit_entry(audit));
        kw_result r = PG_RUN_TX(pg, c, gen, token_insert_tx(pg, c, gen, row, hash, audit));
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("the token name, id or hash is already in use");
        return r;
}

kw_result kw_pg_token_find(struct kw_pgstore *pg, const uint8_t hash[32], struct kw_token_row *ret)
{
        KW_ENSURE(pg != NULL && hash != NULL && ret != NULL, KW_ERR_INPUT);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        struct pg_params p = { 0 };
        pg_param_bytes(&p, hash, PG_HASH_LEN);
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, "SELECT " TOKEN_COLS " FROM tokens WHERE hash = $1 AND revoked = 0", &p,
                    "token find", &res);
        pg_release(pg, c);
        KW_TRY(r);
        if (PQntuples(res) != 1) {
                kw_err_set_detail("no active token with this value");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        struct kw_token_row t;
        const uint8_t *h = NULL;
        KW_TRY(token_from_res(pg, res, 0, &t, &h));
        /* The index found the row; confirm in constant time. */
        if (CRYPTO_memcmp(h, hash, PG_HASH_LEN) != 0 || t.revoked != 0) { /* lint: allow (constant time) */
                kw_err_set_detail("no active token with this value");
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        *ret = t;
        return KW_OK;
}

struct token_vec {
        struct kw_token_row *rows;
        uint8_t (*hashes)[PG_HASH_LEN];
        size_t n;
};

static void token_vec_free(struct token_vec *v)
{
        free(v->rows);
        free(v->hashes);
        memset(v, 0, sizeof *v);
}

static kw_result token_list_read(struct kw_pgstore *pg, struct token_vec *v)
{
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, "SELECT " TOKEN_COLS " FROM tokens ORDER BY name COLLATE \"C\"", NULL,
                    "token list", &res);
        pg_release(pg, c);
        KW_TRY(r);
        int n = PQntuples(res);
        v->rows = calloc(n > 0 ? (size_t)n : 1, sizeof *v->rows);
        v->hashes = calloc(n > 0 ? (size_t)n : 1, sizeof *v->hashes);
        KW_ENSURE(v->rows != NULL && v->hashes != NULL, KW_ERR_NOMEM);
        for (int i = 0; i < n; i++) {
                const uint8_t *h = NULL;
                KW_TRY(token_from_res(pg, res, i, &v->rows[i], &h));
                memcpy(v->hashes[i], h, PG_HASH_LEN);
                v->n++;
        }
        return KW_OK;
}

kw_result kw_pg_token_list(struct kw_pgstore *pg, int (*cb)(const struct kw_token_row *row, void *arg),
                           void *arg)
{
        KW_ENSURE(pg != NULL && cb != NULL, KW_ERR_INPUT);
        struct token_vec v = { 0 };
        kw_result r = token_list_read(pg, &v);
        for (size_t i = 0; kw_ok(r) && i < v.n; i++)
                if (cb(&v.rows[i], arg) != 0)
                        break;
        token_vec_free(&v);
        return r;
}

kw_result kw_pg_token_list_hashes(struct kw_pgstore *pg,
                                  int (*cb)(const struct kw_token_row *row, const uint8_t hash[32],
                                            void *arg),
                                  void *arg)
{
        KW_ENSURE(pg != NULL && cb != NULL, KW_ERR_INPUT);
        struct token_vec v = { 0 };
        kw_result r = token_list_read(pg, &v);
        for (size_t i = 0; kw_ok(r) && i < v.n; i++)
                if (cb(&v.rows[i], v.hashes[i], arg) != 0)
                        break;
        token_vec_free(&v);
        return r;
}

/* Active admin tokens plus admin users whose rows verify, inside the
 * caller's transaction (the last-admin rule). */
static kw_result admin_credentials(struct kw_pgstore *pg, struct pg_conn *c, uint64_t *ret)
{
        uint64_t n = 0;
        {
                PGresult *res _cleanup_pgresult_ = NULL;
                KW_TRY(pg_exec(pg, c,
                               "SELECT " TOKEN_COLS " FROM tokens WHERE revoked = 0 AND role = 'admin'",
                               NULL, "admin tokens", &res));
                for (int i = 0; i < PQntuples(res); i++) {
                        struct kw_token_row t;
                        KW_TRY(token_from_res(pg, res, i, &t, NULL));
                        n++;
                }
        }
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, "SELECT " USER_COLS " FROM users WHERE role = 'admin'", NULL,
                       "admin users", &res));
        for (int i = 0; i < PQntuples(res); i++) {
                char name[65];
                KW_TRY(pg_col_text(res, i, 0, name, sizeof name));
                KW_TRY(pg_res_verify(pg, res, i, "users", name, USER_NCOLS, USER_NCOLS));
                n++;
        }
        *ret = n;
        return KW_OK;
}

static kw_result token_revoke_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                 const char *id, const struct kw_audit_entry *audit)
{
        struct kw_token_row t;
        uint8_t hash[PG_HASH_LEN];
        {
                struct pg_params p = { 0 };
                pg_param_text(&p, id);
                PGresult *res _cleanup_pgresult_ = NULL;
                KW_TRY(pg_exec(pg, c, "SELECT " TOKEN_COLS " FROM tokens WHERE id = $1 AND revoked = 0",
                               &p, "token lookup", &res));
                if (PQntuples(res) != 1) {
                        kw_err_set_detail("no active token with this id");
                        KW_BAIL(KW_ERR_NOT_FOUND);
                }
                const uint8_t *h = NULL;
                KW_TRY(token_from_res(pg, res, 0, &t, &h));
                memcpy(hash, h, sizeof hash);
        }
        if (strcmp(t.role, "admin") == 0) {
                /* in the same transaction as the revocation (serialised by
                 * kw_change): two revocations cannot both see another admin */
                uint64_t admins = 0;
                KW_TRY(admin_credentials(pg, c, &admins));
                if (admins <= 1) {
                        kw_err_set_detail("%s is the last active admin token and there is no "
                                          "admin user: create another admin first (or recover "
                                          "with keywardd --recover-admin)",
                                          t.name);
                        KW_BAIL(KW_ERR_BAD_STATE);
                }
        }
        t.revoked = pg_now_s();
        if (t.revoked == 0)
                t.revoked = 1;
        KW_TRY(token_write(pg, c, &t, hash, 0));
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "token.revoke", NULL, t.name)));
        return pg_notify(pg, c, gen, KW_PG_CHANGE_TOKEN, t.id);
}

kw_result kw_pg_token_revoke(struct kw_pgstore *pg, const char *id, const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && id != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_keyrow_valid_token_id(id), KW_ERR_BAD_FIELD);
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, token_revoke_tx(pg, c, gen, id, audit));
}

static kw_result count_all(struct kw_pgstore *pg, const char *sql, uint64_t *ret)
{
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, sql, NULL, "count", &res);
        pg_release(pg, c);
        KW_TRY(r);
        KW_ENSURE(PQntuples(res) == 1, KW_ERR_STORAGE);
        int64_t n = 0;
        KW_TRY(pg_col_i64(res, 0, 0, &n));
        *ret = n < 0 ? 0 : (uint64_t)n;
        return KW_OK;
}

kw_result kw_pg_token_count(struct kw_pgstore *pg, uint64_t *ret)
{
        KW_ENSURE(pg != NULL && ret != NULL, KW_ERR_INPUT);
        return count_all(pg, "SELECT count(*) FROM tokens", ret);
}

/* ------------------------------------------------------------------- users */

/* Row i of a USER_COLS result, verified, with its hash. */
static kw_result user_from_res(struct kw_pgstore *pg, const PGresult *res, int i,
                               struct kw_user_row *ret)
{
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        kw_result r = pg_col_text(res, i, 0, u.name, sizeof u.name);
        if (kw_ok(r))
                r = pg_res_verify(pg, res, i, "users", u.name, USER_NCOLS, USER_NCOLS);
        if (kw_ok(r))
                r = pg_col_text(res, i, 1, u.role, sizeof u.role);
        if (kw_ok(r))
                r = pg_col_text(res, i, 2, u.hash, sizeof u.hash);
        if (kw_ok(r))
                r = pg_col_i64(res, i, 3, &u.created);
        if (kw_ok(r))
                r = pg_col_i64(res, i, 4, &u.last_login);
        int64_t failed = 0;
        if (kw_ok(r))
                r = pg_col_i64(res, i, 5, &failed);
        u.failed = failed < 0 ? 0 : failed > UINT32_MAX ? UINT32_MAX : (uint32_t)failed;
        if (kw_ok(r))
                r = pg_col_i64(res, i, 6, &u.locked_until);
        if (kw_ok(r))
                *ret = u;
        kw_wipe(&u, sizeof u);
        return r;
}

/* The verified row of name (with its hash), inside the open transaction. */
static kw_result user_read(struct kw_pgstore *pg, struct pg_conn *c, const char *name,
                           struct kw_user_row *ret)
{
        struct pg_params p = { 0 };
        pg_param_text(&p, name);
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, "SELECT " USER_COLS " FROM users WHERE name = $1", &p, "user lookup",
                       &res));
        if (PQntuples(res) != 1) {
                kw_err_set_detail("no user named %s", name);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return user_from_res(pg, res, 0, ret);
}

static kw_result user_write(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_user_row *u,
                            int insert)
{
        struct pg_field f[USER_NCOLS] = { PG_FSTR(u->name),       PG_FSTR(u->role),
                                          PG_FSTR(u->hash),       PG_FINT(u->created),
                                          PG_FINT(u->last_login), PG_FINT(u->failed),
                                          PG_FINT(u->locked_until) };
        uint8_t mac[PG_MAC_LEN];
        KW_TRY(pg_row_mac(pg, "users", f, USER_NCOLS, mac));
        struct pg_params p = { 0 };
        pg_param_text(&p, u->name);
        pg_param_text(&p, u->role);
        pg_param_text(&p, u->hash);
        pg_param_i64(&p, u->created);
        pg_param_i64(&p, u->last_login);
        pg_param_i64(&p, u->failed);
        pg_param_i64(&p, u->locked_until);
        pg_param_bytes(&p, mac, sizeof mac);
        if (insert)
                return pg_exec(pg, c,
                               "INSERT INTO users (" USER_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                               &p, "user insert", NULL);
        return pg_exec(pg, c,
                       "UPDATE users SET role = $2, hash = $3, created = $4, last_login = $5,"
                       " failed = $6, locked_until = $7, mac = $8 WHERE name = $1",
                       &p, "user update", NULL);
}

static kw_result user_insert_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                const struct kw_user_row *row, const struct kw_audit_entry *audit)
{
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        memcpy(u.name, row->name, sizeof u.name);
        memcpy(u.role, row->role, sizeof u.role);
        memcpy(u.hash, row->hash, sizeof u.hash);
        u.created = row->created != 0 ? row->created : pg_now_s();
        kw_result r = user_write(pg, c, &u, 1);
        kw_wipe(&u, sizeof u);
        KW_TRY(r);
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "user.create", NULL, row->name)));
        return pg_notify(pg, c, gen, KW_PG_CHANGE_USER, row->name);
}

kw_result kw_pg_user_insert(struct kw_pgstore *pg, const struct kw_user_row *row,
                            const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_name_valid(row->name), KW_ERR_BAD_NAME);
        KW_ENSURE(strnlen(row->role, sizeof row->role) < sizeof row->role && kw_keyrow_valid_role(row->role),
                  KW_ERR_BAD_FIELD);
        KW_ENSURE(strnlen(row->hash, sizeof row->hash) < sizeof row->hash && kw_keyrow_user_hash_ok(row->hash),
                  KW_ERR_BAD_FIELD);
        KW_TRY(pg_check_audit_entry(audit));
        kw_result r = PG_RUN_TX(pg, c, gen, user_insert_tx(pg, c, gen, row, audit));
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("a user named %s already exists", row->name);
        return r;
}

kw_result kw_pg_user_get(struct kw_pgstore *pg, const char *name, struct kw_user_row *ret)
{
        KW_ENSURE(pg != NULL && name != NULL && ret != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_name_valid(name), KW_ERR_BAD_NAME);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        r = user_read(pg, c, name, ret);
        pg_release(pg, c);
        return r;
}

kw_result kw_pg_user_list(struct kw_pgstore *pg, int (*cb)(const struct kw_user_row *row, void *arg),
                          void *arg)
{
        KW_ENSURE(pg != NULL && cb != NULL, KW_ERR_INPUT);
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        PGresult *res _cleanup_pgresult_ = NULL;
        r = pg_exec(pg, c, "SELECT " USER_COLS " FROM users ORDER BY name COLLATE \"C\"", NULL,
                    "user list", &res);
        pg_release(pg, c);
        KW_TRY(r);
        int n = PQntuples(res);
        struct kw_user_row *rows = calloc(n > 0 ? (size_t)n : 1, sizeof *rows);
        KW_ENSURE(rows != NULL, KW_ERR_NOMEM);
        for (int i = 0; kw_ok(r) && i < n; i++) {
                r = user_from_res(pg, res, i, &rows[i]);
                rows[i].hash[0] = '\0';     /* lists hand no hash out */
        }
        pg_clearp(&res);
        for (int i = 0; kw_ok(r) && i < n; i++)
                if (cb(&rows[i], arg) != 0)
                        break;
        kw_wipe(rows, (n > 0 ? (size_t)n : 1) * sizeof *rows);
        free(rows);
        return r;
}

static kw_result user_delete_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                const char *name, const struct kw_audit_entry *audit,
                                struct kw_user_row *ret)
{
        struct kw_user_row u;
        KW_TRY(user_read(pg, c, name, &u));
        u.hash[0] = '\0';
        if (strcmp(u.role, "admin") == 0) {
                /* in the same transaction: two concurrent deletions (or a
                 * deletion and a revocation) cannot both see another admin */
                uint64_t admins = 0;
                KW_TRY(admin_credentials(pg, c, &admins));
                if (admins <= 1) {
                        kw_err_set_detail("%s is the last admin (no other admin user or active "
                                          "admin token): create another admin first", name);
                        KW_BAIL(KW_ERR_BAD_STATE);
                }
        }
        struct pg_params p = { 0 };
        pg_param_text(&p, name);
        KW_TRY(pg_exec(pg, c, "DELETE FROM users WHERE name = $1", &p, "user delete", NULL));
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "user.delete", NULL, name)));
        KW_TRY(pg_notify(pg, c, gen, KW_PG_CHANGE_USER, name));
        if (ret != NULL)
                *ret = u;
        return KW_OK;
}

kw_result kw_pg_user_delete(struct kw_pgstore *pg, const char *name,
                            const struct kw_audit_entry *audit, struct kw_user_row *ret)
{
        KW_ENSURE(pg != NULL && name != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_name_valid(name), KW_ERR_BAD_NAME);
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, user_delete_tx(pg, c, gen, name, audit, ret));
}

static kw_result user_password_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                  const char *name, const char *hash,
                                  const struct kw_audit_entry *audit, struct kw_user_row *ret)
{
        struct kw_user_row u;
        KW_TRY(user_read(pg, c, name, &u));
        u.failed = 0;
        u.locked_until = 0;
        snprintf(u.hash, sizeof u.hash, "%s", hash);
        kw_result r = user_write(pg, c, &u, 0);
        struct kw_audit_entry def;
        if (kw_ok(r))
                r = pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "user.password", NULL, name));
        if (kw_ok(r))
                r = pg_notify(pg, c, gen, KW_PG_CHANGE_USER, name);
        u.hash[0] = '\0';   /* as keystore_users.c: the row without its hash */
        if (kw_ok(r) && ret != NULL)
                *ret = u;
        kw_wipe(&u, sizeof u);
        return r;
}

kw_result kw_pg_user_set_password(struct kw_pgstore *pg, const char *name, const char *hash,
                                  const struct kw_audit_entry *audit, struct kw_user_row *ret)
{
        KW_ENSURE(pg != NULL && name != NULL && hash != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_name_valid(name), KW_ERR_BAD_NAME);
        KW_ENSURE(kw_keyrow_user_hash_ok(hash), KW_ERR_BAD_FIELD);
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, user_password_tx(pg, c, gen, name, hash, audit, ret));
}

static kw_result user_login_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                               const char *name, int ok, int64_t now,
                               const struct kw_lockout_policy *pol,
                               const struct kw_audit_entry *audit, struct kw_user_row *ret)
{
        struct kw_user_row u;
        KW_TRY(user_read(pg, c, name, &u));
        kw_keyrow_user_login_apply(&u, ok, now, pol);
        kw_result r = user_write(pg, c, &u, 0);
        struct kw_audit_entry def;
        if (kw_ok(r))
                r = pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "session.login", NULL, name));
        if (kw_ok(r))
                r = pg_notify(pg, c, gen, KW_PG_CHANGE_USER, name);
        u.hash[0] = '\0';
        if (kw_ok(r))
                *ret = u;
        kw_wipe(&u, sizeof u);
        return r;
}

kw_result kw_pg_user_login(struct kw_pgstore *pg, const char *name, int ok, int64_t now,
                           const struct kw_lockout_policy *pol, const struct kw_audit_entry *audit,
                           struct kw_user_row *ret)
{
        KW_ENSURE(pg != NULL && name != NULL && pol != NULL && ret != NULL, KW_ERR_INPUT);
        KW_ENSURE(kw_name_valid(name), KW_ERR_BAD_NAME);
        KW_TRY(pg_check_audit_entry(audit));
        return PG_RUN_TX(pg, c, gen, user_login_tx(pg, c, gen, name, ok, now, pol, audit, ret));
}

/* -------------------------------------------------------------- xks stores */

static int text_fits(const char *s, size_t cap) { return strnlen(s, cap) < cap; }

static kw_result store_row_from_res(struct kw_pgstore *pg, const PGresult *res, int i,
                                    struct kw_xks_store_row *ret)
{
        struct kw_xks_store_row s;
        memset(&s, 0, sizeof s);
        KW_TRY(pg_col_text(res, i, 0, s.name, sizeof s.name));
        KW_TRY(pg_res_verify(pg, res, i, "xks_stores", s.name, STORE_NCOLS, STORE_NCOLS));
        KW_TRY(pg_col_text(res, i, 1, s.uri_prefix, sizeof s.uri_prefix));
        KW_TRY(pg_col_text(res, i, 2, s.region, sizeof s.region));
        KW_TRY(pg_col_i64(res, i, 3, &s.created));
        *ret = s;
        return KW_OK;
}

/* Wipes the secret inside a result before it is freed. */
static void wipe_col(const PGresult *res, int i, int col)
{
        if (!PQgetisnull(res, i, col))
                kw_wipe(PQgetvalue(res, i, col), (size_t)PQgetlength(res, i, col));
}

static kw_result cred_row_from_res(struct kw_pgstore *pg, const PGresult *res, int i,
                                   struct kw_xks_cred_row *ret)
{
        struct kw_xks_cred_row c;
        memset(&c, 0, sizeof c);
        kw_result r = pg_col_text(res, i, 0, c.akid, sizeof c.akid);
        if (kw_ok(r))
                r = pg_res_verify(pg, res, i, "xks_credentials", c.akid, CRED_NCOLS, CRED_NCOLS);
        if (kw_ok(r))
                r = pg_col_text(res, i, 1, c.store, sizeof c.store);
        const uint8_t *sec = NULL;
        size_t sn = 0;
        if (kw_ok(r))
                r = pg_col_bytes(res, i, 2, &sec, &sn);
        if (kw_ok(r) && (sec == NULL || sn == 0 || sn > sizeof c.secret))
                r = KW_FAIL(KW_ERR_DB_CORRUPT, "XKS credential %s: bad stored secret", c.akid);
        if (kw_ok(r)) {
                memcpy(c.secret, sec, sn);
                c.secret_len = sn;
                c.is_sealed = 1;
                r = pg_col_i64(res, i, 3, &c.created);
        }
        if (kw_ok(r))
                *ret = c;
        kw_wipe(&c, sizeof c);
        return r;
}

static kw_result cred_write(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_xks_cred_row *cr,
                            int64_t created, int64_t seq, int insert)
{
        struct pg_field f[CRED_NCOLS] = { PG_FSTR(cr->akid), PG_FSTR(cr->store),
                                          PG_FBYTES(cr->secret, cr->secret_len), PG_FINT(created),
                                          PG_FINT(seq) };
        uint8_t mac[PG_MAC_LEN];
        KW_TRY(pg_row_mac(pg, "xks_credentials", f, CRED_NCOLS, mac));
        struct pg_params p = { 0 };
        pg_param_text(&p, cr->akid);
        pg_param_text(&p, cr->store);
        pg_param_bytes(&p, cr->secret, cr->secret_len);
        pg_param_i64(&p, created);
        pg_param_i64(&p, seq);
        pg_param_bytes(&p, mac, sizeof mac);
        if (insert)
                return pg_exec(pg, c,
                               "INSERT INTO xks_credentials (" CRED_COLS ") VALUES ($1, $2, $3, $4, $5, $6)",
                               &p, "xks credential insert", NULL);
        return pg_exec(pg, c,
                       "UPDATE xks_credentials SET store = $2, secret = $3, created = $4, seq = $5,"
                       " mac = $6 WHERE akid = $1",
                       &p, "xks credential update", NULL);
}

static kw_result check_cred(const struct kw_xks_cred_row *c)
{
        KW_ENSURE(text_fits(c->store, sizeof c->store) && text_fits(c->akid, sizeof c->akid) &&
                          c->akid[0] != '\0',
                  KW_ERR_INPUT);
        if (!c->is_sealed || c->secret_len == 0 || c->secret_len > sizeof c->secret) {
                kw_err_set_detail("an XKS secret is stored sealed only");
                KW_BAIL(KW_ERR_INPUT);
        }
        return KW_OK;
}

static kw_result cred_insert(struct kw_pgstore *pg, struct pg_conn *c, const struct kw_xks_cred_row *cr)
{
        KW_TRY(check_cred(cr));
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, "SELECT coalesce(max(seq), 0) + 1 FROM xks_credentials", NULL,
                       "xks credential seq", &res));
        int64_t seq = 0;
        KW_ENSURE(PQntuples(res) == 1, KW_ERR_STORAGE);
        KW_TRY(pg_col_i64(res, 0, 0, &seq));
        return cred_write(pg, c, cr, cr->created != 0 ? cr->created : pg_now_s(), seq, 1);
}

static kw_result store_insert_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                 const struct kw_xks_store_row *s, const struct kw_xks_cred_row *cr,
                                 const struct kw_audit_entry *audit)
{
        int64_t created = s->created != 0 ? s->created : pg_now_s();
        struct pg_field f[STORE_NCOLS] = { PG_FSTR(s->name), PG_FSTR(s->uri_prefix),
                                           PG_FSTR(s->region), PG_FINT(created) };
        uint8_t mac[PG_MAC_LEN];
        KW_TRY(pg_row_mac(pg, "xks_stores", f, STORE_NCOLS, mac));
        struct pg_params p = { 0 };
        pg_param_text(&p, s->name);
        pg_param_text(&p, s->uri_prefix);
        pg_param_text(&p, s->region);
        pg_param_i64(&p, created);
        pg_param_bytes(&p, mac, sizeof mac);
        KW_TRY(pg_exec(pg, c, "INSERT INTO xks_stores (" STORE_COLS ") VALUES ($1, $2, $3, $4, $5)",
                       &p, "xks store insert", NULL));
        KW_TRY(cred_insert(pg, c, cr));
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "xks.store.create", NULL, s->name)));
        return pg_notify(pg, c, gen, KW_PG_CHANGE_XKS, s->name);
}

kw_result kw_pg_xks_store_insert(struct kw_pgstore *pg, const struct kw_xks_store_row *store,
                                 const struct kw_xks_cred_row *cred,
                                 const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && store != NULL && cred != NULL, KW_ERR_INPUT);
        KW_ENSURE(text_fits(store->name, sizeof store->name) &&
                          text_fits(store->uri_prefix, sizeof store->uri_prefix) &&
                          text_fits(store->region, sizeof store->region) &&
                          text_fits(cred->store, sizeof cred->store),
                  KW_ERR_INPUT);
        KW_ENSURE(strcmp(store->name, cred->store) == 0, KW_ERR_INPUT);
        KW_ENSURE(kw_name_valid(store->name), KW_ERR_BAD_NAME);
        KW_TRY(check_cred(cred));
        KW_TRY(pg_check_audit_entry(audit));
        kw_result r = PG_RUN_TX(pg, c, gen, store_insert_tx(pg, c, gen, store, cred, audit));
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("an XKS key store with this name or URI prefix exists");
        return r;
}

static kw_result store_delete_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                 const char *name, const struct kw_audit_entry *audit)
{
        struct pg_params p = { 0 };
        pg_param_text(&p, name);
        KW_TRY(pg_exec(pg, c, "DELETE FROM xks_credentials WHERE store = $1", &p,
                       "xks credential delete", NULL));
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, "DELETE FROM xks_stores WHERE name = $1", &p, "xks store delete", &res));
        if (pg_affected(res) != 1) {
                kw_err_set_detail("no XKS key store named %s (created through the API)", name);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c, pg_audit_or_default(audit, &def, "xks.store.delete", NULL, name)));
        return pg_notify(pg, c, gen, KW_PG_CHANGE_XKS, name);
}

kw_result kw_pg_xks_store_delete(struct kw_pgstore *pg, const char *name,
                                 const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && name != NULL, KW_ERR_INPUT);
        KW_TRY(pg_check_audit_entry(audit));
        if (!kw_name_valid(name) || strlen(name) > 32) {
                kw_err_set_detail("no XKS key store named %s (created through the API)", name);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return PG_RUN_TX(pg, c, gen, store_delete_tx(pg, c, gen, name, audit));
}

static kw_result cred_add_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                             const struct kw_xks_cred_row *cr, unsigned keep,
                             const struct kw_audit_entry *audit)
{
        {
                struct pg_params p = { 0 };
                pg_param_text(&p, cr->store);
                PGresult *res _cleanup_pgresult_ = NULL;
                KW_TRY(pg_exec(pg, c, "SELECT " STORE_COLS " FROM xks_stores WHERE name = $1", &p,
                               "xks store lookup", &res));
                if (PQntuples(res) != 1) {
                        kw_err_set_detail("no XKS key store named %s (created through the API)",
                                          cr->store);
                        KW_BAIL(KW_ERR_NOT_FOUND);
                }
                struct kw_xks_store_row s;
                KW_TRY(store_row_from_res(pg, res, 0, &s));
        }
        KW_TRY(cred_insert(pg, c, cr));
        struct pg_params p = { 0 };
        pg_param_text(&p, cr->store);
        pg_param_i64(&p, keep);
        KW_TRY(pg_exec(pg, c,
                       "DELETE FROM xks_credentials WHERE store = $1 AND akid NOT IN"
                       " (SELECT akid FROM xks_credentials WHERE store = $1"
                       "  ORDER BY seq DESC LIMIT $2)",
                       &p, "xks credential prune", NULL));
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c,
                           pg_audit_or_default(audit, &def, "xks.credential.create", NULL, cr->store)));
        return pg_notify(pg, c, gen, KW_PG_CHANGE_XKS, cr->store);
}

kw_result kw_pg_xks_cred_add(struct kw_pgstore *pg, const struct kw_xks_cred_row *cred, unsigned keep,
                             const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && cred != NULL && keep >= 1, KW_ERR_INPUT);
        KW_TRY(pg_check_audit_entry(audit));
        KW_TRY(check_cred(cred));
        if (!kw_name_valid(cred->store)) {
                kw_err_set_detail("no XKS key store named %s (created through the API)", cred->store);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return PG_RUN_TX(pg, c, gen, cred_add_tx(pg, c, gen, cred, keep, audit));
}

static kw_result cred_delete_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                const char *store, const char *akid,
                                const struct kw_audit_entry *audit)
{
        struct pg_params p = { 0 };
        pg_param_text(&p, store);
        pg_param_text(&p, akid);
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, "DELETE FROM xks_credentials WHERE store = $1 AND akid = $2", &p,
                       "xks credential delete", &res));
        if (pg_affected(res) != 1) {
                kw_err_set_detail("store %s has no credential %s", store, akid);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        struct kw_audit_entry def;
        KW_TRY(pg_tx_audit(pg, c,
                           pg_audit_or_default(audit, &def, "xks.credential.delete", NULL, store)));
        return pg_notify(pg, c, gen, KW_PG_CHANGE_XKS, store);
}

kw_result kw_pg_xks_cred_delete(struct kw_pgstore *pg, const char *store, const char *akid,
                                const struct kw_audit_entry *audit)
{
        KW_ENSURE(pg != NULL && store != NULL && akid != NULL, KW_ERR_INPUT);
        KW_TRY(pg_check_audit_entry(audit));
        if (!kw_name_valid(store) || !kw_utf8_printable(akid)) {
                kw_err_set_detail("store %s has no credential", store);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return PG_RUN_TX(pg, c, gen, cred_delete_tx(pg, c, gen, store, akid, audit));
}

static kw_result cred_reseal_tx(struct kw_pgstore *pg, struct pg_conn *c, uint64_t gen,
                                const char *store, const char *akid, const uint8_t *sealed,
                                size_t sealed_len)
{
        struct pg_params p = { 0 };
        pg_param_text(&p, store);
        pg_param_text(&p, akid);
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c, "SELECT " CRED_COLS " FROM xks_credentials WHERE store = $1 AND akid = $2",
                       &p, "xks credential lookup", &res));
        if (PQntuples(res) != 1) {
                kw_err_set_detail("no XKS credential %s in store %s", akid, store);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        struct kw_xks_cred_row cr;
        kw_result r = cred_row_from_res(pg, res, 0, &cr);
        int64_t seq = 0;
        if (kw_ok(r))
                r = pg_col_i64(res, 0, 4, &seq);
        wipe_col(res, 0, 2);
        if (kw_ok(r)) {
                memcpy(cr.secret, sealed, sealed_len);
                cr.secret_len = sealed_len;
                r = cred_write(pg, c, &cr, cr.created, seq, 0);
        }
        kw_wipe(&cr, sizeof cr);
        KW_TRY(r);
        return pg_notify(pg, c, gen, KW_PG_CHANGE_XKS, store);
}

kw_result kw_pg_xks_cred_reseal(struct kw_pgstore *pg, const char *store, const char *akid,
                                const uint8_t *sealed, size_t sealed_len)
{
        KW_ENSURE(pg != NULL && store != NULL && akid != NULL && sealed != NULL && sealed_len != 0 &&
                          sealed_len <= sizeof((struct kw_xks_cred_row *)0)->secret,
                  KW_ERR_INPUT);
        if (!kw_name_valid(store) || !kw_utf8_printable(akid)) {
                kw_err_set_detail("no XKS credential in store %s", store);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return PG_RUN_TX(pg, c, gen, cred_reseal_tx(pg, c, gen, store, akid, sealed, sealed_len));
}

struct xks_snapshot {
        struct kw_xks_store_row *stores;
        size_t ns;
        struct kw_xks_cred_row *creds;
        size_t nc;
};

static void xks_snapshot_free(struct xks_snapshot *x)
{
        free(x->stores);
        if (x->creds != NULL)
                kw_wipe(x->creds, x->nc * sizeof *x->creds);
        free(x->creds);
        memset(x, 0, sizeof *x);
}

static kw_result xks_read(struct kw_pgstore *pg, struct pg_conn *c, struct xks_snapshot *x)
{
        {
                PGresult *res _cleanup_pgresult_ = NULL;
                KW_TRY(pg_exec(pg, c, "SELECT " STORE_COLS " FROM xks_stores ORDER BY name COLLATE \"C\"",
                               NULL, "xks store list", &res));
                int n = PQntuples(res);
                x->stores = calloc(n > 0 ? (size_t)n : 1, sizeof *x->stores);
                KW_ENSURE(x->stores != NULL, KW_ERR_NOMEM);
                for (int i = 0; i < n; i++) {
                        KW_TRY(store_row_from_res(pg, res, i, &x->stores[i]));
                        x->ns++;
                }
        }
        PGresult *res _cleanup_pgresult_ = NULL;
        KW_TRY(pg_exec(pg, c,
                       "SELECT " CRED_COLS " FROM xks_credentials ORDER BY store COLLATE \"C\", seq",
                       NULL, "xks credential list", &res));
        int n = PQntuples(res);
        x->creds = calloc(n > 0 ? (size_t)n : 1, sizeof *x->creds);
        kw_result r = x->creds != NULL ? KW_OK : KW_RESULT(KW_ERR_NOMEM);
        for (int i = 0; kw_ok(r) && i < n; i++) {
                r = cred_row_from_res(pg, res, i, &x->creds[i]);
                if (kw_ok(r))
                        x->nc++;
        }
        for (int i = 0; i < n; i++)
                wipe_col(res, i, 2);
        return r;
}

kw_result kw_pg_xks_list(struct kw_pgstore *pg,
                         int (*store_cb)(const struct kw_xks_store_row *row, void *arg),
                         int (*cred_cb)(const struct kw_xks_cred_row *row, void *arg), void *arg)
{
        KW_ENSURE(pg != NULL, KW_ERR_INPUT);
        struct xks_snapshot x = { 0 };
        kw_result r;
        struct pg_conn *c = pg_acquire(pg, &r);
        if (c == NULL)
                return r;
        r = pg_tx_begin_read(pg, c);
        if (kw_ok(r))
                r = xks_read(pg, c, &x);
        if (kw_ok(r))
                r = pg_tx_commit(pg, c);
        pg_release(pg, c);
        for (size_t i = 0; kw_ok(r) && store_cb != NULL && i < x.ns; i++)
                if (store_cb(&x.stores[i], arg) != 0)
                        break;
        for (size_t i = 0; kw_ok(r) && cred_cb != NULL && i < x.nc; i++) {
                int stop = cred_cb(&x.creds[i], arg);
                kw_wipe(&x.creds[i], sizeof x.creds[i]);
                if (stop)
                        break;
        }
        xks_snapshot_free(&x);
        return r;
}
