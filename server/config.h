/*
 * config.h - keywardd configuration: a TOML subset -> typed struct.
 *
 * Supported TOML: comments, [table] and [dotted.table] headers, bare keys,
 * basic "strings" (with \" \\ \n \t \uXXXX escapes), 'literal strings' and
 * '''multi-line literal strings''' (no escapes; for PEM text),
 * decimal integers (optional sign, '_' separators), true/false, and arrays of
 * strings (may span lines, trailing comma allowed).  Anything else, unknown
 * sections and unknown keys included, is an error "file:line: message".
 *
 * Every key can be overridden from the environment as
 * KEYWARD_<SECTION>_<KEY> (upper case; '.' in a section name becomes '_'),
 * arrays as comma-separated values.  Environment overrides are applied after
 * the file and are validated the same way ("env KEYWARD_HTTP_LISTEN: ...").
 *
 * Strings are heap-allocated and owned by the config; secrets among them
 * (tls_p12_password, aws secret keys) are wiped by kw_config_free.
 */
#ifndef KW_CONFIG_H
#define KW_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/result.h"

#define KW_CONFIG_DEFAULT_PATH "/etc/keyward/keyward.toml"
#define KW_XKS_MAX_STORES 16

struct kw_strlist {
        char **v;
        size_t n;
};

struct kw_xks_store {                /* [aws_xks_store.<name>]                        */
        char *name;                  /* the table's name                              */
        char *uri_prefix;            /* e.g. "/tenant-a" ("" = none); required        */
        char *region;                /* default "us-east-1"                           */
        char *service;               /* default "kms-xks-proxy"                       */
        char *access_key_id;         /* required                                      */
        char *secret_access_key;     /* required (secret)                             */
        char *access_key_id_2;       /* optional second pair, for rotation            */
        char *secret_access_key_2;   /* (secret)                                      */
        char *client_ca_file;        /* optional mTLS                                 */
        struct kw_strlist client_subjects;
};

struct kw_config {
        char *source;                /* file path read, or "(defaults)"               */

        struct {                     /* [http]                                        */
                char *listen;        /* "127.0.0.1:9998"; "[::1]:9998" accepted       */
                int64_t max_connections;     /* 256                                   */
                int64_t max_connections_per_client; /* 32: per IPv4 address / IPv6 /64  */
                int64_t idle_timeout_under_load_ms; /* 1000: idle connections closed
                                                       after this when workers run short */
                int64_t request_timeout_ms;  /* 10000                                 */
                int64_t keep_alive_timeout_ms; /* 30000                               */
                int64_t max_body_bytes;      /* 65536                                 */
        } http;

        struct {                     /* [tls] (Cosmian names kept)                    */
                char *tls_cert_file; /* PEM certificate chain                         */
                char *tls_key_file;  /* PEM private key                               */
                char *tls_p12_file;  /* or PKCS#12                                    */
                char *tls_p12_password;      /* secret                                */
                char *clients_ca_cert_file;  /* CA for client certificates (optional) */
                char *min_version;   /* "1.2" (default) or "1.3"                      */
                char *ciphers_tls12; /* OpenSSL cipher list for TLS 1.2               */
                char *ciphersuites_tls13;    /* TLS 1.3 suites                        */
        } tls;

        struct {                     /* [db]                                          */
                char *path;          /* "/var/lib/keyward/keyward.db"                 */
                char *key_file;      /* wrapped database key; default path + ".key"   */
                int64_t key_cache_size;      /* unwrapped keys kept, 1024             */
                int64_t secure_heap_bytes;   /* 16 MiB                                */
                int64_t deletion_min_wait_seconds;    /* 604800 (7 days)              */
                int64_t deletion_default_wait_seconds;/* 2592000 (30 days)            */
                int64_t audit_flush_ms;      /* 50: group commit of key-use audit     */
                /* fleet mode (docs/fleet.md) */
                char *engine;        /* "sqlcipher" (default) | "postgresql"          */
                char *conninfo;      /* libpq connection string (postgresql)          */
                char *password_file; /* its password, optional                        */
                char *node_name;     /* "" : the host name (kw_config_node_name)      */
                int64_t pool_size;           /* 4 connections                         */
                int64_t connect_timeout_seconds; /* 3                                 */
                int64_t statement_timeout_ms;    /* 5000                              */
                int64_t change_poll_ms;      /* 250: backstop for lost notifications  */
                int64_t heartbeat_ms;        /* 1000                                  */
                int64_t outage_grace_seconds;/* 300: cached keys serve while the DB is
                                                unreachable, then are dropped         */
                int64_t cache_revalidate_seconds; /* 30: each cached key's row read
                                                again and compared (the bounded
                                                lifetime of what a node caches)     */
        } db;

