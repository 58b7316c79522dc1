/*
 * custody_fleet.c - fleet mode ([db] engine = "postgresql"; docs/fleet.md):
 * opening the shared key store with its row-MAC key, changes made on other
 * nodes reaching this node's caches, this node's heartbeat and state, and
 * the node list (KW_OP_NODES, XKS health).
 *
 * The row-MAC key (pgstore.h) is 32 random bytes sealed by the HSM master
 * key under the AAD "keyward.fleet.rowmac.v1" and kept sealed in the
 * database: the first node to open an empty fleet database proposes one,
 * every node unseals the one stored.  A node whose HSM master key is not
 * the fleet's cannot unseal it and does not start.
 *
 * Changes: pgstore's listener reports each change any node commits.  A
 * key's change bumps c->gen (so that a load racing with it is not cached:
 * custody_keys.c key_load) and drops the key's cache entry; an XKS change
 * reloads the store table; a user's change ends the sessions of a user who
 * no longer exists; "anything may have changed" (a reconnect, or the change
 * counter moved without a notification) does all of that for everything,
 * and a counter that went back (the database restored from an older
 * snapshot) is logged as an error first.  Every cache_revalidate_seconds
 * the heartbeat thread reads each cached key's row again and drops the
 * entries that differ or fail their MAC: the bounded lifetime of a cached
 * entry, whatever notifications were lost.
 *
 * The database unreachable: the listener's connection drops, or a
 * heartbeat fails.  The node is DEGRADED: cached keys keep serving;
 * whatever needs the database fails with KW_ERR_DB_UNAVAILABLE (admin
 * changes are refused: 503).  Past outage_grace_seconds the key cache is
 * dropped (no key is served on knowledge older than that) and the node is
 * UNAVAILABLE.  When the database returns the listener reconnects, drops
 * what is cached (changes may have been missed) and the node is ACTIVE.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../common/log.h"
#include "crypto.h"
#include "custody_int.h"
#include "pgstore.h"

#define ROWMAC_AAD "keyward.fleet.rowmac.v1"
#define ROWMAC_KEY_LEN 32
#define FLEET_DETAIL_MAX 161

struct fleet {
        struct custody *c;
        struct kw_pgstore *pg;
        char node[65];
        int64_t started_ms;               /* unix ms                              */
        pthread_mutex_t mu;               /* what follows                         */
        pthread_cond_t cv;
        int stop;
        int listener_up, heartbeat_ok;
        int64_t down_since_ms;            /* monotonic; 0 while the database is up */
        int cache_dropped;                /* the outage outlived its grace         */
        char why[FLEET_DETAIL_MAX];       /* the last database error               */
        uint64_t changes, resyncs;        /* notifications taken, "everything" ones */
        /* admin tokens this node found active in the database lately: while
         * the database is away (and within the outage grace) they still
         * authenticate, for reads (every change needs the database anyway) */
        struct seen_token {
                uint8_t hash[32];
                struct kw_token_row row;
                int64_t at_ms;            /* monotonic; 0: a free slot            */
        } tokens[64];
        /* the node list as the last heartbeat read it: XKS health answers
         * from it (KMS gives a call 250 ms: no database round trip there) */
        struct custody_node known[64];
        size_t nknown;
        pthread_t th;
        int th_started;
};

static void tokens_forget_locked(struct fleet *f, const char *id);
static void refresh_known(struct fleet *f);

int custody_fleet_mode(const struct kw_config *cfg)
{
        return strcmp(cfg->db.engine, "postgresql") == 0;
}

static int64_t wall_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t mono_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------- opening */

/* The fleet's row-MAC key: the stored one unsealed, or (an empty fleet
 * database) a new one proposed first. */
