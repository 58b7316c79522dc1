/* luks2_check_test.c - the header JSON checks: one accepted shape, each departure refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "luks2_check.h"

#define HDR_SIZE 16384u

/* What keyward-unlock enroll writes (the shape cryptsetup 2.6.1 and
 * systemd 252 write it): keyslot 0 opened through the TPM (signed PCR
 * policy over PCR 11), keyslot 1 the recovery key. */
static const char BASE[] =
        "{\"keyslots\":{"
        "\"0\":{\"type\":\"luks2\",\"key_size\":64,"
        "\"af\":{\"type\":\"luks1\",\"stripes\":4000,\"hash\":\"sha256\"},"
        "\"area\":{\"type\":\"raw\",\"offset\":\"32768\",\"size\":\"258048\",\"encryption\":\"aes-xts-plain64\",\"key_size\":64},"
        "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha512\",\"iterations\":1000,\"salt\":\"c2FsdA==\"}},"
        "\"1\":{\"type\":\"luks2\",\"key_size\":64,\"priority\":1,"
        "\"af\":{\"type\":\"luks1\",\"stripes\":4000,\"hash\":\"sha256\"},"
        "\"area\":{\"type\":\"raw\",\"offset\":\"290816\",\"size\":\"258048\",\"encryption\":\"aes-xts-plain64\",\"key_size\":64},"
        "\"kdf\":{\"type\":\"argon2id\",\"time\":4,\"memory\":1048576,\"cpus\":2,\"salt\":\"c2FsdA==\"}}},"
        "\"tokens\":{"
        "\"0\":{\"type\":\"systemd-tpm2\",\"keyslots\":[\"0\"],\"tpm2-blob\":\"AAECAwQFBgc=\","
        "\"tpm2-pcrs\":[],\"tpm2-pcr-bank\":\"sha256\",\"tpm2-primary-alg\":\"ecc\","
        "\"tpm2-policy-hash\":\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\","
        "\"tpm2-pin\":false,\"tpm2_pubkey_pcrs\":[11],\"tpm2_pubkey\":\"LS0tLS1CRUdJTg==\"},"
        "\"1\":{\"type\":\"systemd-recovery\",\"keyslots\":[\"1\"]}},"
        "\"segments\":{\"0\":{\"type\":\"crypt\",\"offset\":\"16777216\",\"size\":\"dynamic\",\"iv_tweak\":\"0\","
        "\"encryption\":\"aes-xts-plain64\",\"sector_size\":4096}},"
        "\"digests\":{\"0\":{\"type\":\"pbkdf2\",\"keyslots\":[\"0\",\"1\"],\"segments\":[\"0\"],\"hash\":\"sha256\","
        "\"iterations\":1000,\"salt\":\"c2FsdA==\",\"digest\":\"ZGlnZXN0\"}},"
        "\"config\":{\"json_size\":\"12288\",\"keyslots_size\":\"16744448\"}}";

/* A copy of s with its first occurrence of from replaced by to. */
static char *replaced(const char *s, const char *from, const char *to)
{
        const char *at = strstr(s, from);
        assert_non_null(at);
        size_t pre = (size_t)(at - s);
        char *out = malloc(strlen(s) + strlen(to) + 1);
        assert_non_null(out);
        memcpy(out, s, pre);
        strcpy(out + pre, to);
        strcat(out, at + strlen(from));
        return out;
}

static char *with(const char *from, const char *to) { return replaced(BASE, from, to); }

/* Checks json with the default expectation; the result code. */
static int check_exp(const char *json, const struct kwu_expect *exp, struct kwu_layout *l)
{
        return kwu_check_json(json, strlen(json), HDR_SIZE, exp, l).code;
}

static int check(const char *json)
{
        struct kwu_expect exp;
        kwu_expect_default(&exp);
        struct kwu_layout l;
        memset(&l, 0x5a, sizeof l);
        int rc = check_exp(json, &exp, &l);
        if (rc != 0) {
                /* untouched on failure */
                for (size_t i = 0; i < sizeof l; i++)
                        assert_int_equal(((unsigned char *)&l)[i], 0x5a);
        }
        return rc;
}

