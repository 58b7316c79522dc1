/*
 * config.c - keywardd configuration: a TOML subset -> struct kw_config.
 *
 * Layout of this file:
 *   1. the schema: one static table row per key (section, key, type, flags,
 *      offset, default, integer range).  Adding a key = adding one row (and
 *      the field in config.h, and a line in docs/config.md).
 *   2. generic field operations driven by the table (default, copy, free).
 *   3. the TOML-subset parser (bounded cursor over the text; the first error
 *      stops it with "name:line: message").  kw_config_parse works on a deep
 *      copy and commits only on success, so a failed parse changes nothing.
 *      kw_config_parse_ext reads a document with more tables than ours (the
 *      provisioning document), described by the caller's table of fields.
 *   4. environment overrides KEYWARD_<SECTION>_<KEY>.
 *   5. kw_config_validate (cross-field checks, no file-system access).
 *   6. kw_config_load (file + env + key_file default + validate).
 *
 * No error message ever contains a configured value of a secret key; values
 * are echoed only for a few non-secret keys (listen addresses).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/b64.h"
#include "config.h"
#include "common/buf.h"
#include "common/secret.h"

#define CFG_MAX_FILE (1u << 20)   /* bytes in a configuration file        */
#define CFG_MAX_LINES 10000u      /* lines in a configuration file        */
#define CFG_MAX_STRING 4096u      /* bytes in one string value (decoded)  */
#define CFG_MAX_ITEMS 256u        /* strings in one array                 */
#define CFG_MAX_NAME 64u          /* bytes in a key or table-name segment */
#define CFG_STORE_NAME_MAX 32u    /* bytes in an [aws_xks_store.<name>]   */
#define CFG_ENV_PREFIX "KEYWARD_"
#define CFG_STORE_SECTION "aws_xks_store"

#define DEFAULT_TLS13 "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256"
#define DEFAULT_TLS12                                                                   \
        "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                    \
        "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                    \
        "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* ------------------------------------------------------------------------ */
/* 1. Schema                                                                */
/* ------------------------------------------------------------------------ */

enum key_type { KT_STR, KT_INT, KT_BOOL, KT_LIST };

#define KF_SECRET 1u   /* wiped on free; never echoed                    */
#define KF_REQUIRED 2u /* string must be non-empty (kw_config_validate)  */

struct cfg_key {
        const char *section;  /* "http", "aws_xks_config", ... */
        const char *key;      /* bare key, also the field name */
        enum key_type type;
        unsigned flags;
        size_t off;           /* offsetof into the base struct */
        const char *def_s;    /* KT_STR default; NULL = unset (store keys only) */
        int64_t def_i;        /* KT_INT / KT_BOOL default */
        int64_t min, max;     /* KT_INT accepted range (kw_config_validate) */
};

/* Compile-time check that a member has the type the row claims: a negative
 * array size otherwise.  Evaluates to 0. */
#define CFG_TYPECHECK(expr, T) (0 * sizeof(char[_Generic((expr), T: 1, default: -1)]))
#define CFG_OFF(m, f, T)                                                                \
        (offsetof(struct kw_config, m.f) + CFG_TYPECHECK(((struct kw_config *)0)->m.f, T))
