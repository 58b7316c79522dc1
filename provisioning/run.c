/*
 * run.c - the provisioning steps and their driver (run.h).
 *
 * Layout of the data volume (mounted at data_dir, "/var/lib/keyward"):
 *   etc/         root 0755: keyward.toml (0644), softhsm2.conf (0644), tls/
 *                (the key root:keyward-front 0640); the image links
 *                /etc/keyward here
 *   custody/     keyward-custody 0700: the database, its wrapped key, the
 *                admin token file, the HSM PIN file, SoftHSM2's tokens
 *   provision/   root 0700: the journal, the customer's output
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "../server/common/err.h"
#include "../server/common/log.h"
#include "../server/common/readfile.h"
#include "../server/common/secret.h"
#include "../server/custody/crypto.h"
#include "../appliance/unlock/pcrsig.h"
#include "doc.h"
#include "journal.h"
#include "output.h"
#include "p11init.h"
#include "run.h"
#include "run_api.h"
#include "runfs.h"
#include "spawn.h"
#include "tls.h"

#define MAPPER_NAME "keyward-data"
#define KWP_VOLUME_LABEL "keyward-data"   /* keyward-unlock's LUKS2 label */
#define MAPPER_PATH "/dev/mapper/" MAPPER_NAME
#define SECRET_MAX 4096u

struct run {
        const struct kwp_run_opts *o;
        struct kwp_doc *doc;
        struct kwp_journal *j;
        struct kw_config *cfg;       /* as written by the config step */
        char doc_sha[65];
        char foundation[65];         /* SHA-256 of what re-provisioning cannot change */
        bool reprovisioning;
        char device[512];
        struct kwp_paths p;
        uid_t custody_uid, front_uid;
        gid_t custody_gid, front_gid;
};

void kwp_run_opts_default(struct kwp_run_opts *o)
{
        memset(o, 0, sizeof *o);
        kwp_sources_default(&o->src);
        kwp_disk_cfg_default(&o->disk);
        o->data_dir = "/var/lib/keyward";
        o->state_dir = "/run/keyward-provision";
        o->activate = true;
        o->unlock_bin = "/usr/sbin/keyward-unlock";
        o->keywardd_bin = "/usr/sbin/keywardd";
        o->keywardctl_bin = "/usr/bin/keywardctl";
        o->systemctl = "/usr/bin/systemctl";
        o->console = "/dev/console";
        o->host = "127.0.0.1";
        o->service_timeout_ms = 60000;
}

/* Test builds (KWP_FAULTS): KEYWARD_PROVISION_FAULT=step:point kills the
 * process there, as a power cut or an OOM kill would. */
static void fault(const char *step, const char *point)
{
#ifdef KWP_FAULTS
        const char *f = getenv("KEYWARD_PROVISION_FAULT");
        size_t n = strlen(step);
        if (f != NULL && strncmp(f, step, n) == 0 && f[n] == ':' && strcmp(f + n + 1, point) == 0)
                raise(SIGKILL);
#else
        (void)step;
        (void)point;
#endif
}

/* A program's exit status turned into an error naming it. */
static kw_result child_fail(const char *what, kw_result r, int status, const char *meaning)
{
        if (r.code != 0)
                return KW_FAIL(r.code, "%s: %s", what, kw_err_detail());
        return KW_FAIL(KW_ERR_IO, "%s: exit status %d%s%s", what, status, meaning ? ": " : "",
                    meaning ? meaning : "");
}

KW_MUST_USE static kw_result random_hex(char *out, size_t bytes)
{
        uint8_t r[32];
        KW_ENSURE(bytes <= sizeof r, KW_ERR_INPUT);
        KW_TRY(kw_random(r, bytes));
        for (size_t i = 0; i < bytes; i++)
                snprintf(out + 2 * i, 3, "%02x", r[i]);
        kw_wipe(r, sizeof r);
        return KW_OK;
}

/* ---- steps ------------------------------------------------------------------ */

KW_MUST_USE static kw_result step_disk(struct run *r)
{
        struct kwp_disk_cfg dc = r->o->disk;
        if (r->doc->disk.device != NULL && r->doc->disk.device[0] != '\0')
                dc.device = r->doc->disk.device;
        uint64_t bytes = 0;
        kw_result res = kwp_disk_find(&dc, r->device, sizeof r->device, &bytes);
        if (res.code != 0)
                return res;
        char b[24];
        snprintf(b, sizeof b, "%" PRIu64, bytes);
        fault("disk", "end");
        const char *kv[] = { "device", r->device, "bytes", b, NULL };
        return kwp_journal_record(r->j, "disk", "done", kv);
}