        struct {                     /* [audit] retention (docs/audit.md)             */
                int64_t max_age_days;        /* 0: no age bound                       */
                int64_t max_bytes;           /* 0: no size bound; else the database's
                                                bytes in use (>= 65536)               */
                char *export_dir;            /* records are exported here (gzip JSON
                                                lines) before they are pruned; required
                                                with a bound                          */
                int64_t check_interval_seconds; /* 10: measure, export, prune, warn   */
                int64_t warn_free_percent;   /* 10: warn when a file system holding the
                                                database or export_dir has less free  */
        } audit;

        struct {                     /* [hsm]                                         */
                char *module;        /* PKCS#11 module path; required                 */
                char *token_label;   /* required                                      */
                char *pin_file;      /* required                                      */
                char *master_key_label;      /* "keyward-master"                      */
                bool create_master_key;      /* true: create on first start if absent */
                bool evaluation;     /* false; true: the token is a local SoftHSM2 one,
                                        for evaluation only (said in /healthz,
                                        /metrics and the start log records)    */
                int64_t sessions;    /* 4                                             */
                int64_t timeout_ms;  /* 2000                                          */
                int64_t retry_interval_ms;   /* 1000                                  */
        } hsm;

        struct {                     /* [custody]                                     */
                char *socket_path;   /* "/run/keyward/custody.sock"                   */
                char *user;          /* started as root: the custody process's user,
                                        "keyward-custody" (owns the key store, PIN)   */
                int64_t connections; /* front->custody connections, 4 (many requests
                                        in flight on each)                            */
                int64_t workers;     /* custody threads for requests that need the
                                        HSM or the database, 16                       */
                int64_t timeout_ms;  /* per call, 5000                                */
        } custody;

        struct {                     /* [front]                                       */
                char *user;          /* started as root: the network front's user,
                                        "keyward-front" (reads its TLS key, config)   */
        } front;

        struct {                     /* [sandbox]                                     */
                char *seccomp;       /* "enforce" (default) or "log"                  */
        } sandbox;

        struct {                     /* [admin]                                       */
                bool enable;         /* true                                          */
                char *listen;        /* "" = share [http] listen                      */
                char *token_file;    /* first admin token, 0600; "/var/lib/keyward/admin.token" */
                char *initial_token_sha256;  /* "" or 64 hex digits (either case): the
                                        first admin token is the one with this
                                        SHA-256, and no token_file is written
                                        (secret: a weak token could be guessed) */
        } admin;

        struct {                     /* [console] (docs/api.md "Sessions")            */
                bool enable;         /* true: the session and user routes (and /ui/)  */
                int64_t session_idle_seconds;  /* 900: a session unused this long ends */
                int64_t session_max_seconds;   /* 28800: a session's absolute lifetime */
                int64_t login_max_failures;    /* 5: consecutive failures before a lock */
                int64_t lockout_seconds;       /* 30: the first lock; doubles after each
                                                  further failure                      */
                int64_t lockout_max_seconds;   /* 900: the longest lock                */
        } console;

        struct {                     /* [log]                                         */
                char *level;         /* "info"                                        */
                bool requests;       /* one line per request, true                    */
        } log;

