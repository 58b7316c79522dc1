/* volume.c - the data volume through libcryptsetup, from a checked header (volume.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libcryptsetup.h>
#include <openssl/crypto.h>

#include "volume.h"

#define VOLUME_KEY_BYTES 64
#define BLANK_CHECK (1024u * 1024u)            /* the first MiB must be zeros to format */
#define MIN_DEVICE (32ull * 1024u * 1024u)     /* 16 MiB of header and keyslots, then data */
#define META_MAX (64ull * 1024u * 1024u)       /* headers + keyslot areas we copy */
#define LABEL "keyward-data"
#define SUBSYSTEM "keyward"

struct kwu_volume {
        struct crypt_device *cd;
        int hdr_fd;                 /* memfd: the checked copy */
        struct kwu_hdr hdr;
        struct kwu_layout layout;
        struct kwu_expect exp;
        char *device;
        size_t meta;                /* header copies + keyslot areas: bytes */
        int repaired;               /* the header copies were rewritten from the
                                     * newest valid one (exp.repair_copies) */
        uint8_t *base;              /* the metadata as on the disk when
                                     * checked (or last written)            */
        char log[256];              /* libcryptsetup's last error line */
};

/* libcryptsetup's messages: the last error kept for our one-line detail,
 * nothing printed (it would print to stderr by default). */
static void cs_log(int level, const char *msg, void *arg)
{
        char *last = arg;
        if (level != CRYPT_LOG_ERROR || last == NULL)
                return;
        snprintf(last, 256, "%s", msg);
        size_t n = strlen(last);
        while (n > 0 && (last[n - 1] == '\n' || last[n - 1] == '.'))
                last[--n] = '\0';
}

/* A libcryptsetup failure (negative errno) as KW_ERR_IO with its message. */
static kw_result cs_fail(const char *what, int rc, const char *log)
{
        kw_err_set_detail("%s: %s", what, log != NULL && log[0] ? log : strerror(-rc));
        KW_BAIL(KW_ERR_IO);
}

const struct kwu_hdr *kwu_volume_header(const struct kwu_volume *v) { return &v->hdr; }
const struct kwu_layout *kwu_volume_layout(const struct kwu_volume *v) { return &v->layout; }
int kwu_volume_repaired(const struct kwu_volume *v) { return v->repaired; }

void kwu_volume_close(struct kwu_volume *v)
{
        if (v == NULL)
                return;
        crypt_free(v->cd);
        if (v->hdr_fd >= 0)
                close(v->hdr_fd);
        kwu_hdr_free(&v->hdr);
        free(v->base);
        free(v->device);
        free(v);
}

/* pwrite/pread loops: the whole n bytes or a failure. */
static int io_all(int fd, void *p, size_t n, off_t off, int wr)
{
        while (n > 0) {
                ssize_t r = wr ? pwrite(fd, p, n, off) : pread(fd, p, n, off);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r <= 0)
                        return -1;
                p = (char *)p + r;
                n -= (size_t)r;
                off += r;
        }
        return 0;
}

/*
 * The checked header copies, then the keyslot areas read from the device
 * (up to the data segment), in a memfd.  The keyslot areas are not ours to
 * check (encrypted key material: a changed byte only makes a key fail).
 */
