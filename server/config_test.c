/* config_test.c - cmocka tests for config.c (TOML subset, env, validation). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/buf.h"

#include "config.h"

#define AKID "AKIAXKSEXAMPLEKEY234"                          /* 20 of [A-Z2-7] */
#define AKID2 "AKIAXKSSECONDKEY2345"
#define SECRET "S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3t+/="  /* 45 chars */
#define SECRET2 "Tw0Tw0Tw0Tw0Tw0Tw0Tw0Tw0Tw0Tw0Tw0Tw0Tw0Tw0Tw0"

static const char base_valid[] = "[hsm]\n"
                                 "module = \"/usr/lib/softhsm/libsofthsm2.so\"\n"
                                 "token_label = \"keyward\"\n"
                                 "pin_file = \"/etc/keyward/pin\"\n";

/* ---- helpers ------------------------------------------------------------ */

static struct kw_config *defaults(void)
{
        struct kw_config *c = NULL;
        assert_int_equal(kw_config_defaults(&c).code, 0);
        assert_non_null(c);
        return c;
}

static void parse_ok(struct kw_config *c, const char *name, const char *text)
{
        kw_result r = kw_config_parse(name, text, strlen(text), c);
        if (!kw_ok(r))
                print_error("unexpected parse failure: %s\n", kw_err_detail());
        assert_int_equal(r.code, 0);
}

/* Defaults + base_valid + extra (a second document: sections may repeat). */
static struct kw_config *config_with(const char *extra)
{
        struct kw_config *c = defaults();
        parse_ok(c, "base.toml", base_valid);
        parse_ok(c, "extra.toml", extra);
        return c;
}

static void assert_contains(const char *hay, const char *needle)
{
        if (strstr(hay, needle) == NULL)
                fail_msg("'%s' does not contain '%s'", hay, needle);
}

static void assert_defaults_intact(const struct kw_config *c)
{
        assert_string_equal(c->source, "(defaults)");
        assert_string_equal(c->http.listen, "127.0.0.1:9998");
        assert_int_equal(c->http.max_connections, 256);
        assert_string_equal(c->db.path, "/var/lib/keyward/keyward.db");
        assert_string_equal(c->tls.min_version, "1.2");
        assert_int_equal(c->db.key_cache_size, 1024);
        assert_true(c->log.requests);
        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 0);
        assert_int_equal(c->n_xks_stores, 0);
}

struct tmpdir {
        char path[64];
};

static void tmp_make(struct tmpdir *t)
{
        snprintf(t->path, sizeof t->path, "/tmp/kwcfgXXXXXX");
        assert_non_null(mkdtemp(t->path));
}

static void tmp_write(const struct tmpdir *t, const char *name, const char *text, char *out,
                      size_t outn)
{
        snprintf(out, outn, "%s/%s", t->path, name);
        FILE *f = fopen(out, "w");
        assert_non_null(f);
        assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
        assert_int_equal(fclose(f), 0);
}

static void tmp_remove(const struct tmpdir *t, const char *name)
{
        char p[128];
        snprintf(p, sizeof p, "%s/%s", t->path, name);
        unlink(p);
}

static char *const no_env[] = { NULL };

/* ---- defaults ----------------------------------------------------------- */

static void config_defaults_match_header(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        assert_string_equal(c->source, "(defaults)");
        assert_string_equal(c->http.listen, "127.0.0.1:9998");
        assert_int_equal(c->http.max_connections, 256);
        assert_int_equal(c->http.max_connections_per_client, 32);
        assert_int_equal(c->http.idle_timeout_under_load_ms, 1000);
        assert_int_equal(c->http.request_timeout_ms, 10000);
        assert_int_equal(c->http.keep_alive_timeout_ms, 30000);
        assert_int_equal(c->http.max_body_bytes, 65536);
        assert_string_equal(c->tls.tls_cert_file, "");
        assert_string_equal(c->tls.tls_key_file, "");
        assert_string_equal(c->tls.tls_p12_file, "");
        assert_string_equal(c->tls.tls_p12_password, "");
        assert_string_equal(c->tls.clients_ca_cert_file, "");
        assert_string_equal(c->tls.min_version, "1.2");
        assert_string_equal(c->tls.ciphersuites_tls13,
                            "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256");
        assert_string_equal(c->tls.ciphers_tls12,
                            "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                            "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305");
        assert_string_equal(c->db.path, "/var/lib/keyward/keyward.db");
        assert_string_equal(c->db.key_file, "");
        assert_int_equal(c->db.key_cache_size, 1024);
        assert_int_equal(c->db.secure_heap_bytes, 16 << 20);
        assert_int_equal(c->db.deletion_min_wait_seconds, 604800);
        assert_int_equal(c->db.deletion_default_wait_seconds, 2592000);
        assert_int_equal(c->db.audit_flush_ms, 50);
        assert_string_equal(c->hsm.module, "");
        assert_string_equal(c->hsm.token_label, "");
        assert_string_equal(c->hsm.pin_file, "");
        assert_string_equal(c->hsm.master_key_label, "keyward-master");
        assert_true(c->hsm.create_master_key);
        assert_false(c->hsm.evaluation);
        assert_int_equal(c->hsm.sessions, 4);
        assert_int_equal(c->hsm.timeout_ms, 2000);
        assert_int_equal(c->hsm.retry_interval_ms, 1000);
        assert_string_equal(c->custody.socket_path, "/run/keyward/custody.sock");
        assert_string_equal(c->custody.user, "keyward-custody");
        assert_string_equal(c->front.user, "keyward-front");
        assert_string_equal(c->sandbox.seccomp, "enforce");
        assert_int_equal(c->custody.connections, 4);
        assert_int_equal(c->custody.workers, 16);
        assert_int_equal(c->custody.timeout_ms, 5000);
        assert_true(c->admin.enable);
        assert_string_equal(c->admin.listen, "");
        assert_string_equal(c->admin.token_file, "/var/lib/keyward/admin.token");
        assert_string_equal(c->admin.initial_token_sha256, "");
        assert_string_equal(c->log.level, "info");
        assert_true(c->log.requests);
        assert_false(c->ekm.azure_ekm_enable);
        assert_string_equal(c->ekm.azure_ekm_path_prefix, "");
        assert_string_equal(c->ekm.azure_ekm_proxy_vendor, "Keyward");
        assert_string_equal(c->ekm.azure_ekm_proxy_name, "Keyward EKM Proxy");
        assert_string_equal(c->ekm.azure_ekm_ekm_vendor, "Keyward");
        assert_string_equal(c->ekm.azure_ekm_ekm_product, "Keyward");
        assert_false(c->ekm.azure_ekm_disable_client_auth);
        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 0);
        assert_null(c->ekm.azure_ekm_client_cns.v);
        assert_string_equal(c->ekm.azure_ekm_client_ca_file, "");
        assert_int_equal(c->ekm.azure_ekm_rate_limit, 0);
        assert_false(c->xks.aws_xks_enable);
        assert_string_equal(c->xks.aws_xks_region, "us-east-1");
        assert_string_equal(c->xks.aws_xks_service, "kms-xks-proxy");
        assert_string_equal(c->xks.aws_xks_sigv4_access_key_id, "");
        assert_string_equal(c->xks.aws_xks_sigv4_secret_access_key, "");
        assert_string_equal(c->xks.aws_xks_uri_prefix, "");
        assert_string_equal(c->xks.aws_xks_vendor, "Keyward");
        assert_string_equal(c->xks.aws_xks_model, "Keyward XKS Proxy");
        assert_int_equal(c->xks.aws_xks_fleet_size, 1);
        assert_int_equal(c->xks.aws_xks_rate_limit, 1800);
        assert_int_equal(c->xks.aws_xks_unauthenticated_rate_limit, 20);
        assert_int_equal(c->n_xks_stores, 0);
        kw_config_free(c);
}

static void config_validate_defaults_need_hsm(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        assert_int_equal(kw_config_validate(c).code, KW_ERR_CONFIG);
        assert_string_equal(kw_err_detail(), "(defaults): [hsm] module: required, must not be empty");
        assert_defaults_intact(c);
        kw_config_free(c);
}

static void config_free_null_is_noop(void **state)
{
        (void)state;
        kw_config_free(NULL);
}

/* ---- value types, comments, arrays, escapes ------------------------------ */

static void config_parse_every_value_type(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        parse_ok(c, "t.toml",
                 "[http]\n"
                 "listen = \"[::1]:8443\"\n"
                 "max_connections = +1_000\n"
                 "request_timeout_ms = 0\n"
                 "[db]\n"
                 "path = 'C:\\literal\\path'\n"
                 "deletion_min_wait_seconds = -9223372036854775808\n"
                 "deletion_default_wait_seconds = 9223372036854775807\n"
                 "key_cache_size = -0\n"
                 "[hsm]\n"
                 "create_master_key = false\n"
                 "[log]\n"
                 "requests = true\n"
                 "[azure_ekm_config]\n"
                 "azure_ekm_client_cns = [ \"a\", 'b' ]\n"
                 "azure_ekm_enable = true\n"
                 "[aws_xks_store.tenant-A_1]\n"
                 "uri_prefix = \"/tenant-a\"\n"
                 "client_subjects = []\n");
        assert_string_equal(c->source, "t.toml");
        assert_string_equal(c->http.listen, "[::1]:8443");
        assert_int_equal(c->http.max_connections, 1000);
        assert_int_equal(c->http.request_timeout_ms, 0);
        assert_string_equal(c->db.path, "C:\\literal\\path");
        assert_true(c->db.deletion_min_wait_seconds == INT64_MIN);
        assert_true(c->db.deletion_default_wait_seconds == INT64_MAX);
        assert_int_equal(c->db.key_cache_size, 0);
        assert_false(c->hsm.create_master_key);
        assert_true(c->log.requests);
        assert_true(c->ekm.azure_ekm_enable);
        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 2);
        assert_string_equal(c->ekm.azure_ekm_client_cns.v[0], "a");
        assert_string_equal(c->ekm.azure_ekm_client_cns.v[1], "b");
        assert_int_equal(c->n_xks_stores, 1);
        const struct kw_xks_store *s = &c->xks_stores[0];
        assert_string_equal(s->name, "tenant-A_1");
        assert_string_equal(s->uri_prefix, "/tenant-a");
        assert_string_equal(s->region, "us-east-1");
        assert_string_equal(s->service, "kms-xks-proxy");
        assert_null(s->access_key_id);
        assert_null(s->secret_access_key);
        assert_string_equal(s->access_key_id_2, "");
        assert_string_equal(s->secret_access_key_2, "");
        assert_string_equal(s->client_ca_file, "");
        assert_int_equal(s->client_subjects.n, 0);
        kw_config_free(c);
}