/* json (freed here) is refused, and the detail says want. */
static void refused(char *json, const char *want)
{
        assert_int_equal(check(json), KW_ERR_LUKS_TAMPERED);
        if (strstr(kw_err_detail(), want) == NULL)
                fail_msg("detail \"%s\" does not say \"%s\"", kw_err_detail(), want);
        free(json);
}

/* json (freed here) is accepted with keyslots extra allowed; the layout in *l. */
static void accepted(char *json, uint32_t extra, struct kwu_layout *l)
{
        struct kwu_expect exp;
        kwu_expect_default(&exp);
        exp.extra_keyslots = extra;
        assert_int_equal(check_exp(json, &exp, l), 0);
        free(json);
}

static void luks2_check_json_enrolled_shape_accepted(void **state)
{
        (void)state;
        struct kwu_layout l;
        accepted(strdup(BASE), 0, &l);
        assert_int_equal(l.nslots, 2);
        assert_string_equal(l.slots[0].kdf, "pbkdf2");
        assert_string_equal(l.slots[0].kdf_hash, "sha512");
        assert_string_equal(l.slots[1].kdf, "argon2id");
        assert_int_equal(l.ntokens, 2);
        assert_int_equal(l.tokens[0].type, KWU_TOKEN_SYSTEMD_TPM2);
        assert_int_equal(l.tokens[0].keyslots, 1u << 0);
        assert_int_equal(l.tokens[0].pubkey_pcrs, 1u << 11);
        assert_int_equal(l.tokens[0].pcrs, 0);
        assert_true(l.tokens[0].has_pubkey);
        assert_string_equal(l.tokens[0].bank, "sha256");
        assert_int_equal(l.tokens[1].type, KWU_TOKEN_SYSTEMD_RECOVERY);
        assert_int_equal(l.tokens[1].keyslots, 1u << 1);
        assert_int_equal(l.sector_size, 4096);
        assert_int_equal(l.data_offset, 16777216);
}

static void luks2_check_json_null_cipher_refused_anywhere(void **state)
{
        (void)state;
        /* the data segment: the guest would write in clear */
        refused(with("\"encryption\":\"aes-xts-plain64\",\"sector_size\"", "\"encryption\":\"cipher_null-ecb\",\"sector_size\""),
                "null cipher at .segments.0.encryption");
        /* a keyslot area: any passphrase would open a key the host chose */
        refused(with("\"encryption\":\"aes-xts-plain64\",\"key_size\":64}", "\"encryption\":\"CIPHER_NULL\",\"key_size\":64}"),
                "null cipher at .keyslots.0.area.encryption");
        refused(with("\"encryption\":\"aes-xts-plain64\",\"sector_size\"", "\"encryption\":\"null\",\"sector_size\""),
                "null cipher");
        /* even where nothing reads it */
        refused(with("\"digest\":\"ZGlnZXN0\"", "\"digest\":\"x-cipher_null-x\""), "null cipher at .digests.0.digest");
}

static void luks2_check_json_other_cipher_or_key_size_refused(void **state)
{
        (void)state;
        refused(with("\"encryption\":\"aes-xts-plain64\",\"sector_size\"", "\"encryption\":\"aes-cbc-essiv:sha256\",\"sector_size\""),
                "segments.0.encryption is \"aes-cbc-essiv:sha256\"");
        refused(with("\"type\":\"luks2\",\"key_size\":64", "\"type\":\"luks2\",\"key_size\":32"), "keyslots.0.key_size is out of range");
        refused(with("\"encryption\":\"aes-xts-plain64\",\"key_size\":64}", "\"encryption\":\"aes-xts-plain64\",\"key_size\":32}"),
                "keyslots.0.area.key_size is out of range");
        refused(with("\"sector_size\":4096", "\"sector_size\":1024"), "sector_size 1024");
}

