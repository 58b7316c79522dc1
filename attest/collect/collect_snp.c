/*
 * collect_snp.c - the SEV-SNP piece: report_data = binding || 32 zero bytes,
 * through configfs-tsm when the kernel has it, else the /dev/sev-guest
 * SNP_GET_EXT_REPORT ioctl (falling back to SNP_GET_REPORT without
 * certificates).  The certificates come from the extended report's table
 * (GHCB spec: entries {GUID, offset, length}, a zero entry ends it).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/sev-guest.h>

#include "collect_int.h"

#define SNP_RESP_REPORT_OFF 0x20
#define SNP_CERTS_MAX (64u * 1024)   /* certificate table cap (pages the VMM may ask) */
#define SNP_CERT_ENTRY 24u

/* RFC 4122 byte order, as in the GHCB certificate table. */
static const uint8_t guid_vcek[16] = { 0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64,
                                       0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd };
static const uint8_t guid_vlek[16] = { 0xa8, 0x07, 0x4b, 0xc2, 0xa2, 0x5a, 0x48, 0x3e,
                                       0xaa, 0xe6, 0x39, 0xc0, 0x45, 0xa0, 0xb8, 0xa1 };
static const uint8_t guid_ask[16] = { 0x4a, 0xb7, 0xb3, 0x79, 0xbb, 0xac, 0x4f, 0xe4,
                                      0xa0, 0x2f, 0x05, 0xae, 0xf3, 0x27, 0xc7, 0x82 };
static const uint8_t guid_ark[16] = { 0xc0, 0xb4, 0x06, 0xa4, 0xa8, 0x03, 0x49, 0x52,
                                      0x97, 0x43, 0x3f, 0xb6, 0x01, 0x4c, 0xd0, 0xae };

static int real_open(void *ctx, const char *path)
{
        (void)ctx;
        return open(path, O_RDWR | O_CLOEXEC);
}
static int real_ioctl(void *ctx, int fd, unsigned long req, void *arg)
{
        (void)ctx;
        return ioctl(fd, req, arg);
}
static void real_close(void *ctx, int fd)
{
        (void)ctx;
        close(fd);
}
const struct kw_snp_ops kw_snp_real_ops = { real_open, real_ioctl, real_close, NULL };

static uint32_t le32(const uint8_t *p)
{
        return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Adds "certs": {"vcek"|"vlek"|"ask"|"ark": base64 DER} from a GHCB table. */
KW_MUST_USE static kw_result add_cert_table(cJSON *snp, const uint8_t *t, size_t len)
{
        cJSON *certs = cJSON_AddObjectToObject(snp, "certs");
        KW_ENSURE(certs != NULL, KW_ERR_NOMEM);
        static const uint8_t zero[SNP_CERT_ENTRY];
        for (size_t off = 0; len - off >= SNP_CERT_ENTRY; off += SNP_CERT_ENTRY) {
                const uint8_t *e = t + off;
                if (memcmp(e, zero, SNP_CERT_ENTRY) == 0)
                        break;
                uint32_t co = le32(e + 16), cl = le32(e + 20);
                if (co > len || len - co < cl || cl == 0)
                        continue;   /* a malformed row is left out; the verifier will miss it */
                const char *name = memcmp(e, guid_vcek, 16) == 0   ? "vcek"
                                   : memcmp(e, guid_vlek, 16) == 0 ? "vlek"
                                   : memcmp(e, guid_ask, 16) == 0  ? "ask"
                                   : memcmp(e, guid_ark, 16) == 0  ? "ark"
                                                                   : NULL;
                if (name != NULL && cJSON_GetObjectItemCaseSensitive(certs, name) == NULL)
                        KW_TRY(kw_collect_add_b64(certs, name, t + co, cl));
        }
        return KW_OK;
}

/* Reads a whole small file (at most max bytes) into a fresh buffer. */
static int read_file(const char *path, size_t max, uint8_t **ret, size_t *ret_len)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        uint8_t *p = malloc(max ? max : 1);
        size_t n = 0;
        ssize_t k = 0;
        while (p != NULL && n < max && (k = read(fd, p + n, max - n)) > 0)
                n += (size_t)k;
        int err = errno;
        close(fd);
        if (p == NULL || k < 0) {
                free(p);
                errno = p == NULL ? ENOMEM : err;
                return -1;
        }
        *ret = p;
        *ret_len = n;
        return 0;
}