static void config_parse_comments_blank_lines_crlf_bom(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        parse_ok(c, "t.toml",
                 "\xef\xbb\xbf# leading comment \xe2\x9c\x93 with\ttab\r\n"
                 "\r\n"
                 "   \t\n"
                 "  [ http ]   # comment after a header\r\n"
                 "\tlisten   =   \"10.0.0.1:1\"# comment right after a value\n"
                 "#[db]\n"
                 "max_connections=7 \t # spaced\n"
                 "# last line without newline");
        assert_string_equal(c->http.listen, "10.0.0.1:1");
        assert_int_equal(c->http.max_connections, 7);
        assert_string_equal(c->db.path, "/var/lib/keyward/keyward.db");
        kw_config_free(c);
}

static void config_parse_empty_text_keeps_values(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        assert_int_equal(kw_config_parse("empty.toml", "", 0, c).code, 0);
        assert_string_equal(c->source, "empty.toml");
        assert_string_equal(c->http.listen, "127.0.0.1:9998");
        kw_config_free(c);
}

static void config_parse_multiline_array(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        parse_ok(c, "t.toml",
                 "[azure_ekm_config]\n"
                 "azure_ekm_client_cns = [\n"
                 "  # first\n"
                 "  \"cn-one\",   # trailing comment\n"
                 "\n"
                 "  'cn two' ,\n"
                 "]\n"
                 "azure_ekm_rate_limit = 5\n");
        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 2);
        assert_string_equal(c->ekm.azure_ekm_client_cns.v[0], "cn-one");
        assert_string_equal(c->ekm.azure_ekm_client_cns.v[1], "cn two");
        assert_int_equal(c->ekm.azure_ekm_rate_limit, 5);
        kw_config_free(c);

        /* Lines inside the array are counted: the error is on line 9. */
        c = defaults();
        const char *t = "[azure_ekm_config]\n"
                        "azure_ekm_client_cns = [\n"
                        "  # first\n"
                        "  \"cn-one\",\r\n"
                        "\n"
                        "  'cn-two',\n"
                        "]\n"
                        "\n"
                        "bogus = 1\n";
        assert_int_equal(kw_config_parse("t.toml", t, strlen(t), c).code, KW_ERR_CONFIG);
        assert_string_equal(kw_err_detail(), "t.toml:9: unknown key 'bogus' in [azure_ekm_config]");
        assert_defaults_intact(c);
        kw_config_free(c);
}

static void config_parse_array_replaces_previous_list(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        parse_ok(c, "a.toml", "[azure_ekm_config]\nazure_ekm_client_cns = [\"x\", \"y\", \"z\"]\n");
        parse_ok(c, "b.toml", "[azure_ekm_config]\nazure_ekm_client_cns = [\"only\"]\n");
        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 1);
        assert_string_equal(c->ekm.azure_ekm_client_cns.v[0], "only");
        parse_ok(c, "c.toml", "[azure_ekm_config]\nazure_ekm_client_cns = []\n");
        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 0);
        kw_config_free(c);
}

static void config_parse_escapes_and_utf8(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        parse_ok(c, "t.toml",
                 "[db]\n"
                 "path = \"q\\\"b\\\\s\\nn\\tt\\u00e9\\u20AC\\u0041\"\n"
                 "key_file = \"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\"\n"
                 "[hsm]\n"
                 "token_label = 'no \\escapes\\n here \"x\"'\n");
        assert_string_equal(c->db.path, "q\"b\\s\nn\tt\xc3\xa9\xe2\x82\xac" "A");
        assert_string_equal(c->db.key_file, "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80");
        assert_string_equal(c->hsm.token_label, "no \\escapes\\n here \"x\"");
        kw_config_free(c);
}

static void config_parse_later_document_updates_store(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        parse_ok(c, "a.toml", "[aws_xks_store.a]\nuri_prefix = \"/a\"\n");
        parse_ok(c, "b.toml", "[aws_xks_store.a]\nregion = \"eu-west-1\"\n[aws_xks_store.b]\n");
        assert_int_equal(c->n_xks_stores, 2);
        assert_string_equal(c->xks_stores[0].name, "a");
        assert_string_equal(c->xks_stores[0].uri_prefix, "/a");
        assert_string_equal(c->xks_stores[0].region, "eu-west-1");
        assert_string_equal(c->xks_stores[1].name, "b");
        assert_null(c->xks_stores[1].uri_prefix);
        kw_config_free(c);
}

/* ---- errors: one table, exact line, nothing changed ----------------------- */

struct err_case {
        const char *text;
        size_t len;          /* 0: strlen(text) */
        unsigned line;       /* line of the error, counting from the case's text */
        const char *needle;  /* must appear in the detail */
        bool bare;           /* parse without the common prefix */
};

/* Four lines that set values before the failing part (checked unchanged). */
static const char err_prefix[] = "[http]\n"
                                 "listen = \"10.9.9.9:1\"\n"
                                 "[aws_xks_store.pre]\n"
                                 "uri_prefix = \"/pre\"\n";
#define PREFIX_LINES 4u

static const struct err_case err_cases[] = {
        /* syntax */
        { "[tls]\nmin_version \"1.3\"\n", 0, 2, "expected '=' after key 'min_version'", false },
        { "[tls\n", 0, 1, "expected ']' to close the table header", false },
        { "[tls] x\n", 0, 1, "unexpected text after the table header", false },
        { "[db]\npath = \"a\" junk\n", 0, 2, "unexpected text after the value", false },
        { "[db]\npath =\n", 0, 2, "missing value after '='", false },
        { "[db]\npath = abc\n", 0, 2, "strings must be quoted", false },
        { "[db]\na.b = 1\n", 0, 2, "dotted keys are not supported", false },
        { "[db]\n\"path\" = \"x\"\n", 0, 2, "quoted keys are not supported", false },
        { "[db]\n= 1\n", 0, 2, "unexpected '='", false },
        { "[[aws_xks_store]]\n", 0, 1, "arrays of tables", false },
        { "[aws_xks_store.a.b]\n", 0, 1, "at most two name parts", false },
        { "[db]\npath = { a = 1 }\n", 0, 2, "inline tables are not supported", false },
        { "[db]\npath = \"\"\"x\"\"\"\n", 0, 2, "multi-line basic strings", false },
        { "[db]\npath = '''x\n\n", 0, 2, "unterminated multi-line string", false },
        { "[db]\npath = '''x''''\n", 0, 2, "a quote right after the closing", false },
        { "[db]\nkey_cache_size = 1.5\n", 0, 2, "floating-point numbers are not supported", false },
        { "[db]\nkey_cache_size = 1e3\n", 0, 2, "floating-point numbers are not supported", false },
        { "[db]\nkey_cache_size = 0x10\n", 0, 2, "only decimal integers", false },
        { "[db]\nkey_cache_size = 012\n", 0, 2, "leading zeros", false },
        { "[db]\nkey_cache_size = 1__0\n", 0, 2, "invalid integer", false },
        { "[db]\nkey_cache_size = 10_\n", 0, 2, "invalid integer", false },
        { "[db]\nkey_cache_size = 12ab\n", 0, 2, "invalid integer", false },
        { "[db]\nkey_cache_size = 1979-05-27\n", 0, 2, "dates and times are not supported", false },
        { "[db]\nkey_cache_size = yes\n", 0, 2, "invalid value", false },
        { "[db]\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx = 1\n", 0, 2,
          "a key too long (max 64", false },
        { "path = \"x\"\n", 0, 1, "key 'path' is outside any [section]", true },
        { "\n\n# c\n\xc3\xa9 = 1\n", 0, 4, "unexpected non-ASCII byte", true },
        /* unknown section / key */
        { "[nope]\n", 0, 1, "unknown section [nope]", false },
        { "[http.extra]\n", 0, 1, "unknown section [http.extra]", false },
        { "[aws_xks_store]\n", 0, 1, "needs a store name", false },
        { "[tls]\nmin_version = \"1.3\"\nbogus = 1\n", 0, 3, "unknown key 'bogus' in [tls]", false },
        { "[aws_xks_store.a]\nbogus = \"x\"\n", 0, 2, "unknown key 'bogus' in [aws_xks_store.a]", false },
        { "[aws_xks_store.aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa]\n", 0, 1, "store name too long", false },
        /* wrong type */
        { "[tls]\nmin_version = 13\n", 0, 2,
          "key 'min_version' in [tls] must be a string, not an integer", false },
        { "[db]\nkey_cache_size = \"10\"\n", 0, 2, "must be an integer, not a string", false },
        { "[http]\n", 0, 1, "duplicate table [http] (first on line 1)", false },
        { "[db]\nkey_cache_size = true\n", 0, 2, "must be an integer, not a boolean", false },
        { "[log]\nrequests = \"yes\"\n", 0, 2, "must be a boolean, not a string", false },
        { "[azure_ekm_config]\nazure_ekm_client_cns = \"a\"\n", 0, 2,
          "must be an array of strings, not a string", false },
        { "[db]\npath = [\"a\"]\n", 0, 2, "must be a string, not an array of strings", false },
        /* duplicates */
        { "[db]\npath = \"/a\"\n\npath = \"/b\"\n", 0, 4,
          "duplicate key 'path' in [db] (first set on line 6)", false },
        { "[tls]\n[db]\n[tls]\n", 0, 3, "duplicate table [tls] (first on line 5)", false },
        { "[aws_xks_store.pre]\n", 0, 1, "duplicate table [aws_xks_store.pre] (first on line 3)", false },
        { "[aws_xks_store.x]\nregion = \"a\"\nregion = \"b\"\n", 0, 3,
          "duplicate key 'region' in [aws_xks_store.x] (first set on line 6)", false },
        /* integer overflow */
        { "[db]\nkey_cache_size = 9223372036854775808\n", 0, 2, "integer out of range", false },
        { "[db]\nkey_cache_size = -9223372036854775809\n", 0, 2, "integer out of range", false },
        { "[db]\nkey_cache_size = 99999999999999999999999\n", 0, 2, "integer out of range", false },
        /* escapes */
        { "[db]\npath = \"a\\qb\"\n", 0, 2, "bad escape", false },
        { "[db]\npath = \"a\\\"\n", 0, 2, "unterminated string", false },
        { "[db]\npath = \"\\u12G4\"\n", 0, 2, "\\u needs exactly 4 hex digits", false },
        { "[db]\npath = \"\\u0000\"\n", 0, 2, "\\u0000 is not allowed", false },
        { "[db]\npath = \"\\ud800\"\n", 0, 2, "surrogate", false },
        { "[db]\npath = \"\\U0001F600\"\n", 0, 2, "bad escape", false },
        { "[db]\npath = \"a\\", 0, 2, "bad escape", false },
        /* unterminated */
        { "[db]\npath = \"abc\n", 0, 2, "unterminated string", false },
        { "[db]\npath = 'abc", 0, 2, "unterminated string", false },
        { "[db]\npath = \"abc\r\n", 0, 2, "unterminated string", false },
        { "[azure_ekm_config]\nazure_ekm_client_cns = [\n  \"a\",\n  \"b\"\n", 0, 2,
          "unterminated array", false },
        { "[azure_ekm_config]\nazure_ekm_client_cns = [\"a\",\n# c\n", 0, 2, "unterminated array", false },
        { "[azure_ekm_config]\nazure_ekm_client_cns = [\"a\" \"b\"]\n", 0, 2, "expected ',' or ']'", false },
        { "[azure_ekm_config]\nazure_ekm_client_cns = [\n\"a\",\n1]\n", 0, 4,
          "arrays may only hold strings", false },
        { "[azure_ekm_config]\nazure_ekm_client_cns = [[\"a\"]]\n", 0, 2, "nested arrays", false },
        { "[azure_ekm_config]\nazure_ekm_client_cns = [,]\n", 0, 2, "arrays may only hold strings", false },
        /* control characters */
        { "[db]\npath = \"a\x01" "b\"\n", 0, 2, "control character in string", false },
        { "[db]\npath = 'a\x1f'\n", 0, 2, "control character in string", false },
        { "[db]\npath = \"a\x7f\"\n", 0, 2, "control character in string", false },
        { "[db]\npath = \"a\rb\"\n", 0, 2, "control character in string", false },
        { "[db]\npath = \"a\0b\"\n", 18, 2, "control character in string", false },
        { "# bell\x07\n", 0, 1, "control character in comment", false },
        { "[db]\n\x01", 0, 2, "control character", false },
        { "[db]\n\0", 6, 2, "control character", false },
        { "[db]\r[tls]\n", 0, 1, "unexpected text after the table header", false },
        { "\r[db]\n", 0, 1, "carriage return without line feed", false },
        /* invalid UTF-8 */
        { "[db]\npath = \"\xc3\x28\"\n", 0, 2, "invalid UTF-8 in string", false },
        { "[db]\npath = \"\xc0\xaf\"\n", 0, 2, "invalid UTF-8 in string", false },
        { "[db]\npath = '\xed\xa0\x80'\n", 0, 2, "invalid UTF-8 in string", false },
        { "[db]\npath = \"\xf4\x90\x80\x80\"\n", 0, 2, "invalid UTF-8 in string", false },
        { "[db]\npath = \"\xff\"\n", 0, 2, "invalid UTF-8 in string", false },
        { "[db]\npath = \"\xe2\x82", 0, 2, "invalid UTF-8 in string", false },
        { "[db]\n# \xe2\x82\n", 0, 2, "invalid UTF-8 in comment", false },
};

