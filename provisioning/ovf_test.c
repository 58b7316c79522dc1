/* ovf_test.c - CustomData out of Azure's ovf-env.xml, and everything refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ovf.h"

/* As Azure writes it (trimmed), the document "[provision]\n" in base64. */
#define HEAD "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n" \
        "<ns0:Environment xmlns=\"http://schemas.dmtf.org/ovf/environment/1\" " \
        "xmlns:ns0=\"http://schemas.dmtf.org/ovf/environment/1\" " \
        "xmlns:ns1=\"http://schemas.microsoft.com/windowsazure\">\n" \
        "<ns1:ProvisioningSection><ns1:Version>1.0</ns1:Version>\n" \
        "<ns1:LinuxProvisioningConfigurationSet>\n" \
        "<ns1:ConfigurationSetType>LinuxProvisioningConfiguration</ns1:ConfigurationSetType>\n" \
        "<ns1:HostName>kw1</ns1:HostName><ns1:UserName>azureuser</ns1:UserName>\n" \
        "<ns1:UserPassword>Secret&amp;1</ns1:UserPassword>\n"
#define TAIL "</ns1:LinuxProvisioningConfigurationSet></ns1:ProvisioningSection></ns0:Environment>\n"
#define DOC_B64 "W3Byb3Zpc2lvbl0K"

static int run(const char *xml, struct kw_buf *out)
{
        return kwp_ovf_custom_data(xml, strlen(xml), out).code;
}

static void ovf_custom_data_decoded(void **state)
{
        (void)state;
        struct kw_buf out;
        kw_buf_init(&out, 4096);
        assert_int_equal(run(HEAD "<ns1:CustomData>" DOC_B64 "</ns1:CustomData>\n" TAIL, &out), 0);
        assert_int_equal(out.len, 12);
        assert_memory_equal(out.p, "[provision]\n", 12);
        /* no prefix, base64 folded over lines */
        assert_int_equal(run(HEAD "<CustomData>\n  W3Byb3Zp\r\n  c2lvbl0K\n</CustomData>" TAIL, &out), 0);
        assert_memory_equal(out.p, "[provision]\n", 12);
        /* one inside a comment does not count */
        assert_int_equal(run(HEAD "<!-- <ns1:CustomData>AAAA</ns1:CustomData> -->"
                                  "<ns1:CustomData>" DOC_B64 "</ns1:CustomData>" TAIL, &out), 0);
        assert_int_equal(out.len, 12);
        kw_buf_free(&out);
}

static void ovf_custom_data_absent(void **state)
{
        (void)state;
        struct kw_buf out;
        kw_buf_init(&out, 4096);
        assert_int_equal(run(HEAD TAIL, &out), KW_ERR_NOT_FOUND);
        assert_int_equal(run(HEAD "<ns1:CustomData></ns1:CustomData>" TAIL, &out), KW_ERR_NOT_FOUND);
        assert_int_equal(run(HEAD "<ns1:CustomData/>" TAIL, &out), KW_ERR_NOT_FOUND);
        assert_int_equal(run(HEAD "<ns1:CustomData> \n </ns1:CustomData>" TAIL, &out), KW_ERR_NOT_FOUND);
        assert_int_equal(run(HEAD "<ns1:NotCustomData>" DOC_B64 "</ns1:NotCustomData>" TAIL, &out),
                         KW_ERR_NOT_FOUND);
        assert_int_equal(run("", &out), KW_ERR_NOT_FOUND);
        kw_buf_free(&out);
}

/* xml is refused with a detail saying want. */
static void refused(const char *xml, const char *want)
{
        struct kw_buf out;
        kw_buf_init(&out, 4096);
        assert_int_equal(run(xml, &out), KW_ERR_BAD_FIELD);
        assert_int_equal(out.len, 0);
        if (strstr(kw_err_detail(), want) == NULL)
                fail_msg("detail \"%s\" does not say \"%s\"", kw_err_detail(), want);
        kw_buf_free(&out);
}

static void ovf_custom_data_refused(void **state)
{
        (void)state;
        refused(HEAD "<ns1:CustomData>" DOC_B64 "</ns1:CustomData><ns1:CustomData>" DOC_B64 "</ns1:CustomData>" TAIL,
                "appears twice");
        refused("<!DOCTYPE x [<!ENTITY e \"W3\">]>" HEAD "<ns1:CustomData>&e;</ns1:CustomData>" TAIL, "DOCTYPE");
        refused(HEAD "<ns1:CustomData>W3Byb&#51;</ns1:CustomData>" TAIL, "not base64");
        refused(HEAD "<ns1:CustomData><![CDATA[" DOC_B64 "]]></ns1:CustomData>" TAIL, "other than base64");
        refused(HEAD "<ns1:CustomData>W3<b/>Byb</ns1:CustomData>" TAIL, "other than base64");
        refused(HEAD "<ns1:CustomData>" DOC_B64 "</ns1:Other>" TAIL, "other than base64");
        refused(HEAD "<ns1:CustomData>" DOC_B64, "other than base64");
        refused(HEAD "<!-- never closed", "comment is not closed");
        refused(HEAD "<ns1:CustomData", "tag is not closed");
        refused(HEAD "<>", "no name");
        refused(HEAD "<ns1:CustomData>W3Byb3Zpc2lvbl0</ns1:CustomData>" TAIL, "CustomData is not base64");
}

static void ovf_custom_data_too_large(void **state)
{
        (void)state;
        struct kw_buf out;
        kw_buf_init(&out, 16);
        size_t n = KWP_OVF_MAX + 1;
        char *big = malloc(n);
        assert_non_null(big);
        memset(big, ' ', n);
        assert_int_equal(kwp_ovf_custom_data(big, n, &out).code, KW_ERR_TOO_LARGE);
        free(big);
        kw_buf_free(&out);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(ovf_custom_data_decoded),
                cmocka_unit_test(ovf_custom_data_absent),
                cmocka_unit_test(ovf_custom_data_refused),
                cmocka_unit_test(ovf_custom_data_too_large),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