static kw_result header_copy(struct kwu_volume *v, int dev)
{
        uint64_t meta = v->layout.data_offset;
        if (meta < v->hdr.raw_len || meta > META_MAX) {
                kw_err_set_detail("the data segment starts at byte %llu, inside the header or past %llu",
                                  (unsigned long long)meta, (unsigned long long)META_MAX);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        v->meta = (size_t)meta;
        v->hdr_fd = memfd_create("keyward-luks2-header", MFD_CLOEXEC);
        if (v->hdr_fd < 0) {
                kw_err_set_detail("memfd_create: %s", strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        /* kept: what the disk holds (read again, whole), which a
         * re-enrollment compares the disk with before it writes
         * (kwu_volume_commit).  The copy handed to libcryptsetup is the
         * header as checked, then the keyslot areas. */
        v->base = malloc((size_t)meta);
        KW_ENSURE(v->base != NULL, KW_ERR_NOMEM);
        if (io_all(dev, v->base, (size_t)meta, 0, 0) != 0 ||
            io_all(v->hdr_fd, v->hdr.raw, v->hdr.raw_len, 0, 1) != 0 ||
            io_all(v->hdr_fd, v->base + v->hdr.raw_len, (size_t)meta - v->hdr.raw_len, (off_t)v->hdr.raw_len, 1) !=
                    0) {
                kw_err_set_detail("cannot copy the keyslot areas: %s", strerror(errno ? errno : EIO));
                KW_BAIL(KW_ERR_DEVICE);
        }
        if (!v->repaired && memcmp(v->base, v->hdr.raw, v->hdr.raw_len) != 0) {
                kw_err_set_detail("its header changed while it was read");
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        return KW_OK;
}

/* What libcryptsetup made of the checked copy must be what we checked. */
static kw_result same_view(struct kwu_volume *v, const struct kwu_expect *exp)
{
        char want[64];
        const char *c = crypt_get_cipher(v->cd), *m = crypt_get_cipher_mode(v->cd);
        snprintf(want, sizeof want, "%s-%s", c ? c : "?", m ? m : "?");
        if (strcmp(want, exp->cipher) != 0 || crypt_get_volume_key_size(v->cd) != (int)exp->key_bytes ||
            crypt_get_data_offset(v->cd) * 512 != v->layout.data_offset) {
                kw_err_set_detail("libcryptsetup reads the checked header differently (%s, %d-byte key)", want,
                                  crypt_get_volume_key_size(v->cd));
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        return KW_OK;
}

kw_result kwu_volume_open(const char *device, const struct kwu_expect *exp, struct kwu_volume **ret)
{
        KW_ENSURE(device != NULL && exp != NULL && ret != NULL, KW_ERR_INPUT);
        struct kwu_volume *v = calloc(1, sizeof *v);
        KW_ENSURE(v != NULL, KW_ERR_NOMEM);
        v->hdr_fd = -1;
        v->exp = *exp;
        v->device = strdup(device);
        kw_result r = v->device != NULL ? KW_OK : KW_RESULT(KW_ERR_NOMEM);
        int dev = r.code == 0 ? open(device, O_RDONLY | O_CLOEXEC) : -1;
        if (r.code == 0 && dev < 0) {
                kw_err_set_detail("cannot open it: %s", strerror(errno));
                r = KW_RESULT(KW_ERR_DEVICE);
        }
        if (r.code != 0)
                goto out;
        KW_TRY_GOTO(r, exp->repair_copies ? kwu_hdr_read_fd_repair(dev, &v->hdr, &v->repaired)
                                          : kwu_hdr_read_fd(dev, &v->hdr),
                    out);
        KW_TRY_GOTO(r, kwu_check_json(v->hdr.json, v->hdr.json_len, v->hdr.hdr_size, exp, &v->layout), out);
        KW_TRY_GOTO(r, header_copy(v, dev), out);
        char hpath[64];
        snprintf(hpath, sizeof hpath, "/proc/self/fd/%d", v->hdr_fd);
        int rc = crypt_init_data_device(&v->cd, hpath, device);
        if (rc < 0) {
                r = cs_fail("libcryptsetup cannot use the device", rc, NULL);
                goto out;
        }
        crypt_set_log_callback(v->cd, cs_log, v->log);
        rc = crypt_load(v->cd, CRYPT_LUKS2, NULL);
        if (rc < 0) {
                r = cs_fail("libcryptsetup refuses the checked header", rc, v->log);
                goto out;
        }
        r = same_view(v, exp);
out:
        if (dev >= 0)
                close(dev);
        if (r.code != 0) {
                kwu_volume_close(v);
                return r;
        }
        *ret = v;
        return KW_OK;
}

kw_result kwu_volume_unlock(struct kwu_volume *v, int keyslot, const char *pass, size_t n, const char *name)
{
        KW_ENSURE(v != NULL && pass != NULL, KW_ERR_INPUT);
        v->log[0] = '\0';
        int rc = crypt_activate_by_passphrase(v->cd, name, keyslot, pass, n, 0);
        if (rc >= 0)
                return KW_OK;
        if (rc == -EPERM) {
                kw_err_set_detail("the key does not open keyslot %d", keyslot);
                KW_BAIL(KW_ERR_AUTH);
        }
        return cs_fail(name != NULL ? "activation failed" : "the keyslot cannot be tried", rc, v->log);
}

/* ------------------------------------------------------- re-enrollment */

kw_result kwu_volume_free_slots(struct kwu_volume *v, int *slots, size_t n)
{
        KW_ENSURE(v != NULL && slots != NULL, KW_ERR_INPUT);
        size_t k = 0;
        for (int i = 0; i < KWU_MAX_SLOTS && k < n; i++)
                if (crypt_keyslot_status(v->cd, i) == CRYPT_SLOT_INACTIVE)
                        slots[k++] = i;
        if (k < n) {
                kw_err_set_detail("the header has no %zu free keyslots", n);
                KW_BAIL(KW_ERR_TOO_LARGE);
        }
        return KW_OK;
}

/* The tokens recording a new keyslot. */
static int tokens_set(struct crypt_device *cd, const struct kwu_extra_slot *add)
{
        int rc = crypt_token_json_set(cd, CRYPT_ANY_TOKEN, add->token_json);
        if (rc >= 0 && add->token2_json != NULL)
                rc = crypt_token_json_set(cd, CRYPT_ANY_TOKEN, add->token2_json);
        return rc;
}

/* Same KDF as at format time: the passphrases carry 256 bits. */
static int minimal_pbkdf(struct crypt_device *cd)
{
        struct crypt_pbkdf_type pbkdf = { .type = CRYPT_KDF_PBKDF2, .hash = "sha512", .iterations = 1000,
                                          .flags = CRYPT_PBKDF_NO_BENCHMARK };
        return crypt_set_pbkdf_type(cd, &pbkdf);
}

kw_result kwu_volume_add(struct kwu_volume *v, const char *key, size_t key_len, const struct kwu_extra_slot *add)
{
        KW_ENSURE(v != NULL && key != NULL && add != NULL && add->pass != NULL && add->token_json != NULL &&
                          add->keyslot >= 0 && add->keyslot < KWU_MAX_SLOTS,
                  KW_ERR_INPUT);
        v->log[0] = '\0';
        int rc = minimal_pbkdf(v->cd);
        if (rc >= 0)
                rc = crypt_keyslot_add_by_passphrase(v->cd, add->keyslot, key, key_len, add->pass, add->pass_len);
        if (rc == -EPERM) {
                kw_err_set_detail("the key given does not open the volume");
                KW_BAIL(KW_ERR_AUTH);
        }
        if (rc >= 0)
                rc = tokens_set(v->cd, add);
        if (rc < 0)
                return cs_fail("adding a keyslot", rc, v->log);
        return KW_OK;
}

kw_result kwu_volume_remove(struct kwu_volume *v, const struct kwu_token *tok)
{
        KW_ENSURE(v != NULL && tok != NULL && tok->id < KWU_MAX_SLOTS && tok->keyslots != 0, KW_ERR_INPUT);
        v->log[0] = '\0';
        int rc = crypt_token_json_set(v->cd, (int)tok->id, NULL);
        if (rc >= 0 && tok->has_expected)
                rc = crypt_token_json_set(v->cd, (int)tok->expected_token, NULL);
        if (rc >= 0)
                rc = crypt_keyslot_destroy(v->cd, __builtin_ctz(tok->keyslots));
        if (rc < 0)
                return cs_fail("removing a keyslot", rc, v->log);
        return KW_OK;
}

/* Writes the 4 KiB blocks of [from, to) where now differs from was. */
static int write_changed(int fd, const uint8_t *now, const uint8_t *was, size_t from, size_t to)
{
        int any = 0;
        for (size_t off = from; off < to; off += 4096) {
                size_t n = to - off < 4096 ? to - off : 4096;
                if (memcmp(now + off, was + off, n) == 0)
                        continue;
                if (io_all(fd, (void *)(now + off), n, (off_t)off, 1) != 0)
                        return -1;
                any = 1;
        }
        return any && fdatasync(fd) != 0 ? -1 : 0;
}

kw_result kwu_volume_commit(struct kwu_volume *v, enum kwu_commit order)
{
        KW_ENSURE(v != NULL && v->base != NULL, KW_ERR_INPUT);
        uint8_t *now = malloc(v->meta), *disk = malloc(v->meta);
        struct kwu_hdr h;
        struct kwu_layout l;
        memset(&h, 0, sizeof h);
        kw_result r = now != NULL && disk != NULL ? KW_OK : KW_RESULT(KW_ERR_NOMEM);
        int fd = -1;
        if (r.code == 0 && io_all(v->hdr_fd, now, v->meta, 0, 0) != 0) {
                kw_err_set_detail("cannot read the changed copy: %s", strerror(errno ? errno : EIO));
                r = KW_RESULT(KW_ERR_IO);
        }
        /* what is written passes the checks every open makes */
        if (r.code == 0)
                r = kwu_hdr_parse(now, v->meta, &h);
        if (r.code == 0)
                r = kwu_check_json(h.json, h.json_len, h.hdr_size, &v->exp, &l);
        if (r.code != 0 && r.code != KW_ERR_NOMEM) {
                kw_err_set_detail("the changed header would not pass the checks, not written: %s", kw_err_detail());
                r = KW_RESULT(KW_ERR_INTERNAL);
        }
        if (r.code == 0) {
                /* held until written: another keyward-unlock (or udev's probe,
                 * which honours it on block devices) waits, then finds the disk
                 * changed and writes nothing */
                fd = open(v->device, O_RDWR | O_CLOEXEC);
                if (fd >= 0 && flock(fd, LOCK_EX) != 0) {
                        close(fd);
                        fd = -1;
                }
                if (fd < 0 || io_all(fd, disk, v->meta, 0, 0) != 0) {
                        kw_err_set_detail("cannot open it to write: %s", strerror(errno ? errno : EIO));
                        r = KW_RESULT(KW_ERR_DEVICE);
                } else if (memcmp(disk, v->base, v->meta) != 0) {
                        kw_err_set_detail("its header changed on the disk since it was checked: nothing written");
                        r = KW_RESULT(KW_ERR_LUKS_TAMPERED);
                }
        }
        if (r.code == 0) {
                /* keyslot areas the new header uses go down before the header
                 * that points at them; areas it gave up are wiped after the
                 * header that no longer does: interrupted anywhere, each copy
                 * on the disk still opens with the keys it names */
                size_t hs = (size_t)h.hdr_size, areas = 2 * hs;
                int bad = order == KWU_COMMIT_AREAS_FIRST
                                  ? write_changed(fd, now, disk, areas, v->meta) != 0 ||
                                            write_changed(fd, now, disk, 0, hs) != 0 ||
                                            write_changed(fd, now, disk, hs, areas) != 0
                                  : write_changed(fd, now, disk, 0, hs) != 0 ||
                                            write_changed(fd, now, disk, hs, areas) != 0 ||
                                            write_changed(fd, now, disk, areas, v->meta) != 0;
                if (bad) {
                        kw_err_set_detail("writing the header: %s", strerror(errno ? errno : EIO));
                        r = KW_RESULT(KW_ERR_DEVICE);
                }
        }
        if (fd >= 0)
                close(fd);
        free(disk);
        if (r.code != 0) {
                free(now);
                kwu_hdr_free(&h);
                return r;
        }
        free(v->base);
        v->base = now;
        kwu_hdr_free(&v->hdr);
        v->hdr = h;
        v->layout = l;
        return KW_OK;
}

/* ------------------------------------------------------------- format */

static kw_result check_blank(const char *device)
{
        int fd = open(device, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kw_err_set_detail("cannot open it: %s", strerror(errno));
                KW_BAIL(KW_ERR_DEVICE);
        }
        off_t size = lseek(fd, 0, SEEK_END);
        unsigned char *b = malloc(BLANK_CHECK);
        int ok = b != NULL && size >= (off_t)MIN_DEVICE && io_all(fd, b, BLANK_CHECK, 0, 0) == 0;
        int blank = 1;
        for (size_t i = 0; ok && blank && i < BLANK_CHECK; i++)
                blank = b[i] == 0;
        free(b);
        close(fd);
        if (!ok) {
                kw_err_set_detail("it is smaller than %llu MiB or cannot be read",
                                  (unsigned long long)(MIN_DEVICE >> 20));
                KW_BAIL(KW_ERR_DEVICE);
        }
        if (!blank) {
                kw_err_set_detail("its first MiB holds data (a file system, a volume?): not formatted");
                KW_BAIL(KW_ERR_EXISTS);
        }
        return KW_OK;
}

/* Zeroes what a failed format wrote (the header and keyslot areas). */
static void unformat(const char *device)
{
        int fd = open(device, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return;
        static const unsigned char zeros[64 * 1024];
        for (off_t off = 0; off < (off_t)(MIN_DEVICE / 2); off += (off_t)sizeof zeros)
                if (io_all(fd, (void *)zeros, sizeof zeros, off, 1) != 0)
                        break;
        (void)fsync(fd);
        close(fd);
}

#define RECOVERY_SLOT 0

static kw_result format_write(const char *device, const char *uuid, const char *rkey,
                              const struct kwu_extra_slot *extra, size_t nextra)
{
        char log[256] = "";
        struct crypt_device *cd = NULL;
        int rc = crypt_init(&cd, device);
        if (rc < 0)
                return cs_fail("libcryptsetup cannot use the device", rc, NULL);
        crypt_set_log_callback(cd, cs_log, log);
        struct crypt_pbkdf_type pbkdf = { .type = CRYPT_KDF_PBKDF2, .hash = "sha512", .iterations = 1000,
                                          .flags = CRYPT_PBKDF_NO_BENCHMARK };
        struct crypt_params_luks2 params = { .pbkdf = &pbkdf, .sector_size = 4096, .label = LABEL,
                                             .subsystem = SUBSYSTEM };
        kw_result r = KW_OK;
        rc = crypt_format(cd, CRYPT_LUKS2, "aes", "xts-plain64", uuid, NULL, VOLUME_KEY_BYTES, &params);
        if (rc < 0) {
                r = cs_fail("format", rc, log);
                goto out;
        }
        rc = crypt_set_pbkdf_type(cd, &pbkdf);
        if (rc >= 0)
                rc = crypt_keyslot_add_by_volume_key(cd, RECOVERY_SLOT, NULL, 0, rkey, KWU_RECOVERY_KEY_LEN);
        if (rc >= 0)
                rc = crypt_token_json_set(cd, CRYPT_ANY_TOKEN,
                                          "{\"type\":\"systemd-recovery\",\"keyslots\":[\"0\"]}");
        if (rc < 0) {
                r = cs_fail("adding the recovery keyslot", rc, log);
                goto out;
        }
        for (size_t i = 0; i < nextra; i++) {
                rc = crypt_keyslot_add_by_volume_key(cd, extra[i].keyslot, NULL, 0, extra[i].pass, extra[i].pass_len);
                if (rc >= 0)
                        rc = tokens_set(cd, &extra[i]);
                if (rc < 0) {
                        r = cs_fail("adding a measured keyslot", rc, log);
                        goto out;
                }
        }
out:
        crypt_free(cd);    /* wipes the volume key it held */
        return r;
}

kw_result kwu_volume_format(const char *device, const char *uuid, const struct kwu_extra_slot *extra,
                            size_t nextra, char recovery_out[KWU_RECOVERY_KEY_LEN + 1])
{
        KW_ENSURE(device != NULL && recovery_out != NULL && (nextra == 0 || extra != NULL) && nextra < 8,
                  KW_ERR_INPUT);
        for (size_t i = 0; i < nextra; i++)
                KW_ENSURE(extra[i].keyslot > RECOVERY_SLOT && extra[i].keyslot < KWU_MAX_SLOTS &&
                                  extra[i].pass != NULL && extra[i].token_json != NULL,
                          KW_ERR_INPUT);
        KW_TRY(check_blank(device));
        char rkey[KWU_RECOVERY_KEY_LEN + 1];
        KW_TRY(kwu_recovery_key_new(rkey));
        kw_result r = format_write(device, uuid, rkey, extra, nextra);
        /* read back through the same checks every open makes, and try each key */
        struct kwu_volume *v = NULL;
        struct kwu_expect exp;
        kwu_expect_default(&exp);
        if (r.code == 0)
                r = kwu_volume_open(device, &exp, &v);
        if (r.code == 0)
                r = kwu_volume_unlock(v, RECOVERY_SLOT, rkey, KWU_RECOVERY_KEY_LEN, NULL);
        for (size_t i = 0; r.code == 0 && i < nextra; i++)
                r = kwu_volume_unlock(v, extra[i].keyslot, extra[i].pass, extra[i].pass_len, NULL);
        kwu_volume_close(v);
        if (r.code != 0) {
                OPENSSL_cleanse(rkey, sizeof rkey);
                unformat(device);
                return r;
        }
        memcpy(recovery_out, rkey, sizeof rkey);
        OPENSSL_cleanse(rkey, sizeof rkey);
        return KW_OK;
}