static void config_parse_errors_report_line_and_change_nothing(void **state)
{
        (void)state;
        char text[512], want[64];
        for (size_t i = 0; i < sizeof err_cases / sizeof err_cases[0]; i++) {
                const struct err_case *e = &err_cases[i];
                size_t el = e->len ? e->len : strlen(e->text), pl = 0;
                if (!e->bare) {
                        pl = strlen(err_prefix);
                        memcpy(text, err_prefix, pl);
                }
                assert_true(pl + el <= sizeof text);
                memcpy(text + pl, e->text, el);
                struct kw_config *c = defaults();
                kw_err_clear_detail();
                kw_result r = kw_config_parse("case.toml", text, pl + el, c);
                if (r.code != KW_ERR_CONFIG)
                        fail_msg("case %zu: expected KW_ERR_CONFIG, got %d", i, r.code);
                snprintf(want, sizeof want, "case.toml:%u: ", e->line + (e->bare ? 0 : PREFIX_LINES));
                if (strncmp(kw_err_detail(), want, strlen(want)) != 0)
                        fail_msg("case %zu: detail '%s' does not start with '%s'", i, kw_err_detail(), want);
                if (strstr(kw_err_detail(), e->needle) == NULL)
                        fail_msg("case %zu: detail '%s' lacks '%s'", i, kw_err_detail(), e->needle);
                assert_defaults_intact(c);
                /* The config is still usable: a good document parses and validates. */
                parse_ok(c, "base.toml", base_valid);
                assert_int_equal(kw_config_validate(c).code, 0);
                kw_config_free(c);
        }
}

static void config_parse_secret_not_echoed_in_errors(void **state)
{
        (void)state;
        /* An unquoted secret is a syntax error whose detail must not echo it. */
        static const char *const texts[] = {
                "[tls]\ntls_p12_password = hunter2secret\n",
                "[tls]\ntls_p12_password = \"hunter2secret\\q\"\n",
                "[tls]\ntls_p12_password = \"hunter2secret\" trailing\n",
                "[aws_xks_config]\naws_xks_sigv4_secret_access_key = hunter2secret\n",
        };
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
                struct kw_config *c = defaults();
                assert_int_equal(kw_config_parse("s.toml", texts[i], strlen(texts[i]), c).code,
                                 KW_ERR_CONFIG);
                assert_null(strstr(kw_err_detail(), "hunter2"));
                assert_string_equal(c->tls.tls_p12_password, "");
                kw_config_free(c);
        }
}

static void config_parse_too_large_fails(void **state)
{
        (void)state;
        size_t n = (1u << 20) + 1;
        char *big = malloc(n);
        assert_non_null(big);
        memset(big, '\n', n);
        struct kw_config *c = defaults();
        assert_int_equal(kw_config_parse("big.toml", big, n, c).code, KW_ERR_CONFIG);
        assert_string_equal(kw_err_detail(), "big.toml: file too large (max 1048576 bytes)");
        assert_defaults_intact(c);
        kw_config_free(c);
        free(big);
}

static void config_parse_too_many_lines_fails(void **state)
{
        (void)state;
        size_t n = 10000;
        char *t = malloc(n + 16);
        assert_non_null(t);
        memset(t, '\n', n - 1);                 /* lines 1..9999 empty */
        memcpy(t + n - 1, "[db]\nx", 6);        /* line 10000 is the last allowed */
        struct kw_config *c = defaults();
        assert_int_equal(kw_config_parse("l.toml", t, n + 4, c).code, 0);
        assert_int_equal(kw_config_parse("l.toml", t, n + 5, c).code, KW_ERR_CONFIG);
        assert_string_equal(kw_err_detail(), "l.toml:10001: too many lines (max 10000)");
        kw_config_free(c);
        free(t);
}

static void config_parse_string_and_array_caps(void **state)
{
        (void)state;
        /* 4096 decoded bytes are accepted, 4097 are not. */
        size_t cap = 4096, n = cap + 64;
        char *t = malloc(n);
        assert_non_null(t);
        int off = snprintf(t, n, "[db]\npath = \"");
        memset(t + off, 'a', cap);
        memcpy(t + off + cap, "\"\n", 2);
        struct kw_config *c = defaults();
        assert_int_equal(kw_config_parse("s.toml", t, (size_t)off + cap + 2, c).code, 0);
        assert_int_equal(strlen(c->db.path), cap);
        memset(t + off, 'b', cap + 1);
        memcpy(t + off + cap + 1, "\"\n", 2);
        assert_int_equal(kw_config_parse("s.toml", t, (size_t)off + cap + 3, c).code, KW_ERR_CONFIG);
        assert_string_equal(kw_err_detail(), "s.toml:2: string too long (max 4096 bytes)");
        assert_int_equal(strlen(c->db.path), cap);
        assert_int_equal(c->db.path[0], 'a');
        free(t);

        /* 256 items are accepted, 257 are not. */
        char *a = malloc(8192);
        assert_non_null(a);
        for (int items = 256; items <= 257; items++) {
                size_t l = (size_t)snprintf(a, 8192, "[azure_ekm_config]\nazure_ekm_client_cns = [");
                for (int i = 0; i < items; i++)
                        l += (size_t)snprintf(a + l, 8192 - l, "\"c%d\",", i);
                l += (size_t)snprintf(a + l, 8192 - l, "]\n");
                kw_result r = kw_config_parse("a.toml", a, l, c);
                if (items == 256) {
                        assert_int_equal(r.code, 0);
                        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 256);
                } else {
                        assert_int_equal(r.code, KW_ERR_CONFIG);
                        assert_string_equal(kw_err_detail(), "a.toml:2: too many items in array (max 256)");
                        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 256);
                }
        }
        free(a);
        kw_config_free(c);
}

static void config_parse_too_many_stores_fails(void **state)
{
        (void)state;
        char t[2048];
        size_t l = 0;
        for (int i = 0; i < KW_XKS_MAX_STORES + 1; i++)
                l += (size_t)snprintf(t + l, sizeof t - l, "[aws_xks_store.s%d]\nuri_prefix = \"/s%d\"\n",
                                      i, i);
        struct kw_config *c = defaults();
        assert_int_equal(kw_config_parse("m.toml", t, l, c).code, KW_ERR_CONFIG);
        assert_string_equal(kw_err_detail(), "m.toml:33: too many [aws_xks_store.*] tables (max 16)");
        assert_int_equal(c->n_xks_stores, 0);
        /* Exactly the maximum is fine. */
        l = 0;
        for (int i = 0; i < KW_XKS_MAX_STORES; i++)
                l += (size_t)snprintf(t + l, sizeof t - l, "[aws_xks_store.s%d]\nuri_prefix = \"/s%d\"\n",
                                      i, i);
        assert_int_equal(kw_config_parse("m.toml", t, l, c).code, 0);
        assert_int_equal(c->n_xks_stores, KW_XKS_MAX_STORES);
        kw_config_free(c);
}

