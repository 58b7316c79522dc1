/*
 * fake_sev_guest.c - TEST TOOL (LD_PRELOAD), never installed: a fake
 * /dev/sev-guest for keyward-unlock's SEV-SNP binding, since no SEV-SNP
 * guest can be launched here (docs/unlock.md).
 *
 * ioctl(SNP_GET_DERIVED_KEY) on a descriptor open on $KWU_FAKE_SNP_PATH is
 * answered as the AMD secure processor would, with a key that is a
 * function of a per-chip secret and exactly the request's selections:
 *   key = SHA-256("fake-snp" || $KWU_FAKE_SNP_CHIP || root_key_select ||
 *                 guest_field_select || vmpl || guest_svn || tcb_version ||
 *                 the selected guest fields, each from the environment:
 *                 POLICY, IMAGE_ID, FAMILY_ID, MEASUREMENT (strings))
 * and the firmware's refusal (status 0x16, INVALID_PARAM) when the request
 * asks for a TCB with any component above $KWU_FAKE_SNP_TCB (16 hex digits,
 * the platform's committed TCB), a guest SVN above $KWU_FAKE_SNP_SVN or a
 * VMPL below $KWU_FAKE_SNP_VMPL.  Each request is appended to
 * $KWU_FAKE_SNP_LOG ("root=R fields=0xF vmpl=V svn=S tcb=T").
 * ioctl(SNP_GET_REPORT) answers with a report (unsigned: only its fields
 * matter here) whose VMPL is $KWU_FAKE_SNP_VMPL, committed TCB
 * $KWU_FAKE_SNP_TCB and reported TCB $KWU_FAKE_SNP_REPORTED_TCB (default
 * the committed one); logged as "report".  With $KWU_FAKE_SNP_TOUCH
 * ("FILE:OFFSET"), each key request also sets the byte at OFFSET of FILE
 * to 0x5a:
 * another writer changing the disk while keyward-unlock works.  Every other
 * ioctl goes to the real one.
 */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/ioctl.h>
#include <linux/sev-guest.h>
#include <openssl/evp.h>

int ioctl(int fd, unsigned long req, ...);

static const char *env(const char *name, const char *dflt)
{
        const char *v = getenv(name);
        return v != NULL ? v : dflt;
}

static int is_fake(int fd)
{
        const char *want = getenv("KWU_FAKE_SNP_PATH");
        char link[64], path[4096];
        snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
        ssize_t n = readlink(link, path, sizeof path - 1);
        if (want == NULL || n <= 0)
                return 0;
        path[n] = '\0';
        return strcmp(path, want) == 0;
}

static void add(EVP_MD_CTX *md, const void *p, size_t n) { EVP_DigestUpdate(md, p, n); }