static kw_result rowmac_key(struct custody *c, struct kw_pgstore *pg)
{
        const struct kw_config *cfg = c->cfg;
        struct kw_buf stored;
        kw_buf_init(&stored, 4096);
        kw_result r = kw_pg_mac_key_blob(pg, NULL, 0, &stored);
        if (kw_ok(r) && stored.len == 0) {
                uint8_t k[ROWMAC_KEY_LEN];
                struct kw_buf proposed;
                kw_buf_init(&proposed, 4096);
                r = kw_hsm_random(c->hsm, k, sizeof k);
                if (kw_ok(r))
                        r = kw_hsm_seal(c->hsm, (const uint8_t *)ROWMAC_AAD, strlen(ROWMAC_AAD), k,
                                        sizeof k, &proposed);
                kw_wipe(k, sizeof k);
                if (kw_ok(r))
                        r = kw_pg_mac_key_blob(pg, proposed.p, proposed.len, &stored);
                kw_buf_free(&proposed);
        }
        struct kw_secret key = { 0 };
        if (kw_ok(r))
                r = kw_hsm_unseal(c->hsm, (const uint8_t *)ROWMAC_AAD, strlen(ROWMAC_AAD), stored.p,
                                  stored.len, &key);
        kw_buf_free(&stored);
        if (r.code == KW_ERR_HSM_UNWRAP || r.code == KW_ERR_DECRYPT)
                kw_err_set_detail("the fleet database's row-MAC key does not unseal under master key "
                                  "'%s' of token '%s': every node of a fleet must use the fleet's "
                                  "HSM master key (the same HSM partition or cluster)",
                                  cfg->hsm.master_key_label, cfg->hsm.token_label);
        if (!kw_ok(r))
                return r;
        if (key.len != ROWMAC_KEY_LEN) {
                kw_secret_free(&key);
                kw_err_set_detail("the fleet database's row-MAC key has %zu bytes, not %d",
                                  key.len, ROWMAC_KEY_LEN);
                KW_BAIL(KW_ERR_DB_CORRUPT);
        }
        kw_pg_set_mac_key(pg, key.p);
        kw_secret_free(&key);
        return KW_OK;
}

kw_result custody_fleet_open(struct custody *c, const struct kw_hsm_config *hc_in,
                             int *ret_master_created, int *ret_db_created, int *ret_stage)
{
        const struct kw_config *cfg = c->cfg;
        char node[65];
        kw_config_node_name(cfg, node);
        struct kw_pg_options o = {
                .conninfo = cfg->db.conninfo,
                .password_file = cfg->db.password_file[0] != '\0' ? cfg->db.password_file : NULL,
                .node_id = node,
                .pool_size = (unsigned)cfg->db.pool_size,
                .connect_timeout_s = (unsigned)cfg->db.connect_timeout_seconds,
                .statement_timeout_ms = (unsigned)cfg->db.statement_timeout_ms,
        };
        *ret_stage = 5;   /* the database */
        KW_TRY(kw_keystore_open_pg(&o, &c->ks));
        struct kw_pgstore *pg = kw_keystore_pg(c->ks);
        /* a master key is made only for a fleet database that has no row-MAC
         * key yet: one sealed under some master key says the fleet has one */
        struct kw_buf stored;
        kw_buf_init(&stored, 4096);
        kw_result r = kw_pg_mac_key_blob(pg, NULL, 0, &stored);
        int fresh = kw_ok(r) && stored.len == 0;
        kw_buf_free(&stored);
        KW_TRY(r);
        struct kw_hsm_config hc = *hc_in;
        hc.create_master_key = hc.create_master_key && fresh;
        *ret_stage = 4;   /* the HSM */
        int created = 0;
        r = kw_hsm_open(&hc, &c->hsm, &created);
        if (r.code == KW_ERR_HSM_NO_MASTER_KEY && !fresh)
                kw_err_set_detail("master key '%s' is missing from token '%s', and the fleet "
                                  "database already holds keys sealed under the fleet's master key: "
                                  "this node must reach the same HSM partition or cluster",
                                  cfg->hsm.master_key_label, cfg->hsm.token_label);
        KW_TRY(r);
        if (created)
                kw_log(KW_LOG_INFO, "master_key_created", "label", cfg->hsm.master_key_label,
                       "token", cfg->hsm.token_label, KW_END);
        *ret_stage = 5;
        KW_TRY(rowmac_key(c, pg));
        *ret_master_created = created;
        *ret_db_created = fresh;
        return KW_OK;
}