static void luks2_check_json_unrecorded_keyslot_refused(void **state)
{
        (void)state;
        /* a third keyslot that no token records (and the digest binds) */
        char *j = with("\"keyslots\":[\"0\",\"1\"],\"segments\"", "\"keyslots\":[\"0\",\"1\",\"2\"],\"segments\"");
        char *m = replaced(j, "\"1\":{\"type\":\"luks2\"",
                           "\"2\":{\"type\":\"luks2\",\"key_size\":64,"
                           "\"af\":{\"type\":\"luks1\",\"stripes\":4000,\"hash\":\"sha256\"},"
                           "\"area\":{\"type\":\"raw\",\"offset\":\"548864\",\"size\":\"258048\",\"encryption\":\"aes-xts-plain64\",\"key_size\":64},"
                           "\"kdf\":{\"type\":\"pbkdf2\",\"hash\":\"sha256\",\"iterations\":1000,\"salt\":\"c2FsdA==\"}},"
                           "\"1\":{\"type\":\"luks2\"");
        free(j);
        char *keep = strdup(m);
        refused(m, "keyslot 2 is recorded by no token");
        /* accepted when the caller names it (a volume systemd-cryptenroll enrolled) */
        struct kwu_layout l;
        accepted(keep, 1u << 2, &l);
        assert_int_equal(l.nslots, 3);
}

static void luks2_check_json_unknown_token_refused(void **state)
{
        (void)state;
        refused(with("\"type\":\"systemd-recovery\"", "\"type\":\"evil-token\""), "tokens.1 is of an unknown type \"evil-token\"");
        refused(with("\"type\":\"systemd-recovery\",\"keyslots\":[\"1\"]", "\"type\":\"systemd-recovery\",\"keyslots\":[\"1\"],\"x\":1"),
                "tokens.1 has an unexpected member \"x\"");
        refused(with("\"tpm2-pin\":false", "\"tpm2-pin\":false,\"tpm2_pcrlock\":true"), "unexpected member \"tpm2_pcrlock\"");
}

static void luks2_check_json_token_slots_checked(void **state)
{
        (void)state;
        refused(with("\"type\":\"systemd-recovery\",\"keyslots\":[\"1\"]", "\"type\":\"systemd-recovery\",\"keyslots\":[\"7\"]"),
                "names keyslot 7, which does not exist");
        refused(with("\"type\":\"systemd-recovery\",\"keyslots\":[\"1\"]", "\"type\":\"systemd-recovery\",\"keyslots\":[\"0\"]"),
                "another token already records");
        refused(with("\"keyslots\":[\"0\"],\"tpm2-blob\"", "\"keyslots\":[],\"tpm2-blob\""), "tokens.0.keyslots is missing, empty");
        refused(with("\"keyslots\":[\"0\"],\"tpm2-blob\"", "\"keyslots\":[\"00\"],\"tpm2-blob\""), "not a keyslot id");
}

static void luks2_check_json_tpm2_token_fields_checked(void **state)
{
        (void)state;
        refused(with("\"tpm2_pubkey_pcrs\":[11],\"tpm2_pubkey\":\"LS0tLS1CRUdJTg==\"", "\"tpm2_pubkey_pcrs\":[11]"),
                "one of tpm2_pubkey and tpm2_pubkey_pcrs without the other");
        /* no PCR at all: would unseal on any machine holding this TPM */
        refused(with(",\"tpm2_pubkey_pcrs\":[11],\"tpm2_pubkey\":\"LS0tLS1CRUdJTg==\"", ""), "binds to no PCR at all");
        refused(with("\"tpm2_pubkey_pcrs\":[11]", "\"tpm2_pubkey_pcrs\":[24]"), "not a PCR index");
        refused(with("\"tpm2-pcrs\":[]", "\"tpm2-pcrs\":[7,7]"), "names PCR 7 twice");
        refused(with("\"tpm2-blob\":\"AAECAwQFBgc=\"", "\"tpm2-blob\":\"not base64!\""), "tpm2-blob is not a base64");
        refused(with("\"tpm2-policy-hash\":\"0123456789abcdef", "\"tpm2-policy-hash\":\"0123456789ABCDEF"), "lower-case hex");
        refused(with("\"tpm2-pcr-bank\":\"sha256\"", "\"tpm2-pcr-bank\":\"md5\""), "tpm2-pcr-bank is \"md5\"");
        refused(with("\"tpm2-pin\":false", "\"tpm2-pin\":\"no\""), "tpm2-pin is not a boolean");
        /* literal PCRs 7+11 instead of the signed policy: accepted */
        char *j = with(",\"tpm2_pubkey_pcrs\":[11],\"tpm2_pubkey\":\"LS0tLS1CRUdJTg==\"", "");
        char *k = replaced(j, "\"tpm2-pcrs\":[]", "\"tpm2-pcrs\":[7,11]");
        free(j);
        struct kwu_layout l;
        accepted(k, 0, &l);
        assert_int_equal(l.tokens[0].pcrs, (1u << 7) | (1u << 11));
        assert_false(l.tokens[0].has_pubkey);
}

