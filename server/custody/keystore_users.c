/*
 * keystore_users.c - console users in the key store (contract in
 * keystore.h): their argon2id encoded hashes, failed sign-ins and locks,
 * and the last-admin rule shared with token revocation.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "keyrow.h"
#include "keystore_int.h"

#define USER_COLS "name, role, hash, created, last_login, failed, locked_until"

int64_t kw_lockout_seconds(uint32_t failures, const struct kw_lockout_policy *pol)
{
        if (pol->max_failures == 0 || failures < pol->max_failures)
                return 0;
        uint32_t doublings = failures - pol->max_failures;
        int64_t s = pol->base_seconds;
        for (uint32_t i = 0; i < doublings && s < pol->max_seconds; i++)
                s *= 2;      /* stops at the cap: no overflow */
        return s < pol->max_seconds ? s : pol->max_seconds;
}

kw_result ks_admin_credentials(struct kw_keystore *ks, uint64_t *ret)
{
        return ks_count(ks,
                        "SELECT (SELECT count(*) FROM tokens WHERE revoked = 0 AND role = 'admin')"
                        " + (SELECT count(*) FROM users WHERE role = 'admin')",
                        ret);
}

/* with_hash: the hash column too (get), else "" (lists). */
static kw_result user_from_stmt(sqlite3_stmt *st, int with_hash, struct kw_user_row *ret)
{
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        KW_TRY(ks_col_text(st, 0, u.name, sizeof u.name));
        KW_TRY(ks_col_text(st, 1, u.role, sizeof u.role));
        if (with_hash)
                KW_TRY(ks_col_text(st, 2, u.hash, sizeof u.hash));
        u.created = sqlite3_column_int64(st, 3);
        u.last_login = sqlite3_column_int64(st, 4);
        int64_t failed = sqlite3_column_int64(st, 5);
        u.failed = failed < 0 ? 0 : failed > UINT32_MAX ? UINT32_MAX : (uint32_t)failed;
        u.locked_until = sqlite3_column_int64(st, 6);
        *ret = u;
        kw_wipe(&u, sizeof u);
        return KW_OK;
}

/* The row of name inside the open transaction (or under the lock). */
static kw_result user_read(struct kw_keystore *ks, const char *name, int with_hash,
                           struct kw_user_row *ret)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT " USER_COLS " FROM users WHERE name = ?1", &st));
        KW_TRY(ks_bind_text(ks, st, 1, name));
        int row = 0;
        KW_TRY(ks_step_row(ks, st, "user lookup", &row));
        if (!row) {
                kw_err_set_detail("no user named %s", name);
                KW_BAIL(KW_ERR_NOT_FOUND);
        }
        return user_from_stmt(st, with_hash, ret);
}

static kw_result user_insert_tx(struct kw_keystore *ks, struct ks_tx *tx,
                                const struct kw_user_row *row, const struct kw_audit_entry *audit)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "INSERT INTO users (name, role, hash, created, last_login, failed,"
                          " locked_until) VALUES (?1, ?2, ?3, ?4, 0, 0, 0)",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, row->name));
        KW_TRY(ks_bind_text(ks, st, 2, row->role));
        KW_TRY(ks_bind_text(ks, st, 3, row->hash));
        KW_TRY(ks_bind_i64(ks, st, 4, row->created != 0 ? row->created : ks_now_s()));
        KW_TRY(ks_step_done(ks, st, "user insert"));
        struct kw_audit_entry def;
        return ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "user.create", NULL, row->name));
}

kw_result kw_keystore_user_insert(struct kw_keystore *ks, const struct kw_user_row *row,
                                  const struct kw_audit_entry *audit)
{
        KS_PG(ks, kw_pg_user_insert(ks->pg, row, audit));
        KW_ENSURE(ks != NULL && row != NULL, KW_ERR_INPUT);
        KW_ENSURE(ks_valid_name(row->name), KW_ERR_BAD_NAME);
        KW_ENSURE(kw_keyrow_valid_role(row->role), KW_ERR_BAD_FIELD);
        KW_ENSURE(kw_keyrow_user_hash_ok(row->hash), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        kw_result r = KS_RUN_TX(ks, tx, user_insert_tx(ks, tx, row, audit));
        if (r.code == KW_ERR_EXISTS)
                kw_err_set_detail("a user named %s already exists", row->name);
        return r;
}

kw_result kw_keystore_user_get(struct kw_keystore *ks, const char *name, struct kw_user_row *ret)
{
        KS_PG(ks, kw_pg_user_get(ks->pg, name, ret));
        KW_ENSURE(ks != NULL && name != NULL && ret != NULL, KW_ERR_INPUT);
        KW_ENSURE(ks_valid_name(name), KW_ERR_BAD_NAME);
        ks_lock(ks);
        kw_result r = user_read(ks, name, 1, ret);
        ks_unlock(ks);
        return r;
}

struct user_vec {
        struct kw_user_row *rows;
        size_t n, cap;
};

static kw_result user_list_read(struct kw_keystore *ks, struct user_vec *v)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "SELECT " USER_COLS " FROM users ORDER BY name", &st));
        for (;;) {
                int row = 0;
                KW_TRY(ks_step_row(ks, st, "user list", &row));
                if (!row)
                        break;
                KW_TRY(ks_grow((void **)&v->rows, &v->cap, v->n, sizeof *v->rows));
                KW_TRY(user_from_stmt(st, 0, &v->rows[v->n]));
                v->n++;
        }
        return KW_OK;
}