/* ---------------------------------------------------------------- state */

/* Under f->mu. */
static const char *state_locked(const struct fleet *f, char why[FLEET_DETAIL_MAX])
{
        if (f->down_since_ms == 0) {
                why[0] = '\0';
                return "ACTIVE";
        }
        int64_t s = (mono_ms() - f->down_since_ms) / 1000;
        if (f->cache_dropped) {
                snprintf(why, FLEET_DETAIL_MAX, "the database is unreachable since %llds, past the "
                         "outage grace: nothing is served: %.56s", (long long)s, f->why);
                return "UNAVAILABLE";
        }
        snprintf(why, FLEET_DETAIL_MAX, "the database is unreachable since %llds: cached keys "
                 "only, changes refused: %.56s", (long long)s, f->why);
        return "DEGRADED";
}

const char *custody_fleet_state(struct custody *c, char why[FLEET_DETAIL_MAX])
{
        struct fleet *f = c->fleet;
        if (f == NULL) {
                why[0] = '\0';
                return "ACTIVE";
        }
        pthread_mutex_lock(&f->mu);
        const char *s = state_locked(f, why);
        pthread_mutex_unlock(&f->mu);
        return s;
}

/* Under f->mu: the database's reachability as the listener and the
 * heartbeat see it; logs the transitions. */
static void note_db_locked(struct fleet *f, const char *why)
{
        int down = !f->listener_up || !f->heartbeat_ok;
        if (down && f->down_since_ms == 0) {
                f->down_since_ms = mono_ms();
                snprintf(f->why, sizeof f->why, "%s", why ? why : "");
                kw_log(KW_LOG_ERROR, "fleet_db_unavailable", "node", f->node, "detail", f->why,
                       "outage_grace_seconds", "see [db]", KW_END);
        } else if (down && why != NULL && why[0] != '\0') {
                snprintf(f->why, sizeof f->why, "%s", why);
        } else if (!down && f->down_since_ms != 0) {
                char s[24];
                snprintf(s, sizeof s, "%lld", (long long)(mono_ms() - f->down_since_ms));
                f->down_since_ms = 0;
                f->cache_dropped = 0;
                f->why[0] = '\0';
                kw_log(KW_LOG_INFO, "fleet_db_available", "node", f->node, "down_ms", s, KW_END);
        }
}

/* Everything cached from the database dropped. */
static void drop_all(struct custody *c)
{
        __atomic_add_fetch(&c->gen, 1, __ATOMIC_RELEASE);
        kw_keycache_invalidate_all(c->kc);
}

/* ---------------------------------------------------------------- changes */

static int user_exists(struct custody *c, const char *name)
{
        struct kw_user_row u;
        memset(&u, 0, sizeof u);
        kw_result r = kw_keystore_user_get(c->ks, name, &u);
        kw_wipe(&u, sizeof u);
        return r.code != KW_ERR_NOT_FOUND;   /* in doubt (an error): kept */
}

static void on_change(enum kw_pg_change kind, const char *name, void *arg)
{
        struct fleet *f = arg;
        struct custody *c = f->c;
        pthread_mutex_lock(&f->mu);
        f->changes++;
        if (kind == KW_PG_CHANGE_ALL)
                f->resyncs++;
        pthread_mutex_unlock(&f->mu);
        switch (kind) {
        case KW_PG_CHANGE_KEY:
                __atomic_add_fetch(&c->gen, 1, __ATOMIC_RELEASE);
                kw_keycache_invalidate(c->kc, name);
                break;
        case KW_PG_CHANGE_XKS:
                kw_ignore(custody_xks_reload(c));
                break;
        case KW_PG_CHANGE_USER:
                if (c->sessions != NULL && !user_exists(c, name))
                        kw_sessions_end_account(c->sessions, KW_SESSION_USER, name, NULL);
                break;
        case KW_PG_CHANGE_TOKEN:
                /* tokens are looked up in the database on every use (and a
                 * token's console session checks its token each time): only
                 * the outage's memory of it goes */
                pthread_mutex_lock(&f->mu);
                tokens_forget_locked(f, name);
                pthread_mutex_unlock(&f->mu);
                break;
        case KW_PG_CHANGE_ALL:
        default:
                if (strcmp(name, "rollback") == 0)
                        kw_log(KW_LOG_ERROR, "fleet_db_rolled_back", "node", f->node,
                               "hint", "the fleet's change counter went back: the database was "
                                       "restored from an older snapshot; changes made since it "
                                       "(disabled keys, revoked tokens) may be undone: review the "
                                       "audit", KW_END);
                drop_all(c);
                pthread_mutex_lock(&f->mu);
                tokens_forget_locked(f, NULL);
                pthread_mutex_unlock(&f->mu);
                kw_ignore(custody_xks_reload(c));
                break;
        }
}