/* keyward-unlock's exit statuses (docs/unlock.md) in words. */
static const char *unlock_meaning(int st)
{
        switch (st) {
        case 3: return "the device is missing or unreadable";
        case 6: return "the device is not blank";
        case 8: return "no TPM, or a TPM failure";
        case 12: return "no SEV-SNP guest device, or its request failed";
        case 13: return "the platform's TCB is below the pinned one";
        default: return NULL;
        }
}

KW_MUST_USE static kw_result enroll(struct run *r, struct kw_buf *recovery)
{
        const struct kwp_doc *d = r->doc;
        const char *argv[24];
        size_t n = 0;
        argv[n++] = r->o->unlock_bin;
        argv[n++] = "enroll";
        argv[n++] = "--format";
        if (d->tpm2 == KWP_TPM2_NONE) {
                argv[n++] = "--no-tpm2";
        } else {
                /* signed: the document's key, else the image's where systemd keeps
                 * it.  Named explicitly: with --tpm2-pcrs alone, enroll would seal
                 * to those literal PCRs only (the image boot test caught a tampered
                 * UKI unlocking through PCR 12 alone). */
                const char *pk = d->unlock.tpm2_public_key && d->unlock.tpm2_public_key[0]
                                         ? d->unlock.tpm2_public_key
                                         : kwu_image_key_default();
                if (d->tpm2 == KWP_TPM2_SIGNED && pk != NULL)
                        argv[n++] = "--tpm2-public-key", argv[n++] = pk;
                if (d->unlock.tpm2_pcrs != NULL && d->unlock.tpm2_pcrs[0] != '\0')
                        argv[n++] = "--tpm2-pcrs", argv[n++] = d->unlock.tpm2_pcrs;
                else if (d->tpm2 == KWP_TPM2_SIGNED && pk != NULL)
                        argv[n++] = "--tpm2-pcrs", argv[n++] = KWP_SIGNED_LITERAL_PCRS;
                if (r->o->tpm2_device != NULL)
                        argv[n++] = "--tpm2-device", argv[n++] = r->o->tpm2_device;
        }
        if (d->unlock.snp) {
                argv[n++] = "--snp";
                if (d->unlock.snp_tcb != NULL && d->unlock.snp_tcb[0] != '\0')
                        argv[n++] = "--snp-tcb", argv[n++] = d->unlock.snp_tcb;
                if (r->o->snp_device != NULL)
                        argv[n++] = "--snp-device", argv[n++] = r->o->snp_device;
        }
        argv[n++] = r->device;
        argv[n] = NULL;
        struct kwp_spawn sp = { .argv = argv, .timeout_ms = 300000 };
        int st = 0;
        kw_result res = kwp_spawn_run(&sp, recovery, &st);
        if (res.code != 0 || st != 0)
                return child_fail("keyward-unlock enroll --format", res, st, unlock_meaning(st));
        while (recovery->len > 0 && (recovery->p[recovery->len - 1] == '\n' || recovery->p[recovery->len - 1] == ' '))
                recovery->len--;
        if (recovery->len < 16 || memchr(recovery->p, '\n', recovery->len) != NULL)
                return KW_FAIL(KW_ERR_INTERNAL, "keyward-unlock enroll --format did not print one recovery key");
        return KW_OK;
}

KW_MUST_USE static kw_result step_volume(struct run *r)
{
        if (kwp_journal_started(r->j, "volume")) {
                /* this run began formatting the disk: what is on it is ours */
                const char *dev = kwp_journal_get(r->j, "volume", "device");
                if (dev == NULL || strcmp(dev, r->device) != 0)
                        return KW_FAIL(KW_ERR_INTERNAL, "the journal's volume step names another disk");
                KW_TRY(kwp_wipe_own_header(r->device));
        } else {
                const char *kv[] = { "device", r->device, NULL };
                KW_TRY(kwp_journal_record(r->j, "volume", "start", kv));
        }
        fault("volume", "begin");
        struct kw_buf rk;
        kw_buf_init(&rk, SECRET_MAX);
        kw_result res = enroll(r, &rk);
        fault("volume", "formatted");
        if (res.code == 0)
                res = kwp_write_secret_file(r->p.state_recovery, rk.p, rk.len, 0, 0);
        kw_buf_free(&rk);
        KW_TRY(res);
        fault("volume", "end");
        const char *kv[] = { "device", r->device, NULL };
        return kwp_journal_record(r->j, "volume", "done", kv);
}