static void config_parse_null_arguments_fail(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        assert_int_equal(kw_config_parse("x", NULL, 3, c).code, KW_ERR_INPUT);
        assert_int_equal(kw_config_parse("x", "", 0, NULL).code, KW_ERR_INPUT);
        assert_int_equal(kw_config_parse(NULL, "[db", 3, c).code, KW_ERR_CONFIG);
        assert_string_equal(kw_err_detail(), "(config):1: expected ']' to close the table header");
        assert_defaults_intact(c);
        assert_int_equal(kw_config_validate(NULL).code, KW_ERR_INPUT);
        kw_config_free(c);
}

/* ---- environment ---------------------------------------------------------- */

static void config_load_env_overrides_apply(void **state)
{
        (void)state;
        char *const env[] = {
                "PATH=/usr/bin",
                "keyward_http_listen=ignored:1",
                "KEYWARD_HSM_MODULE=/m.so",
                "KEYWARD_HSM_TOKEN_LABEL=tok",
                "KEYWARD_HSM_PIN_FILE=/etc/keyward/pin",
                "KEYWARD_HTTP_LISTEN=[::1]:9000",
                "KEYWARD_HTTP_MAX_CONNECTIONS=77",
                "KEYWARD_HTTP_MAX_CONNECTIONS_PER_CLIENT=5",
                "KEYWARD_DB_PATH=/tmp/k.db",
                "KEYWARD_LOG_REQUESTS=false",
                "KEYWARD_HSM_CREATE_MASTER_KEY=0",
                "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_ENABLE=1",
                "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS= a , b,c\t",
                "KEYWARD_TLS_TLS_P12_FILE=/k.p12",
                "KEYWARD_TLS_TLS_P12_PASSWORD=pw with = sign",
                "KEYWARD_AWS_XKS_CONFIG_AWS_XKS_ENABLE=true",
                "KEYWARD_AWS_XKS_CONFIG_AWS_XKS_SIGV4_ACCESS_KEY_ID=" AKID,
                "KEYWARD_AWS_XKS_CONFIG_AWS_XKS_SIGV4_SECRET_ACCESS_KEY=" SECRET,
                /* read by other Keyward programs: not settings, not errors */
                "KEYWARD_FAULTHSM_CTL=/tmp/ctl",
                "KEYWARD_FAULTHSM_MODULE=/usr/lib/softhsm/libsofthsm2.so",
                "KEYWARD_URL=https://127.0.0.1:9998",
                "KEYWARD_TOKEN_FILE=/t",
                "KEYWARD_CACERT=/ca.pem",
                "KEYWARD_BUILD=/b",
                NULL,
        };
        struct kw_config *c = NULL;
        kw_result r = kw_config_load(NULL, env, &c);
        if (!kw_ok(r))
                print_error("%s\n", kw_err_detail());
        assert_int_equal(r.code, 0);
        assert_string_equal(c->source, "(defaults)");
        assert_string_equal(c->hsm.module, "/m.so");
        assert_string_equal(c->hsm.pin_file, "/etc/keyward/pin");
        assert_string_equal(c->http.listen, "[::1]:9000");
        assert_int_equal(c->http.max_connections, 77);
        assert_int_equal(c->http.max_connections_per_client, 5);
        assert_string_equal(c->db.path, "/tmp/k.db");
        assert_string_equal(c->db.key_file, "/tmp/k.db.key");
        assert_false(c->log.requests);
        assert_false(c->hsm.create_master_key);
        assert_true(c->ekm.azure_ekm_enable);
        assert_int_equal(c->ekm.azure_ekm_client_cns.n, 3);
        assert_string_equal(c->ekm.azure_ekm_client_cns.v[0], "a");
        assert_string_equal(c->ekm.azure_ekm_client_cns.v[1], "b");
        assert_string_equal(c->ekm.azure_ekm_client_cns.v[2], "c");
        assert_string_equal(c->tls.tls_p12_password, "pw with = sign");
        assert_true(c->xks.aws_xks_enable);
        assert_string_equal(c->xks.aws_xks_sigv4_secret_access_key, SECRET);
        kw_config_free(c);
}

static void config_load_env_overrides_file_and_stores(void **state)
{
        (void)state;
        struct tmpdir t;
        char path[128];
        tmp_make(&t);
        tmp_write(&t, "k.toml",
                  "[http]\nlisten = \"127.0.0.1:1\"\n"
                  "[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_file = \"/p\"\n"
                  "[db]\npath = \"/d/k.db\"\nkey_file = \"/d/explicit.key\"\n"
                  "[aws_xks_store.tenant-a]\nuri_prefix = \"/tenant-a\"\n"
                  "access_key_id = \"" AKID "\"\nsecret_access_key = \"" SECRET "\"\n",
                  path, sizeof path);
        char *const env[] = {
                "KEYWARD_HTTP_LISTEN=127.0.0.1:2",
                "KEYWARD_AWS_XKS_STORE_TENANT_A_SECRET_ACCESS_KEY=" SECRET2,
                "KEYWARD_AWS_XKS_STORE_TENANT_A_ACCESS_KEY_ID_2=" AKID2,
                "KEYWARD_AWS_XKS_STORE_TENANT_A_SECRET_ACCESS_KEY_2=" SECRET,
                "KEYWARD_AWS_XKS_STORE_TENANT_A_CLIENT_SUBJECTS=CN=a,CN=b",
                "KEYWARD_AWS_XKS_STORE_NEW_ONE_URI_PREFIX=/new",
                "KEYWARD_AWS_XKS_STORE_NEW_ONE_ACCESS_KEY_ID=" AKID2,
                "KEYWARD_AWS_XKS_STORE_NEW_ONE_SECRET_ACCESS_KEY=" SECRET2,
                "KEYWARD_AWS_XKS_STORE_NEW_ONE_REGION=eu-west-3",
                NULL,
        };
        struct kw_config *c = NULL;
        kw_result r = kw_config_load(path, env, &c);
        if (!kw_ok(r))
                print_error("%s\n", kw_err_detail());
        assert_int_equal(r.code, 0);
        assert_string_equal(c->source, path);
        assert_string_equal(c->http.listen, "127.0.0.1:2");
        assert_string_equal(c->db.key_file, "/d/explicit.key");
        assert_int_equal(c->n_xks_stores, 2);
        const struct kw_xks_store *a = &c->xks_stores[0], *b = &c->xks_stores[1];
        assert_string_equal(a->name, "tenant-a");
        assert_string_equal(a->secret_access_key, SECRET2);
        assert_string_equal(a->access_key_id_2, AKID2);
        assert_string_equal(a->secret_access_key_2, SECRET);
        assert_int_equal(a->client_subjects.n, 2);
        assert_string_equal(a->client_subjects.v[1], "CN=b");
        assert_string_equal(b->name, "new_one");
        assert_string_equal(b->uri_prefix, "/new");
        assert_string_equal(b->region, "eu-west-3");
        assert_string_equal(b->service, "kms-xks-proxy");
        kw_config_free(c);
        tmp_remove(&t, "k.toml");
        rmdir(t.path);
}

struct env_case {
        const char *entry;
        const char *detail; /* exact */
};

static const struct env_case env_cases[] = {
        { "KEYWARD_FOO=1", "env KEYWARD_FOO: unknown setting" },
        { "KEYWARD_FAULTHSM=1", "env KEYWARD_FAULTHSM: unknown setting" },
        { "KEYWARD_URLX=1", "env KEYWARD_URLX: unknown setting" },
        { "KEYWARD_HTTP_LISTENX=1", "env KEYWARD_HTTP_LISTENX: unknown setting" },
        { "KEYWARD_http_listen=a:1", "env KEYWARD_http_listen: unknown setting" },
        { "KEYWARD_HTTP_LISTEN", "env KEYWARD_HTTP_LISTEN: malformed environment entry (no '=')" },
        { "KEYWARD_LOG_REQUESTS=yes", "env KEYWARD_LOG_REQUESTS: must be true, false, 1 or 0" },
        { "KEYWARD_LOG_REQUESTS=", "env KEYWARD_LOG_REQUESTS: must be true, false, 1 or 0" },
        { "KEYWARD_HTTP_MAX_CONNECTIONS=12x",
          "env KEYWARD_HTTP_MAX_CONNECTIONS: invalid integer (decimal digits, optional sign, '_' only "
          "between digits)" },
        { "KEYWARD_HTTP_MAX_CONNECTIONS=",
          "env KEYWARD_HTTP_MAX_CONNECTIONS: invalid integer (decimal digits, optional sign, '_' only "
          "between digits)" },
        { "KEYWARD_HTTP_MAX_CONNECTIONS=99999999999999999999",
          "env KEYWARD_HTTP_MAX_CONNECTIONS: integer out of range (must fit in 64 bits)" },
        { "KEYWARD_HTTP_MAX_CONNECTIONS_PER_CLIENT=0",
          "env KEYWARD_HTTP_MAX_CONNECTIONS_PER_CLIENT: [http] max_connections_per_client: must be "
          "between 1 and 10000" },
        { "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS=a,,b",
          "env KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS: empty item in comma-separated list" },
        { "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS=a,",
          "env KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS: empty item in comma-separated list" },
        { "KEYWARD_DB_PATH=a\nb",
          "env KEYWARD_DB_PATH: value must be UTF-8 without control characters, max 4096 bytes" },
        { "KEYWARD_DB_PATH=\xc3\x28",
          "env KEYWARD_DB_PATH: value must be UTF-8 without control characters, max 4096 bytes" },
        { "KEYWARD_AWS_XKS_STORE_X_BOGUS=1", "env KEYWARD_AWS_XKS_STORE_X_BOGUS: unknown setting" },
        { "KEYWARD_AWS_XKS_STORE__REGION=x", "env KEYWARD_AWS_XKS_STORE__REGION: unknown setting" },
        { "KEYWARD_AWS_XKS_STORE_A.B_REGION=x",
          "env KEYWARD_AWS_XKS_STORE_A.B_REGION: store name must be 1-32 characters of A-Za-z0-9_-" },
        { "KEYWARD_AWS_XKS_STORE_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_REGION=x",
          "env KEYWARD_AWS_XKS_STORE_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA_REGION: store name too long "
          "(max 32 of A-Za-z0-9_-)" },
};