static void on_state(int up, const char *why, void *arg)
{
        struct fleet *f = arg;
        pthread_mutex_lock(&f->mu);
        f->listener_up = up;
        if (up)
                f->heartbeat_ok = 1;   /* the next heartbeat says otherwise */
        note_db_locked(f, why);
        pthread_mutex_unlock(&f->mu);
}

/* ---------------------------------------------------------------- tokens */

void custody_fleet_token_seen(struct custody *c, const uint8_t hash[32],
                              const struct kw_token_row *row)
{
        struct fleet *f = c->fleet;
        if (f == NULL)
                return;
        pthread_mutex_lock(&f->mu);
        struct seen_token *slot = &f->tokens[0];
        for (size_t i = 0; i < sizeof f->tokens / sizeof f->tokens[0]; i++) {
                struct seen_token *t = &f->tokens[i];
                if (t->at_ms != 0 && kw_ct_equal(t->hash, hash, 32)) {
                        slot = t;
                        break;
                }
                if (t->at_ms < slot->at_ms)   /* a free slot, else the oldest */
                        slot = t;
        }
        memcpy(slot->hash, hash, 32);
        slot->row = *row;
        slot->at_ms = mono_ms();
        pthread_mutex_unlock(&f->mu);
}

/* Under f->mu: forgets one token (id) or all (NULL). */
static void tokens_forget_locked(struct fleet *f, const char *id)
{
        for (size_t i = 0; i < sizeof f->tokens / sizeof f->tokens[0]; i++)
                if (id == NULL || strcmp(f->tokens[i].row.id, id) == 0)   /* lint: allow (an id, not a secret) */
                        kw_wipe(&f->tokens[i], sizeof f->tokens[i]);
}

void custody_fleet_token_gone(struct custody *c, const uint8_t hash[32])
{
        struct fleet *f = c->fleet;
        if (f == NULL)
                return;
        pthread_mutex_lock(&f->mu);
        for (size_t i = 0; i < sizeof f->tokens / sizeof f->tokens[0]; i++)
                if (f->tokens[i].at_ms != 0 && kw_ct_equal(f->tokens[i].hash, hash, 32))
                        kw_wipe(&f->tokens[i], sizeof f->tokens[i]);
        pthread_mutex_unlock(&f->mu);
}

int custody_fleet_token_cached(struct custody *c, const uint8_t hash[32], struct kw_token_row *ret)
{
        struct fleet *f = c->fleet;
        if (f == NULL)
                return 0;
        int found = 0;
        pthread_mutex_lock(&f->mu);
        int64_t grace_ms = c->cfg->db.outage_grace_seconds * 1000;
        if (f->down_since_ms != 0 && !f->cache_dropped)
                for (size_t i = 0; i < sizeof f->tokens / sizeof f->tokens[0] && !found; i++)
                        if (f->tokens[i].at_ms != 0 && kw_ct_equal(f->tokens[i].hash, hash, 32) &&
                            mono_ms() - f->tokens[i].at_ms < grace_ms) {
                                *ret = f->tokens[i].row;
                                found = 1;
                        }
        pthread_mutex_unlock(&f->mu);
        return found;
}

/* ---------------------------------------------------------------- revalidation */

