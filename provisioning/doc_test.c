/* doc_test.c - the provisioning document: what a good one gives, the
 * appliance settings derived from it, generated credentials, and refusals
 * (with the line) on every path that has allocated (ASan run). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "doc.h"

static const struct kwp_doc_base base = { .data_dir = "/data" };

#define MIN "[provision]\nversion = 1\n[provision.hsm]\nevaluation = true\n" \
            "[provision.tls]\nnames = [\"kw.example.test\"]\n"

static struct kwp_doc *parse_ok(const char *text)
{
        struct kwp_doc *d = NULL;
        kw_result r = kwp_doc_parse(&base, "t.toml", text, strlen(text), &d);
        if (r.code != 0)
                fail_msg("refused: %s", kw_err_detail());
        return d;
}

static void parse_refused(const char *text, const char *want)
{
        struct kwp_doc *d = NULL;
        assert_int_equal(kwp_doc_parse(&base, "t.toml", text, strlen(text), &d).code, KW_ERR_CONFIG);
        assert_null(d);
        if (strstr(kw_err_detail(), want) == NULL)
                fail_msg("'%s' lacks '%s'", kw_err_detail(), want);
}

static void doc_good_and_derived(void **state)
{
        (void)state;
        struct kwp_doc *d = parse_ok(MIN "[provision.unlock]\ntpm2_pcrs = \"7+11\"\nsnp = true\n"
                                         "[aws_xks_store.s1]\nuri_prefix = \"/s1\"\n"
                                         "[aws_xks_store.s2]\nuri_prefix = \"/s2\"\nregion = \"eu-west-3\"\n"
                                         "[key.k1]\ntype = \"aes\"\nops = [\"wrap\", \"unwrap\"]\n"
                                         "xks_stores = [\"s1\", \"s2\"]\n[key.k2]\ntype = \"rsa\"\n"
                                         "[provision.admin]\nlisten = \"0.0.0.0:9443\"\n");
        assert_int_equal(d->tpm2, KWP_TPM2_SIGNED);
        assert_true(d->unlock.snp);
        assert_int_equal(d->tls_mode, KWP_TLS_SELF_SIGNED);
        assert_int_equal(d->tls_key, KWP_TLS_KEY_EC_P256);
        assert_int_equal(d->n_keys, 2);
        assert_string_equal(d->keys[0].name, "k1");
        assert_int_equal(d->keys[0].line, 15);
        assert_int_equal(d->keys[0].xks_stores.n, 2);
        assert_string_equal(d->keys[1].type, "rsa");
        /* what the appliance sets */
        const struct kw_config *c = d->cfg;
        assert_string_equal(c->db.path, "/data/custody/keyward.db");
        assert_string_equal(c->hsm.module, KWP_SOFTHSM_MODULE);
        assert_string_equal(c->hsm.token_label, KWP_EVALUATION_TOKEN);
        assert_string_equal(c->hsm.pin_file, "/data/custody/hsm.pin");
        assert_true(c->hsm.evaluation);
        assert_string_equal(c->tls.tls_key_file, "/data/etc/tls/key.pem");
        assert_string_equal(c->http.listen, "0.0.0.0:443");
        assert_string_equal(c->admin.listen, "0.0.0.0:9443");
        /* the stores: out of the configuration (the front reads it), for the admin API */
        assert_int_equal(c->n_xks_stores, 0);
        assert_int_equal(d->n_xks, 2);
        assert_string_equal(d->xks[0].name, "s1");
        assert_string_equal(d->xks[0].uri_prefix, "/s1");
        assert_string_equal(d->xks[0].region, "us-east-1");
        assert_string_equal(d->xks[1].region, "eu-west-3");
        assert_int_equal(d->n_warnings, 0);
        kwp_doc_free(d);
}

static void doc_secrets(void **state)
{
        (void)state;
        parse_refused("[provision]\nversion = 1\n[provision.hsm]\nmodule = \"/m.so\"\ntoken_label = \"t\"\n"
                      "pin = \"1234\"\n[provision.tls]\nnames = [\"a.b\"]\n",
                      "t.toml:6: 'pin' in [provision.hsm] is a secret");
        struct kwp_doc *d = parse_ok("[provision]\nversion = 1\nallow_secrets = true\n[provision.hsm]\n"
                                     "module = \"/m.so\"\ntoken_label = \"t\"\npin = \"1234\"\n"
                                     "[provision.tls]\nnames = [\"a.b\"]\n");
        assert_int_equal(d->n_warnings, 1);
        assert_non_null(strstr(d->warnings[0], "t.toml:7:"));
        assert_null(strstr(d->warnings[0], "1234"));
        assert_string_equal(d->cfg->hsm.module, "/m.so");
        assert_false(d->cfg->hsm.evaluation);
        kwp_doc_free(d);
}

/* Refused after keys, stores and strings were allocated: nothing leaks. */
static void doc_refusals_free_everything(void **state)
{
        (void)state;
        parse_refused(MIN "[key.a]\ntype = \"aes\"\n[key.b]\ntype = \"aes\"\nsize = 128\n",
                      "t.toml:11: [key.b] size: AES keys are 256 bits");
        parse_refused(MIN "[key.a]\ntype = \"aes\"\n[key.a]\n", "t.toml:9: [key.a]: duplicate table (first on line 7)");
        parse_refused(MIN "[aws_xks_store.s]\nuri_prefix = \"/s\"\n[key.a]\ntype = \"aes\"\nxks_stores = [\"t\"]\n",
                      "t.toml:11: [key.a] xks_stores");
        parse_refused(MIN "[hsm]\n", "t.toml:7: [hsm] cannot be set");
        parse_refused(MIN "[provision.tls]\n", "t.toml:7: duplicate table [provision.tls]");
        parse_refused(MIN "[http]\nlisten = \"nowhere\"\n", "t.toml:8: [http] listen");
        parse_refused("[provision.tls]\nnames = [\"a.b\"]\n", "t.toml:1: [provision] version = 1 is required");
        parse_refused(MIN "certificate = '''\n-----BEGIN CERTIFICATE-----\n", "t.toml:7: unterminated multi-line");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(doc_good_and_derived),
                cmocka_unit_test(doc_secrets),
                cmocka_unit_test(doc_refusals_free_everything),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