static void config_load_env_errors(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof env_cases / sizeof env_cases[0]; i++) {
                char *const env[] = { "KEYWARD_HSM_MODULE=/m.so", (char *)env_cases[i].entry, NULL };
                struct kw_config *c = (struct kw_config *)(uintptr_t)0x1;
                kw_result r = kw_config_load(NULL, env, &c);
                if (r.code != KW_ERR_CONFIG)
                        fail_msg("env case %zu: expected failure, got %d", i, r.code);
                assert_true(c == (struct kw_config *)(uintptr_t)0x1); /* untouched */
                if (strcmp(kw_err_detail(), env_cases[i].detail) != 0)
                        fail_msg("env case %zu: '%s' != '%s'", i, kw_err_detail(), env_cases[i].detail);
        }
}

static void config_load_env_invalid_value_names_the_variable(void **state)
{
        (void)state;
        char *const env[] = { "KEYWARD_HSM_MODULE=/m.so", "KEYWARD_HSM_TOKEN_LABEL=t",
                              "KEYWARD_HSM_PIN_FILE=/p", "KEYWARD_DB_PATH=/d.db",
                              "KEYWARD_HTTP_LISTEN=not-an-address", NULL };
        struct kw_config *c = (struct kw_config *)(uintptr_t)0x1;
        assert_int_equal(kw_config_load(NULL, env, &c).code, KW_ERR_CONFIG);
        assert_true(c == (struct kw_config *)(uintptr_t)0x1);
        const char *want = "env KEYWARD_HTTP_LISTEN: [http] listen";
        if (strncmp(kw_err_detail(), want, strlen(want)) != 0)
                fail_msg("'%s' does not start with '%s'", kw_err_detail(), want);
}

static void config_load_env_ambiguous_store_fails(void **state)
{
        (void)state;
        struct tmpdir t;
        char path[128];
        tmp_make(&t);
        tmp_write(&t, "k.toml", "[aws_xks_store.a-b]\n[aws_xks_store.a_b]\n", path, sizeof path);
        char *const env[] = { "KEYWARD_AWS_XKS_STORE_A_B_REGION=x", NULL };
        struct kw_config *c = NULL;
        assert_int_equal(kw_config_load(path, env, &c).code, KW_ERR_CONFIG);
        assert_null(c);
        assert_contains(kw_err_detail(), "env KEYWARD_AWS_XKS_STORE_A_B_REGION: matches more than one");
        tmp_remove(&t, "k.toml");
        rmdir(t.path);
}

static void config_load_env_secret_not_echoed(void **state)
{
        (void)state;
        char *const env[] = { "KEYWARD_TLS_TLS_P12_PASSWORD=hunter2\x01", NULL };
        struct kw_config *c = NULL;
        assert_int_equal(kw_config_load(NULL, env, &c).code, KW_ERR_CONFIG);
        assert_contains(kw_err_detail(), "env KEYWARD_TLS_TLS_P12_PASSWORD:");
        assert_null(strstr(kw_err_detail(), "hunter2"));
}

static void config_load_null_envp_uses_environ(void **state)
{
        (void)state;
        for (char **e = environ; *e; e++)
                if (strncmp(*e, "KEYWARD_", 8) == 0)
                        skip(); /* a foreign KEYWARD_ variable would make the load fail */
        assert_int_equal(setenv("KEYWARD_HSM_MODULE", "/env.so", 1), 0);
        assert_int_equal(setenv("KEYWARD_HSM_TOKEN_LABEL", "t", 1), 0);
        assert_int_equal(setenv("KEYWARD_HSM_PIN_FILE", "/p", 1), 0);
        struct kw_config *c = NULL;
        kw_result r = kw_config_load(NULL, NULL, &c);
        unsetenv("KEYWARD_HSM_MODULE");
        unsetenv("KEYWARD_HSM_TOKEN_LABEL");
        unsetenv("KEYWARD_HSM_PIN_FILE");
        assert_int_equal(r.code, 0);
        assert_string_equal(c->hsm.module, "/env.so");
        assert_string_equal(c->db.key_file, "/var/lib/keyward/keyward.db.key");
        kw_config_free(c);
}

/* ---- loading files -------------------------------------------------------- */

static void config_load_file_errors(void **state)
{
        (void)state;
        struct tmpdir t;
        char path[128];
        tmp_make(&t);
        struct kw_config *c = (struct kw_config *)(uintptr_t)0x1;

        snprintf(path, sizeof path, "%s/missing.toml", t.path);
        assert_int_equal(kw_config_load(path, no_env, &c).code, KW_ERR_CONFIG);
        assert_contains(kw_err_detail(), "missing.toml: cannot open: No such file or directory");

        assert_int_equal(kw_config_load(t.path, no_env, &c).code, KW_ERR_CONFIG);
        assert_contains(kw_err_detail(), ": not a regular file");

        tmp_write(&t, "bad.toml", "[http]\n\n[http]\n", path, sizeof path);
        assert_int_equal(kw_config_load(path, no_env, &c).code, KW_ERR_CONFIG);
        char want[192];
        snprintf(want, sizeof want, "%s:3: duplicate table [http] (first on line 1)", path);
        assert_string_equal(kw_err_detail(), want);

        /* Parses but does not validate: the message names the file. */
        tmp_write(&t, "inv.toml", "[hsm]\nmodule = \"/m\"\ntoken_label = \"t\"\npin_file = \"/p\"\n"
                                  "sessions = 65\n", path, sizeof path);
        assert_int_equal(kw_config_load(path, no_env, &c).code, KW_ERR_CONFIG);
        snprintf(want, sizeof want, "%s:5: [hsm] sessions: must be between 1 and 64", path);
        assert_string_equal(kw_err_detail(), want);

        assert_true(c == (struct kw_config *)(uintptr_t)0x1); /* untouched */
        tmp_remove(&t, "bad.toml");
        tmp_remove(&t, "inv.toml");
        rmdir(t.path);
}

static void config_load_too_large_file_fails(void **state)
{
        (void)state;
        struct tmpdir t;
        char path[128];
        tmp_make(&t);
        snprintf(path, sizeof path, "%s/big.toml", t.path);
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        assert_int_equal(fseek(f, (1L << 20), SEEK_SET), 0);
        assert_int_equal(fputc('\n', f), '\n');
        assert_int_equal(fclose(f), 0);
        struct kw_config *c = NULL;
        assert_int_equal(kw_config_load(path, no_env, &c).code, KW_ERR_CONFIG);
        assert_contains(kw_err_detail(), "big.toml: file too large (max 1048576 bytes)");
        assert_null(c);
        unlink(path);
        rmdir(t.path);
}

static void config_load_example_validates(void **state)
{
        (void)state;
        const char *src = getenv("KW_SRCDIR");
        char path[512];
        snprintf(path, sizeof path, "%s/docs/keyward.example.toml", src ? src : ".");
        struct kw_config *c = NULL;
        kw_result r = kw_config_load(path, no_env, &c);
        if (!kw_ok(r))
                print_error("%s\n", kw_err_detail());
        assert_int_equal(r.code, 0);
        assert_string_equal(c->source, path);
        assert_string_equal(c->db.key_file, "/var/lib/keyward/keyward.db.key");
        kw_config_free(c);
}

/* ---- validation ------------------------------------------------------------ */

static void config_validate_accepts_good_configs(void **state)
{
        (void)state;
        static const char *const good[] = {
                "",
                "[http]\nlisten = \"0.0.0.0:443\"\n[admin]\nlisten = \"[::1]:9999\"\n",
                "[http]\nlisten = \"keyward.example.com:8443\"\n",
                "[http]\nlisten = \"[::ffff:127.0.0.1]:65535\"\n",
                "[tls]\ntls_cert_file = \"/c.pem\"\ntls_key_file = \"/k.pem\"\n"
                "clients_ca_cert_file = \"/ca.pem\"\nmin_version = \"1.3\"\n",
                "[tls]\ntls_p12_file = \"/k.p12\"\ntls_p12_password = \"pw\"\n",
                "[db]\ndeletion_min_wait_seconds = 10\ndeletion_default_wait_seconds = 10\n",
                "[admin]\nenable = false\ntoken_file = \"\"\n",
                "[log]\nlevel = \"debug\"\n",
                "[audit]\nmax_bytes = 65536\nmax_age_days = 90\nexport_dir = \"/var/lib/keyward/audit\"\n"
                "check_interval_seconds = 60\nwarn_free_percent = 0\n",
                "[audit]\nexport_dir = \"/e\"\n",
                "[azure_ekm_config]\nazure_ekm_enable = true\nazure_ekm_path_prefix = \"ekm/v1-a\"\n",
                "[aws_xks_config]\naws_xks_enable = true\naws_xks_sigv4_access_key_id = \"" AKID "\"\n"
                "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\naws_xks_uri_prefix = \"/tenant_a-1/x\"\n"
                "[aws_xks_store.b]\nuri_prefix = \"\"\naccess_key_id = \"ABCDEFGHIJKLMNOPQRSTUVWXYZ2345\"\n"
                "secret_access_key = \"" SECRET2 "\"\n"
                "[aws_xks_store.c]\nuri_prefix = \"/c\"\naccess_key_id = \"" AKID "\"\n"
                "secret_access_key = \"" SECRET "\"\naccess_key_id_2 = \"" AKID2 "\"\n"
                "secret_access_key_2 = \"" SECRET2 "\"\n",
        };
        for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
                struct kw_config *c = config_with(good[i]);
                kw_result r = kw_config_validate(c);
                if (!kw_ok(r))
                        fail_msg("good case %zu rejected: %s", i, kw_err_detail());
                kw_config_free(c);
        }
}

struct vcase {
        const char *extra;
        const char *needle;
};

#define XKS_ON "[aws_xks_config]\naws_xks_enable = true\n"
#define XKS_GOOD_KEYS                                                                  \
        "aws_xks_sigv4_access_key_id = \"" AKID "\"\n"                               \
        "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\n"
#define STORE_A(rest)                                                                  \
        "[aws_xks_store.a]\nuri_prefix = \"/a\"\naccess_key_id = \"" AKID "\"\n"     \
        "secret_access_key = \"" SECRET "\"\n" rest
#define LONG65 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"