static int same_text(const char *a, const char *b)
{
        return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Every cached key's row read again: an entry whose row changed (a change
 * whose notification was lost and that the counter did not show), is gone,
 * or fails its MAC (changed in SQL: logged) is dropped.  The bound on how
 * long a node can use what it cached without the database agreeing.  Stops
 * at the first unreachable-database error (the outage rules apply). */
static void revalidate(struct fleet *f)
{
        struct custody *c = f->c;
        static char names[4096][65];   /* this thread only */
        size_t n = kw_keycache_names(c->kc, names, sizeof names / sizeof names[0]);
        for (size_t i = 0; i < n; i++) {
                struct kw_ckey *e = kw_keycache_get(c->kc, names[i]);
                if (e == NULL)
                        continue;
                struct kw_key_row row;
                memset(&row, 0, sizeof row);
                kw_result r = kw_keystore_key_get(c->ks, names[i], &row);
                int stale = !kw_ok(r) ||
                            strcmp(row.id, e->row.id) != 0 || strcmp(row.state, e->row.state) != 0 ||
                            row.ops != e->row.ops || row.current_version != e->row.current_version ||
                            row.delete_at != e->row.delete_at || row.updated != e->row.updated ||
                            !same_text(row.rules_json, e->row.rules_json) ||
                            !same_text(row.tags_json, e->row.tags_json);
                kw_key_row_clear(&row);
                kw_keycache_release(c->kc, e);
                if (r.code == KW_ERR_DB_UNAVAILABLE)
                        return;
                if (r.code == KW_ERR_DB_TAMPERED)
                        kw_log(KW_LOG_ERROR, "db_tampered", "key", names[i], "detail", kw_err_detail(),
                               "hint", "the cached entry is dropped; the key is refused until its "
                                       "row is restored", KW_END);
                if (stale) {
                        __atomic_add_fetch(&c->gen, 1, __ATOMIC_RELEASE);
                        kw_keycache_invalidate(c->kc, names[i]);
                }
        }
}

/* ---------------------------------------------------------------- heartbeat */

static void fill_self(struct fleet *f, struct kw_node_row *me)
{
        const struct kw_config *cfg = f->c->cfg;
        memset(me, 0, sizeof *me);
        snprintf(me->id, sizeof me->id, "%s", f->node);
        snprintf(me->address, sizeof me->address, "%s", cfg->http.listen);
        snprintf(me->version, sizeof me->version, "%s", KEYWARD_VERSION);
        me->schema = kw_keystore_schema_version(f->c->ks);
        pthread_mutex_lock(&f->mu);
        const char *st = state_locked(f, me->detail);
        pthread_mutex_unlock(&f->mu);
        snprintf(me->state, sizeof me->state, "%s", st);
        me->started_ms = f->started_ms;
        me->seen_ms = wall_ms();
}

static void *heartbeat_thread(void *arg)
{
        struct fleet *f = arg;
        const struct kw_config *cfg = f->c->cfg;
        int64_t grace_ms = cfg->db.outage_grace_seconds * 1000;
        int64_t next_check = mono_ms() + cfg->db.cache_revalidate_seconds * 1000;
        pthread_mutex_lock(&f->mu);
        while (!f->stop) {
                pthread_mutex_unlock(&f->mu);
                struct kw_node_row me;
                fill_self(f, &me);
                kw_result r = kw_pg_node_heartbeat(f->pg, &me);
                int drop = 0;
                pthread_mutex_lock(&f->mu);
                f->heartbeat_ok = kw_ok(r) || r.code != KW_ERR_DB_UNAVAILABLE;
                if (!kw_ok(r) && r.code != KW_ERR_DB_UNAVAILABLE)
                        kw_log(KW_LOG_ERROR, "fleet_heartbeat_failed", "error", kw_err_name(r.code),
                               "detail", kw_err_detail(), KW_END);
                note_db_locked(f, kw_ok(r) ? NULL : kw_err_detail());
                if (f->down_since_ms != 0 && !f->cache_dropped &&
                    mono_ms() - f->down_since_ms >= grace_ms) {
                        f->cache_dropped = 1;
                        tokens_forget_locked(f, NULL);
                        drop = 1;
                }
                pthread_mutex_unlock(&f->mu);
                if (kw_ok(r))
                        refresh_known(f);
                if (kw_ok(r) && mono_ms() >= next_check) {
                        revalidate(f);
                        next_check = mono_ms() + cfg->db.cache_revalidate_seconds * 1000;
                }
                if (drop) {
                        drop_all(f->c);
                        kw_log(KW_LOG_ERROR, "fleet_outage_grace_over", "node", f->node,
                               "outage_grace_seconds", "passed",
                               "hint", "the key cache is dropped: key operations fail until the "
                                       "database returns", KW_END);
                }
                pthread_mutex_lock(&f->mu);
                struct timespec until;
                clock_gettime(CLOCK_REALTIME, &until);
                int64_t ns = until.tv_nsec + (int64_t)(cfg->db.heartbeat_ms % 1000) * 1000000;
                until.tv_sec += cfg->db.heartbeat_ms / 1000 + ns / 1000000000;
                until.tv_nsec = ns % 1000000000;
                if (!f->stop)
                        pthread_cond_timedwait(&f->cv, &f->mu, &until);
        }
        pthread_mutex_unlock(&f->mu);
        return NULL;
}