/* The volume opened and its file system mounted on data_dir (activate), or
 * data_dir there (--no-activate).  mkfs only when asked and blank. */
KW_MUST_USE static kw_result mount_volume(struct run *r, bool mkfs)
{
        if (!r->o->activate)
                return kwp_mkdir(r->o->data_dir, 0755, 0, 0);
        if (access(MAPPER_PATH, F_OK) != 0) {
                const char *argv[8] = { r->o->unlock_bin, "open", "--name", MAPPER_NAME };
                size_t n = 4;
                if (r->o->tpm2_device != NULL)
                        argv[n++] = "--tpm2-device", argv[n++] = r->o->tpm2_device;
                argv[n++] = r->device;
                argv[n] = NULL;
                struct kwp_spawn sp = { .argv = argv, .timeout_ms = 120000 };
                int st = 0;
                kw_result res = kwp_spawn_run(&sp, NULL, &st);
                if (res.code != 0 || st != 0)
                        return child_fail("keyward-unlock open", res, st, unlock_meaning(st));
        }
        if (mkfs)
                KW_TRY(kwp_mkfs_if_blank(MAPPER_PATH));
        KW_TRY(kwp_mkdir(r->o->data_dir, 0755, 0, 0));
        return kwp_mount_ext4(MAPPER_PATH, r->o->data_dir);
}

KW_MUST_USE static kw_result step_filesystem(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "filesystem", "start", NULL));
        KW_TRY(mount_volume(r, true));
        fault("filesystem", "mounted");
        KW_TRY(kwp_mkdir(r->p.prov, 0700, 0, 0));
        KW_TRY(kwp_move_secret_file(r->p.state_recovery, r->p.recovery));
        KW_TRY(kwp_journal_move(r->j, r->p.journal));
        fault("filesystem", "end");
        return kwp_journal_record(r->j, "filesystem", "done", NULL);
}

/* The PIN file's PIN (a run resumed), the document's, or a new one. */
KW_MUST_USE static kw_result hsm_pin(struct run *r, struct kw_buf *pin)
{
        kw_result res = kwp_read_secret_file(r->p.pin_file, pin);
        if (res.code == 0 && pin->len > 0)
                return KW_OK;
        if (res.code != KW_ERR_NOT_FOUND && res.code != 0)
                return res;
        kw_buf_reset(pin);
        if (!r->doc->hsm.evaluation)
                return kw_buf_put(pin, r->doc->hsm.pin, strlen(r->doc->hsm.pin));
        char hex[65];
        KW_TRY(random_hex(hex, 16));
        res = kw_buf_put(pin, hex, 32);
        kw_wipe(hex, sizeof hex);
        return res;
}

KW_MUST_USE static kw_result step_hsm(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "hsm", "start", NULL));
        KW_TRY(kwp_mkdir(r->p.etc, 0755, 0, 0));
        KW_TRY(kwp_mkdir(r->p.custody, 0700, r->custody_uid, r->custody_gid));
        struct kw_buf pin;
        kw_buf_init(&pin, 256);
        kw_result res = hsm_pin(r, &pin);
        if (res.code == 0)
                res = kwp_write_secret_file(r->p.pin_file, pin.p, pin.len, r->custody_uid, r->custody_gid);
        char pin_s[257] = "";
        if (res.code == 0)
                memcpy(pin_s, pin.p, pin.len);
        kw_buf_free(&pin);
        fault("hsm", "pin");
        const struct kw_config *c = r->doc->cfg;
        if (res.code == 0 && r->doc->hsm.evaluation) {
                res = kwp_softhsm_conf(r->p.softhsm_conf, r->p.tokens, r->custody_uid, r->custody_gid);
                char so[65] = "";
                if (res.code == 0)
                        res = random_hex(so, 16);
                if (res.code == 0 && setenv("SOFTHSM2_CONF", r->p.softhsm_conf, 1) != 0)
                        res = KW_FAIL(KW_ERR_IO, "setenv SOFTHSM2_CONF: %s", strerror(errno));
                if (res.code == 0)
                        res = kwp_p11_init_token(c->hsm.module, c->hsm.token_label, so, pin_s);
                kw_wipe(so, sizeof so);
                if (res.code == 0)
                        res = kwp_chown_tree(r->p.tokens, r->custody_uid, r->custody_gid);
        } else if (res.code == 0) {
                res = kwp_p11_check_login(c->hsm.module, c->hsm.token_label, pin_s);
        }
        kw_wipe(pin_s, sizeof pin_s);
        KW_TRY(res);
        fault("hsm", "end");
        const char *kv[] = { "module", c->hsm.module, "token", c->hsm.token_label, NULL };
        return kwp_journal_record(r->j, "hsm", "done", kv);
}

