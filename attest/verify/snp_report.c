/*
 * snp_report.c - the SEV-SNP attestation report parser (AMD SEV-SNP ABI
 * specification, table "ATTESTATION_REPORT Structure": 1184 bytes, version
 * 2-5).  No crypto and no allocation: the verifier (snp.c) checks the
 * report with it, and the server (server/front/admin_info.c) summarises the
 * evidence it hands out with the same code, so both read the same fields
 * at the same offsets.
 */
#include <string.h>

#include "kwa.h"

int kwa_snp_parse(const uint8_t *p, size_t n, struct kwa_snp_report *ret)
{
        if (n < KWA_SNP_REPORT_LEN)
                return KWA_E_TRUNC;
        if (n != KWA_SNP_REPORT_LEN)
                return KWA_E_FORMAT;
        struct kwa_snp_report r;
        memset(&r, 0, sizeof r);
        r.version = kwa_le32(p + 0x000);
        r.guest_svn = kwa_le32(p + 0x004);
        r.policy = kwa_le64(p + 0x008);
        r.vmpl = kwa_le32(p + 0x030);
        r.sig_algo = kwa_le32(p + 0x034);
        r.current_tcb = kwa_le64(p + 0x038);
        memcpy(r.report_data, p + 0x050, 64);
        memcpy(r.measurement, p + 0x090, 48);
        memcpy(r.host_data, p + 0x0C0, 32);
        memcpy(r.id_key_digest, p + 0x0E0, 48);
        memcpy(r.author_key_digest, p + 0x110, 48);
        r.reported_tcb = kwa_le64(p + 0x180);
        memcpy(r.chip_id, p + 0x1A0, 64);
        r.committed_tcb = kwa_le64(p + 0x1E0);
        r.launch_tcb = kwa_le64(p + 0x1F0);
        memcpy(r.sig_r, p + 0x2A0, 72);
        memcpy(r.sig_s, p + 0x2E8, 72);
        r.raw = p;
        if (r.version < 2 || r.version > 5)
                return KWA_E_FORMAT;
        *ret = r;
        return KWA_OK;
}