static const struct vcase vcases[] = {
        /* listen addresses */
        { "[http]\nlisten = \"127.0.0.1:0\"\n", "[http] listen '127.0.0.1:0': must be host:port or [v6]:port" },
        { "[http]\nlisten = \"127.0.0.1:65536\"\n", "[http] listen '127.0.0.1:65536'" },
        { "[http]\nlisten = \"localhost\"\n", "[http] listen 'localhost'" },
        { "[http]\nlisten = \":80\"\n", "[http] listen ':80'" },
        { "[http]\nlisten = \"[::1]\"\n", "[http] listen '[::1]'" },
        { "[http]\nlisten = \"::1:80\"\n", "[http] listen '::1:80'" },
        { "[http]\nlisten = \"[::1]:abc\"\n", "[http] listen '[::1]:abc'" },
        { "[http]\nlisten = \"[zz]:80\"\n", "[http] listen '[zz]:80'" },
        { "[http]\nlisten = \"a b:80\"\n", "[http] listen 'a b:80'" },
        { "[http]\nlisten = \"\"\n", "[http] listen: required, must not be empty" },
        { "[admin]\nlisten = \"nope\"\n", "[admin] listen 'nope': must be \"\" (share [http] listen)" },
        { "[admin]\ntoken_file = \"\"\n", "[admin] token_file: required when enable = true" },
        /* tls */
        { "[tls]\ntls_cert_file = \"/c.pem\"\n", "[tls] tls_cert_file and tls_key_file must be given together" },
        { "[tls]\ntls_key_file = \"/k.pem\"\n", "[tls] tls_cert_file and tls_key_file must be given together" },
        { "[tls]\ntls_cert_file = \"/c\"\ntls_key_file = \"/k\"\ntls_p12_file = \"/p\"\n",
          "[tls] give either tls_cert_file + tls_key_file or tls_p12_file, not both" },
        { "[tls]\ntls_p12_password = \"hunter2\"\n", "[tls] tls_p12_password is set but tls_p12_file is not" },
        { "[tls]\nclients_ca_cert_file = \"/ca\"\n", "[tls] clients_ca_cert_file needs a server certificate" },
        { "[tls]\nmin_version = \"1.1\"\n", "[tls] min_version: must be \"1.2\" or \"1.3\"" },
        { "[tls]\nmin_version = \"\"\n", "[tls] min_version: required" },
        { "[tls]\nciphers_tls12 = \"HIGH;rm\"\n", "[tls] ciphers_tls12: must be an OpenSSL cipher list" },
        { "[tls]\nciphersuites_tls13 = \"TLS_AES_128_GCM_SHA256 x\"\n", "[tls] ciphersuites_tls13:" },
        /* required */
        { "[hsm]\nmodule = \"\"\n", "[hsm] module: required, must not be empty" },
        { "[hsm]\ntoken_label = \"\"\n", "[hsm] token_label: required, must not be empty" },
        { "[hsm]\npin_file = \"\"\n", "[hsm] pin_file: required, must not be empty" },
        { "[hsm]\nmaster_key_label = \"\"\n", "[hsm] master_key_label: required, must not be empty" },
        { "[db]\npath = \"\"\n", "[db] path: required, must not be empty" },
        { "[custody]\nsocket_path = \"\"\n", "[custody] socket_path: required, must not be empty" },
        { "[custody]\nsocket_path = \"/" LONG65 LONG65 "\"\n", "[custody] socket_path: too long" },
        /* ranges */
        { "[hsm]\nsessions = 0\n", "[hsm] sessions: must be between 1 and 64" },
        { "[hsm]\nsessions = 65\n", "[hsm] sessions: must be between 1 and 64" },
        { "[hsm]\ntimeout_ms = 0\n", "[hsm] timeout_ms: must be between 1 and 600000" },
        { "[hsm]\nretry_interval_ms = 600001\n", "[hsm] retry_interval_ms: must be between 1 and 600000" },
        { "[http]\nrequest_timeout_ms = 600001\n", "[http] request_timeout_ms: must be between 1 and 600000" },
        { "[http]\nkeep_alive_timeout_ms = 0\n", "[http] keep_alive_timeout_ms: must be between 1 and 600000" },
        { "[custody]\ntimeout_ms = -1\n", "[custody] timeout_ms: must be between 1 and 600000" },
        { "[custody]\nconnections = 0\n", "[custody] connections: must be between 1 and 64" },
        { "[custody]\nconnections = 65\n", "[custody] connections: must be between 1 and 64" },
        { "[custody]\nworkers = 0\n", "[custody] workers: must be between 1 and 256" },
        { "[http]\nmax_connections = 0\n", "[http] max_connections: must be between 1 and 10000" },
        { "[http]\nmax_connections = 10001\n", "[http] max_connections: must be between 1 and 10000" },
        { "[http]\nmax_connections_per_client = 0\n",
          "[http] max_connections_per_client: must be between 1 and 10000" },
        { "[http]\nmax_connections_per_client = 10001\n",
          "[http] max_connections_per_client: must be between 1 and 10000" },
        { "[http]\nidle_timeout_under_load_ms = 49\n",
          "[http] idle_timeout_under_load_ms: must be between 50 and 600000" },
        { "[http]\nidle_timeout_under_load_ms = 600001\n",
          "[http] idle_timeout_under_load_ms: must be between 50 and 600000" },
        { "[http]\nmax_body_bytes = 1023\n", "[http] max_body_bytes: must be between 1024 and 16777216" },
        { "[http]\nmax_body_bytes = 16777217\n", "[http] max_body_bytes: must be between 1024 and 16777216" },
        { "[db]\nkey_cache_size = 0\n", "[db] key_cache_size: must be between 1 and 1000000" },
        { "[db]\nkey_cache_size = 1000001\n", "[db] key_cache_size: must be between 1 and 1000000" },
        { "[db]\nsecure_heap_bytes = 1048575\n", "[db] secure_heap_bytes: must be between 1048576 and 1073741824" },
        { "[db]\nsecure_heap_bytes = 1073741825\n", "[db] secure_heap_bytes: must be between 1048576 and 1073741824" },
        { "[db]\naudit_flush_ms = 60001\n", "[db] audit_flush_ms: must be between 0 and 60000" },
        /* [audit] retention (issue 11) */
        { "[audit]\nmax_bytes = 1048576\n",
          "[audit] export_dir: required when max_age_days or max_bytes is set" },
        { "[audit]\nmax_age_days = 30\n",
          "[audit] export_dir: required when max_age_days or max_bytes is set" },
        { "[audit]\nmax_age_days = 30\nexport_dir = \"exports\"\n",
          "[audit] export_dir 'exports': must be an absolute path" },
        { "[audit]\nmax_bytes = 65535\nexport_dir = \"/x\"\n",
          "[audit] max_bytes: 0 (no bound) or at least 65536" },
        { "[audit]\nmax_age_days = -1\n", "[audit] max_age_days: must be between 0 and 36500" },
        { "[audit]\ncheck_interval_seconds = 0\n", "[audit] check_interval_seconds: must be between 1 and 86400" },
        { "[audit]\nwarn_free_percent = 100\n", "[audit] warn_free_percent: must be between 0 and 99" },
        { "[db]\ndeletion_min_wait_seconds = -1\n", "[db] deletion_min_wait_seconds: must be between 0 and" },
        { "[db]\ndeletion_min_wait_seconds = 100\ndeletion_default_wait_seconds = 99\n",
          "[db] deletion_min_wait_seconds must not exceed deletion_default_wait_seconds" },
        { "[azure_ekm_config]\nazure_ekm_rate_limit = -1\n", "[azure_ekm_config] azure_ekm_rate_limit: must be between 0" },
        { "[aws_xks_config]\naws_xks_fleet_size = 0\n", "[aws_xks_config] aws_xks_fleet_size: must be between 1 and 10000" },
        { "[aws_xks_config]\naws_xks_rate_limit = 1000001\n", "[aws_xks_config] aws_xks_rate_limit: must be between 0" },
        /* log */
        { "[log]\nlevel = \"verbose\"\n", "[log] level: must be one of debug, info, warn, error" },
        { "[log]\nlevel = \"INFO\"\n", "[log] level: must be one of debug, info, warn, error" },
        /* azure ekm */
        { "[azure_ekm_config]\nazure_ekm_path_prefix = \"/a\"\n", "[azure_ekm_config] azure_ekm_path_prefix: must be" },
        { "[azure_ekm_config]\nazure_ekm_path_prefix = \"a/\"\n", "azure_ekm_path_prefix" },
        { "[azure_ekm_config]\nazure_ekm_path_prefix = \"a//b\"\n", "azure_ekm_path_prefix" },
        { "[azure_ekm_config]\nazure_ekm_path_prefix = \"a_b\"\n", "azure_ekm_path_prefix" },
        { "[azure_ekm_config]\nazure_ekm_path_prefix = \"" LONG65 "\"\n", "azure_ekm_path_prefix" },
        { "[azure_ekm_config]\nazure_ekm_client_cns = [\"a\", \"\"]\n", "azure_ekm_client_cns: empty name" },
        /* aws xks (main) */
        { XKS_ON XKS_GOOD_KEYS "aws_xks_region = \"\"\n", "[aws_xks_config] aws_xks_region: required" },
        { XKS_ON XKS_GOOD_KEYS "aws_xks_service = \"\"\n", "[aws_xks_config] aws_xks_service: required" },
        { XKS_ON "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\n",
          "[aws_xks_config] aws_xks_sigv4_access_key_id: must be 20-30 characters of A-Z and 2-7" },
        { XKS_ON "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\n"
                 "aws_xks_sigv4_access_key_id = \"akiaxksexamplekey234\"\n", "aws_xks_sigv4_access_key_id: must be" },
        { XKS_ON "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\n"
                 "aws_xks_sigv4_access_key_id = \"AKIAXKSEXAMPLEKEY23\"\n", "aws_xks_sigv4_access_key_id: must be" },
        { XKS_ON "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\n"
                 "aws_xks_sigv4_access_key_id = \"AKIAXKSEXAMPLEKEY2341\"\n", "aws_xks_sigv4_access_key_id: must be" },
        { XKS_ON "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\n"
                 "aws_xks_sigv4_access_key_id = \"ABCDEFGHIJKLMNOPQRSTUVWXYZ23456\"\n", "aws_xks_sigv4_access_key_id: must be" },
        { XKS_ON "aws_xks_sigv4_access_key_id = \"" AKID "\"\n",
          "[aws_xks_config] aws_xks_sigv4_secret_access_key: must be 43-64 characters of A-Z a-z 0-9 + / =" },
        { XKS_ON "aws_xks_sigv4_access_key_id = \"" AKID "\"\n"
                 "aws_xks_sigv4_secret_access_key = \"hunter2hunter2hunter2hunter2hunter2hunter2\"\n",
          "aws_xks_sigv4_secret_access_key: must be" },
        { XKS_ON "aws_xks_sigv4_access_key_id = \"" AKID "\"\n"
                 "aws_xks_sigv4_secret_access_key = \"hunter2hunter2hunter2hunter2hunter2hunter2-x\"\n",
          "aws_xks_sigv4_secret_access_key: must be" },
        { XKS_ON "aws_xks_sigv4_access_key_id = \"" AKID "\"\n"
                 "aws_xks_sigv4_secret_access_key = \"" SECRET SECRET "\"\n",
          "aws_xks_sigv4_secret_access_key: must be" },
        { XKS_ON XKS_GOOD_KEYS "aws_xks_uri_prefix = \"abc\"\n",
          "[aws_xks_config] aws_xks_uri_prefix: must be \"\" or start with '/'" },
        { XKS_ON XKS_GOOD_KEYS "aws_xks_uri_prefix = \"/abc/\"\n", "aws_xks_uri_prefix: must be" },
        { XKS_ON XKS_GOOD_KEYS "aws_xks_uri_prefix = \"/\"\n", "aws_xks_uri_prefix: must be" },
        { XKS_ON XKS_GOOD_KEYS "aws_xks_uri_prefix = \"/a b\"\n", "aws_xks_uri_prefix: must be" },
        { XKS_ON XKS_GOOD_KEYS "aws_xks_uri_prefix = \"/" LONG65 LONG65 "\"\n", "aws_xks_uri_prefix: must be" },
        /* stores */
        { "[aws_xks_store.a]\naccess_key_id = \"" AKID "\"\nsecret_access_key = \"" SECRET "\"\n",
          "[aws_xks_store.a] uri_prefix: required (\"\" for none, or \"/name\")" },
        { "[aws_xks_store.a]\nuri_prefix = \"/a\"\nsecret_access_key = \"" SECRET "\"\n",
          "[aws_xks_store.a] access_key_id: must be 20-30 characters of A-Z and 2-7" },
        { "[aws_xks_store.a]\nuri_prefix = \"/a\"\naccess_key_id = \"" AKID "\"\n",
          "[aws_xks_store.a] secret_access_key: must be 43-64 characters" },
        { STORE_A("region = \"\"\n"), "[aws_xks_store.a] region: required" },
        { STORE_A("service = \"\"\n"), "[aws_xks_store.a] service: required" },
        { "[aws_xks_store.a]\nuri_prefix = \"a\"\naccess_key_id = \"" AKID "\"\nsecret_access_key = \"" SECRET "\"\n",
          "[aws_xks_store.a] uri_prefix: must be \"\" or start with '/'" },
        { STORE_A("access_key_id_2 = \"" AKID2 "\"\n"),
          "[aws_xks_store.a] access_key_id_2 and secret_access_key_2 must be given together" },
        { STORE_A("secret_access_key_2 = \"" SECRET2 "\"\n"),
          "[aws_xks_store.a] access_key_id_2 and secret_access_key_2 must be given together" },
        { STORE_A("access_key_id_2 = \"short\"\nsecret_access_key_2 = \"" SECRET2 "\"\n"),
          "[aws_xks_store.a] access_key_id_2: must be 20-30" },
        { STORE_A("access_key_id_2 = \"" AKID2 "\"\nsecret_access_key_2 = \"hunter2\"\n"),
          "[aws_xks_store.a] secret_access_key_2: must be 43-64" },
        { STORE_A("access_key_id_2 = \"" AKID "\"\nsecret_access_key_2 = \"" SECRET2 "\"\n"),
          "[aws_xks_store.a] access_key_id_2: must differ from access_key_id" },
        { STORE_A("[aws_xks_store.b]\nuri_prefix = \"/a\"\naccess_key_id = \"" AKID "\"\n"
                  "secret_access_key = \"" SECRET "\"\n"),
          "[aws_xks_store.b] uri_prefix: already used by [aws_xks_store.a]" },
        { XKS_ON XKS_GOOD_KEYS "aws_xks_uri_prefix = \"/a\"\n" STORE_A(""),
          "[aws_xks_store.a] uri_prefix: already used by [aws_xks_config] aws_xks_uri_prefix" },
};