static void luks2_check_json_parser_differentials_refused(void **state)
{
        (void)state;
        /* a duplicate member: cJSON would read the first, json-c (libcryptsetup) the last */
        refused(with("\"encryption\":\"aes-xts-plain64\",\"sector_size\"",
                     "\"encryption\":\"aes-xts-plain64\",\"encryption\":\"aes-cbc-plain\",\"sector_size\""),
                "does not parse strictly");
        refused(with("{\"keyslots\"", "{\"keyslots\":{},\"keyslots\""), "does not parse strictly");
}

static void luks2_check_json_structure_refused(void **state)
{
        (void)state;
        refused(with("\"config\":{", "\"extra\":1,\"config\":{"), "the header JSON has an unexpected member \"extra\"");
        refused(with("\"keyslots_size\":\"16744448\"", "\"keyslots_size\":\"16744448\",\"requirements\":{\"mandatory\":[\"online-reencrypt\"]}"),
                "config.requirements is set");
        refused(with("\"keyslots_size\":\"16744448\"", "\"keyslots_size\":\"16744448\",\"flags\":[\"allow-discards\"]"),
                "config.flags is set");
        refused(with("\"json_size\":\"12288\"", "\"json_size\":\"28672\""), "does not match the header size");
        refused(with("\"iv_tweak\":\"0\"", "\"iv_tweak\":\"0\",\"integrity\":{}"), "segments.0 has an unexpected member \"integrity\"");
        refused(with("\"segments\":[\"0\"]", "\"segments\":[\"0\",\"1\"]"), "must be exactly [\"0\"]");
        refused(with("\"keyslots\":[\"0\",\"1\"],\"segments\"", "\"keyslots\":[\"0\"],\"segments\""), "does not bind every keyslot");
        refused(with("\"type\":\"luks2\"", "\"type\":\"reencrypt\""), "keyslots.0.type is \"reencrypt\"");
        refused(with("\"stripes\":4000", "\"stripes\":1"), "stripes is out of range");
        refused(with("\"iterations\":1000,\"salt\":\"c2FsdA==\"}},", "\"iterations\":1,\"salt\":\"c2FsdA==\"}},"),
                "iterations is out of range");
        refused(with("\"offset\":\"16777216\"", "\"offset\":\"-1\""), "not a decimal number");
        refused(with("\"offset\":\"16777216\"", "\"offset\":\"016777216\""), "not a decimal number");
        refused(with("\"0\":{\"type\":\"crypt\"", "\"1\":{\"type\":\"crypt\""), "exactly one data segment \"0\"");
        refused(strdup("[]"), "");
        refused(strdup("{\"keyslots\":{}}"), "");
        refused(strdup("\xff"), "does not parse strictly");
}

#define SNP_TOKEN "{\"type\":\"keyward-snp\",\"keyslots\":[\"1\"],\"root_key\":\"vcek\"," \
        "\"fields\":[\"policy\",\"measurement\",\"tcb_version\"],\"vmpl\":0,\"guest_svn\":0," \
        "\"tcb_version\":\"0300000000000008\",\"label\":\"keyward-unlock luks2 v1\"}"

/* BASE with the recovery token replaced by an SNP one (keyslot 1). */
static char *with_snp(const char *from, const char *to)
{
        char *snp = replaced(SNP_TOKEN, from, to);
        char *j = with("{\"type\":\"systemd-recovery\",\"keyslots\":[\"1\"]}", snp);
        free(snp);
        return j;
}