#define K_STR(sec, m, f, def, fl) { sec, #f, KT_STR, (fl), CFG_OFF(m, f, char *), def, 0, 0, 0 }
#define K_INT(sec, m, f, def, lo, hi)                                                   \
        { sec, #f, KT_INT, 0, CFG_OFF(m, f, int64_t), NULL, (def), (lo), (hi) }
#define K_BOOL(sec, m, f, def) { sec, #f, KT_BOOL, 0, CFG_OFF(m, f, bool), NULL, (def), 0, 1 }
#define K_LIST(sec, m, f) { sec, #f, KT_LIST, 0, CFG_OFF(m, f, struct kw_strlist), NULL, 0, 0, 0 }

static int kw_valid_node_name(const char *s);

#define MIB (INT64_C(1) << 20)
#define TEN_YEARS INT64_C(315360000)

static const struct cfg_key cfg_keys[] = {
        K_STR("http", http, listen, "127.0.0.1:9998", KF_REQUIRED),
        K_INT("http", http, max_connections, 256, 1, 10000),
        K_INT("http", http, max_connections_per_client, 32, 1, 10000),
        K_INT("http", http, idle_timeout_under_load_ms, 1000, 50, 600000),
        K_INT("http", http, request_timeout_ms, 10000, 1, 600000),
        K_INT("http", http, keep_alive_timeout_ms, 30000, 1, 600000),
        K_INT("http", http, max_body_bytes, 65536, 1024, 16777216),

        K_STR("tls", tls, tls_cert_file, "", 0),
        K_STR("tls", tls, tls_key_file, "", 0),
        K_STR("tls", tls, tls_p12_file, "", 0),
        K_STR("tls", tls, tls_p12_password, "", KF_SECRET),
        K_STR("tls", tls, clients_ca_cert_file, "", 0),
        K_STR("tls", tls, min_version, "1.2", KF_REQUIRED),
        K_STR("tls", tls, ciphers_tls12, DEFAULT_TLS12, KF_REQUIRED),
        K_STR("tls", tls, ciphersuites_tls13, DEFAULT_TLS13, KF_REQUIRED),

        K_STR("db", db, path, "/var/lib/keyward/keyward.db", KF_REQUIRED),
        K_STR("db", db, key_file, "", 0),
        K_INT("db", db, key_cache_size, 1024, 1, 1000000),
        K_INT("db", db, secure_heap_bytes, 16 * MIB, MIB, 1024 * MIB),
        K_INT("db", db, deletion_min_wait_seconds, 604800, 0, TEN_YEARS),
        K_INT("db", db, deletion_default_wait_seconds, 2592000, 0, TEN_YEARS),
        K_INT("db", db, audit_flush_ms, 50, 0, 60000),
        K_STR("db", db, engine, "sqlcipher", KF_REQUIRED),
        K_STR("db", db, conninfo, "", 0),
        K_STR("db", db, password_file, "", 0),
        K_STR("db", db, node_name, "", 0),
        K_INT("db", db, pool_size, 4, 1, 64),
        K_INT("db", db, connect_timeout_seconds, 3, 1, 60),
        K_INT("db", db, statement_timeout_ms, 5000, 100, 600000),
        K_INT("db", db, change_poll_ms, 250, 10, 1000),
        K_INT("db", db, heartbeat_ms, 1000, 100, 60000),
        K_INT("db", db, outage_grace_seconds, 300, 0, 86400),
        K_INT("db", db, cache_revalidate_seconds, 30, 1, 3600),

        K_INT("audit", audit, max_age_days, 0, 0, 36500),
        K_INT("audit", audit, max_bytes, 0, 0, INT64_C(1) << 50),
        K_STR("audit", audit, export_dir, "", 0),
        K_INT("audit", audit, check_interval_seconds, 10, 1, 86400),
        K_INT("audit", audit, warn_free_percent, 10, 0, 99),

        K_STR("hsm", hsm, module, "", KF_REQUIRED),
        K_STR("hsm", hsm, token_label, "", KF_REQUIRED),
        K_STR("hsm", hsm, pin_file, "", KF_REQUIRED),
        K_STR("hsm", hsm, master_key_label, "keyward-master", KF_REQUIRED),
        K_BOOL("hsm", hsm, create_master_key, true),
        K_BOOL("hsm", hsm, evaluation, false),
        K_INT("hsm", hsm, sessions, 4, 1, 64),
        K_INT("hsm", hsm, timeout_ms, 2000, 1, 600000),
        K_INT("hsm", hsm, retry_interval_ms, 1000, 1, 600000),

        K_STR("custody", custody, socket_path, "/run/keyward/custody.sock", KF_REQUIRED),
        K_STR("custody", custody, user, "keyward-custody", 0),
        K_INT("custody", custody, connections, 4, 1, 64),
        K_INT("custody", custody, workers, 16, 1, 256),
        K_INT("custody", custody, timeout_ms, 5000, 1, 600000),

        K_STR("front", front, user, "keyward-front", 0),

        K_STR("sandbox", sandbox, seccomp, "enforce", KF_REQUIRED),

        K_BOOL("admin", admin, enable, true),
        K_STR("admin", admin, listen, "", 0),
        K_STR("admin", admin, token_file, "/var/lib/keyward/admin.token", 0),
        K_STR("admin", admin, initial_token_sha256, "", KF_SECRET),

        K_BOOL("console", console, enable, true),
        K_INT("console", console, session_idle_seconds, 900, 1, 86400),
        K_INT("console", console, session_max_seconds, 28800, 1, 604800),
        K_INT("console", console, login_max_failures, 5, 1, 100),
        K_INT("console", console, lockout_seconds, 30, 1, 86400),
        K_INT("console", console, lockout_max_seconds, 900, 1, 604800),

        K_STR("log", log, level, "info", KF_REQUIRED),
        K_BOOL("log", log, requests, true),

        K_BOOL("azure_ekm_config", ekm, azure_ekm_enable, false),
        K_STR("azure_ekm_config", ekm, azure_ekm_path_prefix, "", 0),
        K_STR("azure_ekm_config", ekm, azure_ekm_proxy_vendor, "Keyward", 0),
        K_STR("azure_ekm_config", ekm, azure_ekm_proxy_name, "Keyward EKM Proxy", 0),
        K_STR("azure_ekm_config", ekm, azure_ekm_ekm_vendor, "Keyward", 0),
        K_STR("azure_ekm_config", ekm, azure_ekm_ekm_product, "Keyward", 0),
        K_BOOL("azure_ekm_config", ekm, azure_ekm_disable_client_auth, false),
        K_LIST("azure_ekm_config", ekm, azure_ekm_client_cns),
        K_STR("azure_ekm_config", ekm, azure_ekm_client_ca_file, "", 0),
        K_INT("azure_ekm_config", ekm, azure_ekm_rate_limit, 0, 0, 1000000),
        K_STR("azure_ekm_config", ekm, azure_ekm_public_host, "", 0),

        K_BOOL("aws_xks_config", xks, aws_xks_enable, false),
        K_STR("aws_xks_config", xks, aws_xks_region, "us-east-1", 0),
        K_STR("aws_xks_config", xks, aws_xks_service, "kms-xks-proxy", 0),
        K_STR("aws_xks_config", xks, aws_xks_sigv4_access_key_id, "", 0),
        K_STR("aws_xks_config", xks, aws_xks_sigv4_secret_access_key, "", KF_SECRET),
        K_STR("aws_xks_config", xks, aws_xks_uri_prefix, "", 0),
        K_STR("aws_xks_config", xks, aws_xks_vendor, "Keyward", 0),
        K_STR("aws_xks_config", xks, aws_xks_model, "Keyward XKS Proxy", 0),
        K_INT("aws_xks_config", xks, aws_xks_fleet_size, 1, 1, 10000),
        K_INT("aws_xks_config", xks, aws_xks_rate_limit, 1800, 0, 1000000),
        K_INT("aws_xks_config", xks, aws_xks_unauthenticated_rate_limit, 20, 0, 1000000),

        K_BOOL("attestation", attestation, enable, false),
        K_STR("attestation", attestation, tpm_tcti, "device:/dev/tpmrm0", 0),
        K_STR("attestation", attestation, pcrs, "0,1,2,3,4,7,11", 0),
        K_STR("attestation", attestation, ak_handle, "0x81000003", KF_REQUIRED),
        K_STR("attestation", attestation, snp_device, "/dev/sev-guest", 0),
        K_STR("attestation", attestation, tsm_report_dir, "/sys/kernel/config/tsm/report", 0),
        K_STR("attestation", attestation, event_log,
              "/sys/kernel/security/tpm0/binary_bios_measurements", 0),
        K_STR("attestation", attestation, expected_values_id, "", 0),
        K_STR("attestation", attestation, unlock_record, "/run/keyward/unlock.json", 0),
        K_INT("attestation", attestation, rate_limit, 10, 0, 1000000),
};
#define N_KEYS (sizeof cfg_keys / sizeof cfg_keys[0])
_Static_assert(N_KEYS <= sizeof ((struct kw_config *)0)->key_line_ /
                         sizeof ((struct kw_config *)0)->key_line_[0],
               "struct kw_config key_line_[] must have a slot per cfg_keys row");

/* [aws_xks_store.<name>]: offsets into struct kw_xks_store.  A NULL default
 * means "must be given" (checked by kw_config_validate). */
#define S_OFF(f, T)                                                                     \
        (offsetof(struct kw_xks_store, f) + CFG_TYPECHECK(((struct kw_xks_store *)0)->f, T))
#define S_STR(f, def, fl) { CFG_STORE_SECTION, #f, KT_STR, (fl), S_OFF(f, char *), def, 0, 0, 0 }
#define S_LIST(f) { CFG_STORE_SECTION, #f, KT_LIST, 0, S_OFF(f, struct kw_strlist), NULL, 0, 0, 0 }

static const struct cfg_key store_keys[] = {
        S_STR(uri_prefix, NULL, 0),
        S_STR(region, "us-east-1", 0),
        S_STR(service, "kms-xks-proxy", 0),
        S_STR(access_key_id, NULL, 0),
        S_STR(secret_access_key, NULL, KF_SECRET),
        S_STR(access_key_id_2, "", 0),
        S_STR(secret_access_key_2, "", KF_SECRET),
        S_STR(client_ca_file, "", 0),
        S_LIST(client_subjects),
};
#define N_STORE_KEYS (sizeof store_keys / sizeof store_keys[0])
_Static_assert(N_STORE_KEYS <= sizeof ((struct kw_config *)0)->store_key_line_[0] / sizeof(uint32_t),
               "struct kw_config store_key_line_[][] must have a slot per store_keys row");

/* Index of the first row of a section (identifies the section), or -1. */
static int section_find(const char *name)
{
        for (size_t i = 0; i < N_KEYS; i++)
                if (strcmp(cfg_keys[i].section, name) == 0)
                        return (int)i;
        return -1;
}

static int key_find(const struct cfg_key *tab, size_t n, const char *section, const char *key)
{
        for (size_t i = 0; i < n; i++)
                if (strcmp(tab[i].section, section) == 0 && strcmp(tab[i].key, key) == 0)
                        return (int)i;
        return -1;
}

static const char *type_name(enum key_type t)
{
        switch (t) {
        case KT_STR: return "a string";
        case KT_INT: return "an integer";
        case KT_BOOL: return "a boolean";
        case KT_LIST: return "an array of strings";
        }
        return "a value";
}

/* ------------------------------------------------------------------------ */
/* 2. Field operations                                                      */
/* ------------------------------------------------------------------------ */

static char **key_str(void *base, const struct cfg_key *k) { return (char **)((char *)base + k->off); }
static int64_t *key_int(void *base, const struct cfg_key *k) { return (int64_t *)((char *)base + k->off); }
static bool *key_bool(void *base, const struct cfg_key *k) { return (bool *)((char *)base + k->off); }
static struct kw_strlist *key_list(void *base, const struct cfg_key *k)
{
        return (struct kw_strlist *)((char *)base + k->off);
}
static const char *key_cstr(const void *base, const struct cfg_key *k)
{
        return *(char *const *)((const char *)base + k->off);
}

static void str_free(char **s, bool secret)
{
        if (*s == NULL)
                return;
        if (secret)
                kw_wipe(*s, strlen(*s));
        free(*s);
        *s = NULL;
}

static void list_free(struct kw_strlist *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        l->v = NULL;
        l->n = 0;
}

KW_MUST_USE static kw_result str_dup(const char *s, char **ret)
{
        char *d = NULL;
        if (s != NULL) {
                d = strdup(s);
                KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        }
        *ret = d;
        return KW_OK;
}

/* Deep copy; *ret untouched on failure. */
KW_MUST_USE static kw_result list_dup(const struct kw_strlist *src, struct kw_strlist *ret)
{
        struct kw_strlist l = { 0 };
        if (src->n != 0) {
                l.v = calloc(src->n, sizeof *l.v);
                KW_ENSURE(l.v != NULL, KW_ERR_NOMEM);
                for (; l.n < src->n; l.n++) {
                        kw_result r = str_dup(src->v[l.n], &l.v[l.n]);
                        if (!kw_ok(r)) {
                                list_free(&l);
                                return r;
                        }
                }
        }
        *ret = l;
        return KW_OK;
}

static void key_free(void *base, const struct cfg_key *k)
{
        if (k->type == KT_STR)
                str_free(key_str(base, k), k->flags & KF_SECRET);
        else if (k->type == KT_LIST)
                list_free(key_list(base, k));
}

/* Forgets owned pointers without freeing them (after a shallow struct copy). */
static void key_detach(void *base, const struct cfg_key *k)
{
        if (k->type == KT_STR)
                *key_str(base, k) = NULL;
        else if (k->type == KT_LIST)
                *key_list(base, k) = (struct kw_strlist){ 0 };
}

KW_MUST_USE static kw_result key_set_default(void *base, const struct cfg_key *k)
{
        switch (k->type) {
        case KT_STR: {
                char *s = NULL;
                KW_TRY(str_dup(k->def_s, &s));
                str_free(key_str(base, k), k->flags & KF_SECRET);
                *key_str(base, k) = s;
                return KW_OK;
        }
        case KT_INT: *key_int(base, k) = k->def_i; return KW_OK;
        case KT_BOOL: *key_bool(base, k) = k->def_i != 0; return KW_OK;
        case KT_LIST: list_free(key_list(base, k)); return KW_OK;
        }
        KW_BAIL(KW_ERR_INTERNAL);
}

/* dst's owned pointers must be detached (NULL); src is not modified. */
KW_MUST_USE static kw_result key_copy(void *dst, const void *src, const struct cfg_key *k)
{
        if (k->type == KT_STR)
                return str_dup(key_cstr(src, k), key_str(dst, k));
        if (k->type == KT_LIST)
                return list_dup((const struct kw_strlist *)((const char *)src + k->off),
                                key_list(dst, k));
        return KW_OK; /* scalars were copied with the struct */
}

static void store_release(struct kw_xks_store *s)
{
        free(s->name);
        s->name = NULL;
        for (size_t i = 0; i < N_STORE_KEYS; i++)
                key_free(s, &store_keys[i]);
}

/* Frees every member; leaves *c zeroed. */
static void config_release(struct kw_config *c)
{
        free(c->source);
        for (size_t i = 0; i < N_KEYS; i++)
                key_free(c, &cfg_keys[i]);
        for (size_t i = 0; i < c->n_xks_stores && i < KW_XKS_MAX_STORES; i++)
                store_release(&c->xks_stores[i]);
        kw_wipe(c, sizeof *c);
}

/* Deep copy of src into *dst (uninitialised).  On failure *dst is empty. */
KW_MUST_USE static kw_result config_copy(const struct kw_config *src, struct kw_config *dst)
{
        kw_result r = KW_OK;
        *dst = *src;
        dst->source = NULL;
        for (size_t i = 0; i < N_KEYS; i++)
                key_detach(dst, &cfg_keys[i]);
        for (size_t i = 0; i < dst->n_xks_stores; i++) {
                dst->xks_stores[i].name = NULL;
                for (size_t j = 0; j < N_STORE_KEYS; j++)
                        key_detach(&dst->xks_stores[i], &store_keys[j]);
        }
        KW_TRY_GOTO(r, str_dup(src->source, &dst->source), fail);
        for (size_t i = 0; i < N_KEYS; i++)
                KW_TRY_GOTO(r, key_copy(dst, src, &cfg_keys[i]), fail);
        for (size_t i = 0; i < dst->n_xks_stores; i++) {
                KW_TRY_GOTO(r, str_dup(src->xks_stores[i].name, &dst->xks_stores[i].name), fail);
                for (size_t j = 0; j < N_STORE_KEYS; j++)
                        KW_TRY_GOTO(r, key_copy(&dst->xks_stores[i], &src->xks_stores[i],
                                                &store_keys[j]),
                                    fail);
        }
        return KW_OK;
fail:
        config_release(dst);
        return r;
}

/* Appends a new store with defaults; the caller checked the capacity. */
KW_MUST_USE static kw_result store_add(struct kw_config *c, const char *name, size_t *ret_idx)
{
        KW_ENSURE(c->n_xks_stores < KW_XKS_MAX_STORES, KW_ERR_INTERNAL);
        struct kw_xks_store s = { 0 };
        kw_result r = KW_OK;
        KW_TRY(str_dup(name, &s.name));
        for (size_t i = 0; i < N_STORE_KEYS; i++)
                KW_TRY_GOTO(r, key_set_default(&s, &store_keys[i]), fail);
        c->xks_stores[c->n_xks_stores] = s;
        *ret_idx = c->n_xks_stores++;
        return KW_OK;
fail:
        store_release(&s);
        return r;
}

kw_result kw_config_defaults(struct kw_config **ret)
{
        struct kw_config *c = calloc(1, sizeof *c);
        kw_result r = KW_OK;
        KW_ENSURE(c != NULL, KW_ERR_NOMEM);
        KW_TRY_GOTO(r, str_dup("(defaults)", &c->source), fail);
        for (size_t i = 0; i < N_KEYS; i++)
                KW_TRY_GOTO(r, key_set_default(c, &cfg_keys[i]), fail);
        *ret = c;
        return KW_OK;
fail:
        kw_config_free(c);
        return r;
}

static void wipe_in_place(char *s)
{
        if (s != NULL)
                kw_wipe(s, strlen(s));
}

void kw_config_wipe_secrets(struct kw_config *cfg)
{
        if (cfg == NULL)
                return;
        for (size_t i = 0; i < N_KEYS; i++)
                if (cfg_keys[i].type == KT_STR && (cfg_keys[i].flags & KF_SECRET))
                        wipe_in_place(*key_str(cfg, &cfg_keys[i]));
        for (size_t j = 0; j < cfg->n_xks_stores; j++)
                for (size_t i = 0; i < sizeof store_keys / sizeof store_keys[0]; i++)
                        if (store_keys[i].type == KT_STR && (store_keys[i].flags & KF_SECRET))
                                wipe_in_place(*key_str(&cfg->xks_stores[j], &store_keys[i]));
}

void kw_config_free(struct kw_config *cfg)
{
        if (cfg == NULL)
                return;
        config_release(cfg);
        free(cfg);
}

/* ------------------------------------------------------------------------ */
/* 3. Parser                                                                */
/* ------------------------------------------------------------------------ */

/* A parsed value, before it is moved into the config.  Strings are wiped
 * when freed (the parser does not know yet whether they are secret). */
struct value {
        enum key_type type;
        char *s;
        int64_t i;
        bool b;
        struct kw_strlist list;
};

static void value_free(struct value *v)
{
        str_free(&v->s, true);
        for (size_t i = 0; i < v->list.n; i++)
                str_free(&v->list.v[i], true);
        list_free(&v->list);
}

/* Moves v into the field (v is emptied); the old value is freed (wiped if secret). */
static void key_assign(void *base, const struct cfg_key *k, struct value *v)
{
        key_free(base, k);
        switch (k->type) {
        case KT_STR: *key_str(base, k) = v->s; v->s = NULL; break;
        case KT_INT: *key_int(base, k) = v->i; break;
        case KT_BOOL: *key_bool(base, k) = v->b; break;
        case KT_LIST: *key_list(base, k) = v->list; v->list = (struct kw_strlist){ 0 }; break;
        }
}

#define SEC_NONE (-1)
#define SEC_STORE (-2)
#define SEC_EXT (-3)
#define SEC_NAMED (-4)
#define CFG_EXT_MAX_FIELDS 128u

struct parser {
        const char *name;
        const uint8_t *p;
        size_t len, off;                 /* invariant: off <= len */
        uint32_t line;
        struct kw_config *cfg;
        int sec;                         /* SEC_NONE, SEC_STORE or section_find() */
        size_t store;                    /* index in cfg->xks_stores when SEC_STORE */
        uint32_t sec_line[N_KEYS];       /* header line per section, 0 = not seen */
        uint32_t key_line[N_KEYS];       /* line each key was set on, 0 = not set */
        uint32_t store_line[KW_XKS_MAX_STORES];
        uint32_t store_key_line[KW_XKS_MAX_STORES][N_STORE_KEYS];
        /* kw_config_parse_ext: the extension, its current table (first
         * field of a fixed table, or a named entry) and table header lines */
        struct kw_config_ext *ext;
        size_t ext_sec;                  /* SEC_EXT: index of the table's first field */
        void *named_base;                /* SEC_NAMED: the entry being filled */
        uint32_t *named_lines;
        char named_name[CFG_MAX_NAME + 1];
        uint32_t ext_sec_line[CFG_EXT_MAX_FIELDS];
};

static kw_result parser_fail(const struct parser *p, uint32_t line, int src_line, const char *fmt,
                             ...) __attribute__((format(printf, 4, 5)));
static kw_result parser_fail(const struct parser *p, uint32_t line, int src_line, const char *fmt, ...)
{
        char msg[192];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        kw_err_set_detail("%s:%" PRIu32 ": %s", p->name, line, msg);
        kw_trace(KW_ERR_CONFIG, __FILE__, src_line);
        return KW_RESULT(KW_ERR_CONFIG);
}
#define PERR(P, L, ...) parser_fail((P), (L), __LINE__, __VA_ARGS__)
#define PFAIL(P, L, ...) return PERR((P), (L), __VA_ARGS__)

static bool is_alnum(int c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
static bool is_bare(int c) { return is_alnum(c) || c == '_' || c == '-'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static int to_upper(int c) { return (c >= 'a' && c <= 'z') ? c - 'a' + 'A' : c; }
static int to_lower(int c) { return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c; }

static int peek(const struct parser *p) { return p->off < p->len ? p->p[p->off] : -1; }
static int peek_at(const struct parser *p, size_t n)
{
        return p->len - p->off > n ? p->p[p->off + n] : -1;
}

/* Length of the valid UTF-8 sequence at s[0..n) (n >= 1), 0 if invalid
 * (overlong forms, surrogates and code points above U+10FFFF rejected). */
static size_t utf8_len(const uint8_t *s, size_t n)
{
        uint8_t c = s[0];
        size_t need;
        uint32_t cp, min;
        if (c < 0x80)
                return 1;
        if (c >= 0xc2 && c <= 0xdf) {
                need = 1, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
                need = 2, cp = c & 0x0f, min = 0x800;
        } else if (c >= 0xf0 && c <= 0xf4) {
                need = 3, cp = c & 0x07, min = 0x10000;
        } else {
                return 0;
        }
        if (n - 1 < need)
                return 0;
        for (size_t i = 1; i <= need; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = cp << 6 | (s[i] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return need + 1;
}

static bool is_control(int c) { return (c < 0x20 && c != '\t') || c == 0x7f; }

/* Bytes of a line break at the cursor: 1 for "\n", 2 for "\r\n", else 0. */
static size_t newline_len(const struct parser *p)
{
        int c = peek(p);
        if (c == '\n')
                return 1;
        if (c == '\r' && peek_at(p, 1) == '\n')
                return 2;
        return 0;
}

KW_MUST_USE static kw_result eat_newline(struct parser *p, size_t n)
{
        p->off += n;
        if (p->line >= CFG_MAX_LINES && p->off < p->len)
                PFAIL(p, p->line + 1, "too many lines (max %u)", CFG_MAX_LINES);
        p->line++;
        return KW_OK;
}

static void skip_ws(struct parser *p)
{
        while (p->off < p->len && (p->p[p->off] == ' ' || p->p[p->off] == '\t'))
                p->off++;
}

/* At '#': consumes the comment up to (not including) the line break. */
KW_MUST_USE static kw_result skip_comment(struct parser *p)
{
        p->off++;
        while (p->off < p->len && newline_len(p) == 0) {
                uint8_t c = p->p[p->off];
                if (is_control(c))
                        PFAIL(p, p->line, "control character in comment");
                if (c >= 0x80) {
                        size_t n = utf8_len(p->p + p->off, p->len - p->off);
                        if (n == 0)
                                PFAIL(p, p->line, "invalid UTF-8 in comment");
                        p->off += n;
                } else {
                        p->off++;
                }
        }
        return KW_OK;
}

/* After a header or a value: optional blanks and comment, then a line break or EOF. */
KW_MUST_USE static kw_result expect_eol(struct parser *p, const char *after)
{
        skip_ws(p);
        if (peek(p) == '#')
                KW_TRY(skip_comment(p));
        if (p->off == p->len)
                return KW_OK;
        size_t n = newline_len(p);
        if (n == 0)
                PFAIL(p, p->line, "unexpected text after %s (expected end of line)", after);
        return eat_newline(p, n);
}

/* A bare key or table-name segment into out (NUL-terminated). */
KW_MUST_USE static kw_result read_bare(struct parser *p, char out[CFG_MAX_NAME + 1], const char *what)
{
        int c = peek(p);
        if (c == '"' || c == '\'')
                PFAIL(p, p->line, "quoted keys and table names are not supported");
        size_t start = p->off;
        while (p->off < p->len && is_bare(p->p[p->off]))
                p->off++;
        size_t n = p->off - start;
        if (n == 0)
                PFAIL(p, p->line, "expected %s ([A-Za-z0-9_-])", what);
        if (n > CFG_MAX_NAME)
                PFAIL(p, p->line, "%s too long (max %u characters)", what, CFG_MAX_NAME);
        memcpy(out, p->p + start, n);
        out[n] = '\0';
        return KW_OK;
}

enum int_status { INT_OK, INT_SYNTAX, INT_RANGE, INT_LEADING_ZERO };

/* Decimal integer [+-]?(0|[1-9](_?[0-9])*) over exactly n bytes. */
static enum int_status int_parse(const char *s, size_t n, int64_t *ret)
{
        size_t i = 0;
        bool neg = false;
        uint64_t v = 0, limit = INT64_MAX;
        if (n > 0 && (s[0] == '+' || s[0] == '-'))
                neg = s[i++] == '-';
        if (neg)
                limit = (uint64_t)INT64_MAX + 1;
        if (i == n || !is_digit(s[i]))
                return INT_SYNTAX;
        if (s[i] == '0' && n - i > 1)
                return is_digit(s[i + 1]) || s[i + 1] == '_' ? INT_LEADING_ZERO : INT_SYNTAX;
        for (; i < n; i++) {
                if (s[i] == '_') {
                        if (i + 1 == n || !is_digit(s[i + 1]) || !is_digit(s[i - 1]))
                                return INT_SYNTAX;
                        continue;
                }
                if (!is_digit(s[i]))
                        return INT_SYNTAX;
                uint64_t d = (uint64_t)(s[i] - '0');
                if (v > (limit - d) / 10)
                        return INT_RANGE;
                v = v * 10 + d;
        }
        if (neg)
                *ret = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
        else
                *ret = (int64_t)v;
        return INT_OK;
}

static const char *int_status_msg(enum int_status st)
{
        switch (st) {
        case INT_RANGE: return "integer out of range (must fit in 64 bits)";
        case INT_LEADING_ZERO: return "leading zeros are not allowed in integers";
        case INT_SYNTAX:
        case INT_OK: break;
        }
        return "invalid integer (decimal digits, optional sign, '_' only between digits)";
}

/* Moves the bytes of b into a new NUL-terminated heap string. */
KW_MUST_USE static kw_result buf_take_str(struct kw_buf *b, char **ret)
{
        char *s = malloc(b->len + 1);
        KW_ENSURE(s != NULL, KW_ERR_NOMEM);
        if (b->len)
                memcpy(s, b->p, b->len);
        s[b->len] = '\0';
        *ret = s;
        return KW_OK;
}

KW_MUST_USE static kw_result buf_put_checked(struct parser *p, struct kw_buf *b, const void *d, size_t n)
{
        kw_result r = kw_buf_put(b, d, n);
        if (r.code == KW_ERR_TOO_LARGE)
                return PERR(p, p->line, "string too long (max %u bytes)", CFG_MAX_STRING);
        return r;
}


/* \uXXXX at the cursor (just after the backslash and 'u'): appends UTF-8. */
KW_MUST_USE static kw_result parse_u_escape(struct parser *p, struct kw_buf *b)
{
        uint32_t cp = 0;
        for (int i = 0; i < 4; i++) {
                int h = kw_hex_value(peek(p));
                if (h < 0)
                        PFAIL(p, p->line, "bad escape: \\u needs exactly 4 hex digits");
                cp = cp << 4 | (uint32_t)h;
                p->off++;
        }
        if (cp == 0)
                PFAIL(p, p->line, "bad escape: \\u0000 is not allowed");
        if (cp >= 0xd800 && cp <= 0xdfff)
                PFAIL(p, p->line, "bad escape: \\u%04" PRIX32 " is a UTF-16 surrogate", cp);
        uint8_t u[3];
        size_t n;
        if (cp < 0x80) {
                u[0] = (uint8_t)cp, n = 1;
        } else if (cp < 0x800) {
                u[0] = (uint8_t)(0xc0 | cp >> 6), u[1] = (uint8_t)(0x80 | (cp & 0x3f)), n = 2;
        } else {
                u[0] = (uint8_t)(0xe0 | cp >> 12), u[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
                u[2] = (uint8_t)(0x80 | (cp & 0x3f)), n = 3;
        }
        return buf_put_checked(p, b, u, n);
}

/* The character at the cursor into b: no control character (hint says
 * what to use instead), valid UTF-8. */
KW_MUST_USE static kw_result take_char(struct parser *p, struct kw_buf *b, const char *hint)
{
        uint8_t c = p->p[p->off];
        if (is_control(c))
                PFAIL(p, p->line, "control character in string%s", hint);
        size_t n = 1;
        if (c >= 0x80 && (n = utf8_len(p->p + p->off, p->len - p->off)) == 0)
                PFAIL(p, p->line, "invalid UTF-8 in string");
        KW_TRY(buf_put_checked(p, b, p->p + p->off, n));
        p->off += n;
        return KW_OK;
}

/* A '''multi-line literal''' string (a PEM certificate), cursor at the
 * first quote: no escapes; a line break right after the opening quotes is
 * dropped; CR LF is read as LF; it ends at the first three quotes. */
KW_MUST_USE static kw_result parse_ml_literal(struct parser *p, char **ret)
{
        const uint32_t open_line = p->line;
        kw_result r = KW_OK;
        struct kw_buf b;
        kw_buf_init(&b, CFG_MAX_STRING);
        p->off += 3;
        size_t nl = newline_len(p);
        if (nl != 0)
                KW_TRY_GOTO(r, eat_newline(p, nl), out);
        for (;;) {
                if (p->off == p->len) {
                        r = PERR(p, open_line, "unterminated multi-line string (missing closing ''')");
                        goto out;
                }
                if (p->len - p->off >= 3 && memcmp(p->p + p->off, "'''", 3) == 0) {
                        p->off += 3;
                        if (peek(p) == '\'') {
                                r = PERR(p, p->line, "a quote right after the closing ''' "
                                                     "(a literal string cannot end with ')");
                                goto out;
                        }
                        break;
                }
                if ((nl = newline_len(p)) != 0) {
                        KW_TRY_GOTO(r, buf_put_checked(p, &b, "\n", 1), out);
                        KW_TRY_GOTO(r, eat_newline(p, nl), out);
                        continue;
                }
                KW_TRY_GOTO(r, take_char(p, &b, ""), out);
        }
        r = buf_take_str(&b, ret);
out:
        kw_buf_free(&b);
        return r;
}

/* A "basic" (quote = '"', escapes) or 'literal' (quote = '\'') string on
 * one line, cursor at the opening quote. */
KW_MUST_USE static kw_result parse_string(struct parser *p, char **ret)
{
        const uint8_t quote = p->p[p->off];
        kw_result r = KW_OK;
        struct kw_buf b;
        if (peek_at(p, 1) == quote && peek_at(p, 2) == quote) {
                if (quote == '\'')
                        return parse_ml_literal(p, ret);
                PFAIL(p, p->line, "multi-line basic strings (\"\"\") are not supported "
                                  "(use '''...''' for text on several lines)");
        }
        kw_buf_init(&b, CFG_MAX_STRING);
        p->off++;
        for (;;) {
                if (p->off == p->len || newline_len(p) != 0) {
                        r = PERR(p, p->line, "unterminated string (missing closing %c)", quote);
                        goto out;
                }
                uint8_t c = p->p[p->off];
                if (c == quote) {
                        p->off++;
                        break;
                }
                if (c == '\\' && quote == '"') {
                        int e = peek_at(p, 1);
                        const char *rep = e == '"' ? "\"" : e == '\\' ? "\\" : e == 'n' ? "\n"
                                        : e == 't' ? "\t" : NULL;
                        if (rep == NULL && e != 'u') {
                                r = PERR(p, p->line,
                                         "bad escape (allowed: \\\" \\\\ \\n \\t \\uXXXX)");
                                goto out;
                        }
                        p->off += 2;
                        if (rep != NULL)
                                KW_TRY_GOTO(r, buf_put_checked(p, &b, rep, 1), out);
                        else
                                KW_TRY_GOTO(r, parse_u_escape(p, &b), out);
                        continue;
                }
                KW_TRY_GOTO(r, take_char(p, &b, quote == '"' ? " (use \\n, \\t or \\uXXXX)" : ""), out);
        }
        r = buf_take_str(&b, ret);
out:
        kw_buf_free(&b);
        return r;
}

/* Blanks, line breaks and comments inside an array. */
KW_MUST_USE static kw_result skip_array_space(struct parser *p, uint32_t open_line)
{
        for (;;) {
                skip_ws(p);
                int c = peek(p);
                size_t n = newline_len(p);
                if (c < 0)
                        PFAIL(p, open_line, "unterminated array (missing ']')");
                if (n != 0)
                        KW_TRY(eat_newline(p, n));
                else if (c == '#')
                        KW_TRY(skip_comment(p));
                else
                        return KW_OK;
        }
}

/* An array of strings, cursor at '['; may span lines; trailing comma allowed. */
KW_MUST_USE static kw_result parse_array(struct parser *p, struct value *ret)
{
        const uint32_t open_line = p->line;
        struct value v = { .type = KT_LIST };
        kw_result r = KW_OK;
        p->off++;
        for (;;) {
                KW_TRY_GOTO(r, skip_array_space(p, open_line), out);
                int c = peek(p);
                if (c == ']')
                        break;
                if (c == '[') {
                        r = PERR(p, p->line, "nested arrays are not supported");
                        goto out;
                }
                if (c != '"' && c != '\'') {
                        r = PERR(p, p->line, "arrays may only hold strings (quoted)");
                        goto out;
                }
                if (v.list.n == CFG_MAX_ITEMS) {
                        r = PERR(p, p->line, "too many items in array (max %u)", CFG_MAX_ITEMS);
                        goto out;
                }
                char **nv = realloc(v.list.v, (v.list.n + 1) * sizeof *nv);
                if (nv == NULL) {
                        r = KW_RESULT(KW_ERR_NOMEM);
                        goto out;
                }
                v.list.v = nv;
                KW_TRY_GOTO(r, parse_string(p, &v.list.v[v.list.n]), out);
                v.list.n++;
                KW_TRY_GOTO(r, skip_array_space(p, open_line), out);
                c = peek(p);
                if (c == ']')
                        break;
                if (c != ',') {
                        r = PERR(p, p->line, "expected ',' or ']' in array");
                        goto out;
                }
                p->off++;
        }
        p->off++; /* ']' */
        *ret = v;
        v = (struct value){ 0 }; /* transferred */
out:
        value_free(&v);
        return r;
}

static bool is_word(int c) { return is_bare(c) || c == '+' || c == '.' || c == ':'; }

/* An unquoted scalar: true, false or a decimal integer. */
KW_MUST_USE static kw_result parse_scalar(struct parser *p, struct value *ret)
{
        const char *s = (const char *)p->p + p->off;
        size_t n = 0;
        while (p->len - p->off > n && is_word((uint8_t)s[n]))
                n++;
        if (n == 4 && memcmp(s, "true", 4) == 0) {
                *ret = (struct value){ .type = KT_BOOL, .b = true };
        } else if (n == 5 && memcmp(s, "false", 5) == 0) {
                *ret = (struct value){ .type = KT_BOOL, .b = false };
        } else if (n > 0 && (is_digit(s[0]) || s[0] == '+' || s[0] == '-')) {
                size_t d = (s[0] == '+' || s[0] == '-') ? 1 : 0;
                if (n - d >= 2 && s[d] == '0' && (s[d + 1] == 'x' || s[d + 1] == 'o' || s[d + 1] == 'b'))
                        PFAIL(p, p->line, "only decimal integers are supported");
                if (memchr(s + d, '.', n - d) || memchr(s + d, 'e', n - d) ||
                    memchr(s + d, 'E', n - d) || (n - d == 3 && (memcmp(s + d, "inf", 3) == 0 ||
                                                                 memcmp(s + d, "nan", 3) == 0)))
                        PFAIL(p, p->line, "floating-point numbers are not supported");
                if (memchr(s + d, ':', n - d) || memchr(s + d, '-', n - d))
                        PFAIL(p, p->line, "dates and times are not supported");
                int64_t i = 0;
                enum int_status st = int_parse(s, n, &i);
                if (st != INT_OK)
                        PFAIL(p, p->line, "%s", int_status_msg(st));
                *ret = (struct value){ .type = KT_INT, .i = i };
        } else {
                PFAIL(p, p->line, "invalid value (strings must be quoted; booleans are true/false)");
        }
        p->off += n;
        return KW_OK;
}

KW_MUST_USE static kw_result parse_value(struct parser *p, struct value *ret)
{
        int c = peek(p);
        if (c == '"' || c == '\'') {
                char *s = NULL;
                KW_TRY(parse_string(p, &s));
                *ret = (struct value){ .type = KT_STR, .s = s };
                return KW_OK;
        }
        if (c == '[')
                return parse_array(p, ret);
        if (c == '{')
                PFAIL(p, p->line, "inline tables are not supported");
        if (c < 0 || c == '#' || newline_len(p) != 0)
                PFAIL(p, p->line, "missing value after '='");
        return parse_scalar(p, ret);
}

static void section_label(const struct parser *p, char *out, size_t n)
{
        if (p->sec == SEC_STORE)
                snprintf(out, n, CFG_STORE_SECTION ".%s", p->cfg->xks_stores[p->store].name);
        else if (p->sec == SEC_EXT)
                snprintf(out, n, "%s", p->ext->fields[p->ext_sec].section);
        else if (p->sec == SEC_NAMED)
                snprintf(out, n, "%s.%s", p->ext->named, p->named_name);
        else
                snprintf(out, n, "%s", cfg_keys[p->sec].section);
}

/* The extension's fixed table named `name`: the index of its first field. */
static int ext_section_find(const struct kw_config_ext *ext, const char *name)
{
        for (size_t i = 0; ext != NULL && i < ext->n_fields; i++)
                if (strcmp(ext->fields[i].section, name) == 0)
                        return (int)i;
        return -1;
}

/* Why this document may not set the server's table `name`, or NULL. */
static const char *ext_refused(const struct kw_config_ext *ext, const char *name)
{
        for (size_t i = 0; ext != NULL && ext->refused != NULL && ext->refused[i][0] != NULL; i++)
                if (strcmp(ext->refused[i][0], name) == 0)
                        return ext->refused[i][1];
        return NULL;
}

/* An extension's table header ([a] or [a.b], full name `full`): 1 when it
 * is one (p->sec set), 0 when not, or the error. */
KW_MUST_USE static kw_result ext_header(struct parser *p, uint32_t line, const char *a,
                                        const char *b, const char *full, int *ret_mine)
{
        struct kw_config_ext *ext = p->ext;
        *ret_mine = 0;
        if (ext == NULL)
                return KW_OK;
        int idx = ext_section_find(ext, full);
        if (idx >= 0) {
                if (p->ext_sec_line[idx] != 0)
                        PFAIL(p, line, "duplicate table [%s] (first on line %" PRIu32 ")", full,
                              p->ext_sec_line[idx]);
                p->ext_sec_line[idx] = line;
                p->sec = SEC_EXT;
                p->ext_sec = (size_t)idx;
                *ret_mine = 1;
                return KW_OK;
        }
        if (ext->named == NULL || strcmp(a, ext->named) != 0)
                return KW_OK;
        if (b[0] == '\0')
                PFAIL(p, line, "[%s] needs a name: [%s.<name>]", a, a);
        void *base = NULL;
        uint32_t *lines = NULL;
        kw_result r = ext->named_add(ext->ctx, b, line, &base, &lines);
        if (r.code != 0) {
                char why[160];
                snprintf(why, sizeof why, "%s", kw_err_detail());
                PFAIL(p, line, "[%s]: %s", full, why);
        }
        p->sec = SEC_NAMED;
        p->named_base = base;
        p->named_lines = lines;
        snprintf(p->named_name, sizeof p->named_name, "%s", b);
        *ret_mine = 1;
        return KW_OK;
}

/* [name] or [aws_xks_store.<name>], cursor at '['. */
KW_MUST_USE static kw_result parse_header(struct parser *p)
{
        const uint32_t line = p->line;
        char a[CFG_MAX_NAME + 1], b[CFG_MAX_NAME + 1] = "";
        bool dotted = false;
        p->off++;
        if (peek(p) == '[')
                PFAIL(p, line, "arrays of tables ([[...]]) are not supported");
        skip_ws(p);
        KW_TRY(read_bare(p, a, "a table name"));
        skip_ws(p);
        if (peek(p) == '.') {
                p->off++;
                skip_ws(p);
                KW_TRY(read_bare(p, b, "a table name after '.'"));
                skip_ws(p);
                dotted = true;
                if (peek(p) == '.')
                        PFAIL(p, line, "unknown section [%s.%s...] (at most two name parts)", a, b);
        }
        if (peek(p) != ']')
                PFAIL(p, line, "expected ']' to close the table header");
        p->off++;
        KW_TRY(expect_eol(p, "the table header"));

        char full[2 * CFG_MAX_NAME + 2];
        snprintf(full, sizeof full, dotted ? "%s.%s" : "%s", a, b);
        int mine = 0;
        KW_TRY(ext_header(p, line, a, b, full, &mine));
        if (mine)
                return KW_OK;
        const char *refused = ext_refused(p->ext, a);
        if (refused != NULL)
                PFAIL(p, line, "[%s] cannot be set in this document: %s", full, refused);

        if (!dotted) {
                int idx = section_find(a);
                if (idx < 0 && strcmp(a, CFG_STORE_SECTION) == 0)
                        PFAIL(p, line, "[" CFG_STORE_SECTION "] needs a store name: "
                                       "[" CFG_STORE_SECTION ".<name>]");
                if (idx < 0)
                        PFAIL(p, line, "unknown section [%s]", a);
                if (p->sec_line[idx] != 0)
                        PFAIL(p, line, "duplicate table [%s] (first on line %" PRIu32 ")", a,
                              p->sec_line[idx]);
                p->sec_line[idx] = line;
                p->sec = idx;
                return KW_OK;
        }
        if (strcmp(a, CFG_STORE_SECTION) != 0)
                PFAIL(p, line, "unknown section [%s.%s]", a, b);
        if (strlen(b) > CFG_STORE_NAME_MAX)
                PFAIL(p, line, "store name too long (max %u of A-Za-z0-9_-)", CFG_STORE_NAME_MAX);
        size_t i = 0;
        while (i < p->cfg->n_xks_stores && strcmp(p->cfg->xks_stores[i].name, b) != 0)
                i++;
        if (i < p->cfg->n_xks_stores && p->store_line[i] != 0)
                PFAIL(p, line, "duplicate table [" CFG_STORE_SECTION ".%s] (first on line %" PRIu32 ")",
                      b, p->store_line[i]);
        if (i == p->cfg->n_xks_stores) {
                if (i == KW_XKS_MAX_STORES)
                        PFAIL(p, line, "too many [" CFG_STORE_SECTION ".*] tables (max %d)",
                              KW_XKS_MAX_STORES);
                KW_TRY(store_add(p->cfg, b, &i));
        }
        p->store_line[i] = line;
        p->sec = SEC_STORE;
        p->store = i;
        return KW_OK;
}

/* The first secret set in an extended document, for its caller's rule. */
static void note_secret(struct parser *p, uint32_t line, const char *key, const char *label)
{
        if (p->ext == NULL || p->ext->secret_line != 0)
                return;
        p->ext->secret_line = line;
        snprintf(p->ext->secret_label, sizeof p->ext->secret_label, "'%s' in [%s]", key, label);
}

static enum key_type ext_type(enum kw_cfg_type t)
{
        switch (t) {
        case KW_CFG_STR: return KT_STR;
        case KW_CFG_INT: return KT_INT;
        case KW_CFG_BOOL: return KT_BOOL;
        case KW_CFG_LIST: return KT_LIST;
        }
        return KT_STR;
}

/* The value of row k at the cursor into base (seen: the line the key was
 * set on); range: check k's integer range now (the extension's keys; the
 * server's are checked by kw_config_validate). */
KW_MUST_USE static kw_result take_value(struct parser *p, uint32_t line, const char *key, const char *label,
                                        const struct cfg_key *k, void *base, uint32_t *seen, bool range)
{
        if (*seen != 0)
                PFAIL(p, line, "duplicate key '%s' in [%s] (first set on line %" PRIu32 ")", key,
                      label, *seen);
        struct value v = { 0 };
        kw_result r = KW_OK;
        KW_TRY_GOTO(r, parse_value(p, &v), out);
        if (v.type != k->type) {
                r = PERR(p, line, "key '%s' in [%s] must be %s, not %s", key, label,
                         type_name(k->type), type_name(v.type));
                goto out;
        }
        if (range && v.type == KT_INT && (v.i < k->min || v.i > k->max)) {
                r = PERR(p, line, "key '%s' in [%s] must be between %" PRId64 " and %" PRId64, key,
                         label, k->min, k->max);
                goto out;
        }
        KW_TRY_GOTO(r, expect_eol(p, "the value"), out);
        if ((k->flags & KF_SECRET) && v.s != NULL && v.s[0] != '\0')
                note_secret(p, line, key, label);
        key_assign(base, k, &v);
        *seen = line;
out:
        value_free(&v);
        return r;
}

/* The extension's `key = value` (the value is at the cursor). */
KW_MUST_USE static kw_result ext_keyval(struct parser *p, uint32_t line, const char *key,
                                        const char *label)
{
        const struct kw_config_ext *ext = p->ext;
        const struct kw_cfg_field *tab = p->sec == SEC_EXT ? ext->fields : ext->named_fields;
        const size_t n = p->sec == SEC_EXT ? ext->n_fields : ext->n_named_fields;
        const char *section = p->sec == SEC_EXT ? ext->fields[p->ext_sec].section : ext->named;
        size_t i = 0;
        while (i < n && !(strcmp(tab[i].section, section) == 0 && strcmp(tab[i].key, key) == 0))
                i++;
        if (i == n)
                PFAIL(p, line, "unknown key '%s' in [%s]", key, label);
        const struct kw_cfg_field *f = &tab[i];
        const struct cfg_key k = { section, f->key, ext_type(f->type),
                                   (f->flags & KW_CFG_SECRET) ? KF_SECRET : 0, f->off, NULL, 0,
                                   f->min, f->max };
        return take_value(p, line, key, label, &k, p->sec == SEC_EXT ? ext->base : p->named_base,
                          p->sec == SEC_EXT ? &ext->field_line[i] : &p->named_lines[i], true);
}

/* key = value, cursor at the key. */
KW_MUST_USE static kw_result parse_keyval(struct parser *p)
{
        const uint32_t line = p->line;
        char key[CFG_MAX_NAME + 1], label[2 * CFG_MAX_NAME + 2];
        KW_TRY(read_bare(p, key, "a key"));
        skip_ws(p);
        if (peek(p) == '.')
                PFAIL(p, line, "dotted keys are not supported (use a [section] header)");
        if (peek(p) != '=')
                PFAIL(p, line, "expected '=' after key '%s'", key);
        p->off++;
        skip_ws(p);
        if (p->sec == SEC_NONE)
                PFAIL(p, line, "key '%s' is outside any [section]", key);
        section_label(p, label, sizeof label);

        if (p->sec == SEC_EXT || p->sec == SEC_NAMED)
                return ext_keyval(p, line, key, label);
        if (p->sec == SEC_STORE) {
                int idx = key_find(store_keys, N_STORE_KEYS, CFG_STORE_SECTION, key);
                if (idx < 0)
                        PFAIL(p, line, "unknown key '%s' in [%s]", key, label);
                return take_value(p, line, key, label, &store_keys[idx], &p->cfg->xks_stores[p->store],
                                  &p->store_key_line[p->store][idx], false);
        }
        int idx = key_find(cfg_keys, N_KEYS, cfg_keys[p->sec].section, key);
        if (idx < 0)
                PFAIL(p, line, "unknown key '%s' in [%s]", key, label);
        return take_value(p, line, key, label, &cfg_keys[idx], p->cfg, &p->key_line[idx], false);
}

KW_MUST_USE static kw_result parse_document(struct parser *p)
{
        if (p->len >= 3 && memcmp(p->p, "\xef\xbb\xbf", 3) == 0)
                p->off = 3; /* UTF-8 byte order mark */
        while (p->off < p->len) {
                skip_ws(p);
                int c = peek(p);
                size_t n = newline_len(p);
                if (c < 0)
                        break;
                if (n != 0)
                        KW_TRY(eat_newline(p, n));
                else if (c == '#')
                        KW_TRY(skip_comment(p));
                else if (c == '[')
                        KW_TRY(parse_header(p));
                else if (is_bare(c))
                        KW_TRY(parse_keyval(p));
                else if (c == '"' || c == '\'')
                        PFAIL(p, p->line, "quoted keys are not supported");
                else if (c == '\r')
                        PFAIL(p, p->line, "carriage return without line feed");
                else if (is_control(c))
                        PFAIL(p, p->line, "control character");
                else if (c >= 0x80)
                        PFAIL(p, p->line, "unexpected non-ASCII byte (keys are [A-Za-z0-9_-])");
                else
                        PFAIL(p, p->line, "unexpected '%c' (expected a key, a [section] or a comment)", c);
        }
        return KW_OK;
}

kw_result kw_config_parse(const char *name, const char *text, size_t len, struct kw_config *cfg)
{
        return kw_config_parse_ext(name, text, len, cfg, NULL);
}

kw_result kw_config_parse_ext(const char *name, const char *text, size_t len,
                              struct kw_config *cfg, struct kw_config_ext *ext)
{
        KW_ENSURE(cfg != NULL && (text != NULL || len == 0), KW_ERR_INPUT);
        KW_ENSURE(ext == NULL || (ext->n_fields <= CFG_EXT_MAX_FIELDS &&
                                  (ext->n_fields == 0 || (ext->base != NULL && ext->field_line != NULL)) &&
                                  (ext->named == NULL || ext->named_add != NULL)),
                  KW_ERR_INPUT);
        if (name == NULL)
                name = "(config)";
        if (len > CFG_MAX_FILE) {
                kw_err_set_detail("%s: file too large (max %u bytes)", name, CFG_MAX_FILE);
                KW_BAIL(KW_ERR_CONFIG);
        }
        struct kw_config work;
        char *source = NULL;
        kw_result r = KW_OK;
        KW_TRY(config_copy(cfg, &work));
        struct parser p = {
                .name = name, .p = (const uint8_t *)text, .len = len, .line = 1,
                .cfg = &work, .sec = SEC_NONE, .ext = ext,
        };
        KW_TRY_GOTO(r, parse_document(&p), fail);
        KW_TRY_GOTO(r, str_dup(name, &source), fail);
        free(work.source);
        work.source = source;
        /* the lines are those of this document (an earlier one's are
         * forgotten with its name) */
        memset(work.key_line_, 0, sizeof work.key_line_);
        for (size_t i = 0; i < N_KEYS; i++)
                work.key_line_[i] = p.key_line[i];
        memset(work.store_line_, 0, sizeof work.store_line_);
        memset(work.store_key_line_, 0, sizeof work.store_key_line_);
        for (size_t i = 0; i < KW_XKS_MAX_STORES; i++) {
                work.store_line_[i] = p.store_line[i];
                for (size_t k = 0; k < N_STORE_KEYS; k++)
                        work.store_key_line_[i][k] = p.store_key_line[i][k];
        }
        config_release(cfg);
        *cfg = work; /* commit */
        return KW_OK;
fail:
        config_release(&work);
        return r;
}

uint32_t kw_config_key_line(const struct kw_config *cfg, const char *section, const char *key)
{
        int row = key_find(cfg_keys, N_KEYS, section, key);
        return row < 0 ? 0 : cfg->key_line_[row];
}

uint32_t kw_config_store_line(const struct kw_config *cfg, size_t i, const char *key)
{
        if (i >= KW_XKS_MAX_STORES)
                return 0;
        if (key == NULL)
                return cfg->store_line_[i];
        int k = key_find(store_keys, N_STORE_KEYS, CFG_STORE_SECTION, key);
        return k < 0 ? 0 : cfg->store_key_line_[i][k];
}

void kw_config_drop_stores(struct kw_config *cfg)
{
        for (size_t i = 0; i < cfg->n_xks_stores && i < KW_XKS_MAX_STORES; i++)
                store_release(&cfg->xks_stores[i]);
        memset(cfg->xks_stores, 0, sizeof cfg->xks_stores);
        cfg->n_xks_stores = 0;
}

void kw_cfg_fields_free(const struct kw_cfg_field *fields, size_t n, void *base)
{
        for (size_t i = 0; base != NULL && i < n; i++) {
                const struct cfg_key k = { fields[i].section, fields[i].key, ext_type(fields[i].type),
                                           (fields[i].flags & KW_CFG_SECRET) ? KF_SECRET : 0,
                                           fields[i].off, NULL, 0, 0, 0 };
                if (k.type == KT_LIST) {
                        struct kw_strlist *l = key_list(base, &k);
                        for (size_t j = 0; j < l->n; j++)
                                str_free(&l->v[j], k.flags & KF_SECRET);
                }
                key_free(base, &k);
        }
}

kw_result kw_config_doc_fail(const char *name, uint32_t line, const char *fmt, ...)
{
        char msg[224];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        kw_err_set_detail("%s:%" PRIu32 ": %s", name, line, msg);
        kw_trace(KW_ERR_CONFIG, __FILE__, __LINE__);
        return KW_RESULT(KW_ERR_CONFIG);
}

/* ---- writing a configuration back ---------------------------------------- */

KW_MUST_USE static kw_result put_str(struct kw_buf *b, const char *s)
{
        return kw_buf_put(b, s, strlen(s));
}

/* A basic string: quotes, backslashes and control characters escaped. */
KW_MUST_USE static kw_result put_quoted(struct kw_buf *b, const char *s)
{
        KW_TRY(put_str(b, "\""));
        for (; *s != '\0'; s++) {
                uint8_t c = (uint8_t)*s;
                char esc[8];
                if (c == '"' || c == '\\')
                        snprintf(esc, sizeof esc, "\\%c", c);
                else if (c == '\n')
                        snprintf(esc, sizeof esc, "\\n");
                else if (c == '\t')
                        snprintf(esc, sizeof esc, "\\t");
                else if (c < 0x20 || c == 0x7f)
                        snprintf(esc, sizeof esc, "\\u%04X", c);
                else
                        esc[0] = (char)c, esc[1] = '\0';
                KW_TRY(put_str(b, esc));
        }
        return put_str(b, "\"");
}

KW_MUST_USE static kw_result put_key(struct kw_buf *b, const void *base, const struct cfg_key *k)
{
        char num[32];
        if (k->type == KT_STR && key_cstr(base, k) == NULL)
                return KW_OK; /* unset (a store key without default) */
        KW_TRY(put_str(b, k->key));
        KW_TRY(put_str(b, " = "));
        switch (k->type) {
        case KT_STR: KW_TRY(put_quoted(b, key_cstr(base, k))); break;
        case KT_INT:
                snprintf(num, sizeof num, "%" PRId64, *(const int64_t *)((const char *)base + k->off));
                KW_TRY(put_str(b, num));
                break;
        case KT_BOOL:
                KW_TRY(put_str(b, *(const bool *)((const char *)base + k->off) ? "true" : "false"));
                break;
        case KT_LIST: {
                const struct kw_strlist *l = (const struct kw_strlist *)((const char *)base + k->off);
                KW_TRY(put_str(b, "["));
                for (size_t i = 0; i < l->n; i++) {
                        KW_TRY(put_str(b, i == 0 ? "" : ", "));
                        KW_TRY(put_quoted(b, l->v[i]));
                }
                KW_TRY(put_str(b, "]"));
                break;
        }
        }
        return put_str(b, "\n");
}

kw_result kw_config_write(const struct kw_config *cfg, struct kw_buf *out)
{
        KW_ENSURE(cfg != NULL && out != NULL, KW_ERR_INPUT);
        for (size_t i = 0; i < N_KEYS; i++) {
                if (i == 0 || strcmp(cfg_keys[i].section, cfg_keys[i - 1].section) != 0) {
                        KW_TRY(put_str(out, i == 0 ? "[" : "\n["));
                        KW_TRY(put_str(out, cfg_keys[i].section));
                        KW_TRY(put_str(out, "]\n"));
                }
                KW_TRY(put_key(out, cfg, &cfg_keys[i]));
        }
        for (size_t s = 0; s < cfg->n_xks_stores && s < KW_XKS_MAX_STORES; s++) {
                KW_TRY(put_str(out, "\n[" CFG_STORE_SECTION "."));
                KW_TRY(put_str(out, cfg->xks_stores[s].name));
                KW_TRY(put_str(out, "]\n"));
                for (size_t i = 0; i < N_STORE_KEYS; i++)
                        KW_TRY(put_key(out, &cfg->xks_stores[s], &store_keys[i]));
        }
        return KW_OK;
}

/* ------------------------------------------------------------------------ */
/* 4. Environment overrides                                                 */
/* ------------------------------------------------------------------------ */

static kw_result env_fail(const char *name, size_t n, int src_line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static kw_result env_fail(const char *name, size_t n, int src_line, const char *fmt, ...)
{
        char shown[97], msg[160];
        size_t k = 0;
        for (; k < n && k < sizeof shown - 1; k++)
                shown[k] = (name[k] > 0x20 && name[k] < 0x7f) ? name[k] : '?';
        shown[k] = '\0';
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        kw_err_set_detail("env %s%s: %s", shown, n > k ? "..." : "", msg);
        kw_trace(KW_ERR_CONFIG, __FILE__, src_line);
        return KW_RESULT(KW_ERR_CONFIG);
}
#define EFAIL(N, L, ...) return env_fail((N), (L), __LINE__, __VA_ARGS__)

/* True when name[0..n) is KEYWARD_<SECTION>_<KEY> for this row. */
static bool env_name_is(const char *name, size_t n, const struct cfg_key *k)
{
        const size_t plen = sizeof CFG_ENV_PREFIX - 1;
        size_t sl = strlen(k->section), kl = strlen(k->key);
        if (n != plen + sl + 1 + kl)
                return false;
        name += plen;
        for (size_t i = 0; i < sl; i++)
                if (name[i] != (k->section[i] == '.' ? '_' : to_upper(k->section[i])))
                        return false;
        if (name[sl] != '_')
                return false;
        for (size_t i = 0; i < kl; i++)
                if (name[sl + 1 + i] != to_upper(k->key[i]))
                        return false;
        return true;
}

/* Store name as it appears in an env name: upper case, '-' as '_'. */
static bool env_store_name_is(const char *store, const char *part, size_t n)
{
        if (strlen(store) != n)
                return false;
        for (size_t i = 0; i < n; i++) {
                int a = store[i] == '-' ? '_' : to_upper(store[i]);
                int b = part[i] == '-' ? '_' : to_upper(part[i]);
                if (a != b)
                        return false;
        }
        return true;
}

/* A string from the environment: UTF-8, no control characters, capped. */
static bool env_text_ok(const char *s, size_t n)
{
        if (n > CFG_MAX_STRING)
                return false;
        for (size_t i = 0; i < n;) {
                uint8_t c = (uint8_t)s[i];
                if (is_control(c))
                        return false;
                size_t l = utf8_len((const uint8_t *)s + i, n - i);
                if (l == 0)
                        return false;
                i += l;
        }
        return true;
}

/* Converts an environment value for row k into v. */
KW_MUST_USE static kw_result env_value(const char *name, size_t nlen, const struct cfg_key *k,
                                       const char *val, struct value *ret)
{
        size_t n = strlen(val);
        struct value v = { .type = k->type };
        switch (k->type) {
        case KT_STR:
                if (!env_text_ok(val, n))
                        EFAIL(name, nlen, "value must be UTF-8 without control characters, max %u bytes",
                              CFG_MAX_STRING);
                KW_TRY(str_dup(val, &v.s));
                break;
        case KT_INT: {
                enum int_status st = int_parse(val, n, &v.i);
                if (st != INT_OK)
                        EFAIL(name, nlen, "%s", int_status_msg(st));
                break;
        }
        case KT_BOOL:
                if (strcmp(val, "true") == 0 || strcmp(val, "1") == 0)
                        v.b = true;
                else if (strcmp(val, "false") == 0 || strcmp(val, "0") == 0)
                        v.b = false;
                else
                        EFAIL(name, nlen, "must be true, false, 1 or 0");
                break;
        case KT_LIST: {
                if (!env_text_ok(val, n))
                        EFAIL(name, nlen, "value must be UTF-8 without control characters, max %u bytes",
                              CFG_MAX_STRING);
                kw_result r = KW_OK;
                const char *s = val, *end = val + n;
                while (n != 0) {
                        const char *comma = memchr(s, ',', (size_t)(end - s));
                        const char *e = comma ? comma : end, *b = s;
                        while (b < e && (*b == ' ' || *b == '\t'))
                                b++;
                        const char *t = e;
                        while (t > b && (t[-1] == ' ' || t[-1] == '\t'))
                                t--;
                        if (t == b) {
                                r = env_fail(name, nlen, __LINE__,
                                             "empty item in comma-separated list");
                                break;
                        }
                        if (v.list.n == CFG_MAX_ITEMS) {
                                r = env_fail(name, nlen, __LINE__, "too many items (max %u)",
                                             CFG_MAX_ITEMS);
                                break;
                        }
                        char **nv = realloc(v.list.v, (v.list.n + 1) * sizeof *nv);
                        char *item = strndup(b, (size_t)(t - b));
                        if (nv != NULL)
                                v.list.v = nv;
                        if (nv == NULL || item == NULL) {
                                free(item);
                                r = KW_RESULT(KW_ERR_NOMEM);
                                break;
                        }
                        v.list.v[v.list.n++] = item;
                        if (comma == NULL)
                                break;
                        s = comma + 1;
                }
                if (!kw_ok(r)) {
                        value_free(&v);
                        return r;
                }
                break;
        }
        }
        *ret = v;
        return KW_OK;
}

/* KEYWARD_AWS_XKS_STORE_<NAME>_<KEY>: finds (or creates) the store. */
KW_MUST_USE static kw_result env_store_target(struct kw_config *cfg, const char *name, size_t n,
                                              const struct cfg_key **ret_key, void **ret_base)
{
        static const char pre[] = CFG_ENV_PREFIX "AWS_XKS_STORE_";
        const char *rest = name + sizeof pre - 1;
        size_t rn = n - (sizeof pre - 1);
        const struct cfg_key *k = NULL;
        size_t part_len = 0;
        for (size_t i = 0; i < N_STORE_KEYS && k == NULL; i++) {
                size_t kl = strlen(store_keys[i].key);
                if (rn < kl + 2 || rest[rn - kl - 1] != '_')
                        continue;
                bool eq = true;
                for (size_t j = 0; j < kl && eq; j++)
                        eq = rest[rn - kl + j] == to_upper(store_keys[i].key[j]);
                if (eq) {
                        k = &store_keys[i];
                        part_len = rn - kl - 1;
                }
        }
        if (k == NULL)
                EFAIL(name, n, "unknown setting");
        if (part_len > CFG_STORE_NAME_MAX)
                EFAIL(name, n, "store name too long (max %u of A-Za-z0-9_-)", CFG_STORE_NAME_MAX);
        for (size_t i = 0; i < part_len; i++)
                if (!is_bare((uint8_t)rest[i]))
                        EFAIL(name, n, "store name must be 1-%u characters of A-Za-z0-9_-",
                              CFG_STORE_NAME_MAX);
        size_t found = SIZE_MAX;
        for (size_t i = 0; i < cfg->n_xks_stores; i++) {
                if (!env_store_name_is(cfg->xks_stores[i].name, rest, part_len))
                        continue;
                if (found != SIZE_MAX)
                        EFAIL(name, n, "matches more than one [" CFG_STORE_SECTION ".*] table "
                                       "(names differ only in case or '-'/'_')");
                found = i;
        }
        if (found == SIZE_MAX) {
                if (cfg->n_xks_stores == KW_XKS_MAX_STORES)
                        EFAIL(name, n, "too many [" CFG_STORE_SECTION ".*] tables (max %d)",
                              KW_XKS_MAX_STORES);
                char sname[CFG_STORE_NAME_MAX + 1];
                for (size_t i = 0; i < part_len; i++)
                        sname[i] = (char)to_lower((uint8_t)rest[i]);
                sname[part_len] = '\0';
                KW_TRY(store_add(cfg, sname, &found));
        }
        *ret_key = k;
        *ret_base = &cfg->xks_stores[found];
        return KW_OK;
}

KW_MUST_USE static kw_result env_apply_one(struct kw_config *cfg, const char *entry)
{
        const char *eq = strchr(entry, '=');
        size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
        static const char store_pre[] = CFG_ENV_PREFIX "AWS_XKS_STORE_";
        const struct cfg_key *k = NULL;
        void *base = cfg;
        if (eq == NULL)
                EFAIL(entry, n, "malformed environment entry (no '=')");
        for (size_t i = 0; i < N_KEYS && k == NULL; i++)
                if (env_name_is(entry, n, &cfg_keys[i]))
                        k = &cfg_keys[i];
        if (k == NULL) {
                if (n < sizeof store_pre - 1 || memcmp(entry, store_pre, sizeof store_pre - 1) != 0)
                        EFAIL(entry, n, "unknown setting");
                KW_TRY(env_store_target(cfg, entry, n, &k, &base));
        }
        struct value v = { 0 };
        KW_TRY(env_value(entry, n, k, eq + 1, &v));
        key_assign(base, k, &v);
        value_free(&v);
        if (cfg->n_env_set_ < sizeof cfg->env_set_ / sizeof cfg->env_set_[0]) {
                size_t i = cfg->n_env_set_++;
                if (base == (void *)cfg)
                        snprintf(cfg->env_set_[i].label, sizeof cfg->env_set_[i].label, "[%s] %s",
                                 k->section, k->key);
                else
                        snprintf(cfg->env_set_[i].label, sizeof cfg->env_set_[i].label,
                                 "[" CFG_STORE_SECTION ".%s] %s",
                                 ((const struct kw_xks_store *)base)->name, k->key);
                snprintf(cfg->env_set_[i].var, sizeof cfg->env_set_[i].var, "%.*s", (int)n, entry);
        }
        return KW_OK;
}

/* KEYWARD_* variables that belong to other Keyward programs, not to this
 * configuration, and are therefore not "unknown settings": keywardctl's
 * client settings (a shell may export them), the fault-injecting PKCS#11
 * module that the custody process loads in tests (tests/faulthsm), and the
 * black-box harness's build directory.  A trailing '*' matches a prefix. */
static const char *const env_foreign[] = {
        "KEYWARD_URL", "KEYWARD_TOKEN_FILE", "KEYWARD_CACERT", "KEYWARD_BUILD",
        "KEYWARD_FAULTHSM_*",
};

static bool env_is_foreign(const char *entry)
{
        const char *eq = strchr(entry, '=');
        size_t n = eq ? (size_t)(eq - entry) : strlen(entry);
        for (size_t i = 0; i < sizeof env_foreign / sizeof env_foreign[0]; i++) {
                size_t fl = strlen(env_foreign[i]);
                if (env_foreign[i][fl - 1] == '*') {
                        if (n >= fl && memcmp(entry, env_foreign[i], fl - 1) == 0)
                                return true;
                } else if (n == fl && memcmp(entry, env_foreign[i], fl) == 0) {
                        return true;
                }
        }
        return false;
}

/* Applies every KEYWARD_* entry of envp (NULL: environ), in order. */
KW_MUST_USE static kw_result env_apply(struct kw_config *cfg, char *const *envp)
{
        if (envp == NULL)
                envp = environ;
        for (size_t i = 0; envp != NULL && envp[i] != NULL; i++)
                if (strncmp(envp[i], CFG_ENV_PREFIX, sizeof CFG_ENV_PREFIX - 1) == 0 &&
                    !env_is_foreign(envp[i]))
                        KW_TRY(env_apply_one(cfg, envp[i]));
        return KW_OK;
}

/* ------------------------------------------------------------------------ */
/* 5. Validation                                                            */
/* ------------------------------------------------------------------------ */

/* The environment variable that last set the setting msg starts with
 * ("[section] key"), or NULL when the file (or the default) set it. */
static const char *env_var_of(const struct kw_config *cfg, const char *msg)
{
        const char *var = NULL;
        for (size_t i = 0; i < cfg->n_env_set_; i++) {
                size_t ll = strlen(cfg->env_set_[i].label);
                if (strncmp(msg, cfg->env_set_[i].label, ll) == 0 &&
                    (msg[ll] == ' ' || msg[ll] == ':' || msg[ll] == '\0'))
                        var = cfg->env_set_[i].var; /* the last one wins, as in env_apply */
        }
        return var;
}

/* The schema row a message "[section] key: ..." is about, or -1; for
 * "[aws_xks_store.<name>] key: ..." the line of that key (or of the
 * store's header) into *ret_store_line. */
static int row_of_message(const struct kw_config *cfg, const char *msg, uint32_t *ret_store_line)
{
        const char *close = msg[0] == '[' ? strchr(msg, ']') : NULL;
        if (close == NULL || close[1] != ' ')
                return -1;
        char section[CFG_MAX_NAME + 1], key[CFG_MAX_NAME + 1];
        size_t sn = (size_t)(close - msg - 1), kn = strcspn(close + 2, ": ");
        if (sn > CFG_MAX_NAME || kn == 0 || kn > CFG_MAX_NAME)
                return -1;
        memcpy(section, msg + 1, sn);
        section[sn] = '\0';
        memcpy(key, close + 2, kn);
        key[kn] = '\0';
        const size_t pl = sizeof CFG_STORE_SECTION - 1;
        for (size_t i = 0; strncmp(section, CFG_STORE_SECTION ".", pl + 1) == 0 && i < cfg->n_xks_stores; i++)
                if (strcmp(cfg->xks_stores[i].name, section + pl + 1) == 0) {
                        uint32_t l = kw_config_store_line(cfg, i, key);
                        *ret_store_line = l != 0 ? l : kw_config_store_line(cfg, i, NULL);
                }
        return key_find(cfg_keys, N_KEYS, section, key);
}

/* The detail of a validation failure about msg: a value that came from the
 * environment is blamed on its variable; one from the file on the file,
 * with the line of key row `row` when it is known (row < 0: no line). */
static kw_result validate_fail_v(const struct kw_config *cfg, int row, int src_line,
                                 const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));
static kw_result validate_fail_v(const struct kw_config *cfg, int row, int src_line,
                                 const char *fmt, va_list ap)
{
        char msg[320];
        vsnprintf(msg, sizeof msg, fmt, ap);
        const char *var = env_var_of(cfg, msg);
        const char *src = cfg->source ? cfg->source : "(config)";
        uint32_t store_line = 0;
        if (row < 0)
                row = row_of_message(cfg, msg, &store_line);
        if (var != NULL)
                kw_err_set_detail("env %s: %s", var, msg);
        else if (row >= 0 && (size_t)row < N_KEYS && cfg->key_line_[row] != 0)
                kw_err_set_detail("%s:%" PRIu32 ": %s", src, cfg->key_line_[row], msg);
        else if (store_line != 0)
                kw_err_set_detail("%s:%" PRIu32 ": %s", src, store_line, msg);
        else
                kw_err_set_detail("%s: %s", src, msg);
        kw_trace(KW_ERR_CONFIG, __FILE__, src_line);
        return KW_RESULT(KW_ERR_CONFIG);
}

static kw_result validate_fail(const struct kw_config *cfg, int src_line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static kw_result validate_fail(const struct kw_config *cfg, int src_line, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        kw_result r = validate_fail_v(cfg, -1, src_line, fmt, ap);
        va_end(ap);
        return r;
}
#define VFAIL(C, ...) return validate_fail((C), __LINE__, __VA_ARGS__)

static kw_result validate_fail_key(const struct kw_config *cfg, int row, int src_line,
                                   const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static kw_result validate_fail_key(const struct kw_config *cfg, int row, int src_line,
                                   const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        kw_result r = validate_fail_v(cfg, row, src_line, fmt, ap);
        va_end(ap);
        return r;
}

static bool empty(const char *s) { return s == NULL || s[0] == '\0'; }

/* Every byte alphanumeric or in extra. */
static bool charset_ok(const char *s, const char *extra)
{
        for (; *s; s++)
                if (!is_alnum((uint8_t)*s) && strchr(extra, *s) == NULL)
                        return false;
        return true;
}

static bool port_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0 || n > 5)
                return false;
        long v = 0;
        for (size_t i = 0; i < n; i++) {
                if (!is_digit(s[i]))
                        return false;
                v = v * 10 + (s[i] - '0');
        }
        return v >= 1 && v <= 65535;
}

/* host:port (host [A-Za-z0-9.-]{1,253}) or [v6]:port. */
static bool listen_ok(const char *s)
{
        if (s[0] == '[') {
                const char *close = strchr(s, ']');
                if (close == NULL || close[1] != ':')
                        return false;
                size_t hl = (size_t)(close - s - 1);
                if (hl < 2 || hl > 45 || memchr(s + 1, ':', hl) == NULL)
                        return false;
                for (size_t i = 1; i <= hl; i++)
                        if (kw_hex_value((uint8_t)s[i]) < 0 && s[i] != ':' && s[i] != '.')
                                return false;
                return port_ok(close + 2);
        }
        const char *colon = strrchr(s, ':');
        if (colon == NULL)
                return false;
        size_t hl = (size_t)(colon - s);
        if (hl == 0 || hl > 253)
                return false;
        for (size_t i = 0; i < hl; i++)
                if (!is_alnum((uint8_t)s[i]) && s[i] != '.' && s[i] != '-')
                        return false;
        return port_ok(colon + 1);
}

static bool access_key_id_ok(const char *s)
{
        size_t n = strlen(s);
        if (n < 20 || n > 30)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= '2' && s[i] <= '7')))
                        return false;
        return true;
}

static bool secret_key_ok(const char *s)
{
        size_t n = strlen(s);
        return n >= 43 && n <= 64 && charset_ok(s, "+/=");
}

static bool xks_prefix_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0)
                return true;
        return s[0] == '/' && n <= 116 && s[n - 1] != '/' && charset_ok(s, "/_-");
}

static bool ekm_prefix_ok(const char *s)
{
        size_t n = strlen(s);
        if (n == 0)
                return true;
        return n <= 64 && s[0] != '/' && s[n - 1] != '/' && strstr(s, "//") == NULL &&
               charset_ok(s, "/-");
}

#define MSG_AKID "must be 20-30 characters of A-Z and 2-7"
#define MSG_SECRET "must be 43-64 characters of A-Z a-z 0-9 + / ="
#define MSG_XKS_PREFIX "must be \"\" or start with '/', max 116 characters of A-Za-z0-9/_-, not end in '/'"

/* One SigV4 credential set: the main [aws_xks_config] or a store. */
struct xks_creds {
        const char *label;        /* "aws_xks_config" or "aws_xks_store.<name>" */
        const char *k_region, *k_service, *k_akid, *k_secret, *k_prefix;
        const char *region, *service, *akid, *secret, *prefix;
};

KW_MUST_USE static kw_result validate_xks(const struct kw_config *cfg, const struct xks_creds *x)
{
        if (x->prefix == NULL)
                VFAIL(cfg, "[%s] %s: required (\"\" for none, or \"/name\")", x->label, x->k_prefix);
        if (!xks_prefix_ok(x->prefix))
                VFAIL(cfg, "[%s] %s: " MSG_XKS_PREFIX, x->label, x->k_prefix);
        if (empty(x->region) || !charset_ok(x->region, "-"))
                VFAIL(cfg, "[%s] %s: required, letters, digits and '-' (e.g. \"us-east-1\")",
                      x->label, x->k_region);
        if (empty(x->service) || !charset_ok(x->service, "-_"))
                VFAIL(cfg, "[%s] %s: required, letters, digits, '-' and '_' (e.g. \"kms-xks-proxy\")",
                      x->label, x->k_service);
        if (x->akid == NULL || !access_key_id_ok(x->akid))
                VFAIL(cfg, "[%s] %s: " MSG_AKID, x->label, x->k_akid);
        if (x->secret == NULL || !secret_key_ok(x->secret))
                VFAIL(cfg, "[%s] %s: " MSG_SECRET, x->label, x->k_secret);
        return KW_OK;
}

KW_MUST_USE static kw_result validate_store(const struct kw_config *cfg, const struct kw_xks_store *s)
{
        char label[CFG_STORE_NAME_MAX + sizeof CFG_STORE_SECTION + 2];
        size_t nl = s->name ? strlen(s->name) : 0;
        if (nl == 0 || nl > CFG_STORE_NAME_MAX || !charset_ok(s->name, "_-"))
                VFAIL(cfg, "[" CFG_STORE_SECTION ".<name>]: name must be 1-%u characters of A-Za-z0-9_-",
                      CFG_STORE_NAME_MAX);
        snprintf(label, sizeof label, CFG_STORE_SECTION ".%s", s->name);
        struct xks_creds x = {
                label, "region", "service", "access_key_id", "secret_access_key", "uri_prefix",
                s->region, s->service, s->access_key_id, s->secret_access_key, s->uri_prefix,
        };
        KW_TRY(validate_xks(cfg, &x));
        bool a2 = !empty(s->access_key_id_2), s2 = !empty(s->secret_access_key_2);
        if (a2 != s2)
                VFAIL(cfg, "[%s] access_key_id_2 and secret_access_key_2 must be given together", label);
        if (a2 && !access_key_id_ok(s->access_key_id_2))
                VFAIL(cfg, "[%s] access_key_id_2: " MSG_AKID, label);
        if (s2 && !secret_key_ok(s->secret_access_key_2))
                VFAIL(cfg, "[%s] secret_access_key_2: " MSG_SECRET, label);
        if (a2 && strcmp(s->access_key_id_2, s->access_key_id) == 0)
                VFAIL(cfg, "[%s] access_key_id_2: must differ from access_key_id", label);
        return KW_OK;
}

KW_MUST_USE static kw_result validate_tls(const struct kw_config *cfg)
{
        bool cert = !empty(cfg->tls.tls_cert_file), key = !empty(cfg->tls.tls_key_file);
        bool p12 = !empty(cfg->tls.tls_p12_file), pw = !empty(cfg->tls.tls_p12_password);
        if (cert != key)
                VFAIL(cfg, "[tls] tls_cert_file and tls_key_file must be given together");
        if (cert && p12)
                VFAIL(cfg, "[tls] give either tls_cert_file + tls_key_file or tls_p12_file, not both");
        if (pw && !p12)
                VFAIL(cfg, "[tls] tls_p12_password is set but tls_p12_file is not");
        if (!empty(cfg->tls.clients_ca_cert_file) && !cert && !p12)
                VFAIL(cfg, "[tls] clients_ca_cert_file needs a server certificate "
                           "(tls_cert_file + tls_key_file, or tls_p12_file)");
        if (strcmp(cfg->db.engine, "sqlcipher") != 0 && strcmp(cfg->db.engine, "postgresql") != 0)
                VFAIL(cfg, "[db] engine: must be \"sqlcipher\" (one appliance) or \"postgresql\" "
                      "(a fleet; docs/fleet.md)");
        if (strcmp(cfg->db.engine, "postgresql") == 0 && empty(cfg->db.conninfo))
                VFAIL(cfg, "[db] conninfo: required with engine = \"postgresql\" (a libpq "
                      "connection string, e.g. \"host=db.example dbname=keyward user=keyward "
                      "sslmode=verify-full sslrootcert=/etc/keyward/db-ca.pem\")");
        if (strcmp(cfg->db.engine, "postgresql") == 0 && cfg->audit.max_bytes != 0)
                VFAIL(cfg, "[audit] max_bytes: not with engine = \"postgresql\": PostgreSQL keeps "
                      "a table's size after a prune (VACUUM only makes the space reusable), so a "
                      "size bound cannot be measured; bound a fleet's audit with max_age_days");
        if (strcmp(cfg->db.engine, "postgresql") != 0 &&
            (!empty(cfg->db.conninfo) || !empty(cfg->db.password_file)))
                VFAIL(cfg, "[db] conninfo and password_file: only with engine = \"postgresql\"");
        if (strlen(cfg->db.node_name) > 64 || (!empty(cfg->db.node_name) &&
                                                 !kw_valid_node_name(cfg->db.node_name)))
                VFAIL(cfg, "[db] node_name: 1..64 of [A-Za-z0-9._-]");
        if (strcmp(cfg->tls.min_version, "1.2") != 0 && strcmp(cfg->tls.min_version, "1.3") != 0)
                VFAIL(cfg, "[tls] min_version: must be \"1.2\" or \"1.3\"");
        if (!charset_ok(cfg->tls.ciphers_tls12, "-_:+!@=.,"))
                VFAIL(cfg, "[tls] ciphers_tls12: must be an OpenSSL cipher list "
                           "(A-Za-z0-9 and -_:+!@=.,)");
        if (!charset_ok(cfg->tls.ciphersuites_tls13, "_:"))
                VFAIL(cfg, "[tls] ciphersuites_tls13: must be ':'-separated TLS 1.3 suite names");
        return KW_OK;
}

/* [audit]: a bound needs somewhere to export to (nothing is pruned that
 * was not exported), an absolute export_dir, and a size bound larger than
 * an empty key store. */
KW_MUST_USE static kw_result validate_audit(const struct kw_config *cfg)
{
        bool bounded = cfg->audit.max_age_days > 0 || cfg->audit.max_bytes > 0;
        if (bounded && empty(cfg->audit.export_dir))
                VFAIL(cfg, "[audit] export_dir: required when max_age_days or max_bytes is set "
                           "(records are exported there before they are pruned)");
        if (!empty(cfg->audit.export_dir) && cfg->audit.export_dir[0] != '/')
                VFAIL(cfg, "[audit] export_dir '%.64s': must be an absolute path",
                      cfg->audit.export_dir);
        if (cfg->audit.max_bytes > 0 && cfg->audit.max_bytes < 65536)
                VFAIL(cfg, "[audit] max_bytes: 0 (no bound) or at least 65536");
        return KW_OK;
}

/* True when row k of cfg still holds its default value. */
static bool key_is_default(const struct kw_config *cfg, const struct cfg_key *k)
{
        const char *base = (const char *)cfg;
        switch (k->type) {
        case KT_STR: {
                const char *s = key_cstr(cfg, k);
                if (s == NULL || k->def_s == NULL)
                        return s == k->def_s;
                return strcmp(s, k->def_s) == 0;
        }
        case KT_INT: return *(const int64_t *)(base + k->off) == k->def_i;
        case KT_BOOL: return *(const bool *)(base + k->off) == (k->def_i != 0);
        case KT_LIST: return ((const struct kw_strlist *)(base + k->off))->n == 0;
        }
        return true;
}

/*
 * A protocol section whose switch is off must hold nothing but the switch:
 * a credential, prefix or client list there would be ignored, the
 * protocol's URLs would answer 404, and nothing would say why (issue 10).
 * Cosmian's own configuration template has "aws_xks_enable = false" and
 * "azure_ekm_enable = false" lines, which is exactly where such settings
 * get filled in, so the server refuses rather than warns.  The first
 * setting that differs from its default is named, with its line.
 */
KW_MUST_USE static kw_result validate_off_section(const struct kw_config *cfg, const char *section,
                                                  const char *enable_key, bool enabled,
                                                  const char *what)
{
        if (enabled)
                return KW_OK;
        char label[CFG_MAX_NAME * 2 + 4];
        snprintf(label, sizeof label, "[%s] %s", section, enable_key);
        const char *enable_var = env_var_of(cfg, label);
        for (size_t i = 0; i < N_KEYS; i++) {
                const struct cfg_key *k = &cfg_keys[i];
                if (strcmp(k->section, section) != 0 || strcmp(k->key, enable_key) == 0 ||
                    key_is_default(cfg, k))
                        continue;
                return validate_fail_key(cfg, (int)i, __LINE__,
                                         "[%s] %s is set but %s is false%s%s%s, so %s: set %s = "
                                         "true, or remove the [%s] settings",
                                         section, k->key, enable_key,
                                         enable_var ? " (env " : "", enable_var ? enable_var : "",
                                         enable_var ? ")" : "", what, enable_key, section);
        }
        return KW_OK;
}

/* [admin] initial_token_sha256: exactly 64 hex digits, either case. */
static bool sha256_hex_ok(const char *s)
{
        size_t n = 0;
        for (; s[n] != '\0'; n++)
                if (n == 64 || kw_hex_value((uint8_t)s[n]) < 0)
                        return false;
        return n == 64;
}

/* [attestation] pcrs: "N,N,..." with distinct N in 0..23 ("" = none). */
static bool attest_pcrs_ok(const char *s)
{
        uint32_t seen = 0;
        while (*s != '\0') {
                if (*s < '0' || *s > '9')
                        return false;
                unsigned v = 0;
                for (int digits = 0; *s >= '0' && *s <= '9'; s++, digits++) {
                        if (digits == 2)
                                return false;
                        v = v * 10 + (unsigned)(*s - '0');
                }
                if (v > 23 || (seen & (1u << v)))
                        return false;
                seen |= 1u << v;
                if (*s == ',' && s[1] != '\0')
                        s++;
                else if (*s != '\0')
                        return false;
        }
        return true;
}

/* [attestation] ak_handle: "0x81" followed by 6 hex digits. */
static bool attest_handle_ok(const char *s)
{
        if (strlen(s) != 10 || strncmp(s, "0x81", 4) != 0)
                return false;
        for (size_t i = 4; i < 10; i++)
                if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') ||
                      (s[i] >= 'A' && s[i] <= 'F')))
                        return false;
        return true;
}