kw_result custody_fleet_start(struct custody *c)
{
        if (!custody_fleet_mode(c->cfg))
                return KW_OK;
        struct fleet *f = calloc(1, sizeof *f);
        KW_ENSURE(f != NULL, KW_ERR_NOMEM);
        f->c = c;
        f->pg = kw_keystore_pg(c->ks);
        kw_config_node_name(c->cfg, f->node);
        f->started_ms = wall_ms();
        f->listener_up = 1;
        f->heartbeat_ok = 1;
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        c->fleet = f;
        struct kw_pg_listener l = { .changed = on_change, .state = on_state, .arg = f,
                                    .poll_ms = (unsigned)c->cfg->db.change_poll_ms };
        KW_TRY(kw_pg_listen_start(f->pg, &l));
        KW_ENSURE(pthread_create(&f->th, NULL, heartbeat_thread, f) == 0, KW_ERR_INTERNAL);
        f->th_started = 1;
        kw_log(KW_LOG_INFO, "fleet_node_started", "node", f->node, "schema",
               kw_keystore_schema_version(c->ks) == KW_PG_SCHEMA_VERSION ? "current" : "other",
               KW_END);
        return KW_OK;
}

void custody_fleet_stop(struct custody *c)
{
        struct fleet *f = c->fleet;
        if (f == NULL || !f->th_started)
                return;
        pthread_mutex_lock(&f->mu);
        f->stop = 1;
        pthread_cond_broadcast(&f->cv);
        pthread_mutex_unlock(&f->mu);
        pthread_join(f->th, NULL);
        f->th_started = 0;
        /* the last heartbeat says the node left, so that health does not
         * wait for the row to age */
        struct kw_node_row me;
        fill_self(f, &me);
        snprintf(me.state, sizeof me.state, "UNAVAILABLE");
        snprintf(me.detail, sizeof me.detail, "stopped");
        kw_ignore(kw_pg_node_heartbeat(f->pg, &me));
}

/* ---------------------------------------------------------------- the node list */

struct nodes_ctx {
        struct fleet *f;
        int64_t stale_ms;
        struct custody_node *out;
        size_t n, max;
        cJSON *arr;
        int brief;                        /* an unauthenticated caller (/metrics):
                                             no addresses, no details             */
};

/* A row's state as readers should take it: one not seen for 3 heartbeats
 * is UNAVAILABLE whatever it last said. */
static const char *row_state(const struct kw_node_row *row, int64_t stale_ms, char *detail,
                             size_t cap)
{
        snprintf(detail, cap, "%s", row->detail);
        if (row->age_ms > stale_ms) {
                snprintf(detail, cap, "no heartbeat for %llds", (long long)(row->age_ms / 1000));
                return "UNAVAILABLE";
        }
        if (strcmp(row->state, "ACTIVE") == 0 || strcmp(row->state, "DEGRADED") == 0)
                return row->state;
        return "UNAVAILABLE";
}