static void luks2_check_json_snp_token_checked(void **state)
{
        (void)state;
        struct kwu_layout l;
        accepted(with_snp("\"vmpl\":0", "\"vmpl\":0"), 0, &l);
        assert_int_equal(l.tokens[1].type, KWU_TOKEN_KEYWARD_SNP);
        assert_int_equal(l.tokens[1].snp.fields, KWU_SNP_F_REQUIRED);
        assert_int_equal(l.tokens[1].snp.tcb, 0x0300000000000008ull);
        assert_int_equal(l.tokens[1].snp.root, 0);
        static const struct { const char *from, *to, *want; } bad[] = {
                { "\"policy\",", "", "binds less than the policy, the measurement and the TCB" },
                { "\"policy\"", "\"debug\"", "unknown guest field" },
                { "\"policy\",\"measurement\"", "\"policy\",\"policy\",\"measurement\"", "names policy twice" },
                { "0300000000000008", "03000000000000080", "16 lower-case hex digits" },
                { "\"vcek\"", "\"none\"", "root_key is \"none\"" },
                { "\"vmpl\":0", "\"vmpl\":4", "vmpl is out of range" },
                { "keyward-unlock luks2 v1", "other use", "label is \"other use\"" },
                { "\"vmpl\":0", "\"vmpl\":0,\"extra\":true", "unexpected member \"extra\"" },
        };
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
                refused(with_snp(bad[i].from, bad[i].to), bad[i].want);
}

static void luks2_token_str_reads_a_field(void **state)
{
        (void)state;
        struct kw_buf b;
        kw_buf_init(&b, 128);
        assert_int_equal(kwu_token_str(BASE, strlen(BASE), 0, "tpm2-blob", &b).code, 0);
        assert_string_equal((const char *)b.p, "AAECAwQFBgc=");
        assert_int_equal(kwu_token_str(BASE, strlen(BASE), 0, "tpm2-policy-hash", &b).code, 0);
        assert_int_equal(strlen((const char *)b.p), 64);
        assert_int_equal(kwu_token_str(BASE, strlen(BASE), 1, "tpm2-blob", &b).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kwu_token_str(BASE, strlen(BASE), 5, "type", &b).code, KW_ERR_NOT_FOUND);
        assert_int_equal(kwu_token_str(BASE, strlen(BASE), 0, "tpm2-pin", &b).code, KW_ERR_NOT_FOUND);
        kw_buf_free(&b);
        kw_buf_init(&b, 4);   /* too small for the blob */
        assert_int_equal(kwu_token_str(BASE, strlen(BASE), 0, "tpm2-blob", &b).code, KW_ERR_TOO_LARGE);
        kw_buf_free(&b);
}

#define V64 "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
#define TPM_LITERAL "\"tpm2-pcrs\":[7,11],"
/* BASE with token 0 also over literal PCRs 7+11, and token 2 recording their values. */
static char *with_note(const char *note)
{
        char *a = with("\"tpm2-pcrs\":[],", TPM_LITERAL);
        char *b = replaced(a, "\"1\":{\"type\":\"systemd-recovery\",\"keyslots\":[\"1\"]}",
                           note);
        free(a);
        return b;
}

#define RECOVERY "\"1\":{\"type\":\"systemd-recovery\",\"keyslots\":[\"1\"]}"
#define NOTE(slots, vals) RECOVERY ",\"2\":{\"type\":\"keyward-tpm2-pcrs\",\"keyslots\":" slots \
        ",\"tpm2-pcr-bank\":\"sha256\",\"tpm2-pcr-values\":" vals "}"