kw_result kw_config_validate(const struct kw_config *cfg)
{
        KW_ENSURE(cfg != NULL, KW_ERR_INPUT);
        /* Table-driven: every string present, required ones non-empty, ranges. */
        for (size_t i = 0; i < N_KEYS; i++) {
                const struct cfg_key *k = &cfg_keys[i];
                const void *base = cfg;
                if (k->type == KT_STR) {
                        const char *s = key_cstr(base, k);
                        if (s == NULL || ((k->flags & KF_REQUIRED) && s[0] == '\0'))
                                VFAIL(cfg, "[%s] %s: required, must not be empty", k->section, k->key);
                } else if (k->type == KT_INT) {
                        int64_t v = *(const int64_t *)((const char *)base + k->off);
                        if (v < k->min || v > k->max)
                                VFAIL(cfg, "[%s] %s: must be between %" PRId64 " and %" PRId64,
                                      k->section, k->key, k->min, k->max);
                }
        }
        if (cfg->db.deletion_min_wait_seconds > cfg->db.deletion_default_wait_seconds)
                VFAIL(cfg, "[db] deletion_min_wait_seconds must not exceed deletion_default_wait_seconds");
        KW_TRY(validate_audit(cfg));
        if (!listen_ok(cfg->http.listen))
                VFAIL(cfg, "[http] listen '%.64s': must be host:port or [v6]:port with port 1-65535",
                      cfg->http.listen);
        if (!empty(cfg->admin.listen) && !listen_ok(cfg->admin.listen))
                VFAIL(cfg, "[admin] listen '%.64s': must be \"\" (share [http] listen), host:port or "
                           "[v6]:port with port 1-65535", cfg->admin.listen);
        if (cfg->admin.enable && empty(cfg->admin.token_file))
                VFAIL(cfg, "[admin] token_file: required when enable = true");
        if (!empty(cfg->admin.initial_token_sha256) && !sha256_hex_ok(cfg->admin.initial_token_sha256))
                return validate_fail_key(cfg, key_find(cfg_keys, N_KEYS, "admin", "initial_token_sha256"),
                                         __LINE__, "[admin] initial_token_sha256: must be \"\" or the "
                                         "SHA-256 of the first admin token, 64 hex digits (as "
                                         "sha256sum prints it)");
        KW_TRY(validate_tls(cfg));
        if (strlen(cfg->custody.socket_path) > 107)
                VFAIL(cfg, "[custody] socket_path: too long for a Unix socket (max 107 bytes)");
        if (strcmp(cfg->sandbox.seccomp, "enforce") != 0 && strcmp(cfg->sandbox.seccomp, "log") != 0)
                VFAIL(cfg, "[sandbox] seccomp: \"enforce\" or \"log\"");
        if (!empty(cfg->custody.user) && strcmp(cfg->custody.user, cfg->front.user) == 0)
                VFAIL(cfg, "[front] user and [custody] user must differ: the front must not be able "
                           "to read the key store");
        static const char *const levels[] = { "debug", "info", "warn", "error" };
        bool level_ok = false;
        for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
                level_ok |= strcmp(cfg->log.level, levels[i]) == 0;
        if (!level_ok)
                VFAIL(cfg, "[log] level: must be one of debug, info, warn, error");
        if (!ekm_prefix_ok(cfg->ekm.azure_ekm_path_prefix))
                VFAIL(cfg, "[azure_ekm_config] azure_ekm_path_prefix: must be \"\" or at most 64 "
                           "characters of A-Za-z0-9/- without a leading, trailing or double '/'");
        if (!empty(cfg->ekm.azure_ekm_public_host) &&
            (strlen(cfg->ekm.azure_ekm_public_host) > 255 ||
             !charset_ok(cfg->ekm.azure_ekm_public_host, ".-:[]")))
                VFAIL(cfg, "[azure_ekm_config] azure_ekm_public_host: must be \"\" or host[:port] "
                           "(at most 255 characters of A-Za-z0-9.-:[])");
        for (size_t i = 0; i < cfg->ekm.azure_ekm_client_cns.n; i++)
                if (empty(cfg->ekm.azure_ekm_client_cns.v[i]))
                        VFAIL(cfg, "[azure_ekm_config] azure_ekm_client_cns: empty name in the list");
        if (cfg->xks.aws_xks_enable) {
                struct xks_creds x = {
                        "aws_xks_config", "aws_xks_region", "aws_xks_service",
                        "aws_xks_sigv4_access_key_id", "aws_xks_sigv4_secret_access_key",
                        "aws_xks_uri_prefix", cfg->xks.aws_xks_region, cfg->xks.aws_xks_service,
                        cfg->xks.aws_xks_sigv4_access_key_id,
                        cfg->xks.aws_xks_sigv4_secret_access_key, cfg->xks.aws_xks_uri_prefix,
                };
                KW_TRY(validate_xks(cfg, &x));
        }
        KW_TRY(validate_off_section(cfg, "azure_ekm_config", "azure_ekm_enable",
                                    cfg->ekm.azure_ekm_enable,
                                    "the Azure EKM API is not served (/azureekm/... answers 404)"));
        KW_TRY(validate_off_section(cfg, "aws_xks_config", "aws_xks_enable",
                                    cfg->xks.aws_xks_enable,
                                    "its key store is not served (its XKS URLs answer 404)"));
        if (!attest_pcrs_ok(cfg->attestation.pcrs))
                VFAIL(cfg, "[attestation] pcrs: must be a comma-separated list of distinct PCR "
                           "numbers 0-23, e.g. \"0,1,2,3,4,7,11\"");
        if (!attest_handle_ok(cfg->attestation.ak_handle))
                VFAIL(cfg, "[attestation] ak_handle: must be a persistent handle 0x81000000-0x81FFFFFF");
        KW_ENSURE(cfg->n_xks_stores <= KW_XKS_MAX_STORES, KW_ERR_INTERNAL);
        for (size_t i = 0; i < cfg->n_xks_stores; i++) {
                const struct kw_xks_store *s = &cfg->xks_stores[i];
                KW_TRY(validate_store(cfg, s));
                if (cfg->xks.aws_xks_enable && strcmp(s->uri_prefix, cfg->xks.aws_xks_uri_prefix) == 0)
                        VFAIL(cfg, "[" CFG_STORE_SECTION ".%s] uri_prefix: already used by "
                                   "[aws_xks_config] aws_xks_uri_prefix", s->name);
                for (size_t j = 0; j < i; j++) {
                        if (strcmp(cfg->xks_stores[j].name, s->name) == 0)
                                VFAIL(cfg, "[" CFG_STORE_SECTION ".%s] defined twice", s->name);
                        if (strcmp(cfg->xks_stores[j].uri_prefix, s->uri_prefix) == 0)
                                VFAIL(cfg, "[" CFG_STORE_SECTION ".%s] uri_prefix: already used by "
                                           "[" CFG_STORE_SECTION ".%s]", s->name,
                                      cfg->xks_stores[j].name);
                }
        }
        return KW_OK;
}