KW_MUST_USE static kw_result step_tls(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "tls", "start", NULL));
        /* 0755: custody reads cert.pem too (attestation binds the TLS key); the
         * key itself is root:keyward-front 0640 */
        KW_TRY(kwp_mkdir(r->p.tls, 0755, 0, r->front_gid));
        const struct kwp_doc *d = r->doc;
        bool supplied = d->tls_mode == KWP_TLS_SUPPLIED;
        struct kwp_tls_req req = {
                .dir = r->p.tls, .mode = d->tls_mode, .names = (const char *const *)d->tls.names.v,
                .n_names = d->tls.names.n, .key_type = d->tls_key, .days = (unsigned)d->tls.days,
                .chain_pem = supplied ? d->tls.certificate : NULL,
                .chain_len = supplied ? strlen(d->tls.certificate) : 0,
                .key_pem = supplied ? d->tls.private_key : NULL,
                .key_len = supplied ? strlen(d->tls.private_key) : 0,
        };
        struct kwp_tls_result res;
        KW_TRY(kwp_tls_ensure(&req, &res));
        if (res.warning[0] != '\0')
                kw_log(KW_LOG_WARN, "provision_tls_warning", "warning", res.warning, KW_END);
        kw_log(KW_LOG_INFO, "provision_tls", "key", kwp_tls_action_name(res.key), "certificate",
               kwp_tls_action_name(res.cert), "fingerprint", res.fingerprint, KW_END);
        if (d->tls.client_ca != NULL && d->tls.client_ca[0] != '\0') {
                char ca[KWP_PATH_MAX + 32];
                snprintf(ca, sizeof ca, "%s/" KWP_CLIENT_CA_FILE, r->p.tls);
                KW_TRY(kwp_write_file(ca, d->tls.client_ca, strlen(d->tls.client_ca), 0644, 0, 0));
        }
        /* the front reads the key as its own user */
        char key[KWP_PATH_MAX + 16];
        snprintf(key, sizeof key, "%s/" KWP_TLS_KEY_FILE, r->p.tls);
        if (chown(key, 0, r->front_gid) != 0 || chmod(key, 0640) != 0)
                return KW_FAIL(KW_ERR_IO, "give %s to the front's group: %s", key, strerror(errno));
        fault("tls", "end");
        return kwp_journal_record(r->j, "tls", "done", NULL);
}

/* The configuration written, then read back as keywardd will. */
KW_MUST_USE static kw_result step_config(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "config", "start", NULL));
        {
                /* no generated secret is in it (the XKS stores live in the key
                 * store): the same document writes the same bytes */
                struct kw_buf text;
                kw_buf_init(&text, 1u << 20);
                kw_result res = kw_config_write(r->doc->cfg, &text);
                if (res.code == 0)
                        res = kwp_write_file(r->p.conf, text.p, text.len, 0644, 0, 0);
                kw_buf_free(&text);
                KW_TRY(res);
        }
        fault("config", "written");
        KW_TRY(kwp_load_config(r->p.conf, &r->cfg));
        fault("config", "end");
        return kwp_journal_record(r->j, "config", "done", NULL);
}