static void config_validate_rejects_each_rule(void **state)
{
        (void)state;
        for (size_t i = 0; i < sizeof vcases / sizeof vcases[0]; i++) {
                struct kw_config *c = defaults();
                parse_ok(c, "base.toml", base_valid);
                parse_ok(c, "v.toml", vcases[i].extra);
                kw_err_clear_detail();
                if (kw_config_validate(c).code != KW_ERR_CONFIG)
                        fail_msg("vcase %zu: accepted", i);
                const char *d = kw_err_detail();
                if (strncmp(d, "v.toml:", 7) != 0 || strstr(d, vcases[i].needle) == NULL)
                        fail_msg("vcase %zu: '%s' lacks 'v.toml: ...%s'", i, d, vcases[i].needle);
                /* Secret values never appear in messages. */
                assert_null(strstr(d, "hunter2"));
                assert_null(strstr(d, SECRET));
                assert_null(strstr(d, SECRET2));
                /* validate changes nothing: a second call says the same. */
                char first[256];
                snprintf(first, sizeof first, "%s", d);
                assert_int_equal(kw_config_validate(c).code, KW_ERR_CONFIG);
                assert_string_equal(kw_err_detail(), first);
                kw_config_free(c);
        }
}

/* issue 10: settings of a protocol section whose switch is off would be
 * ignored (and the protocol's URLs answer 404): refused, naming the key. */
static void config_validate_disabled_sections_refuse_settings(void **state)
{
        (void)state;
        static const struct vcase off[] = {
                { "[aws_xks_config]\naws_xks_sigv4_access_key_id = \"" AKID "\"\n",
                  "[aws_xks_config] aws_xks_sigv4_access_key_id is set but aws_xks_enable is false" },
                /* the format checks of an enabled section do not run first */
                { "[aws_xks_config]\naws_xks_sigv4_access_key_id = \"bad\"\n",
                  "[aws_xks_config] aws_xks_sigv4_access_key_id is set but aws_xks_enable is false" },
                { "[aws_xks_config]\naws_xks_enable = false\naws_xks_sigv4_secret_access_key = \"" SECRET "\"\n",
                  "[aws_xks_config] aws_xks_sigv4_secret_access_key is set but aws_xks_enable is false" },
                { "[aws_xks_config]\naws_xks_uri_prefix = \"/tenant-a\"\n",
                  "[aws_xks_config] aws_xks_uri_prefix is set but aws_xks_enable is false, so its key "
                  "store is not served (its XKS URLs answer 404): set aws_xks_enable = true, or remove "
                  "the [aws_xks_config] settings" },
                { "[aws_xks_config]\naws_xks_region = \"eu-west-1\"\n",
                  "[aws_xks_config] aws_xks_region is set but aws_xks_enable is false" },
                { "[aws_xks_config]\naws_xks_rate_limit = 5\n",
                  "[aws_xks_config] aws_xks_rate_limit is set but aws_xks_enable is false" },
                { "[azure_ekm_config]\nazure_ekm_client_cns = [\"mhsm.example\"]\n",
                  "[azure_ekm_config] azure_ekm_client_cns is set but azure_ekm_enable is false, so "
                  "the Azure EKM API is not served (/azureekm/... answers 404): set azure_ekm_enable "
                  "= true, or remove the [azure_ekm_config] settings" },
                { "[azure_ekm_config]\nazure_ekm_path_prefix = \"ekm\"\n",
                  "[azure_ekm_config] azure_ekm_path_prefix is set but azure_ekm_enable is false" },
                { "[azure_ekm_config]\nazure_ekm_disable_client_auth = true\n",
                  "[azure_ekm_config] azure_ekm_disable_client_auth is set but azure_ekm_enable is false" },
        };
        for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
                struct kw_config *c = config_with(off[i].extra);
                assert_int_equal(kw_config_validate(c).code, KW_ERR_CONFIG);
                assert_contains(kw_err_detail(), off[i].needle);
                if (strstr(kw_err_detail(), SECRET) != NULL)
                        fail_msg("case %zu: the secret is echoed: %s", i, kw_err_detail());
                kw_config_free(c);
        }
        /* the defaults written out, as in keyward.example.toml, are fine */
        struct kw_config *c = config_with("[aws_xks_config]\naws_xks_enable = false\n"
                                          "aws_xks_region = \"us-east-1\"\naws_xks_uri_prefix = \"\"\n"
                                          "aws_xks_rate_limit = 1800\n"
                                          "[azure_ekm_config]\nazure_ekm_enable = false\n"
                                          "azure_ekm_client_cns = []\nazure_ekm_proxy_vendor = \"Keyward\"\n");
        kw_result r = kw_config_validate(c);
        if (!kw_ok(r))
                fail_msg("defaults refused: %s", kw_err_detail());
        kw_config_free(c);
}

#define HASH64 "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
#define HASH64_UPPER "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08"

/* [admin] initial_token_sha256 and [hsm] evaluation: accepted forms, and
 * the types and defaults the struct gets. */
static void config_parse_initial_token_sha256_and_evaluation(void **state)
{
        (void)state;
        struct kw_config *c = config_with("[hsm]\nevaluation = true\n"
                                          "[admin]\ninitial_token_sha256 = \"" HASH64 "\"\n");
        assert_int_equal(kw_config_validate(c).code, 0);
        assert_true(c->hsm.evaluation);
        assert_string_equal(c->admin.initial_token_sha256, HASH64);
        /* a secret: gone from the processes that wipe theirs */
        kw_config_wipe_secrets(c);
        assert_string_equal(c->admin.initial_token_sha256, "");
        kw_config_free(c);
        /* upper case is the same hash (PowerShell's Get-FileHash prints it so) */
        c = config_with("[admin]\ninitial_token_sha256 = \"" HASH64_UPPER "\"\n");
        assert_int_equal(kw_config_validate(c).code, 0);
        kw_config_free(c);
        /* "" (the default, written out) is none */
        c = config_with("[hsm]\nevaluation = false\n[admin]\ninitial_token_sha256 = \"\"\n");
        assert_int_equal(kw_config_validate(c).code, 0);
        assert_false(c->hsm.evaluation);
        kw_config_free(c);
        /* evaluation is a boolean, refused at its line otherwise */
        c = defaults();
        const char *text = "[hsm]\n\nevaluation = \"yes\"\n";
        assert_int_equal(kw_config_parse("e.toml", text, strlen(text), c).code, KW_ERR_CONFIG);
        assert_string_equal(kw_err_detail(), "e.toml:3: key 'evaluation' in [hsm] must be a boolean, "
                                             "not a string");
        assert_false(c->hsm.evaluation);
        kw_config_free(c);
}