static void luks2_check_json_pcr_values_token_checked(void **state)
{
        (void)state;
        struct kwu_layout l;
        char *j = with_note(NOTE("[\"0\"]", "{\"7\":\"" V64 "\",\"11\":\"" V64 "\"}"));
        accepted(strdup(j), 0, &l);
        /* not a binding: tied to the systemd-tpm2 token, not in tokens[] */
        assert_int_equal(l.ntokens, 2);
        assert_int_equal(l.tokens[0].has_expected, 1);
        assert_int_equal(l.tokens[0].expected_token, 2);
        assert_int_equal(l.tokens[1].has_expected, 0);
        uint8_t vals[24][32];
        uint32_t mask = 0;
        assert_int_equal(kwu_token_pcr_values(j, strlen(j), 2, &mask, vals).code, 0);
        assert_int_equal(mask, (1u << 7) | (1u << 11));
        assert_int_equal(vals[11][0], 0x00);
        assert_int_equal(vals[11][1], 0x11);
        assert_int_equal(vals[11][31], 0xff);
        free(j);
        refused(with_note(NOTE("[\"1\"]", "{\"7\":\"" V64 "\",\"11\":\"" V64 "\"}")),
                "which no systemd-tpm2 token records");
        refused(with_note(NOTE("[\"0\",\"1\"]", "{\"7\":\"" V64 "\",\"11\":\"" V64 "\"}")),
                "records other than one keyslot");
        refused(with_note(NOTE("[\"0\"]", "{\"7\":\"" V64 "\"}")), "other PCRs than token 0's literal ones");
        refused(with_note(NOTE("[\"0\"]", "{\"7\":\"" V64 "\",\"11\":\"" V64 "\",\"12\":\"" V64 "\"}")),
                "other PCRs than token 0's literal ones");
        refused(with_note(NOTE("[\"0\"]", "{\"7\":\"" V64 "\",\"11\":\"00\"}")),
                "tpm2-pcr-values.11 is not a SHA-256 value");
        refused(with_note(NOTE("[\"0\"]", "{\"7\":\"" V64 "\",\"24\":\"" V64 "\"}")), "not a PCR index");
        refused(with_note(NOTE("[\"0\"]", "{}")), "tpm2-pcr-values is missing, empty");
        refused(with_note(RECOVERY ",\"2\":{\"type\":\"keyward-tpm2-pcrs\",\"keyslots\":[\"0\"],"
                          "\"tpm2-pcr-bank\":\"sha1\",\"tpm2-pcr-values\":{\"7\":\"" V64 "\",\"11\":\"" V64 "\"}}"),
                "tpm2-pcr-bank");
        refused(with_note(NOTE("[\"0\"]", "{\"7\":\"" V64 "\",\"11\":\"" V64 "\"}") ",\"3\":{\"type\":"
                          "\"keyward-tpm2-pcrs\",\"keyslots\":[\"0\"],\"tpm2-pcr-bank\":\"sha256\","
                          "\"tpm2-pcr-values\":{\"7\":\"" V64 "\",\"11\":\"" V64 "\"}}"),
                "records keyslot 0's PCR values again");
        refused(with_note(RECOVERY ",\"2\":{\"type\":\"keyward-tpm2-pcrs\",\"keyslots\":[\"0\"],\"x\":1,"
                          "\"tpm2-pcr-bank\":\"sha256\",\"tpm2-pcr-values\":{\"7\":\"" V64 "\",\"11\":\"" V64 "\"}}"),
                "unexpected member");
        /* and no binding: its keyslot is still unrecorded */
        refused(replaced(BASE, "\"type\":\"systemd-tpm2\"", "\"type\":\"keyward-tpm2-pcrs\""), "unexpected member");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(luks2_check_json_enrolled_shape_accepted),
                cmocka_unit_test(luks2_check_json_null_cipher_refused_anywhere),
                cmocka_unit_test(luks2_check_json_other_cipher_or_key_size_refused),
                cmocka_unit_test(luks2_check_json_unrecorded_keyslot_refused),
                cmocka_unit_test(luks2_check_json_unknown_token_refused),
                cmocka_unit_test(luks2_check_json_token_slots_checked),
                cmocka_unit_test(luks2_check_json_tpm2_token_fields_checked),
                cmocka_unit_test(luks2_check_json_parser_differentials_refused),
                cmocka_unit_test(luks2_check_json_structure_refused),
                cmocka_unit_test(luks2_check_json_snp_token_checked),
                cmocka_unit_test(luks2_token_str_reads_a_field),
                cmocka_unit_test(luks2_check_json_pcr_values_token_checked),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