static int nodes_cb(const struct kw_node_row *row, void *arg)
{
        struct nodes_ctx *x = arg;
        char detail[FLEET_DETAIL_MAX];
        int self = strcmp(row->id, x->f->node) == 0;
        const char *st = self ? custody_fleet_state(x->f->c, detail)
                              : row_state(row, x->stale_ms, detail, sizeof detail);
        if (x->out != NULL && x->n < x->max) {
                snprintf(x->out[x->n].id, sizeof x->out[x->n].id, "%s", row->id);
                snprintf(x->out[x->n].state, sizeof x->out[x->n].state, "%s", st);
                x->out[x->n].self = self;
        }
        x->n++;
        if (x->arr != NULL) {
                cJSON *o = cJSON_CreateObject();
                if (o == NULL)
                        return 1;
                cJSON_AddStringToObject(o, "id", row->id);
                if (!x->brief)
                        cJSON_AddStringToObject(o, "address", row->address);
                cJSON_AddStringToObject(o, "version", row->version);
                cJSON_AddNumberToObject(o, "schema", row->schema);
                cJSON_AddStringToObject(o, "state", st);
                if (!x->brief)
                        cJSON_AddStringToObject(o, "detail", detail);
                cJSON_AddNumberToObject(o, "started_ms", (double)row->started_ms);
                cJSON_AddNumberToObject(o, "seen_ms", (double)row->seen_ms);
                cJSON_AddNumberToObject(o, "age_ms", (double)row->age_ms);
                cJSON_AddBoolToObject(o, "self", self);
                cJSON_AddItemToArray(x->arr, o);
        }
        return 0;
}

/* The heartbeat thread's read of the node list (after a heartbeat that
 * reached the database). */
static void refresh_known(struct fleet *f)
{
        struct custody_node got[64] = { 0 };
        struct nodes_ctx x = { .f = f, .stale_ms = 3 * f->c->cfg->db.heartbeat_ms, .out = got,
                               .max = sizeof got / sizeof got[0] };
        kw_result r = kw_pg_node_list(f->pg, nodes_cb, &x, NULL);
        pthread_mutex_lock(&f->mu);
        if (kw_ok(r)) {
                f->nknown = x.n < x.max ? x.n : x.max;
                memcpy(f->known, got, f->nknown * sizeof got[0]);
        }
        pthread_mutex_unlock(&f->mu);
}

size_t custody_fleet_nodes(struct custody *c, struct custody_node *out, size_t max)
{
        struct fleet *f = c->fleet;
        if (f == NULL || max == 0)
                return 0;
        char why[FLEET_DETAIL_MAX];
        pthread_mutex_lock(&f->mu);
        const char *mine = state_locked(f, why);
        size_t n = 0;
        /* the database unreachable: this node alone, as it sees itself (the
         * others' heartbeats are in the database) */
        if (f->down_since_ms == 0)
                for (size_t i = 0; i < f->nknown && n < max; i++)
                        out[n++] = f->known[i];
        int self = 0;
        for (size_t i = 0; i < n; i++)
                if (out[i].self) {
                        snprintf(out[i].state, sizeof out[i].state, "%s", mine);
                        self = 1;
                }
        if (!self && n < max) {
                snprintf(out[n].id, sizeof out[n].id, "%s", f->node);
                snprintf(out[n].state, sizeof out[n].state, "%s", mine);
                out[n++].self = 1;
        }
        pthread_mutex_unlock(&f->mu);
        return n;
}

/* KW_OP_NODES: the whole list for the admin API; for an unauthenticated
 * caller (the front's /metrics) the states without addresses or details. */