KW_MUST_USE static kw_result step_store(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "store", "start", NULL));
        char conf_env[600], hash_env[128] = "";
        snprintf(conf_env, sizeof conf_env, "SOFTHSM2_CONF=%s", r->p.softhsm_conf);
        const char *env[] = { conf_env, NULL, NULL };
        if (r->doc->admin.token_sha256 != NULL && r->doc->admin.token_sha256[0] != '\0') {
                /* not in keyward.toml, which the front reads */
                snprintf(hash_env, sizeof hash_env, "KEYWARD_ADMIN_INITIAL_TOKEN_SHA256=%s",
                         r->doc->admin.token_sha256);
                env[1] = hash_env;
        }
        const char *argv[] = { r->o->keywardd_bin, "--init", "--config", r->p.conf, NULL };
        struct kwp_spawn sp = { .argv = argv, .env = env, .user = r->cfg->custody.user,
                                .timeout_ms = 180000 };
        struct kw_buf out;
        kw_buf_init(&out, 4096);
        int st = 0;
        kw_result res = kwp_spawn_run(&sp, &out, &st);
        kw_buf_free(&out);
        static const char *const meaning[] = { NULL, NULL, "the configuration", "a file",
                                               "the HSM", "the database" };
        if (res.code != 0 || st != 0)
                return child_fail("keywardd --init", res, st, st >= 2 && st <= 5 ? meaning[st] : NULL);
        KW_TRY(kwp_provisioning_token(r->doc, r->cfg, r->o, &r->p));
        fault("store", "end");
        return kwp_journal_record(r->j, "store", "done", NULL);
}

KW_MUST_USE static kw_result step_services(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "services", "start", NULL));
        /* This runs from a unit ordered before these, and the next step waits
         * for them: --no-block, and --job-mode=ignore-dependencies, or their
         * jobs would wait for this unit through var-lib-keyward.mount and
         * keyward-unlock.service (seen as a deadlock in the image boot test).
         * The volume they need is open and mounted by now.  Custody is started
         * by name: its socket's activation would queue a job with its
         * dependencies.  Re-provisioning: both started again on the new
         * configuration. */
        const char *start[] = { r->o->systemctl, "--no-block", "start", "--job-mode=ignore-dependencies",
                                "keyward-custody.socket", "keyward-custody.service", "keyward-front.service",
                                NULL };
        const char *restart[] = { r->o->systemctl, "--no-block", "restart", "--job-mode=ignore-dependencies",
                                  "keyward-custody.service", "keyward-front.service", NULL };
        const char *const *argv = r->reprovisioning ? restart : start;
        struct kwp_spawn sp = { .argv = argv, .timeout_ms = 60000 };
        int st = 0;
        kw_result res = kwp_spawn_run(&sp, NULL, &st);
        if (res.code != 0 || st != 0)
                return child_fail("systemctl start", res, st, NULL);
        fault("services", "end");
        return kwp_journal_record(r->j, "services", "done", NULL);
}

KW_MUST_USE static kw_result step_keys(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "keys", "start", NULL));
        KW_TRY(kwp_provisioning_token(r->doc, r->cfg, r->o, &r->p)); /* re-provisioning: none yet */
        KW_TRY(kwp_initial_keys(r->doc, r->cfg, r->o, &r->p));
        fault("keys", "end");
        return kwp_journal_record(r->j, "keys", "done", NULL);
}

KW_MUST_USE static kw_result step_selftest(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "selftest", "start", NULL));
        KW_TRY(kwp_run_selftest(r->cfg, r->o, &r->p, r->doc->n_xks > 0 ? r->doc->xks[0].region : NULL));
        fault("selftest", "end");
        return kwp_journal_record(r->j, "selftest", "done", NULL);
}

KW_MUST_USE static kw_result step_output(struct run *r)
{
        KW_TRY(kwp_journal_record(r->j, "output", "start", NULL));
        KW_TRY(kwp_output(r->doc, r->doc_sha, r->cfg, r->o, &r->p));
        fault("output", "end");
        return kwp_journal_record(r->j, "output", "done", NULL);
}

