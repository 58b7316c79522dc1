/* admin_info_test.c - the attestation summary: the SEV-SNP fields read from
 * a report built here at the ABI's offsets (measurement 0x90, policy 0x08,
 * vmpl 0x30, reported_tcb 0x180, chip_id 0x1A0), and an evidence document
 * summarised with only its checked values copied. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <cmocka.h>

#include "common/b64.h"
#include "front/admin_int.h"

#define REPORT_LEN 1184

static void put_le(uint8_t *p, uint64_t v, int n)
{
        for (int i = 0; i < n; i++)
                p[i] = (uint8_t)(v >> (8 * i));
}

static void make_report(uint8_t r[REPORT_LEN])
{
        memset(r, 0, REPORT_LEN);
        put_le(r + 0x00, 2, 4);                               /* version */
        put_le(r + 0x08, 0x30000 | (1u << 19), 8);            /* policy, debug allowed */
        put_le(r + 0x30, 1, 4);                               /* vmpl */
        for (int i = 0; i < 48; i++)
                r[0x90 + i] = (uint8_t)(0xa0 + i);            /* measurement */
        put_le(r + 0x180, 0x1122334455667788ull, 8);          /* reported_tcb */
        for (int i = 0; i < 64; i++)
                r[0x1A0 + i] = (uint8_t)i;                    /* chip_id */
}

static const char *str(const cJSON *o, const char *k)
{
        const cJSON *v = cJSON_GetObjectItem(o, k);
        assert_true(cJSON_IsString(v));
        return v->valuestring;
}

static void admin_snp_fields_reads_abi_offsets(void **state)
{
        (void)state;
        uint8_t r[REPORT_LEN];
        make_report(r);
        cJSON *o = cJSON_CreateObject();
        assert_int_equal(admin_snp_fields(r, sizeof r, o).code, 0);
        char want[129];
        for (int i = 0; i < 48; i++)
                snprintf(want + 2 * i, 3, "%02x", 0xa0 + i);
        assert_string_equal(str(o, "measurement"), want);
        for (int i = 0; i < 64; i++)
                snprintf(want + 2 * i, 3, "%02x", i);
        assert_string_equal(str(o, "chip_id"), want);
        assert_string_equal(str(o, "policy"), "0x00000000000b0000");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "debug")));
        assert_int_equal(cJSON_GetObjectItem(o, "vmpl")->valueint, 1);
        assert_string_equal(str(o, "reported_tcb"), "0x1122334455667788");
        assert_int_equal(cJSON_GetObjectItem(o, "version")->valueint, 2);
        cJSON_Delete(o);
}

static void admin_snp_fields_refuses_other_sizes_and_versions(void **state)
{
        (void)state;
        uint8_t r[REPORT_LEN + 1];
        make_report(r);
        cJSON *o = cJSON_CreateObject();
        assert_int_equal(admin_snp_fields(r, REPORT_LEN - 1, o).code, KW_ERR_BAD_FIELD);
        assert_int_equal(admin_snp_fields(r, REPORT_LEN + 1, o).code, KW_ERR_BAD_FIELD);
        put_le(r, 1, 4);
        assert_int_equal(admin_snp_fields(r, REPORT_LEN, o).code, KW_ERR_BAD_FIELD);
        assert_null(o->child);   /* nothing added */
        cJSON_Delete(o);
}

static void admin_attest_summarize_copies_checked_values(void **state)
{
        (void)state;
        uint8_t r[REPORT_LEN];
        make_report(r);
        struct kw_buf b64;
        kw_buf_init(&b64, 4096);
        assert_int_equal(kw_b64_encode(r, sizeof r, &b64).code, 0);
        char spki[65];
        memset(spki, 'a', 64);
        spki[64] = '\0';
        char *ev = malloc(8192);
        snprintf(ev, 8192,
                 "{\"version\":1,\"tls_spki_sha256\":\"%s\",\"image_version\":\"0.1.0\",\"time\":5,"
                 "\"tpm\":{\"quote\":\"AAAA\",\"pcr_bank\":\"sha256\",\"ak_handle\":\"0x81000003\","
                 "\"ak_public\":\"AANhYmM=\","
                 "\"pcrs\":{\"0\":\"%s\",\"7\":\"zz\",\"99\":\"%s\"},\"ek_cert\":{\"absent\":\"no\"}},"
                 "\"snp\":{\"report\":\"%.*s\",\"source\":\"sev-guest\",\"certs\":{\"vcek\":\"AA==\"}}}",
                 spki, spki, spki, (int)b64.len, (const char *)b64.p);
        cJSON *o = cJSON_CreateObject();
        assert_int_equal(admin_attest_summarize((const uint8_t *)ev, strlen(ev), o).code, 0);
        assert_string_equal(str(o, "tls_spki_sha256"), spki);
        const cJSON *tpm = cJSON_GetObjectItem(o, "tpm");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(tpm, "available")));
        const cJSON *pcrs = cJSON_GetObjectItem(tpm, "pcrs");
        assert_int_equal(cJSON_GetArraySize(pcrs), 1);   /* "7" not hex, "99" no PCR */
        assert_string_equal(str(pcrs, "0"), spki);
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(tpm, "ek_cert")));
        /* SHA-256 of the TPMT_PUBLIC inside the TPM2B ("abc" here) */
        assert_string_equal(str(tpm, "ak_sha256"),
                            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        const cJSON *snp = cJSON_GetObjectItem(o, "snp");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(snp, "available")));
        assert_string_equal(str(snp, "reported_tcb"), "0x1122334455667788");
        assert_string_equal(str(snp, "source"), "sev-guest");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(snp, "vcek")));
        cJSON_Delete(o);
        /* pieces absent, with their reason */
        snprintf(ev, 8192, "{\"tls_spki_sha256\":\"%s\",\"tpm\":{\"absent\":\"no TPM here\"},"
                           "\"snp\":{\"report\":\"AAAA\"}}", spki);
        o = cJSON_CreateObject();
        assert_int_equal(admin_attest_summarize((const uint8_t *)ev, strlen(ev), o).code, 0);
        assert_string_equal(str(cJSON_GetObjectItem(o, "tpm"), "absent"), "no TPM here");
        assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(o, "tpm"), "ak_sha256"));
        assert_string_equal(str(cJSON_GetObjectItem(o, "snp"), "absent"),
                            "the SEV-SNP report does not parse");
        cJSON_Delete(o);
        /* not evidence */
        o = cJSON_CreateObject();
        static const char *const bad[] = { "[]", "{}", "{\"tls_spki_sha256\":\"abc\"}", "{" };
        for (size_t i = 0; i < 4; i++)
                assert_int_equal(admin_attest_summarize((const uint8_t *)bad[i], strlen(bad[i]), o).code,
                                 KW_ERR_PROTOCOL);
        assert_null(o->child);
        cJSON_Delete(o);
        free(ev);
        kw_buf_free(&b64);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(admin_snp_fields_reads_abi_offsets),
                cmocka_unit_test(admin_snp_fields_refuses_other_sizes_and_versions),
                cmocka_unit_test(admin_attest_summarize_copies_checked_values),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
