/*
 * ctl.h - keywardctl, the admin CLI: shared types of its files.
 *
 *   main.c     global options, the static command table, help, dispatch
 *   client.c   the HTTP(S) client (libcurl), token file, status -> exit code
 *   util.c     pure helpers: argument values, URL escaping, key material files
 *   output.c   human output: aligned fields and tables from JSON documents
 *   commands.c one function per command
 *   audit.c    audit verify-export: an export file checked offline
 *   db.c       db export|import: keywardd run locally, no network
 *
 * Functions return an exit code (enum ctl_exit) and print their own error
 * as "keywardctl: <message>" on stderr.  The token is never printed.
 */
#ifndef KW_CTL_H
#define KW_CTL_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "../common/buf.h"
#include "../common/secret.h"

#ifndef KEYWARD_VERSION
#define KEYWARD_VERSION "0.1.0"
#endif

enum ctl_exit {
        CTL_OK = 0,        /* success                                       */
        CTL_REFUSED = 1,   /* the server refused the request (4xx)          */
        CTL_USAGE = 2,     /* usage error                                   */
        CTL_CONNECT = 3,   /* cannot connect, TLS failure                   */
        CTL_AUTH = 4,      /* 401/403, or no usable token file              */
        CTL_SERVER = 5,    /* 5xx, or a reply that makes no sense           */
        CTL_BROKEN = 6,    /* audit verify (or verify-export) found a broken chain */
};

struct ctl {
        const char *url;          /* base URL, no trailing '/'  */
        const char *token_file;
        const char *cacert;       /* NULL: system store         */
        int insecure;
        int json;                 /* print the server's JSON    */
        struct kw_secret token;   /* loaded on first request    */
};

/* Parsed arguments of one command. */
#define CTL_MAX_POS 4
#define CTL_MAX_OPTS 64
#define CTL_OPT_FLAG 0             /* --name                                */
#define CTL_OPT_VALUE 1            /* --name VALUE, at most once            */
#define CTL_OPT_REPEAT 2           /* --name VALUE, any number of times     */
struct ctl_opt {
        const char *name;         /* without "--"               */
        int has_value;            /* CTL_OPT_*                  */
        const char *help;
};
struct ctl_args {
        const char *pos[CTL_MAX_POS];
        size_t npos;
        struct {
                const char *name;
                const char *value;    /* NULL for flags */
        } o[CTL_MAX_OPTS];
        size_t no;
};

/* Last value of option name, or NULL; ctl_args_has for flags. */
const char *ctl_args_get(const struct ctl_args *a, const char *name);
int ctl_args_has(const struct ctl_args *a, const char *name);

/* ---- client.c ---- */
struct ctl_resp {
        long status;
        struct kw_buf body;       /* NUL-terminated via kw_buf_cstr */
};
/* One request: method, path (with query) under the base URL, an optional
 * JSON body (NULL: none).  CTL_OK when any HTTP response arrived (see
 * ctl_resp_check); CTL_CONNECT / CTL_AUTH (token file) otherwise, printed. */
int ctl_request(struct ctl *c, const char *method, const char *path, const struct kw_buf *body,
                struct ctl_resp *ret);
/* CTL_OK for 2xx; otherwise prints the server's message and returns the
 * exit code of the status. */
int ctl_resp_check(const struct ctl_resp *r);
void ctl_resp_free(struct ctl_resp *r);
void ctl_close(struct ctl *c);

/* ---- util.c (no network: unit-testable) ---- */
int ctl_exit_for_status(long status);
/* Strict decimal in [min, max]; 0 on success. */
int ctl_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret);
/* Percent-encodes everything but RFC 3986 unreserved characters. */
KW_MUST_USE kw_result ctl_url_escape(const char *s, struct kw_buf *out);
/* Appends "&name=value" (or "?name=value" for the first) to path. */
KW_MUST_USE kw_result ctl_query_add(struct kw_buf *path, const char *name, const char *value);
/* "k=v" -> member k of obj (obj an object); -1 when malformed or duplicate. */
int ctl_tag_add(cJSON *obj, const char *kv);
/* Every value of the repeatable option name, in order, as a new JSON array
 * of strings; *ret_bad (when not NULL) is set to the first empty or repeated
 * value, and NULL is returned.  An empty array when the option is absent. */
cJSON *ctl_args_list(const struct ctl_args *a, const char *name, const char **ret_bad);
/* "encrypt,decrypt" -> a new JSON array of names; NULL when malformed. */
cJSON *ctl_ops_parse(const char *csv);
/* Reads a whole file of at most max bytes into out (wiped on free). */
KW_MUST_USE kw_result ctl_read_file(const char *path, size_t max, struct kw_buf *out);
/* A token file's content without trailing whitespace; KW_ERR_AUTH when
 * empty or not a bearer token. */
KW_MUST_USE kw_result ctl_token_parse(const uint8_t *p, size_t n, struct kw_secret *ret);
/* An AES key file: exactly 32 raw bytes, or base64 of 32 bytes (surrounding
 * whitespace allowed).  KW_ERR_BAD_LENGTH / KW_ERR_BAD_ENCODING. */
KW_MUST_USE kw_result ctl_material_parse(const uint8_t *p, size_t n, struct kw_secret *ret);
/* Prints "keywardctl: <fmt>" on stderr. */
void ctl_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- output.c ---- */
/* One value as text: strings as is, integers without fraction, arrays of
 * scalars joined by ',', objects as compact JSON, null as "-". */
void ctl_value_text(const cJSON *v, char *out, size_t outsz);
/* "name:  value" lines for the members of obj (nested objects flattened as
 * parent.child), names aligned. */
void ctl_print_fields(const cJSON *obj);
struct ctl_col {
        const char *header;
        const char *fields[4];    /* first present member wins */
};
/* A table of the objects of arr, one column per ctl_col. */
void ctl_print_table(const cJSON *arr, const struct ctl_col *cols, size_t ncols);

/* ---- commands.c ---- */
int ctl_cmd_status(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_create(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_import(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_list(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_get(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_versions(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_ekm_info(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_attestation(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_nodes(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_enable(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_disable(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_rotate(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_delete(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_cancel_deletion(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_set_rules(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_set_tags(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_key_set_ops(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_audit_list(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_audit_verify(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_audit_prune(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_audit_verify_export(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_token_create(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_token_list(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_token_revoke(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_user_list(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_user_create(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_user_delete(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_user_passwd(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_xks_list(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_xks_create(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_xks_rotate(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_xks_import_file(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_xks_delete_credential(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_xks_delete(struct ctl *c, const struct ctl_args *a);
/* ---- db.c: run keywardd --db-export / --db-import locally ---- */
int ctl_cmd_db_export(struct ctl *c, const struct ctl_args *a);
int ctl_cmd_db_import(struct ctl *c, const struct ctl_args *a);

#endif