static const struct step {
        const char *name;
        kw_result (*fn)(struct run *);
        const char *fix;
} steps[] = {
        { "disk", step_disk, "attach an empty data disk (at least 32 MiB, no partitions, its first "
                             "and last MiB zeros) or name one in [provision.disk] device" },
        { "volume", step_volume, "check the TPM2 / SEV-SNP settings in [provision.unlock] against "
                                 "this VM (vTPM enabled? confidential VM?)" },
        { "filesystem", step_filesystem, "see the message; the volume is formatted and its "
                                         "recovery key is kept until the output step" },
        { "hsm", step_hsm, "check [provision.hsm]: the module path, the token label and the PIN" },
        { "tls", step_tls, "check [provision.tls]" },
        { "config", step_config, "check the server tables of the document" },
        { "store", step_store, "see keywardd's message above: the HSM or the database" },
        { "services", step_services, "see the units' logs (journalctl -u keyward-front -u "
                                     "keyward-custody)" },
        { "keys", step_keys, "check the [key.<name>] tables" },
        { "selftest", step_selftest, "the services run but do not answer as they should: see "
                                     "their logs" },
        { "output", step_output, "see the message" },
};
#define N_STEPS (sizeof steps / sizeof steps[0])
#define FIRST_REDONE 4u  /* re-provisioning runs the steps from steps[4] ("tls") on */
_Static_assert(N_STEPS > FIRST_REDONE, "the steps re-provisioning runs again");

/* ---- the driver ------------------------------------------------------------------ */

