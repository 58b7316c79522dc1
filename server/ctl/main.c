/*
 * main.c - keywardctl: global options, the static command table, help at
 * every level, dispatch.
 *
 *   keywardctl [--url URL] [--token-file FILE] [--cacert FILE | --insecure]
 *              [--json] COMMAND ...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "ctl.h"

typedef int (*ctl_fn)(struct ctl *c, const struct ctl_args *a);

struct ctl_command {
        const char *group;          /* "key", "audit", "token", "user", ...  */
        const char *name;
        const char *args;           /* positional arguments, for usage    */
        size_t npos;                /* how many (exactly)                 */
        const char *summary;
        const struct ctl_opt *opts; /* ends with { NULL }                  */
        ctl_fn fn;
};

static const struct ctl_opt ctl_global_opts[] = {
        { "url", 1, "server URL (env KEYWARD_URL; default https://127.0.0.1:9998)" },
        { "token-file", 1,
          "file holding the bearer token (env KEYWARD_TOKEN_FILE; default "
          "/var/lib/keyward/admin.token)" },
        { "cacert", 1, "CA certificate (PEM) to verify the server (env KEYWARD_CACERT)" },
        { "insecure", 0, "do not verify the server's certificate (testing only)" },
        { "json", 0, "print the server's JSON as is" },
        { "help", 0, "show help" },
        { NULL, 0, NULL },
};

static const struct ctl_opt o_none[] = { { NULL, 0, NULL } };
/* The access rules a key can be given when it is made (server/custody/rules.h). */
#define CTL_RULE_OPTS                                                                     \
        { "xks-store", CTL_OPT_REPEAT,                                                    \
          "AWS XKS key store allowed to use the key (repeatable; \"default\" is "          \
          "[aws_xks_config]); none given: no XKS store can" },                             \
        { "ekm-client", CTL_OPT_REPEAT,                                                   \
          "Azure EKM client certificate CN allowed to use the key (repeatable); none "    \
          "given: any CN of azure_ekm_client_cns can" }