/* ------------------------------------------------------------------------ */
/* 6. Loading                                                               */
/* ------------------------------------------------------------------------ */

/* Reads a regular file of at most CFG_MAX_FILE bytes.  The caller wipes and
 * frees *ret (the file may hold secrets). */
KW_MUST_USE static kw_result file_read(const char *path, char **ret, size_t *ret_len)
{
        char eb[128];
        int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0) {
                int e = errno;
                kw_err_set_detail("%s: cannot open: %s", path, strerror_r(e, eb, sizeof eb));
                KW_BAIL(KW_ERR_CONFIG);
        }
        kw_result r = KW_OK;
        char *buf = NULL;
        size_t cap = 0, len = 0;
        struct stat st;
        if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
                kw_err_set_detail("%s: not a regular file", path);
                r = KW_RESULT(KW_ERR_CONFIG);
                goto out;
        }
        if (st.st_size < 0 || (uint64_t)st.st_size > CFG_MAX_FILE) {
                kw_err_set_detail("%s: file too large (max %u bytes)", path, CFG_MAX_FILE);
                r = KW_RESULT(KW_ERR_CONFIG);
                goto out;
        }
        cap = (size_t)st.st_size + 1; /* +1 detects growth after fstat */
        buf = malloc(cap);
        if (buf == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto out;
        }
        for (;;) {
                ssize_t n = read(fd, buf + len, cap - len);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        int e = errno;
                        kw_err_set_detail("%s: read failed: %s", path, strerror_r(e, eb, sizeof eb));
                        r = KW_RESULT(KW_ERR_CONFIG);
                        goto out;
                }
                if (n == 0)
                        break;
                len += (size_t)n;
                if (len == cap) {
                        kw_err_set_detail("%s: file changed while being read", path);
                        r = KW_RESULT(KW_ERR_CONFIG);
                        goto out;
                }
        }
        *ret = buf;
        *ret_len = len;
        buf = NULL; /* transferred */