static void hex32(const uint8_t md[32], char out[65])
{
        for (unsigned i = 0; i < 32; i++)
                snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* What re-provisioning keeps (the disk, its bindings, the HSM link but for
 * the PIN), as one digest recorded with the document. */
KW_MUST_USE static kw_result foundation(const struct kwp_doc *d, char out[65])
{
        char text[2048];
#define S(x) ((x) != NULL ? (x) : "")
        int n = snprintf(text, sizeof text,
                         "disk=%s\ntpm2=%d\npcrs=%s\nkey=%s\nsnp=%d\ntcb=%s\nevaluation=%d\n"
                         "module=%s\ntoken=%s\nmaster=%s\n",
                         S(d->disk.device), (int)d->tpm2, S(d->unlock.tpm2_pcrs), S(d->unlock.tpm2_public_key),
                         d->unlock.snp, S(d->unlock.snp_tcb), d->hsm.evaluation, S(d->hsm.module),
                         S(d->hsm.token_label), S(d->hsm.master_key_label));
#undef S
        KW_ENSURE(n > 0 && (size_t)n < sizeof text, KW_ERR_TOO_LARGE);
        uint8_t md[32];
        unsigned mdn = 0;
        KW_ENSURE(EVP_Digest(text, (size_t)n, md, &mdn, EVP_sha256(), NULL) == 1, KW_ERR_CRYPTO);
        hex32(md, out);
        return KW_OK;
}

/* --reprovision on a provisioned appliance: the steps from tls on marked
 * to run again with the new document (the disk, the volume, the HSM and the
 * key store stay; so must the document's parts about them). */
KW_MUST_USE static kw_result begin_reprovision(struct run *r)
{
        const char *f = kwp_journal_get(r->j, "document", "foundation");
        if (f == NULL || strcmp(f, r->foundation) != 0)
                return KW_FAIL(KW_ERR_CONFIG, "re-provisioning keeps the data disk, its bindings and the "
                                              "HSM: [provision.disk], [provision.unlock] and "
                                              "[provision.hsm] (but for the PIN) must say what the first "
                                              "document said (the bindings change with keyward-unlock "
                                              "recover)");
        const char *kv[] = { "sha256", r->doc_sha, NULL };
        KW_TRY(kwp_journal_record(r->j, "reprovision", "start", kv));
        for (size_t i = FIRST_REDONE; i < N_STEPS; i++)
                KW_TRY(kwp_journal_record(r->j, steps[i].name, "start", NULL));
        const char *dk[] = { "sha256", r->doc_sha, "foundation", r->foundation, NULL };
        KW_TRY(kwp_journal_record(r->j, "document", "done", dk));
        return kwp_journal_record(r->j, "provisioned", "start", NULL);
}

KW_MUST_USE static kw_result load_document(struct run *r)
{
        struct kw_buf text;
        kw_buf_init(&text, KWP_DOC_MAX);
        enum kwp_source_kind which = KWP_SRC_NONE;
        struct kwp_sources s = r->o->src;
        if (r->o->doc_path != NULL)
                s.file = r->o->doc_path;
        kw_result res = kwp_fetch(&s, &text, &which);
        if (res.code == 0) {
                char n[24];
                snprintf(n, sizeof n, "%zu", text.len);
                kw_log(KW_LOG_INFO, "provision_document", "source", kwp_source_name(which), "bytes", n,
                       KW_END);
                uint8_t md[32];
                unsigned mdn = 0;
                if (EVP_Digest(text.p, text.len, md, &mdn, EVP_sha256(), NULL) != 1)
                        res = KW_RESULT(KW_ERR_CRYPTO);
                if (res.code == 0)
                        hex32(md, r->doc_sha);
        }
        if (res.code == 0) {
                struct kwp_doc_base base = { .data_dir = r->o->data_dir,
                                             .softhsm_module = r->o->softhsm_module,
                                             .tpm_tcti = r->o->tpm2_device };
                const char *name = which == KWP_SRC_FILE ? s.file : kwp_source_name(which);
                res = kwp_doc_parse(&base, name, (const char *)text.p, text.len, &r->doc);
        }
        if (res.code == 0)
                res = foundation(r->doc, r->foundation);
        kw_buf_free(&text);
        return res;
}

/* The journal: the run-time state directory's until the volume has a file
 * system, then the volume's. */
KW_MUST_USE static kw_result open_journal(struct run *r)
{
        KW_TRY(kwp_mkdir(r->o->state_dir, 0700, 0, 0));
        KW_TRY(kwp_journal_open(r->p.state_journal, &r->j));
        const char *dev = kwp_journal_get(r->j, "disk", "device");
        if (dev != NULL)
                snprintf(r->device, sizeof r->device, "%s", dev);
        bool on_volume = kwp_journal_done(r->j, "volume") || kwp_journal_started(r->j, "filesystem");
        if (on_volume && access(r->p.journal, F_OK) != 0)
                KW_TRY(mount_volume(r, false));
        if (access(r->p.journal, F_OK) == 0) {
                kwp_journal_close(r->j);
                r->j = NULL;
                KW_TRY(kwp_journal_open(r->p.journal, &r->j));
                if ((dev = kwp_journal_get(r->j, "disk", "device")) != NULL)
                        snprintf(r->device, sizeof r->device, "%s", dev);
                if (r->o->activate && !kwp_is_mounted(r->o->data_dir))
                        KW_TRY(mount_volume(r, false));
        }
        return KW_OK;
}

KW_MUST_USE static kw_result users(struct run *r)
{
        const char *names[2] = { r->doc->cfg->custody.user, r->doc->cfg->front.user };
        for (int i = 0; i < 2; i++) {
                struct passwd *pw = getpwnam(names[i]);
                if (pw == NULL)
                        return KW_FAIL(KW_ERR_CONFIG, "no user %s on this system (the image's "
                                                   "sysusers.d makes it)", names[i]);
                if (i == 0)
                        r->custody_uid = pw->pw_uid, r->custody_gid = pw->pw_gid;
                else
                        r->front_uid = pw->pw_uid, r->front_gid = pw->pw_gid;
        }
        return KW_OK;
}

static int report(const char *step, const char *fix)
{
        fprintf(stderr, "keyward-provision: step %s failed: %s\n  to fix: %s\n  then run "
                        "keyward-provision again: it goes on from this step\n",
                step, kw_err_detail(), fix);
        kw_log(KW_LOG_ERROR, "provision_step_failed", "step", step, "error", kw_err_detail(), KW_END);
        return KWP_EXIT_STEP;
}

int kwp_run(const struct kwp_run_opts *o)
{
        struct run r;
        memset(&r, 0, sizeof r);
        r.o = o;
        int rc = 0;
        kwp_paths_init(&r.p, o->data_dir, o->state_dir);
        if (o->if_needed && access(r.p.state_journal, F_OK) != 0 && access(r.p.journal, F_OK) != 0) {
                /* a boot after the first: the volume is there, keyward-unlock opens it
                 * (and a run stopped on an earlier boot goes on once it is mounted) */
                char dev[512];
                if (kwp_disk_find_volume(&o->disk, KWP_VOLUME_LABEL, dev, sizeof dev).code == 0) {
                        kw_log(KW_LOG_INFO, "provision_not_needed", "why", "data volume present", "disk",
                               dev, KW_END);
                        return 0;
                }
        }
        kw_result res = load_document(&r);
        if (res.code != 0) {
                fprintf(stderr, "keyward-provision: %s\n", kw_err_detail());
                return res.code == KW_ERR_NOT_FOUND ? 3 : 4;
        }
        for (size_t i = 0; i < r.doc->n_warnings; i++)
                kw_log(KW_LOG_WARN, "provision_document_warning", "warning", r.doc->warnings[i], KW_END);
        if ((res = users(&r)).code != 0 || (res = open_journal(&r)).code != 0) {
                rc = report("journal", "see the message");
                goto out;
        }
        const char *sha = kwp_journal_get(r.j, "document", "sha256");
        if (o->if_needed && kwp_journal_done(r.j, "provisioned")) {
                kw_log(KW_LOG_INFO, "provision_not_needed", "why", "provisioned", "journal",
                       kwp_journal_path(r.j), KW_END);
                goto out;
        }
        if (kwp_journal_done(r.j, "provisioned") && !o->reprovision) {
                fprintf(stderr, "keyward-provision: this appliance was provisioned on %s (journal %s); "
                                "nothing done (--reprovision applies a new document)\n",
                        kwp_journal_time(r.j, "provisioned"), kwp_journal_path(r.j));
                rc = KWP_EXIT_PROVISIONED;
                goto out;
        }
        if (kwp_journal_done(r.j, "provisioned") && o->reprovision) {
                if ((res = begin_reprovision(&r)).code != 0) {
                        fprintf(stderr, "keyward-provision: %s\n", kw_err_detail());
                        rc = res.code == KW_ERR_CONFIG ? 4 : 1;
                        goto out;
                }
                sha = kwp_journal_get(r.j, "document", "sha256");
        }
        const char *again = kwp_journal_get(r.j, "reprovision", "sha256");
        r.reprovisioning = again != NULL && strcmp(again, r.doc_sha) == 0;
        if (sha != NULL && strcmp(sha, r.doc_sha) != 0) {
                fprintf(stderr, "keyward-provision: provisioning began on %s with another document "
                                "(sha256 %.16s...); run it again with that document\n",
                        kwp_journal_time(r.j, "document"), sha);
                rc = KWP_EXIT_OTHER_DOC;
                goto out;
        }
        if (sha == NULL) {
                const char *kv[] = { "sha256", r.doc_sha, "foundation", r.foundation, NULL };
                if ((res = kwp_journal_record(r.j, "document", "done", kv)).code != 0) {
                        rc = report("document", "see the message");
                        goto out;
                }
        }
        for (size_t i = 0; i < N_STEPS; i++) {
                const struct step *s = &steps[i];
                if (kwp_journal_done(r.j, s->name)) {
                        if (strcmp(s->name, "config") == 0 && (res = kwp_load_config(r.p.conf, &r.cfg)).code != 0) {
                                rc = report(s->name, s->fix);
                                goto out;
                        }
                        continue;
                }
                kw_log(KW_LOG_INFO, "provision_step", "step", s->name, KW_END);
                res = s->fn(&r);
                if (res.code != 0) {
                        rc = report(s->name, s->fix);
                        goto out;
                }
        }
        if ((res = kwp_journal_record(r.j, "provisioned", "done", NULL)).code != 0) {
                rc = report("provisioned", "see the message");
                goto out;
        }
        kw_log(KW_LOG_INFO, "provision_done", "journal", kwp_journal_path(r.j), KW_END);
out:
        kwp_journal_close(r.j);
        kwp_doc_free(r.doc);
        kw_config_free(r.cfg);
        return rc;
}

int kwp_check(const char *path, const char *data_dir)
{
        struct kwp_run_opts o;
        kwp_run_opts_default(&o);
        o.doc_path = path;
        o.data_dir = data_dir;
        struct run r;
        memset(&r, 0, sizeof r);
        r.o = &o;
        kw_result res = load_document(&r);
        if (res.code != 0) {
                fprintf(stderr, "keyward-provision: %s\n", kw_err_detail());
                kwp_doc_free(r.doc);
                return res.code == KW_ERR_NOT_FOUND ? 3 : 4;
        }
        for (size_t i = 0; i < r.doc->n_warnings; i++)
                fprintf(stderr, "keyward-provision: warning: %s\n", r.doc->warnings[i]);
        printf("%s: ok (sha256 %s)\n", path, r.doc_sha);
        kwp_doc_free(r.doc);
        return 0;
}