kw_result op_nodes(struct custody *c, const struct kw_msg *req, struct op_caller *who,
                   struct kw_buf *reply)
{
        (void)req;
        int brief = who->ctx.kind == KW_CALLER_PUBLIC;
        const struct kw_config *cfg = c->cfg;
        struct fleet *f = c->fleet;
        cJSON *d = cJSON_CreateObject();
        cJSON *arr = d != NULL ? cJSON_CreateArray() : NULL;
        if (arr == NULL) {
                cJSON_Delete(d);
                KW_BAIL(KW_ERR_NOMEM);
        }
        char node[65], why[FLEET_DETAIL_MAX];
        kw_config_node_name(cfg, node);
        const char *st = custody_fleet_state(c, why);
        cJSON_AddStringToObject(d, "engine", f != NULL ? "postgresql" : "sqlcipher");
        cJSON_AddStringToObject(d, "self", node);
        cJSON_AddStringToObject(d, "state", st);
        if (!brief)
                cJSON_AddStringToObject(d, "detail", why);
        unsigned bad = 0;
        kw_result r = KW_OK;
        if (f != NULL) {
                struct nodes_ctx x = { .f = f, .stale_ms = 3 * cfg->db.heartbeat_ms, .arr = arr,
                                       .brief = brief };
                r = strcmp(st, "ACTIVE") == 0 ? kw_pg_node_list(f->pg, nodes_cb, &x, &bad)
                                              : KW_RESULT(KW_ERR_DB_UNAVAILABLE);
                if (r.code == KW_ERR_DB_UNAVAILABLE) {
                        /* what this node knows: itself, DEGRADED (the other
                         * nodes' heartbeats are in the database) */
                        cJSON_Delete(arr);
                        arr = cJSON_CreateArray();
                        if (arr == NULL) {
                                cJSON_Delete(d);
                                KW_BAIL(KW_ERR_NOMEM);
                        }
                        struct kw_node_row me;
                        fill_self(f, &me);
                        x = (struct nodes_ctx){ .f = f, .stale_ms = INT64_MAX, .arr = arr,
                                                .brief = brief };
                        nodes_cb(&me, &x);
                        r = KW_OK;
                }
                if (!kw_ok(r)) {
                        cJSON_Delete(arr);
                        cJSON_Delete(d);
                        return r;
                }
                if (bad > 0)
                        kw_log(KW_LOG_ERROR, "fleet_node_rows_tampered", "rows", bad == 1 ? "1" : "several",
                               "hint", "node rows whose MAC fails were left out of the list", KW_END);
        } else {
                struct kw_node_row me;
                memset(&me, 0, sizeof me);
                snprintf(me.id, sizeof me.id, "%s", node);
                snprintf(me.address, sizeof me.address, "%s", cfg->http.listen);
                snprintf(me.version, sizeof me.version, "%s", KEYWARD_VERSION);
                me.schema = kw_keystore_schema_version(c->ks);
                snprintf(me.state, sizeof me.state, "ACTIVE");
                me.seen_ms = wall_ms();
                struct fleet self = { .c = c };
                snprintf(self.node, sizeof self.node, "%s", node);
                struct nodes_ctx x = { .f = &self, .stale_ms = INT64_MAX, .arr = arr,
                                       .brief = brief };
                nodes_cb(&me, &x);
        }
        cJSON_AddItemToObject(d, "nodes", arr);
        cJSON_AddNumberToObject(d, "rows_failing_mac", bad);
        return reply_json(reply, d);
}

void custody_fleet_status_json(struct custody *c, cJSON *d)
{
        char node[65], why[FLEET_DETAIL_MAX];
        kw_config_node_name(c->cfg, node);
        const char *st = custody_fleet_state(c, why);
        cJSON_AddStringToObject(d, "node", node);
        cJSON_AddStringToObject(d, "engine", c->fleet != NULL ? "postgresql" : "sqlcipher");
        cJSON_AddStringToObject(d, "db_state", strcmp(st, "ACTIVE") == 0 ? "ok" : "unavailable");
        if (c->fleet != NULL) {
                cJSON_AddStringToObject(d, "node_state", st);
                cJSON_AddStringToObject(d, "node_detail", why);
                pthread_mutex_lock(&c->fleet->mu);
                cJSON_AddNumberToObject(d, "fleet_changes_total", (double)c->fleet->changes);
                cJSON_AddNumberToObject(d, "fleet_resyncs_total", (double)c->fleet->resyncs);
                pthread_mutex_unlock(&c->fleet->mu);
        }
}