static const struct ctl_opt o_create[] = {
        { "type", CTL_OPT_VALUE, "aes or rsa (required)" },
        { "size", CTL_OPT_VALUE, "bits: AES 256; RSA 2048, 3072 (default), 4096" },
        { "ops", CTL_OPT_VALUE, "allowed operations, comma-separated: encrypt,decrypt,wrap,unwrap" },
        { "tag", CTL_OPT_REPEAT, "KEY=VALUE tag (repeatable)" },
        CTL_RULE_OPTS,
        { NULL, 0, NULL },
};
static const struct ctl_opt o_import[] = {
        { "type", CTL_OPT_VALUE, "aes or rsa (required)" },
        { "material-file", CTL_OPT_VALUE, "AES: file with the 32-byte key, raw or base64" },
        { "pem-file", CTL_OPT_VALUE, "RSA: PKCS#8 or PKCS#1 PEM private key (unencrypted)" },
        { "ops", CTL_OPT_VALUE, "allowed operations, comma-separated: encrypt,decrypt,wrap,unwrap" },
        { "tag", CTL_OPT_REPEAT, "KEY=VALUE tag (repeatable)" },
        CTL_RULE_OPTS,
        { NULL, 0, NULL },
};
static const struct ctl_opt o_list[] = {
        { "state", 1, "enabled, disabled, pending_deletion or destroyed" },
        { "type", 1, "aes or rsa" },
        { "tag", 1, "KEY=VALUE: keys carrying this tag" },
        { "prefix", 1, "names starting with this" },
        { "limit", 1, "keys per page, 1..1000" },
        { "cursor", 1, "continue after a previous page" },
        { "all", 0, "follow the cursors: list every matching key" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_delete[] = {
        { "wait-days", 1, "days before the key is destroyed" },
        { "wait-seconds", 1, "seconds before the key is destroyed" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_rules[] = {
        { "file", 1, "JSON file with the rules object (required)" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_tags[] = {
        { "tag", CTL_OPT_REPEAT, "KEY=VALUE (repeatable; the set replaces every tag)" },
        { "clear", 0, "remove every tag" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_ops[] = {
        { "ops", 1, "comma-separated: encrypt,decrypt,wrap,unwrap (required)" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_audit[] = {
        { "key", 1, "events of this key" },
        { "action", 1, "events of this action, e.g. key.create" },
        { "after", 1, "events after this sequence number" },
        { "before", 1, "events before this sequence number (paging with --desc)" },
        { "actor", 1, "events whose actor starts with this, e.g. token:1a2b, xks:, user:alice" },
        { "since", 1, "events at or after this time (RFC 3339 UTC, 2026-01-31T12:00:00Z)" },
        { "until", 1, "events before this time (RFC 3339 UTC)" },
        { "desc", 0, "newest first" },
        { "limit", 1, "events per page, 1..1000" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_verify_export[] = {
        { "prev-hash", 1, "the chain hash the file must start from: the previous file's last "
                          "hash (64 zeros for the first export)" },
        { "last-hash", 1, "the chain hash the file must end with: the checkpoint's (status) or "
                          "the next file's prev_hash" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_token[] = {
        { "role", 1, "admin, operator or auditor (required)" },
        { NULL, 0, NULL },
};

static const struct ctl_opt o_user[] = {
        { "role", 1, "admin, operator or auditor (required)" },
        { "password-file", 1, "read the password from FILE (else from standard input; "
                              "never from the command line)" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_passwd[] = {
        { "password-file", 1, "read the password from FILE (else from standard input)" },
        { NULL, 0, NULL },
};

static const struct ctl_opt o_xks_create[] = {
        { "uri-prefix", 1, "URI prefix: \"\" or /a/b (required)" },
        { "region", 1, "SigV4 region (default us-east-1)" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_xks_cred[] = {
        { "access-key-id", 1, "the access key id to delete (required)" },
        { NULL, 0, NULL },
};

static const struct ctl_opt o_db_export[] = {
        { "config", 1, "keywardd's configuration (default: keywardd's own default)" },
        { "out", 1, "the export file to write (mode 0600) (required)" },
        { NULL, 0, NULL },
};
static const struct ctl_opt o_db_import[] = {
        { "config", 1, "keywardd's configuration naming the empty target store ([db] engine)" },
        { "in", 1, "the export file to read (required)" },
        { NULL, 0, NULL },
};

static const struct ctl_command ctl_commands[] = {
        { NULL, "status", "", 0, "show the server's status", o_none, ctl_cmd_status },
        { "key", "create", "NAME", 1, "create a key", o_create, ctl_cmd_key_create },
        { "key", "import", "NAME", 1, "import an AES or RSA key", o_import, ctl_cmd_key_import },
        { "key", "list", "", 0, "list keys", o_list, ctl_cmd_key_list },
        { "key", "get", "NAME", 1, "show a key", o_none, ctl_cmd_key_get },
        { "key", "versions", "NAME", 1, "list a key's versions", o_none, ctl_cmd_key_versions },
        { "key", "enable", "NAME", 1, "enable a key", o_none, ctl_cmd_key_enable },
        { "key", "disable", "NAME", 1, "disable a key", o_none, ctl_cmd_key_disable },
        { "key", "rotate", "NAME", 1, "add a new key version and make it current", o_none,
          ctl_cmd_key_rotate },
        { "key", "delete", "NAME", 1, "schedule the key's destruction", o_delete,
          ctl_cmd_key_delete },
        { "key", "cancel-deletion", "NAME", 1, "cancel a scheduled destruction", o_none,
          ctl_cmd_key_cancel_deletion },
        { "key", "set-rules", "NAME", 1, "replace the key's access rules", o_rules,
          ctl_cmd_key_set_rules },
        { "key", "set-tags", "NAME", 1, "replace the key's tags", o_tags, ctl_cmd_key_set_tags },
        { "key", "set-ops", "NAME", 1, "replace the key's allowed operations", o_ops,
          ctl_cmd_key_set_ops },
        { "audit", "list", "", 0, "list audit events", o_audit, ctl_cmd_audit_list },
        { "audit", "verify", "", 0, "verify the audit hash chain", o_none, ctl_cmd_audit_verify },
        { "audit", "prune", "", 0, "export and prune what is past the configured retention now",
          o_none, ctl_cmd_audit_prune },
        { "audit", "verify-export", "FILE", 1,
          "verify an audit export file offline (no server needed)", o_verify_export,
          ctl_cmd_audit_verify_export },
        { "token", "create", "NAME", 1, "create an API token (shown once)", o_token,
          ctl_cmd_token_create },
        { "token", "list", "", 0, "list API tokens", o_none, ctl_cmd_token_list },
        { "token", "revoke", "ID", 1, "revoke an API token", o_none, ctl_cmd_token_revoke },
        { "user", "list", "", 0, "list console users", o_none, ctl_cmd_user_list },
        { "user", "create", "NAME", 1, "create a console user (password from --password-file "
          "or standard input)", o_user, ctl_cmd_user_create },
        { "user", "delete", "NAME", 1, "delete a console user (its sessions end)", o_none,
          ctl_cmd_user_delete },
        { "user", "passwd", "NAME", 1, "set a console user's password (its sessions end)",
          o_passwd, ctl_cmd_user_passwd },
        { "xks", "list", "", 0, "list AWS XKS key stores", o_none, ctl_cmd_xks_list },
        { "xks", "create", "NAME", 1, "create an XKS key store (prints its console import file)",
          o_xks_create, ctl_cmd_xks_create },
        { "xks", "rotate", "NAME", 1, "new SigV4 credential (two stay active)", o_none,
          ctl_cmd_xks_rotate },
        { "xks", "import-file", "NAME", 1, "the AWS console import file (newest credential)",
          o_none, ctl_cmd_xks_import_file },
        { "xks", "delete-credential", "NAME", 1, "delete one SigV4 credential", o_xks_cred,
          ctl_cmd_xks_delete_credential },
        { "xks", "delete", "NAME", 1, "delete an XKS key store created through the API", o_none,
          ctl_cmd_xks_delete },
        { "db", "export", "", 0,
          "write this appliance's key store to a file (sealed; runs keywardd --db-export here, "
          "not through the API)", o_db_export, ctl_cmd_db_export },
        { "db", "import", "", 0,
          "load an export into an empty key store, then verify it (runs keywardd --db-import "
          "here, not through the API)", o_db_import, ctl_cmd_db_import },
        { "ekm", "info", "", 0, "show the Azure EKM set-up (URL base, client CNs and CA)", o_none,
          ctl_cmd_ekm_info },
        { NULL, "attestation", "", 0, "summarise fresh attestation evidence", o_none,
          ctl_cmd_attestation },
        { NULL, "nodes", "", 0, "list the nodes sharing the key store (one for a single "
          "appliance)", o_none, ctl_cmd_nodes },
        { NULL, NULL, NULL, 0, NULL, NULL, NULL },
};

static const char ctl_exit_help[] =
        "Exit codes:\n"
        "  0  success\n"
        "  1  the server refused the request (HTTP 4xx other than 401/403)\n"
        "  2  usage error\n"
        "  3  cannot connect, or TLS failure\n"
        "  4  not authenticated or not allowed (HTTP 401/403, unreadable token file)\n"
        "  5  server error (HTTP 5xx)\n"
        "  6  audit verify or verify-export found a broken chain\n"
        "db export|import pass keywardd's status on: 0 done and verified, 1 refused (file\n"
        "changed, target not empty, round trip failed), 2 configuration, 3 files, 4 HSM,\n"
        "5 database.\n";

static void ctl_print_opts(FILE *f, const struct ctl_opt *o)
{
        for (; o->name != NULL; o++) {
                char left[64];
                snprintf(left, sizeof left, "--%s%s", o->name, o->has_value ? " VALUE" : "");
                fprintf(f, "  %-22s %s\n", left, o->help);
        }
}

static void ctl_help_top(FILE *f)
{
        fprintf(f, "Usage: keywardctl [--url URL] [--token-file FILE] [--cacert FILE | --insecure]"
                   " [--json] COMMAND ...\n\nAdministers a Keyward server over its REST API "
                   "(/api/v1).\n'db export' and 'db import' are the exception: they run keywardd on "
                   "this machine\n(--db-export / --db-import, as the custody user) with the "
                   "configuration, the HSM and the\nkey store it names; nothing goes through the "
                   "network or the API.\n\nGlobal options (also accepted after the command):\n");
        ctl_print_opts(f, ctl_global_opts);
        fprintf(f, "\nCommands:\n");
        for (const struct ctl_command *c = ctl_commands; c->name != NULL; c++) {
                char left[64];
                snprintf(left, sizeof left, "%s%s%s %s", c->group ? c->group : "",
                         c->group ? " " : "", c->name, c->args);
                fprintf(f, "  %-28s %s\n", left, c->summary);
        }
        fprintf(f, "\nRun 'keywardctl COMMAND --help' for a command's options.\n\n%s",
                ctl_exit_help);
}

static void ctl_help_group(FILE *f, const char *group)
{
        fprintf(f, "Usage: keywardctl %s SUBCOMMAND ...\n\nSubcommands:\n", group);
        for (const struct ctl_command *c = ctl_commands; c->name != NULL; c++)
                if (c->group != NULL && strcmp(c->group, group) == 0) {
                        char left[64];
                        snprintf(left, sizeof left, "%s %s", c->name, c->args);
                        fprintf(f, "  %-24s %s\n", left, c->summary);
                }
        fprintf(f, "\nRun 'keywardctl %s SUBCOMMAND --help' for its options.\n\n%s", group,
                ctl_exit_help);
}

static void ctl_help_command(FILE *f, const struct ctl_command *c)
{
        fprintf(f, "Usage: keywardctl %s%s%s%s%s [OPTIONS]\n\n%s.\n", c->group ? c->group : "",
                c->group ? " " : "", c->name, c->args[0] ? " " : "", c->args, c->summary);
        if (c->opts[0].name != NULL) {
                fprintf(f, "\nOptions:\n");
                ctl_print_opts(f, c->opts);
        }
        fprintf(f, "\nGlobal options: --url, --token-file, --cacert, --insecure, --json "
                   "(see keywardctl --help).\n\n%s",
                ctl_exit_help);
}

static const struct ctl_opt *ctl_find_opt(const struct ctl_opt *o, const char *name, size_t n)
{
        for (; o != NULL && o->name != NULL; o++)
                if (strlen(o->name) == n && memcmp(o->name, name, n) == 0)
                        return o;
        return NULL;
}

static int ctl_cacert_flag; /* --cacert given on the command line */

/* Applies a global option to c. */
static void ctl_global_set(struct ctl *c, const char *name, const char *value, int *help)
{
        if (strcmp(name, "url") == 0)
                c->url = value;
        else if (strcmp(name, "token-file") == 0) /* lint: allow (option name) */
                c->token_file = value;
        else if (strcmp(name, "cacert") == 0) {
                c->cacert = value;
                ctl_cacert_flag = 1;
        } else if (strcmp(name, "insecure") == 0)
                c->insecure = 1;
        else if (strcmp(name, "json") == 0)
                c->json = 1;
        else if (strcmp(name, "help") == 0)
                *help = 1;
}

/*
 * Parses argv[i..] for command cmd (NULL: only global options, stopping at
 * the first word).  Returns the index of the first unparsed argument, or
 * -1 after printing a usage error.
 */
static int ctl_parse(struct ctl *c, const struct ctl_command *cmd, int argc, char **argv, int i,
                     struct ctl_args *a, int *help)
{
        int opts_done = 0;
        for (; i < argc; i++) {
                const char *arg = argv[i];
                if (!opts_done && strcmp(arg, "--") == 0) {
                        opts_done = 1;
                        continue;
                }
                if (!opts_done && strcmp(arg, "-h") == 0) {
                        *help = 1;
                        continue;
                }
                if (opts_done || arg[0] != '-' || arg[1] == '\0') {
                        if (cmd == NULL)
                                return i;
                        if (a->npos == CTL_MAX_POS || a->npos == cmd->npos) {
                                ctl_err("unexpected argument '%s'", arg);
                                return -1;
                        }
                        a->pos[a->npos++] = arg;
                        continue;
                }
                if (arg[1] != '-') {
                        ctl_err("unknown option '%s'", arg);
                        return -1;
                }
                const char *name = arg + 2, *eq = strchr(name, '=');
                size_t n = eq ? (size_t)(eq - name) : strlen(name);
                const struct ctl_opt *o = cmd ? ctl_find_opt(cmd->opts, name, n) : NULL;
                int global = 0;
                if (o == NULL) {
                        o = ctl_find_opt(ctl_global_opts, name, n);
                        global = 1;
                }
                if (o == NULL) {
                        ctl_err("unknown option '--%.*s'", (int)n, name);
                        return -1;
                }
                const char *value = NULL;
                if (o->has_value) {
                        if (eq != NULL) {
                                value = eq + 1;
                        } else if (i + 1 < argc) {
                                value = argv[++i];
                        } else {
                                ctl_err("option '--%s' needs a value", o->name);
                                return -1;
                        }
                } else if (eq != NULL) {
                        ctl_err("option '--%s' takes no value", o->name);
                        return -1;
                }
                if (global) {
                        ctl_global_set(c, o->name, value, help);
                        continue;
                }
                if (o->has_value != CTL_OPT_REPEAT && ctl_args_has(a, o->name)) {
                        ctl_err("option '--%s' given twice", o->name);
                        return -1;
                }
                if (a->no == CTL_MAX_OPTS) {
                        ctl_err("too many options");
                        return -1;
                }
                a->o[a->no].name = o->name;
                a->o[a->no].value = value;
                a->no++;
        }
        return i;
}

static const char *ctl_env(const char *name, const char *dflt)
{
        const char *v = getenv(name);
        return v != NULL && v[0] != '\0' ? v : dflt;
}

static int ctl_run(struct ctl *c, int argc, char **argv)
{
        int help = 0;
        struct ctl_args a = { 0 };
        int i = ctl_parse(c, NULL, argc, argv, 1, &a, &help);
        if (i < 0)
                return CTL_USAGE;
        if (i == argc || strcmp(argv[i], "help") == 0) {
                ctl_help_top(help || i < argc ? stdout : stderr);
                return help || i < argc ? CTL_OK : CTL_USAGE;
        }
        const char *word = argv[i++];
        const struct ctl_command *cmd = NULL;
        int is_group = 0;
        for (const struct ctl_command *k = ctl_commands; k->name != NULL; k++) {
                if (k->group == NULL && strcmp(k->name, word) == 0)
                        cmd = k;
                if (k->group != NULL && strcmp(k->group, word) == 0)
                        is_group = 1;
        }
        if (is_group) {
                /* global options and --help may come before the subcommand */
                i = ctl_parse(c, NULL, argc, argv, i, &a, &help);
                if (i < 0)
                        return CTL_USAGE;
                if (i == argc || strcmp(argv[i], "help") == 0) {
                        ctl_help_group(help || i < argc ? stdout : stderr, word);
                        return help || i < argc ? CTL_OK : CTL_USAGE;
                }
                for (const struct ctl_command *k = ctl_commands; k->name != NULL; k++)
                        if (k->group != NULL && strcmp(k->group, word) == 0 &&
                            strcmp(k->name, argv[i]) == 0)
                                cmd = k;
                if (cmd == NULL) {
                        ctl_err("unknown command '%s %s' (see keywardctl %s --help)", word,
                                argv[i], word);
                        return CTL_USAGE;
                }
                i++;
        } else if (cmd == NULL) {
                ctl_err("unknown command '%s' (see keywardctl --help)", word);
                return CTL_USAGE;
        }
        if (ctl_parse(c, cmd, argc, argv, i, &a, &help) < 0)
                return CTL_USAGE;
        if (help) {
                ctl_help_command(stdout, cmd);
                return CTL_OK;
        }
        if (a.npos != cmd->npos) {
                ctl_err("'%s%s%s' takes %s (see --help)", cmd->group ? cmd->group : "",
                        cmd->group ? " " : "", cmd->name,
                        cmd->npos ? cmd->args : "no arguments");
                return CTL_USAGE;
        }
        if (c->insecure && ctl_cacert_flag) {
                ctl_err("give --cacert or --insecure, not both");
                return CTL_USAGE;
        }
        if (c->insecure)
                c->cacert = NULL; /* --insecure wins over KEYWARD_CACERT */
        size_t ul = strlen(c->url);
        if (strncmp(c->url, "https://", 8) != 0 && strncmp(c->url, "http://", 7) != 0) {
                ctl_err("--url must start with https:// (or http://)");
                return CTL_USAGE;
        }
        static char url[2048];
        if (ul >= sizeof url) {
                ctl_err("--url is too long");
                return CTL_USAGE;
        }
        memcpy(url, c->url, ul + 1);
        while (ul > 0 && url[ul - 1] == '/')
                url[--ul] = '\0';
        c->url = url;
        return cmd->fn(c, &a);
}

int main(int argc, char **argv)
{
        struct ctl c = {
                .url = ctl_env("KEYWARD_URL", "https://127.0.0.1:9998"),
                .token_file = ctl_env("KEYWARD_TOKEN_FILE", "/var/lib/keyward/admin.token"),
                .cacert = ctl_env("KEYWARD_CACERT", NULL),
        };
        int locked = 0;
        kw_ignore(kw_secret_init(64 * 1024, &locked)); /* best effort: a CLI may lack RLIMIT_MEMLOCK */
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
                ctl_err("cannot initialise libcurl");
                return CTL_CONNECT;
        }
        int rc = ctl_run(&c, argc, argv);
        ctl_close(&c);
        curl_global_cleanup();
        fflush(stdout);
        return rc;
}