/* A hash that is not 64 hex digits is refused at its line (or naming its
 * variable), without echoing the value; a refused load returns nothing. */
static void config_load_initial_token_sha256_malformed_names_line(void **state)
{
        (void)state;
        static const char *const bad[] = {
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0",    /* 63 */
                HASH64 "0",                                                           /* 65 */
                "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a0g",   /* not hex */
                "9f86d081884c7d659a2feaa0c55ad015 3bf4f1b2b0b822cd15d6c15b0f00a08",   /* blank */
                "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg",                       /* base64url */
        };
        struct tmpdir t;
        char path[128], text[512], want[256];
        tmp_make(&t);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
                snprintf(text, sizeof text, "%s[admin]\n# the first token's hash\n"
                                            "initial_token_sha256 = \"%s\"\n", base_valid, bad[i]);
                tmp_write(&t, "h.toml", text, path, sizeof path);
                struct kw_config *c = NULL;
                if (kw_config_load(path, no_env, &c).code != KW_ERR_CONFIG)
                        fail_msg("case %zu: accepted", i);
                assert_null(c);
                snprintf(want, sizeof want, "%s:7: [admin] initial_token_sha256: must be \"\" or the "
                                            "SHA-256 of the first admin token, 64 hex digits",
                         path);
                assert_contains(kw_err_detail(), want);
                if (strstr(kw_err_detail(), bad[i]) != NULL)
                        fail_msg("case %zu: the value is echoed: %s", i, kw_err_detail());
        }
        /* from the environment: the variable is named */
        tmp_write(&t, "h.toml", base_valid, path, sizeof path);
        char *const env[] = { "KEYWARD_ADMIN_INITIAL_TOKEN_SHA256=abc", NULL };
        struct kw_config *c = NULL;
        assert_int_equal(kw_config_load(path, env, &c).code, KW_ERR_CONFIG);
        assert_null(c);
        assert_contains(kw_err_detail(), "env KEYWARD_ADMIN_INITIAL_TOKEN_SHA256: [admin] "
                                         "initial_token_sha256: must be");
        /* and a good one from there is taken, as KEYWARD_HSM_EVALUATION is */
        char *const good[] = { "KEYWARD_ADMIN_INITIAL_TOKEN_SHA256=" HASH64,
                               "KEYWARD_HSM_EVALUATION=1", NULL };
        kw_result r = kw_config_load(path, good, &c);
        if (!kw_ok(r))
                fail_msg("refused: %s", kw_err_detail());
        assert_string_equal(c->admin.initial_token_sha256, HASH64);
        assert_true(c->hsm.evaluation);
        kw_config_free(c);
        tmp_remove(&t, "h.toml");
        rmdir(t.path);
}

/* The refusal names the file and the line of the setting, or the
 * environment variable that set it (and the one that turned the switch off). */
static void config_load_disabled_section_names_line_or_variable(void **state)
{
        (void)state;
        struct tmpdir t;
        char path[128], want[256];
        tmp_make(&t);
        tmp_write(&t, "k.toml",
                  "[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_file = \"/p\"\n"
                  "[aws_xks_config]\n"
                  "aws_xks_region = \"us-east-1\"\n"
                  "aws_xks_sigv4_access_key_id = \"" AKID "\"\n"
                  "aws_xks_sigv4_secret_access_key = \"" SECRET "\"\n",
                  path, sizeof path);
        struct kw_config *c = NULL;
        assert_int_equal(kw_config_load(path, no_env, &c).code, KW_ERR_CONFIG);
        assert_null(c);
        snprintf(want, sizeof want, "%s:7: [aws_xks_config] aws_xks_sigv4_access_key_id is set but "
                                    "aws_xks_enable is false", path);
        assert_contains(kw_err_detail(), want);
        assert_contains(kw_err_detail(), "aws_xks_enable is false, so its key store is not served");
        assert_null(strstr(kw_err_detail(), SECRET));

        /* the switch turned on from the environment: accepted */
        char *const on[] = { "KEYWARD_AWS_XKS_CONFIG_AWS_XKS_ENABLE=true", NULL };
        kw_result r = kw_config_load(path, on, &c);
        if (!kw_ok(r))
                fail_msg("enabled from env refused: %s", kw_err_detail());
        kw_config_free(c);
        c = NULL;

        /* the switch turned off from the environment: the line, and the variable */
        char *const off[] = { "KEYWARD_AWS_XKS_CONFIG_AWS_XKS_ENABLE=false", NULL };
        assert_int_equal(kw_config_load(path, off, &c).code, KW_ERR_CONFIG);
        assert_contains(kw_err_detail(), want);
        assert_contains(kw_err_detail(), "aws_xks_enable is false (env "
                                         "KEYWARD_AWS_XKS_CONFIG_AWS_XKS_ENABLE), so");

        /* a setting from the environment is blamed on its variable */
        tmp_write(&t, "k.toml", "[hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\npin_file = \"/p\"\n",
                  path, sizeof path);
        char *const env[] = { "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS=mhsm.example", NULL };
        assert_int_equal(kw_config_load(path, env, &c).code, KW_ERR_CONFIG);
        assert_contains(kw_err_detail(), "env KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS: "
                                         "[azure_ekm_config] azure_ekm_client_cns is set but "
                                         "azure_ekm_enable is false");
        tmp_remove(&t, "k.toml");
        rmdir(t.path);
}

/* '''...''' keeps the text as written: a PEM, line breaks and all. */
static void config_parse_multi_line_literal(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        parse_ok(c, "ml.toml", "[db]\npath = '''\n/var/lib/\"x\"\\n\n  two'''\n[http]\nlisten = \"127.0.0.1:1\"\n");
        assert_string_equal(c->db.path, "/var/lib/\"x\"\\n\n  two");
        assert_string_equal(c->http.listen, "127.0.0.1:1");
        parse_ok(c, "ml2.toml", "[db]\npath = '''a\r\nb'''\n");
        assert_string_equal(c->db.path, "a\nb");
        kw_config_free(c);
}

/* kw_config_write's text reads back to the same configuration (written
 * again, the same text), secrets and quotes included. */
static void config_write_reads_back(void **state)
{
        (void)state;
        struct kw_config *c = defaults();
        parse_ok(c, "w.toml",
                 "[db]\npath = \"/a \\\"b\\\" \\\\ c\\td\"\n"
                 "[azure_ekm_config]\nazure_ekm_client_cns = [\"x\", \"y \\u0001\"]\n"
                 "[aws_xks_config]\naws_xks_enable = true\naws_xks_sigv4_access_key_id = \"ABCDEFGHIJKLMNOPQRST\"\n"
                 "aws_xks_sigv4_secret_access_key = \"" "abcdefghijabcdefghijabcdefghijabcdefghij123" "\"\n"
                 "[aws_xks_store.s1]\nuri_prefix = \"/s1\"\naccess_key_id = \"ABCDEFGHIJKLMNOPQRSZ\"\n"
                 "secret_access_key = \"" "zbcdefghijabcdefghijabcdefghijabcdefghij123" "\"\n");
        struct kw_buf a, b;
        kw_buf_init(&a, 1u << 20);
        kw_buf_init(&b, 1u << 20);
        assert_int_equal(kw_config_write(c, &a).code, 0);
        struct kw_config *d = defaults();
        assert_int_equal(kw_config_parse("back.toml", (const char *)a.p, a.len, d).code, 0);
        assert_int_equal(kw_config_write(d, &b).code, 0);
        assert_int_equal(a.len, b.len);
        assert_memory_equal(a.p, b.p, a.len);
        assert_string_equal(d->db.path, "/a \"b\" \\ c\td");
        assert_string_equal(d->ekm.azure_ekm_client_cns.v[1], "y \001");
        assert_int_equal(d->n_xks_stores, 1);
        assert_string_equal(d->xks_stores[0].secret_access_key, c->xks_stores[0].secret_access_key);
        assert_true(d->xks.aws_xks_enable);
        kw_buf_free(&a);
        kw_buf_free(&b);
        kw_config_free(c);
        kw_config_free(d);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(config_defaults_match_header),
                cmocka_unit_test(config_validate_defaults_need_hsm),
                cmocka_unit_test(config_free_null_is_noop),
                cmocka_unit_test(config_parse_every_value_type),
                cmocka_unit_test(config_parse_comments_blank_lines_crlf_bom),
                cmocka_unit_test(config_parse_empty_text_keeps_values),
                cmocka_unit_test(config_parse_multiline_array),
                cmocka_unit_test(config_parse_array_replaces_previous_list),
                cmocka_unit_test(config_parse_escapes_and_utf8),
                cmocka_unit_test(config_parse_later_document_updates_store),
                cmocka_unit_test(config_parse_errors_report_line_and_change_nothing),
                cmocka_unit_test(config_parse_secret_not_echoed_in_errors),
                cmocka_unit_test(config_parse_too_large_fails),
                cmocka_unit_test(config_parse_too_many_lines_fails),
                cmocka_unit_test(config_parse_string_and_array_caps),
                cmocka_unit_test(config_parse_too_many_stores_fails),
                cmocka_unit_test(config_parse_null_arguments_fail),
                cmocka_unit_test(config_load_env_overrides_apply),
                cmocka_unit_test(config_load_env_overrides_file_and_stores),
                cmocka_unit_test(config_load_env_errors),
                cmocka_unit_test(config_load_env_invalid_value_names_the_variable),
                cmocka_unit_test(config_load_env_ambiguous_store_fails),
                cmocka_unit_test(config_load_env_secret_not_echoed),
                cmocka_unit_test(config_load_null_envp_uses_environ),
                cmocka_unit_test(config_load_file_errors),
                cmocka_unit_test(config_load_too_large_file_fails),
                cmocka_unit_test(config_load_example_validates),
                cmocka_unit_test(config_validate_accepts_good_configs),
                cmocka_unit_test(config_validate_rejects_each_rule),
                cmocka_unit_test(config_validate_disabled_sections_refuse_settings),
                cmocka_unit_test(config_load_disabled_section_names_line_or_variable),
                cmocka_unit_test(config_parse_initial_token_sha256_and_evaluation),
                cmocka_unit_test(config_load_initial_token_sha256_malformed_names_line),
                cmocka_unit_test(config_parse_multi_line_literal),
                cmocka_unit_test(config_write_reads_back),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