        struct {                     /* [azure_ekm_config] (Cosmian names kept)       */
                bool azure_ekm_enable;
                char *azure_ekm_path_prefix;         /* "" or [A-Za-z0-9/-]{1,64}      */
                char *azure_ekm_proxy_vendor;
                char *azure_ekm_proxy_name;
                char *azure_ekm_ekm_vendor;
                char *azure_ekm_ekm_product;
                bool azure_ekm_disable_client_auth;
                struct kw_strlist azure_ekm_client_cns;
                char *azure_ekm_client_ca_file;      /* ours: EKM-specific CA          */
                int64_t azure_ekm_rate_limit;        /* requests/s, 0 = none           */
                char *azure_ekm_public_host;         /* ours: host[:port] Azure reaches,
                                                        for the key URLs ("" = [http] listen) */
        } ekm;

        struct {                     /* [aws_xks_config] (Cosmian names kept)         */
                bool aws_xks_enable;
                char *aws_xks_region;
                char *aws_xks_service;               /* "kms-xks-proxy"                */
                char *aws_xks_sigv4_access_key_id;
                char *aws_xks_sigv4_secret_access_key;  /* secret                      */
                char *aws_xks_uri_prefix;            /* ours: "" = no prefix           */
                char *aws_xks_vendor;                /* ours: health xksProxyVendor    */
                char *aws_xks_model;
                int64_t aws_xks_fleet_size;
                int64_t aws_xks_rate_limit;          /* per store, authenticated requests/s; 1800 */
                int64_t aws_xks_unauthenticated_rate_limit; /* per client address, requests/s
                                                        that fail authentication; 20 (0 = none) */
        } xks;

        struct {                     /* [attestation] (docs/attestation.md)           */
                bool enable;         /* false: GET /attestation on the main listener  */
                char *tpm_tcti;      /* "device:/dev/tpmrm0"; "swtpm:host=..,port=.."; "" = no TPM */
                char *pcrs;          /* "0,1,2,3,4,7,11" (sha256 bank, quote order)   */
                char *ak_handle;     /* "0x81000003": persistent AK (created if absent) */
                char *snp_device;    /* "/dev/sev-guest"; "" = none                   */
                char *tsm_report_dir;/* "/sys/kernel/config/tsm/report"; "" = none     */
                char *event_log;     /* TCG boot event log; "" = none                 */
                char *expected_values_id; /* id of the image's expected-values document */
                char *unlock_record; /* "/run/keyward/unlock.json": keyward-unlock's record
                                        of this boot, read once at start (GET status) */
                int64_t rate_limit;  /* requests/s, 10; 0 = none                      */
        } attestation;

        struct kw_xks_store xks_stores[KW_XKS_MAX_STORES];
        size_t n_xks_stores;

        /* private: which environment variable set which "[section] key", so
         * that a validation error names the variable rather than the file */
        struct {
                char label[80];
                char var[96];
        } env_set_[32];
        size_t n_env_set_;
        /* private: the line of the last parsed file on which each key of the
         * schema was set (0 = not set there), so that a cross-field
         * validation error can point at it ("file:12: ...") */
        uint32_t key_line_[128];
        /* private: the same for each [aws_xks_store.<name>] (header, keys) */
        uint32_t store_line_[KW_XKS_MAX_STORES];
        uint32_t store_key_line_[KW_XKS_MAX_STORES][12];
};

/* Defaults for every key (as documented above). */
KW_MUST_USE kw_result kw_config_defaults(struct kw_config **ret);
/* Reads path (NULL: defaults only), then the environment, then validates.
 * On failure: KW_ERR_CONFIG and kw_err_detail() == "file:line: message". */
KW_MUST_USE kw_result kw_config_load(const char *path, char *const *envp, struct kw_config **ret);
/* Parses TOML text (name used in messages) over the defaults; no env, no
 * validation.  For tests and the fuzzer. */
KW_MUST_USE kw_result kw_config_parse(const char *name, const char *text, size_t len,
                                      struct kw_config *cfg);
/* ---- Documents that extend this schema ------------------------------------
 *
 * The provisioning document (provisioning/doc.c) is this file's syntax with
 * more tables: the same parser reads it, with the same messages, and puts
 * the server's tables into a struct kw_config and the extension's into a
 * struct of the caller's, described by a table of fields like ours. */