out:
        if (buf != NULL) {
                kw_wipe(buf, cap);
                free(buf);
        }
        close(fd);
        return r;
}

static int kw_valid_node_name(const char *s)
{
        if (*s == '\0')
                return 0;
        for (; *s != '\0'; s++)
                if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' && *s != '-')
                        return 0;
        return 1;
}

const char *kw_config_node_name(const struct kw_config *cfg, char out[65])
{
        if (!empty(cfg->db.node_name)) {
                snprintf(out, 65, "%s", cfg->db.node_name);
                return out;
        }
        char host[256] = "";
        if (gethostname(host, sizeof host - 1) != 0)
                host[0] = '\0';
        size_t n = 0;
        for (const char *p = host; *p != '\0' && n < 64; p++)
                if (isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-')
                        out[n++] = *p;
        out[n] = '\0';
        if (n == 0)
                snprintf(out, 65, "keyward");
        return out;
}

/* db.key_file defaults to db.path + ".key". */
KW_MUST_USE static kw_result resolve_key_file(struct kw_config *cfg)
{
        if (!empty(cfg->db.key_file) || empty(cfg->db.path))
                return KW_OK;
        char *s = NULL;
        KW_ENSURE(asprintf(&s, "%s.key", cfg->db.path) >= 0, KW_ERR_NOMEM);
        free(cfg->db.key_file);
        cfg->db.key_file = s;
        return KW_OK;
}

kw_result kw_config_load(const char *path, char *const *envp, struct kw_config **ret)
{
        struct kw_config *cfg = NULL;
        kw_result r = KW_OK;
        kw_err_clear_detail();
        KW_TRY(kw_config_defaults(&cfg));
        if (path != NULL) {
                char *text = NULL;
                size_t len = 0;
                KW_TRY_GOTO(r, file_read(path, &text, &len), out);
                r = kw_config_parse(path, text, len, cfg);
                kw_wipe(text, len);
                free(text);
                if (!kw_ok(r))
                        goto out;
        }
        KW_TRY_GOTO(r, env_apply(cfg, envp), out);
        KW_TRY_GOTO(r, resolve_key_file(cfg), out);
        KW_TRY_GOTO(r, kw_config_validate(cfg), out);
        *ret = cfg;
        cfg = NULL; /* transferred */
out:
        kw_config_free(cfg);
        return r;
}