kw_result kw_keystore_user_list(struct kw_keystore *ks,
                                int (*cb)(const struct kw_user_row *row, void *arg), void *arg)
{
        KS_PG(ks, kw_pg_user_list(ks->pg, cb, arg));
        KW_ENSURE(ks != NULL && cb != NULL, KW_ERR_INPUT);
        struct user_vec v = { 0 };
        ks_lock(ks);
        kw_result r = user_list_read(ks, &v);
        ks_unlock(ks);
        for (size_t i = 0; kw_ok(r) && i < v.n; i++)
                if (cb(&v.rows[i], arg) != 0)
                        break;
        free(v.rows);
        return r;
}

static kw_result user_delete_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *name,
                                const struct kw_audit_entry *audit, struct kw_user_row *ret)
{
        struct kw_user_row u;
        KW_TRY(user_read(ks, name, 0, &u));
        if (strcmp(u.role, "admin") == 0) {
                /* in the same transaction: two concurrent deletions (or a
                 * deletion and a revocation) cannot both see another admin */
                uint64_t admins = 0;
                KW_TRY(ks_admin_credentials(ks, &admins));
                if (admins <= 1) {
                        kw_err_set_detail("%s is the last admin (no other admin user or active "
                                          "admin token): create another admin first", name);
                        KW_BAIL(KW_ERR_BAD_STATE);
                }
        }
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks, "DELETE FROM users WHERE name = ?1", &st));
        KW_TRY(ks_bind_text(ks, st, 1, name));
        KW_TRY(ks_step_done(ks, st, "user delete"));
        struct kw_audit_entry def;
        KW_TRY(ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "user.delete", NULL, name)));
        if (ret != NULL)
                *ret = u;
        return KW_OK;
}

kw_result kw_keystore_user_delete(struct kw_keystore *ks, const char *name,
                                  const struct kw_audit_entry *audit, struct kw_user_row *ret)
{
        KS_PG(ks, kw_pg_user_delete(ks->pg, name, audit, ret));
        KW_ENSURE(ks != NULL && name != NULL, KW_ERR_INPUT);
        KW_ENSURE(ks_valid_name(name), KW_ERR_BAD_NAME);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, user_delete_tx(ks, tx, name, audit, ret));
}

/* Writes the mutable columns of u (hash only when hash != NULL). */
static kw_result user_write(struct kw_keystore *ks, const struct kw_user_row *u, const char *hash)
{
        sqlite3_stmt *st _cleanup_finalize_ = NULL;
        KW_TRY(ks_prepare(ks,
                          "UPDATE users SET last_login = ?2, failed = ?3, locked_until = ?4,"
                          " hash = coalesce(?5, hash) WHERE name = ?1",
                          &st));
        KW_TRY(ks_bind_text(ks, st, 1, u->name));
        KW_TRY(ks_bind_i64(ks, st, 2, u->last_login));
        KW_TRY(ks_bind_i64(ks, st, 3, u->failed));
        KW_TRY(ks_bind_i64(ks, st, 4, u->locked_until));
        KW_TRY(ks_bind_text(ks, st, 5, hash));
        return ks_step_done(ks, st, "user update");
}

static kw_result user_password_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *name,
                                  const char *hash, const struct kw_audit_entry *audit,
                                  struct kw_user_row *ret)
{
        struct kw_user_row u;
        KW_TRY(user_read(ks, name, 0, &u));
        u.failed = 0;
        u.locked_until = 0;
        KW_TRY(user_write(ks, &u, hash));
        struct kw_audit_entry def;
        KW_TRY(ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "user.password", NULL, name)));
        if (ret != NULL)
                *ret = u;
        return KW_OK;
}

kw_result kw_keystore_user_set_password(struct kw_keystore *ks, const char *name, const char *hash,
                                        const struct kw_audit_entry *audit,
                                        struct kw_user_row *ret)
{
        KS_PG(ks, kw_pg_user_set_password(ks->pg, name, hash, audit, ret));
        KW_ENSURE(ks != NULL && name != NULL && hash != NULL, KW_ERR_INPUT);
        KW_ENSURE(ks_valid_name(name), KW_ERR_BAD_NAME);
        KW_ENSURE(kw_keyrow_user_hash_ok(hash), KW_ERR_BAD_FIELD);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, user_password_tx(ks, tx, name, hash, audit, ret));
}

static kw_result user_login_tx(struct kw_keystore *ks, struct ks_tx *tx, const char *name, int ok,
                               int64_t now, const struct kw_lockout_policy *pol,
                               const struct kw_audit_entry *audit, struct kw_user_row *ret)
{
        struct kw_user_row u;
        KW_TRY(user_read(ks, name, 0, &u));
        kw_keyrow_user_login_apply(&u, ok, now, pol);
        KW_TRY(user_write(ks, &u, NULL));
        struct kw_audit_entry def;
        KW_TRY(ks_tx_audit(ks, tx, ks_audit_or_default(audit, &def, "session.login", NULL, name)));
        *ret = u;
        return KW_OK;
}

kw_result kw_keystore_user_login(struct kw_keystore *ks, const char *name, int ok, int64_t now,
                                 const struct kw_lockout_policy *pol,
                                 const struct kw_audit_entry *audit, struct kw_user_row *ret)
{
        KS_PG(ks, kw_pg_user_login(ks->pg, name, ok, now, pol, audit, ret));
        KW_ENSURE(ks != NULL && name != NULL && pol != NULL && ret != NULL, KW_ERR_INPUT);
        KW_ENSURE(ks_valid_name(name), KW_ERR_BAD_NAME);
        KW_TRY(ks_check_audit_entry(audit));
        return KS_RUN_TX(ks, tx, user_login_tx(ks, tx, name, ok, now, pol, audit, ret));
}