static int write_file(const char *path, const void *p, size_t n)
{
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -1;
        ssize_t k = write(fd, p, n);
        int err = errno;
        close(fd);
        errno = err;
        return k == (ssize_t)n ? 0 : -1;
}

/* configfs-tsm: mkdir an entry, write inblob, read outblob and auxblob, rmdir.
 * 1 = done (snp added), 0 = not available (why set), -1 = failed (why set). */
KW_MUST_USE static kw_result snp_tsm(struct kw_attest *a, const uint8_t rd[64], cJSON *doc,
                                     int *ret_done, char *why, size_t whysz)
{
        struct stat st;
        *ret_done = 0;
        if (a->tsm_report_dir[0] == '\0' || stat(a->tsm_report_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
                snprintf(why, whysz, "no configfs-tsm report directory");
                return KW_OK;
        }
        char dir[512], f[600];
        snprintf(dir, sizeof dir, "%s/keyward-%ld", a->tsm_report_dir, (long)getpid());
        if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
                snprintf(why, whysz, "configfs-tsm: cannot create a report entry: %s", strerror(errno));
                return KW_OK;
        }
        uint8_t *rep = NULL, *aux = NULL;
        size_t rep_len = 0, aux_len = 0;
        kw_result r = KW_OK;
        snprintf(f, sizeof f, "%s/inblob", dir);
        if (write_file(f, rd, 64) != 0) {
                snprintf(why, whysz, "configfs-tsm: cannot write inblob: %s", strerror(errno));
                goto out;
        }
        snprintf(f, sizeof f, "%s/outblob", dir);
        if (read_file(f, 8192, &rep, &rep_len) != 0 || rep_len < KW_SNP_REPORT_LEN) {
                snprintf(why, whysz, "configfs-tsm: no report in outblob");
                goto out;
        }
        snprintf(f, sizeof f, "%s/auxblob", dir);
        if (read_file(f, SNP_CERTS_MAX, &aux, &aux_len) != 0)
                aux_len = 0;
        cJSON *snp = cJSON_AddObjectToObject(doc, "snp");
        if (snp == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto out;
        }
        KW_TRY_GOTO(r, kw_collect_add_b64(snp, "report", rep, KW_SNP_REPORT_LEN), out);
        if (cJSON_AddStringToObject(snp, "source", "configfs-tsm") == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto out;
        }
        if (aux_len > 0)
                KW_TRY_GOTO(r, add_cert_table(snp, aux, aux_len), out);
        *ret_done = 1;
out:
        free(rep);
        free(aux);
        rmdir(dir);
        return r;
}