static int fake_derive(struct snp_guest_request_ioctl *io)
{
        struct snp_derived_key_req *r = (void *)(uintptr_t)io->req_data;
        struct snp_derived_key_resp *out = (void *)(uintptr_t)io->resp_data;
        const char *log = getenv("KWU_FAKE_SNP_LOG");
        if (log != NULL) {
                FILE *f = fopen(log, "a");
                if (f != NULL) {
                        fprintf(f, "root=%u fields=0x%llx vmpl=%u svn=%u tcb=%016llx\n", r->root_key_select,
                                (unsigned long long)r->guest_field_select, r->vmpl, r->guest_svn,
                                (unsigned long long)r->tcb_version);
                        fclose(f);
                }
        }
        const char *touch = getenv("KWU_FAKE_SNP_TOUCH");
        const char *colon = touch != NULL ? strrchr(touch, ':') : NULL;
        if (colon != NULL) {
                char file[4096];
                snprintf(file, sizeof file, "%.*s", (int)(colon - touch), touch);
                FILE *t = fopen(file, "r+b");
                long off = atol(colon + 1);
                if (t != NULL && fseek(t, off, SEEK_SET) == 0)
                        fputc(0x5a, t);
                if (t != NULL)
                        fclose(t);
        }
        memset(out, 0, sizeof *out);
        uint64_t current = strtoull(env("KWU_FAKE_SNP_TCB", "0"), NULL, 16);
        int refuse = r->guest_svn > (uint32_t)atoi(env("KWU_FAKE_SNP_SVN", "0")) ||
                     r->vmpl < (uint32_t)atoi(env("KWU_FAKE_SNP_VMPL", "0"));
        for (int b = 0; b < 8; b++)   /* each SVN of the TCB on its own */
                if (((r->tcb_version >> (8 * b)) & 0xff) > ((current >> (8 * b)) & 0xff))
                        refuse = 1;
        if (refuse) {
                uint32_t status = 0x16;
                memcpy(out->data, &status, sizeof status);
                return 0;
        }
        static const char *const fields[] = { "KWU_FAKE_SNP_POLICY", "KWU_FAKE_SNP_IMAGE_ID",
                                              "KWU_FAKE_SNP_FAMILY_ID", "KWU_FAKE_SNP_MEASUREMENT" };
        EVP_MD_CTX *md = EVP_MD_CTX_new();
        unsigned int len = 0;
        const char *chip = env("KWU_FAKE_SNP_CHIP", "chip");
        EVP_DigestInit_ex(md, EVP_sha256(), NULL);
        add(md, "fake-snp", 8);
        add(md, chip, strlen(chip));
        add(md, &r->root_key_select, sizeof r->root_key_select);
        add(md, &r->guest_field_select, sizeof r->guest_field_select);
        add(md, &r->vmpl, sizeof r->vmpl);
        add(md, &r->guest_svn, sizeof r->guest_svn);
        add(md, &r->tcb_version, sizeof r->tcb_version);
        static const int bit[] = { 0, 1, 2, 3 };
        for (int i = 0; i < 4; i++)
                if (r->guest_field_select & (1ull << bit[i])) {
                        const char *v = env(fields[i], "");
                        add(md, v, strlen(v) + 1);
                }
        EVP_DigestFinal_ex(md, out->data + 32, &len);
        EVP_MD_CTX_free(md);
        return 0;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
        for (int i = 0; i < n; i++, v >>= 8)
                p[i] = (uint8_t)v;
}

static int fake_report(struct snp_guest_request_ioctl *io)
{
        struct snp_report_resp *out = (void *)(uintptr_t)io->resp_data;
        const char *log = getenv("KWU_FAKE_SNP_LOG");
        FILE *f = log != NULL ? fopen(log, "a") : NULL;
        if (f != NULL) {
                fprintf(f, "report\n");
                fclose(f);
        }
        memset(out, 0, sizeof *out);
        const char *committed = env("KWU_FAKE_SNP_TCB", "0");
        put_le(out->data + 4, 0x4A0, 4);                 /* report size; status 0 */
        uint8_t *r = out->data + 32;
        put_le(r, 2, 4);                                  /* version */
        put_le(r + 0x30, (uint64_t)atoi(env("KWU_FAKE_SNP_VMPL", "0")), 4);
        put_le(r + 0x180, strtoull(env("KWU_FAKE_SNP_REPORTED_TCB", committed), NULL, 16), 8);
        put_le(r + 0x1E0, strtoull(committed, NULL, 16), 8);
        return 0;
}

int ioctl(int fd, unsigned long req, ...)
{
        va_list ap;
        va_start(ap, req);
        void *arg = va_arg(ap, void *);
        va_end(ap);
        if (req == SNP_GET_DERIVED_KEY && is_fake(fd))
                return fake_derive(arg);
        if (req == SNP_GET_REPORT && is_fake(fd))
                return fake_report(arg);
        static int (*real)(int, unsigned long, ...);
        if (real == NULL)
                real = (int (*)(int, unsigned long, ...))dlsym(RTLD_NEXT, "ioctl");
        return real(fd, req, arg);
}
