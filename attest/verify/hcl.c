/*
 * hcl.c - the Azure confidential-VM HCL report (vTPM NV 0x01400001): a
 * 32-byte header starting "HCLA", the SNP report at 0x20 (1184 bytes), the
 * runtime-data header at 0x4C0 (data size u32 LE at 0x4D0), and the runtime
 * JSON at 0x4D4 whose SHA-256 is report_data[0:32].
 */
#include <string.h>

#include "kwa.h"

#define HCL_REPORT_OFF 0x20
#define HCL_DATA_SIZE_OFF 0x4D0
#define HCL_JSON_OFF 0x4D4

int kwa_hcl_parse(const uint8_t *p, size_t n, struct kwa_hcl *ret)
{
        if (n < HCL_JSON_OFF)
                return KWA_E_TRUNC;
        if (memcmp(p, "HCLA", 4) != 0)
                return KWA_E_FORMAT;
        uint32_t jl = kwa_le32(p + HCL_DATA_SIZE_OFF);
        if (jl == 0 || jl > n - HCL_JSON_OFF)
                return KWA_E_TRUNC;
        ret->report = p + HCL_REPORT_OFF;
        ret->report_len = KWA_SNP_REPORT_LEN;
        ret->json = p + HCL_JSON_OFF;
        ret->json_len = jl;
        return 0;
}