KW_MUST_USE static kw_result snp_dev(struct kw_attest *a, const uint8_t rd[64], cJSON *doc,
                                     char *why, size_t whysz, int *ret_done)
{
        const struct kw_snp_ops *ops = a->snp.ioctl != NULL ? &a->snp : &kw_snp_real_ops;
        *ret_done = 0;
        if (a->snp_device[0] == '\0') {
                snprintf(why, whysz, "no SEV-SNP device configured ([attestation] snp_device)");
                return KW_OK;
        }
        int fd = ops->open(ops->ctx, a->snp_device);
        if (fd < 0) {
                snprintf(why, whysz, "cannot open %.200s: %s (not an SEV-SNP guest?)", a->snp_device,
                         strerror(errno));
                return KW_OK;
        }
        struct snp_ext_report_req req;
        struct snp_report_resp resp;
        struct snp_guest_request_ioctl io;
        memset(&req, 0, sizeof req);
        memcpy(req.data.user_data, rd, 64);
        uint32_t certs_len = 4 * 4096;
        uint8_t *certs = NULL;
        int rc = -1;
        for (int attempt = 0; attempt < 2; attempt++) {
                free(certs);
                certs = calloc(1, certs_len);
                if (certs == NULL)
                        break;
                req.certs_address = (uint64_t)(uintptr_t)certs;
                req.certs_len = certs_len;
                memset(&resp, 0, sizeof resp);
                memset(&io, 0, sizeof io);
                io.msg_version = 1;
                io.req_data = (uint64_t)(uintptr_t)&req;
                io.resp_data = (uint64_t)(uintptr_t)&resp;
                rc = ops->ioctl(ops->ctx, fd, SNP_GET_EXT_REPORT, &io);
                if (rc == 0 || (io.exitinfo2 >> 32) != SNP_GUEST_VMM_ERR_INVALID_LEN ||
                    req.certs_len <= certs_len || req.certs_len > SNP_CERTS_MAX)
                        break;
                certs_len = req.certs_len;   /* the VMM asked for more pages */
        }
        int ext = rc == 0;
        if (rc != 0) {   /* no extended report: a plain one, certificates fetched by the verifier */
                struct snp_report_req plain;
                memset(&plain, 0, sizeof plain);
                memcpy(plain.user_data, rd, 64);
                memset(&resp, 0, sizeof resp);
                memset(&io, 0, sizeof io);
                io.msg_version = 1;
                io.req_data = (uint64_t)(uintptr_t)&plain;
                io.resp_data = (uint64_t)(uintptr_t)&resp;
                rc = ops->ioctl(ops->ctx, fd, SNP_GET_REPORT, &io);
        }
        int err = errno;
        ops->close(ops->ctx, fd);
        kw_result r = KW_OK;
        if (rc != 0) {
                snprintf(why, whysz, "SNP_GET_REPORT failed: %s (firmware error 0x%x)", strerror(err),
                         (unsigned)(io.exitinfo2 & 0xffffffffu));
                goto out;
        }
        /* response: status (u32 LE) at 0, report size at 4, report at 0x20 */
        if (le32(resp.data) != 0 || le32(resp.data + 4) < KW_SNP_REPORT_LEN) {
                snprintf(why, whysz, "SEV-SNP firmware status 0x%x", (unsigned)le32(resp.data));
                goto out;
        }
        cJSON *snp = cJSON_AddObjectToObject(doc, "snp");
        if (snp == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto out;
        }
        KW_TRY_GOTO(r, kw_collect_add_b64(snp, "report", resp.data + SNP_RESP_REPORT_OFF,
                                          KW_SNP_REPORT_LEN), out);
        if (cJSON_AddStringToObject(snp, "source", ext ? "sev-guest-ext" : "sev-guest") == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto out;
        }
        if (ext)
                KW_TRY_GOTO(r, add_cert_table(snp, certs, certs_len), out);
        *ret_done = 1;
out:
        free(certs);
        return r;
}

kw_result kw_collect_snp(struct kw_attest *a, const uint8_t bind[KW_ATTEST_BIND_LEN], cJSON *doc)
{
        uint8_t rd[64] = { 0 };
        memcpy(rd, bind, KW_ATTEST_BIND_LEN);
        char why_tsm[256], why_dev[320];
        int done = 0;
        if (a->snp.ioctl == NULL)   /* an injected device is the one under test */
                KW_TRY(snp_tsm(a, rd, doc, &done, why_tsm, sizeof why_tsm));
        else
                snprintf(why_tsm, sizeof why_tsm, "configfs-tsm not used");
        if (done)
                return KW_OK;
        KW_TRY(snp_dev(a, rd, doc, why_dev, sizeof why_dev, &done));
        if (done)
                return KW_OK;
        char why[600];
        snprintf(why, sizeof why, "%s; %s", why_dev, why_tsm);
        return kw_collect_absent(doc, "snp", why);
}