enum kw_cfg_type { KW_CFG_STR, KW_CFG_INT, KW_CFG_BOOL, KW_CFG_LIST };
#define KW_CFG_SECRET 1u     /* wiped on free; never echoed; counted as a secret */

struct kw_cfg_field {
        const char *section; /* "provision", "provision.disk"; named tables: the prefix */
        const char *key;
        enum kw_cfg_type type;
        unsigned flags;      /* KW_CFG_SECRET */
        size_t off;          /* offset of the member in the struct it fills */
        int64_t min, max;    /* KW_CFG_INT: accepted range, checked while parsing */
};

struct kw_config_ext {
        /* tables with fixed names, filling *base; field_line[i] (n_fields
         * slots, zeroed by the caller) gets the line field i was set on */
        const struct kw_cfg_field *fields;
        size_t n_fields;
        void *base;
        uint32_t *field_line;
        /* [<named>.<name>] tables (NULL: none): named_add makes the entry for
         * a new name and returns the struct it fills and its line slots
         * (n_named_fields each); an error it returns is reported on the
         * header's line (kw_err_detail() is its message) */
        const char *named;
        const struct kw_cfg_field *named_fields;
        size_t n_named_fields;
        kw_result (*named_add)(void *ctx, const char *name, uint32_t line, void **ret_base,
                               uint32_t **ret_lines);
        void *ctx;
        /* server tables refused in this document: {section, why} pairs, up
         * to a {NULL, NULL} row */
        const char *const (*refused)[2];
        /* out: the first line that sets a secret (a non-empty value of a
         * secret key, the server's or the extension's), and which key */
        uint32_t secret_line;
        char secret_label[208];
};

/* The line of the last parsed document on which "[section] key" was set, 0
 * when it was not (or is no key of the schema).  kw_config_store_line: of
 * key (NULL: the header) in the store at index i. */
uint32_t kw_config_key_line(const struct kw_config *cfg, const char *section, const char *key);
uint32_t kw_config_store_line(const struct kw_config *cfg, size_t i, const char *key);
/* Forgets every [aws_xks_store.*] (their secrets wiped). */
void kw_config_drop_stores(struct kw_config *cfg);

/* kw_config_parse over cfg and ext together.  On failure cfg is unchanged,
 * while ext's struct may hold some values: the caller frees it whole. */
KW_MUST_USE kw_result kw_config_parse_ext(const char *name, const char *text, size_t len,
                                          struct kw_config *cfg, struct kw_config_ext *ext);
/* Frees (and wipes, for secrets) the strings and lists fields point into. */
void kw_cfg_fields_free(const struct kw_cfg_field *fields, size_t n, void *base);
/* The error kw_config_parse_ext gives: KW_ERR_CONFIG, kw_err_detail() =
 * "name:line: message", for the extension's own cross-field checks. */
KW_MUST_USE kw_result kw_config_doc_fail(const char *name, uint32_t line, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

/* The configuration as a document kw_config_parse reads back to the same
 * values: every key of every table, then the stores.  Secrets included (the
 * caller writes it where only keywardd's users read it). */
struct kw_buf;
KW_MUST_USE kw_result kw_config_write(const struct kw_config *cfg, struct kw_buf *out);

/* Cross-field checks (ports, required keys, prefix alphabets, files given in
 * pairs...).  Does not touch the file system. */
KW_MUST_USE kw_result kw_config_validate(const struct kw_config *cfg);
void kw_config_free(struct kw_config *cfg);
/* [db] node_name, or the host name reduced to [A-Za-z0-9._-] (at most 64),
 * or "keyward"; written to out, which is returned. */
const char *kw_config_node_name(const struct kw_config *cfg, char out[65]);
/* Overwrites every secret value (tls_p12_password, the SigV4 secret access
 * keys) with NULs where it lies, leaving "": for the processes that must
 * not keep them (the parent at once, the front once TLS is loaded). */
void kw_config_wipe_secrets(struct kw_config *cfg);

#endif
