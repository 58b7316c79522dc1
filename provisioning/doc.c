/*
 * doc.c - the provisioning document: the schema of its own tables, the
 * server tables it may set, and the checks across them (doc.h).
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "../server/common/b64.h"
#include "../server/common/buf.h"
#include "../server/common/err.h"
#include "../server/common/secret.h"
#include "../server/custody/crypto.h"
#include "doc.h"

/* ---- the schema ---------------------------------------------------------- */

#define TYPECHECK(expr, T) (0 * sizeof(char[_Generic((expr), T: 1, default: -1)]))
#define D_OFF(m, f, T) (offsetof(struct kwp_doc, m.f) + TYPECHECK(((struct kwp_doc *)0)->m.f, T))
#define F_STR(sec, m, f, fl) { sec, #f, KW_CFG_STR, (fl), D_OFF(m, f, char *), 0, 0 }
#define F_BOOL(sec, m, f) { sec, #f, KW_CFG_BOOL, 0, D_OFF(m, f, bool), 0, 1 }
#define F_INT(sec, m, f, lo, hi) { sec, #f, KW_CFG_INT, 0, D_OFF(m, f, int64_t), (lo), (hi) }
#define F_LIST(sec, m, f) { sec, #f, KW_CFG_LIST, 0, D_OFF(m, f, struct kw_strlist), 0, 0 }

enum {                               /* rows of fields[], for the line of each */
        R_VERSION, R_ALLOW_SECRETS, R_DEVICE, R_TPM2, R_TPM2_PCRS, R_TPM2_KEY, R_SNP, R_SNP_TCB,
        R_EVALUATION, R_MODULE, R_TOKEN_LABEL, R_PIN, R_MASTER_KEY_LABEL, R_TLS_MODE, R_NAMES,
        R_KEY_TYPE, R_DAYS, R_CERTIFICATE, R_PRIVATE_KEY, R_CLIENT_CA, R_TOKEN_SHA256, R_ADMIN_LISTEN,
};

static const struct kw_cfg_field fields[] = {
        [R_VERSION] = F_INT("provision", provision, version, 1, 1),
        [R_ALLOW_SECRETS] = F_BOOL("provision", provision, allow_secrets),
        [R_DEVICE] = F_STR("provision.disk", disk, device, 0),
        [R_TPM2] = F_STR("provision.unlock", unlock, tpm2, 0),
        [R_TPM2_PCRS] = F_STR("provision.unlock", unlock, tpm2_pcrs, 0),
        [R_TPM2_KEY] = F_STR("provision.unlock", unlock, tpm2_public_key, 0),
        [R_SNP] = F_BOOL("provision.unlock", unlock, snp),
        [R_SNP_TCB] = F_STR("provision.unlock", unlock, snp_tcb, 0),
        [R_EVALUATION] = F_BOOL("provision.hsm", hsm, evaluation),
        [R_MODULE] = F_STR("provision.hsm", hsm, module, 0),
        [R_TOKEN_LABEL] = F_STR("provision.hsm", hsm, token_label, 0),
        [R_PIN] = F_STR("provision.hsm", hsm, pin, KW_CFG_SECRET),
        [R_MASTER_KEY_LABEL] = F_STR("provision.hsm", hsm, master_key_label, 0),
        [R_TLS_MODE] = F_STR("provision.tls", tls, mode, 0),
        [R_NAMES] = F_LIST("provision.tls", tls, names),
        [R_KEY_TYPE] = F_STR("provision.tls", tls, key_type, 0),
        [R_DAYS] = F_INT("provision.tls", tls, days, 1, 3650),
        [R_CERTIFICATE] = F_STR("provision.tls", tls, certificate, 0),
        [R_PRIVATE_KEY] = F_STR("provision.tls", tls, private_key, KW_CFG_SECRET),
        [R_CLIENT_CA] = F_STR("provision.tls", tls, client_ca, 0),
        [R_TOKEN_SHA256] = F_STR("provision.admin", admin, token_sha256, 0),
        [R_ADMIN_LISTEN] = F_STR("provision.admin", admin, listen, 0),
};
#define N_FIELDS (sizeof fields / sizeof fields[0])
_Static_assert(N_FIELDS <= sizeof ((struct kwp_doc *)0)->line_ / sizeof(uint32_t),
               "struct kwp_doc line_[] needs a slot per field");

#define K_OFF(f, T) (offsetof(struct kwp_doc_key, f) + TYPECHECK(((struct kwp_doc_key *)0)->f, T))
enum { KR_TYPE, KR_SIZE, KR_OPS, KR_XKS, KR_EKM };
static const struct kw_cfg_field key_fields[] = {
        [KR_TYPE] = { "key", "type", KW_CFG_STR, 0, K_OFF(type, char *), 0, 0 },
        [KR_SIZE] = { "key", "size", KW_CFG_INT, 0, K_OFF(size, int64_t), 1, 16384 },
        [KR_OPS] = { "key", "ops", KW_CFG_LIST, 0, K_OFF(ops, struct kw_strlist), 0, 0 },
        [KR_XKS] = { "key", "xks_stores", KW_CFG_LIST, 0, K_OFF(xks_stores, struct kw_strlist), 0, 0 },
        [KR_EKM] = { "key", "ekm_clients", KW_CFG_LIST, 0, K_OFF(ekm_clients, struct kw_strlist), 0, 0 },
};
#define N_KEY_FIELDS (sizeof key_fields / sizeof key_fields[0])
_Static_assert(N_KEY_FIELDS <= sizeof ((struct kwp_doc *)0)->key_lines_[0] / sizeof(uint32_t),
               "struct kwp_doc key_lines_[] needs a slot per key field");

/* The server's tables the appliance fixes, and where the document says the same. */
static const char *const refused[][2] = {
        { "tls", "the appliance's TLS certificate is set up by [provision.tls]" },
        { "db", "the key store lives on the data volume the appliance creates" },
        { "hsm", "the HSM link is [provision.hsm]" },
        { "admin", "the first admin credential is [provision.admin]" },
        { "custody", "the appliance image fixes the process layout" },
        { "front", "the appliance image fixes the process layout" },
        { "sandbox", "the appliance image fixes the sandbox" },
        { "attestation", "the appliance image sets attestation up from its hardware" },
        { NULL, NULL },
};

/* ---- parse ---------------------------------------------------------------- */

static kw_result key_add(void *ctx, const char *name, uint32_t line, void **ret_base, uint32_t **ret_lines)
{
        struct kwp_doc *d = ctx;
        for (size_t i = 0; i < d->n_keys; i++)
                if (strcmp(d->keys[i].name, name) == 0) {
                        kw_err_set_detail("duplicate table (first on line %" PRIu32 ")", d->keys[i].line);
                        KW_BAIL(KW_ERR_CONFIG);
                }
        if (d->n_keys == KWP_DOC_MAX_KEYS) {
                kw_err_set_detail("too many initial keys (max %d)", KWP_DOC_MAX_KEYS);
                KW_BAIL(KW_ERR_CONFIG);
        }
        struct kwp_doc_key *k = &d->keys[d->n_keys];
        memset(k, 0, sizeof *k);
        k->name = strdup(name);
        KW_ENSURE(k->name != NULL, KW_ERR_NOMEM);
        k->line = line;
        *ret_base = k;
        *ret_lines = d->key_lines_[d->n_keys];
        d->n_keys++;
        return KW_OK;
}

void kwp_doc_free(struct kwp_doc *d)
{
        if (d == NULL)
                return;
        kw_config_free(d->cfg);
        free(d->name);
        kw_cfg_fields_free(fields, N_FIELDS, d);
        for (size_t i = 0; i < d->n_keys; i++) {
                kw_cfg_fields_free(key_fields, N_KEY_FIELDS, &d->keys[i]);
                free(d->keys[i].name);
        }
        for (size_t i = 0; i < d->n_xks; i++) {
                free(d->xks[i].name);
                free(d->xks[i].uri_prefix);
                free(d->xks[i].region);
        }
        kw_wipe(d, sizeof *d);
        free(d);
}

static const char *str_or(const char *s, const char *dflt) { return s != NULL ? s : dflt; }
static bool empty(const char *s) { return s == NULL || s[0] == '\0'; }

#define DFAIL(D, L, ...) return kw_config_doc_fail((D)->name, (L), __VA_ARGS__)

/* The line a field was set on, else the line of its table, else 1. */
static uint32_t line_of(const struct kwp_doc *d, size_t row)
{
        return d->line_[row] != 0 ? d->line_[row] : 1;
}

static void warn(struct kwp_doc *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct kwp_doc *d, const char *fmt, ...)
{
        if (d->n_warnings == KWP_DOC_MAX_WARNINGS)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(d->warnings[d->n_warnings++], sizeof d->warnings[0], fmt, ap);
        va_end(ap);
}

/* "7+11": distinct PCRs 0-23 joined by '+'. */
static bool pcr_list_ok(const char *s)
{
        uint32_t seen = 0;
        if (empty(s))
                return false;
        while (*s != '\0') {
                if (*s < '0' || *s > '9')
                        return false;
                unsigned v = 0;
                int digits = 0;
                while (*s >= '0' && *s <= '9' && digits < 3)
                        v = v * 10 + (unsigned)(*s++ - '0'), digits++;
                if (v > 23 || (seen & (1u << v)) || (digits > 1 && s[-digits] == '0'))
                        return false;
                seen |= 1u << v;
                if (*s == '+' && s[1] != '\0')
                        s++;
                else if (*s != '\0')
                        return false;
        }
        return true;
}

static bool hex_ok(const char *s, size_t n)
{
        return strlen(s) == n && strspn(s, "0123456789abcdef") == n;
}

static bool in_list(const char *s, const char *const *list)
{
        for (; *list != NULL; list++)
                if (strcmp(s, *list) == 0)
                        return true;
        return false;
}

KW_MUST_USE static kw_result check_unlock(struct kwp_doc *d)
{
        static const char *const policies[] = { "signed", "pcrs", "none", NULL };
        const char *p = str_or(d->unlock.tpm2, "signed");
        if (!in_list(p, policies))
                DFAIL(d, line_of(d, R_TPM2), "[provision.unlock] tpm2 must be \"signed\" (PCR 11 as "
                                             "the image key signs it), \"pcrs\" or \"none\"");
        d->tpm2 = strcmp(p, "signed") == 0 ? KWP_TPM2_SIGNED /* lint: allow (a policy name) */
                  : strcmp(p, "pcrs") == 0 ? KWP_TPM2_PCRS : KWP_TPM2_NONE;
        if (!empty(d->unlock.tpm2_pcrs) && !pcr_list_ok(d->unlock.tpm2_pcrs))
                DFAIL(d, line_of(d, R_TPM2_PCRS), "[provision.unlock] tpm2_pcrs must be distinct PCR "
                                                  "numbers 0-23 joined by '+', e.g. \"7+11\"");
        if (d->tpm2 == KWP_TPM2_PCRS && empty(d->unlock.tpm2_pcrs))
                DFAIL(d, line_of(d, R_TPM2), "[provision.unlock] tpm2 = \"pcrs\" needs tpm2_pcrs "
                                             "(the PCRs whose current values the volume is sealed to)");
        if (d->tpm2 == KWP_TPM2_NONE && (!empty(d->unlock.tpm2_pcrs) || !empty(d->unlock.tpm2_public_key)))
                DFAIL(d, line_of(d, d->line_[R_TPM2_PCRS] ? R_TPM2_PCRS : R_TPM2_KEY),
                      "[provision.unlock] tpm2 = \"none\": tpm2_pcrs and tpm2_public_key do not apply");
        if (d->tpm2 == KWP_TPM2_PCRS && !empty(d->unlock.tpm2_public_key))
                DFAIL(d, line_of(d, R_TPM2_KEY), "[provision.unlock] tpm2_public_key goes with "
                                                 "tpm2 = \"signed\"");
        if (!empty(d->unlock.tpm2_public_key) && d->unlock.tpm2_public_key[0] != '/')
                DFAIL(d, line_of(d, R_TPM2_KEY), "[provision.unlock] tpm2_public_key must be an "
                                                 "absolute path (a key in the image)");
        if (d->tpm2 == KWP_TPM2_NONE && !d->unlock.snp)
                DFAIL(d, line_of(d, R_TPM2), "[provision.unlock]: tpm2 = \"none\" without snp = true "
                                             "leaves the volume with only its recovery key: it could "
                                             "not open at boot");
        if (!empty(d->unlock.snp_tcb) && !d->unlock.snp)
                DFAIL(d, line_of(d, R_SNP_TCB), "[provision.unlock] snp_tcb needs snp = true");
        if (!empty(d->unlock.snp_tcb) && !hex_ok(d->unlock.snp_tcb, 16))
                DFAIL(d, line_of(d, R_SNP_TCB), "[provision.unlock] snp_tcb must be 16 lower-case hex "
                                                "digits (the TCB version to pin)");
        return KW_OK;
}

KW_MUST_USE static kw_result check_hsm(struct kwp_doc *d)
{
        static const size_t given[] = { R_MODULE, R_TOKEN_LABEL, R_PIN };
        if (d->hsm.evaluation) {
                for (size_t i = 0; i < sizeof given / sizeof given[0]; i++)
                        if (d->line_[given[i]] != 0)
                                DFAIL(d, d->line_[given[i]], "[provision.hsm] %s: not with evaluation = "
                                      "true (the appliance makes a local SoftHSM2 token)",
                                      fields[given[i]].key);
                return KW_OK;
        }
        if (d->line_[R_EVALUATION] == 0 && d->line_[R_MODULE] == 0)
                DFAIL(d, 1, "[provision.hsm]: an HSM is required: module, token_label and pin, or "
                            "evaluation = true for a local SoftHSM2 token (not for production keys)");
        for (size_t i = 0; i < sizeof given / sizeof given[0]; i++)
                if (empty(*(char **)((char *)d + fields[given[i]].off)))
                        DFAIL(d, line_of(d, R_EVALUATION),
                              "[provision.hsm] %s is required (or evaluation = true)", fields[given[i]].key);
        if (d->hsm.module[0] != '/')
                DFAIL(d, line_of(d, R_MODULE), "[provision.hsm] module must be an absolute path (a "
                                               "PKCS#11 module in the image or on the config disk)");
        if (strlen(d->hsm.token_label) > 32)
                DFAIL(d, line_of(d, R_TOKEN_LABEL), "[provision.hsm] token_label is at most 32 bytes "
                                                    "(PKCS#11)");
        if (d->line_[R_MASTER_KEY_LABEL] != 0 &&
            (empty(d->hsm.master_key_label) || strlen(d->hsm.master_key_label) > 64))
                DFAIL(d, line_of(d, R_MASTER_KEY_LABEL), "[provision.hsm] master_key_label must be "
                                                         "1-64 bytes");
        return KW_OK;
}

/* The client CA: PEM certificates only, at least one, each one a CA. */
KW_MUST_USE static kw_result check_client_ca(struct kwp_doc *d)
{
        const struct kw_config *c = d->cfg;
        bool ekm_mtls = c->ekm.azure_ekm_enable && !c->ekm.azure_ekm_disable_client_auth;
        if (empty(d->tls.client_ca)) {
                if (ekm_mtls)
                        DFAIL(d, kw_config_key_line(c, "azure_ekm_config", "azure_ekm_enable"),
                              "[azure_ekm_config] azure_ekm_enable: Azure Managed HSM is authenticated by "
                              "its client certificate: give its CA as [provision.tls] client_ca (PEM), or "
                              "set azure_ekm_disable_client_auth = true");
                return KW_OK;
        }
        BIO *bio = BIO_new_mem_buf(d->tls.client_ca, (int)strlen(d->tls.client_ca));
        size_t n = 0, not_ca = 0;
        X509 *x = NULL;
        while (bio != NULL && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
                n++;
                if (X509_check_ca(x) == 0)
                        not_ca++;
                X509_free(x);
        }
        BIO_free(bio);
        ERR_clear_error();
        if (n == 0)
                DFAIL(d, line_of(d, R_CLIENT_CA), "[provision.tls] client_ca holds no PEM certificate");
        if (not_ca != 0)
                DFAIL(d, line_of(d, R_CLIENT_CA), "[provision.tls] client_ca: %zu of its %zu certificates "
                                                  "are not CA certificates", not_ca, n);
        return KW_OK;
}

KW_MUST_USE static kw_result check_tls(struct kwp_doc *d)
{
        if (kwp_tls_mode_parse(d->tls.mode != NULL ? d->tls.mode : "self-signed", &d->tls_mode).code != 0)
                DFAIL(d, line_of(d, R_TLS_MODE), "[provision.tls] mode must be \"self-signed\", "
                                                 "\"csr\" or \"supplied\"");
        if (kwp_tls_key_type_parse(d->tls.key_type != NULL ? d->tls.key_type : "ec-p256", &d->tls_key).code != 0)
                DFAIL(d, line_of(d, R_KEY_TYPE), "[provision.tls] key_type must be one of ec-p256, "
                                                 "ec-p384, rsa-2048, rsa-3072, rsa-4096");
        if (d->tls.names.n != 0 &&
            kwp_tls_check_names((const char *const *)d->tls.names.v, d->tls.names.n).code != 0) {
                char why[256];
                snprintf(why, sizeof why, "%s", kw_err_detail());
                DFAIL(d, line_of(d, R_NAMES), "[provision.tls] names: %s", why);
        }
        if (d->tls_mode != KWP_TLS_SUPPLIED) {
                if (d->tls.names.n == 0)
                        DFAIL(d, line_of(d, d->line_[R_NAMES] ? R_NAMES : R_TLS_MODE),
                              "[provision.tls] names is required: the DNS names and IP addresses "
                              "clients use to reach this appliance (the certificate's names)");
                if (d->line_[R_CERTIFICATE] != 0 || d->line_[R_PRIVATE_KEY] != 0)
                        DFAIL(d, line_of(d, d->line_[R_CERTIFICATE] ? R_CERTIFICATE : R_PRIVATE_KEY),
                              "[provision.tls] certificate and private_key go with mode = \"supplied\"");
                return KW_OK;
        }
        if (empty(d->tls.certificate) || empty(d->tls.private_key))
                DFAIL(d, line_of(d, R_TLS_MODE), "[provision.tls] mode = \"supplied\" needs certificate "
                                                 "and private_key (PEM, in '''...''')");
        if (d->line_[R_KEY_TYPE] != 0 || d->line_[R_DAYS] != 0)
                DFAIL(d, line_of(d, d->line_[R_KEY_TYPE] ? R_KEY_TYPE : R_DAYS),
                      "[provision.tls] key_type and days do not apply to a supplied certificate");
        if (strstr(d->tls.certificate, "-----BEGIN CERTIFICATE-----") == NULL)
                DFAIL(d, line_of(d, R_CERTIFICATE), "[provision.tls] certificate is not a PEM "
                                                    "certificate (-----BEGIN CERTIFICATE-----)");
        if (strstr(d->tls.private_key, "-----BEGIN ") == NULL ||
            strstr(d->tls.private_key, "PRIVATE KEY-----") == NULL)
                DFAIL(d, line_of(d, R_PRIVATE_KEY), "[provision.tls] private_key is not a PEM "
                                                    "private key");
        if (strstr(d->tls.private_key, "ENCRYPTED") != NULL)
                DFAIL(d, line_of(d, R_PRIVATE_KEY), "[provision.tls] private_key is encrypted: give "
                                                    "it unencrypted (it is stored on the encrypted "
                                                    "data volume)");
        return KW_OK;
}

KW_MUST_USE static kw_result check_admin(struct kwp_doc *d)
{
        if (!empty(d->admin.token_sha256) && (strlen(d->admin.token_sha256) != 64 ||
                                                strspn(d->admin.token_sha256, "0123456789abcdefABCDEF") != 64))
                DFAIL(d, line_of(d, R_TOKEN_SHA256), "[provision.admin] token_sha256 must be 64 lower-"
                                                     "case hex digits: the SHA-256 of the token "
                                                     "(printf %%s \"$TOKEN\" | sha256sum)");
        if (d->line_[R_ADMIN_LISTEN] != 0 && empty(d->admin.listen))
                DFAIL(d, line_of(d, R_ADMIN_LISTEN), "[provision.admin] listen: leave it out to "
                                                     "serve the admin API on the main listener");
        return KW_OK;
}

static bool store_known(const struct kwp_doc *d, const char *name)
{
        for (size_t i = 0; i < d->n_xks; i++)
                if (strcmp(d->xks[i].name, name) == 0)
                        return true;
        return false;
}

/* The XKS key stores: only what the admin API takes (uri_prefix, region). */
KW_MUST_USE static kw_result check_xks(struct kwp_doc *d)
{
        static const char *const not_here[] = { "service", "access_key_id", "secret_access_key",
                                                "access_key_id_2", "secret_access_key_2",
                                                "client_ca_file", "client_subjects", NULL };
        const struct kw_config *c = d->cfg;
        if (c->xks.aws_xks_enable)
                DFAIL(d, kw_config_key_line(c, "aws_xks_config", "aws_xks_enable"),
                      "[aws_xks_config] aws_xks_enable: its store's secret would be in keyward.toml, "
                      "which the front reads; declare each key store as [aws_xks_store.<name>] "
                      "(made in the encrypted key store, its credential shown once)");
        for (size_t i = 0; i < c->n_xks_stores; i++)
                for (size_t k = 0; not_here[k] != NULL; k++) {
                        uint32_t l = kw_config_store_line(c, i, not_here[k]);
                        if (l != 0)
                                DFAIL(d, l, "[aws_xks_store.%s] %s: a key store made at provisioning "
                                      "lives in the key store, which makes its credential and shows it "
                                      "once; only uri_prefix and region are set here (the rest through "
                                      "the admin API later)", c->xks_stores[i].name, not_here[k]);
                }
        return KW_OK;
}

/* The stores, checked with the configuration, move out of it. */
KW_MUST_USE static kw_result take_stores(struct kwp_doc *d)
{
        struct kw_config *c = d->cfg;
        for (size_t i = 0; i < c->n_xks_stores && i < KW_XKS_MAX_STORES; i++) {
                struct kwp_doc_store *st = &d->xks[d->n_xks];
                st->name = strdup(c->xks_stores[i].name);
                st->uri_prefix = strdup(c->xks_stores[i].uri_prefix);
                st->region = strdup(c->xks_stores[i].region);
                d->n_xks++;
                KW_ENSURE(st->name != NULL && st->uri_prefix != NULL && st->region != NULL, KW_ERR_NOMEM);
        }
        kw_config_drop_stores(c);
        return KW_OK;
}

KW_MUST_USE static kw_result check_keys(struct kwp_doc *d)
{
        static const char *const types[] = { "aes", "rsa", NULL };
        static const char *const ops[] = { "encrypt", "decrypt", "wrap", "unwrap", NULL };
        for (size_t i = 0; i < d->n_keys; i++) {
                struct kwp_doc_key *k = &d->keys[i];
                const uint32_t *ln = d->key_lines_[i];
                uint32_t hl = k->line;
                if (empty(k->type))
                        DFAIL(d, hl, "[key.%s] type is required (\"aes\" or \"rsa\")", k->name);
                if (!in_list(k->type, types))
                        DFAIL(d, ln[KR_TYPE], "[key.%s] type must be \"aes\" or \"rsa\"", k->name);
                bool aes = strcmp(k->type, "aes") == 0;
                if (k->size != 0 && aes && k->size != 256)
                        DFAIL(d, ln[KR_SIZE], "[key.%s] size: AES keys are 256 bits", k->name);
                if (k->size != 0 && !aes && k->size != 2048 && k->size != 3072 && k->size != 4096)
                        DFAIL(d, ln[KR_SIZE], "[key.%s] size: RSA keys are 2048, 3072 or 4096 bits",
                              k->name);
                for (size_t j = 0; j < k->ops.n; j++) {
                        if (!in_list(k->ops.v[j], ops))
                                DFAIL(d, ln[KR_OPS], "[key.%s] ops: item %zu is not one of encrypt, "
                                      "decrypt, wrap, unwrap", k->name, j + 1);
                        for (size_t m = 0; m < j; m++)
                                if (strcmp(k->ops.v[m], k->ops.v[j]) == 0)
                                        DFAIL(d, ln[KR_OPS], "[key.%s] ops: \"%s\" twice", k->name,
                                              k->ops.v[j]);
                }
                for (size_t j = 0; j < k->xks_stores.n; j++)
                        if (!store_known(d, k->xks_stores.v[j]))
                                DFAIL(d, ln[KR_XKS], "[key.%s] xks_stores: item %zu names no "
                                      "[aws_xks_store.<name>] of this document", k->name, j + 1);
                for (size_t j = 0; j < k->ekm_clients.n; j++)
                        if (empty(k->ekm_clients.v[j]) || strlen(k->ekm_clients.v[j]) > 64)
                                DFAIL(d, ln[KR_EKM], "[key.%s] ekm_clients: item %zu must be a "
                                      "certificate CN of 1-64 bytes", k->name, j + 1);
                if (k->ekm_clients.n != 0 && !d->cfg->ekm.azure_ekm_enable)
                        DFAIL(d, ln[KR_EKM], "[key.%s] ekm_clients: [azure_ekm_config] "
                              "azure_ekm_enable is not true", k->name);
        }
        return KW_OK;
}

/* The rule on secrets in user data. */
KW_MUST_USE static kw_result check_secrets(struct kwp_doc *d, const struct kw_config_ext *ext)
{
        if (ext->secret_line == 0)
                return KW_OK;
        if (!d->provision.allow_secrets)
                DFAIL(d, ext->secret_line,
                      "%s is a secret, and secrets in user data are refused: anyone with access to "
                      "this instance's metadata can read them.  Leave it out (the appliance "
                      "generates what it can and shows it once on the console), or set "
                      "[provision] allow_secrets = true", ext->secret_label);
        warn(d, "%s:%" PRIu32 ": this document holds secrets (the first: %s): the cloud keeps "
                "them in the instance's metadata, readable by anyone with access to it; on the "
                "appliance they are stored only on the encrypted data volume", d->name,
             ext->secret_line, ext->secret_label);
        return KW_OK;
}

/* The settings of an appliance, read before the document. */
static int base_text(const struct kwp_doc_base *b, char *out, size_t cap)
{
        return snprintf(out, cap,
                        "[http]\nlisten = \"0.0.0.0:443\"\n"
                        "[db]\npath = \"%s/custody/keyward.db\"\n"
                        "[admin]\ntoken_file = \"%s/custody/admin.token\"\n"
                        "[tls]\ntls_cert_file = \"%s/etc/tls/cert.pem\"\ntls_key_file = \"%s/etc/tls/key.pem\"\n",
                        b->data_dir, b->data_dir, b->data_dir, b->data_dir);
}

KW_MUST_USE static kw_result set_str(char **slot, const char *v)
{
        char *d = strdup(v);
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        free(*slot);
        *slot = d;
        return KW_OK;
}

/* The server settings that follow from the document's own tables. */
KW_MUST_USE static kw_result apply_appliance(struct kwp_doc *d, const struct kwp_doc_base *b)
{
        struct kw_config *c = d->cfg;
        char pin_file[512];
        int n = snprintf(pin_file, sizeof pin_file, "%s/custody/hsm.pin", b->data_dir);
        KW_ENSURE(n > 0 && (size_t)n < sizeof pin_file, KW_ERR_INPUT);
        if (d->hsm.master_key_label == NULL)
                KW_TRY(set_str(&d->hsm.master_key_label, "keyward-master"));
        KW_TRY(set_str(&c->hsm.module, d->hsm.evaluation ? str_or(b->softhsm_module, KWP_SOFTHSM_MODULE)
                                                         : d->hsm.module));
        KW_TRY(set_str(&c->hsm.token_label, d->hsm.evaluation ? KWP_EVALUATION_TOKEN : d->hsm.token_label));
        KW_TRY(set_str(&c->hsm.pin_file, pin_file));
        KW_TRY(set_str(&c->hsm.master_key_label, d->hsm.master_key_label));
        if (!empty(d->admin.listen))
                KW_TRY(set_str(&c->admin.listen, d->admin.listen));
        /* [admin] initial_token_sha256 is not written: keywardd --init gets it
         * from its environment (the file is one the front reads) */
        c->hsm.evaluation = d->hsm.evaluation;
        /* the appliance answers GET /attestation (docs/attestation.md) with the
         * TPM keyward-unlock binds the volume to; a piece the machine lacks is
         * said "absent" in the evidence */
        c->attestation.enable = true;
        KW_TRY(set_str(&c->attestation.pcrs, KWP_ATTEST_PCRS));
        if (!empty(b->tpm_tcti))
                KW_TRY(set_str(&c->attestation.tpm_tcti, b->tpm_tcti));
        if (!empty(d->tls.client_ca)) {
                char ca[512];
                n = snprintf(ca, sizeof ca, "%s/etc/tls/" KWP_CLIENT_CA_FILE, b->data_dir);
                KW_ENSURE(n > 0 && (size_t)n < sizeof ca, KW_ERR_INPUT);
                KW_TRY(set_str(&c->tls.clients_ca_cert_file, ca));
        }
        return KW_OK;
}

kw_result kwp_doc_parse(const struct kwp_doc_base *base, const char *name, const char *text,
                        size_t len, struct kwp_doc **ret)
{
        KW_ENSURE(base != NULL && base->data_dir != NULL && name != NULL && ret != NULL, KW_ERR_INPUT);
        *ret = NULL;
        char btext[1024];
        int bn = base_text(base, btext, sizeof btext);
        KW_ENSURE(bn > 0 && (size_t)bn < sizeof btext, KW_ERR_INPUT);
        struct kwp_doc *d = calloc(1, sizeof *d);
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        kw_result r = KW_OK;
        d->name = strdup(name);
        if (d->name == NULL) {
                r = KW_RESULT(KW_ERR_NOMEM);
                goto fail;
        }
        KW_TRY_GOTO(r, kw_config_defaults(&d->cfg), fail);
        KW_TRY_GOTO(r, kw_config_parse("(appliance)", btext, (size_t)bn, d->cfg), fail);
        struct kw_config_ext ext = {
                .fields = fields, .n_fields = N_FIELDS, .base = d, .field_line = d->line_,
                .named = "key", .named_fields = key_fields, .n_named_fields = N_KEY_FIELDS,
                .named_add = key_add, .ctx = d, .refused = refused,
        };
        KW_TRY_GOTO(r, kw_config_parse_ext(name, text, len, d->cfg, &ext), fail);
        if (d->line_[R_VERSION] == 0) {
                r = kw_config_doc_fail(name, 1, "[provision] version = 1 is required (this document's "
                                                "format; it tells a provisioning document from a "
                                                "keyward.toml)");
                goto fail;
        }
        KW_TRY_GOTO(r, check_xks(d), fail);
        KW_TRY_GOTO(r, check_secrets(d, &ext), fail);
        KW_TRY_GOTO(r, check_unlock(d), fail);
        KW_TRY_GOTO(r, check_hsm(d), fail);
        KW_TRY_GOTO(r, check_tls(d), fail);
        KW_TRY_GOTO(r, check_client_ca(d), fail);
        KW_TRY_GOTO(r, check_admin(d), fail);
        KW_TRY_GOTO(r, apply_appliance(d, base), fail);
        /* the server's own checks now, on the document's lines, with the
         * credentials the document leaves to the appliance made */
        KW_TRY_GOTO(r, kwp_doc_fill_credentials(d), fail);
        KW_TRY_GOTO(r, take_stores(d), fail);
        KW_TRY_GOTO(r, check_keys(d), fail);
        *ret = d;
        return KW_OK;
fail:
        kwp_doc_free(d);
        return r;
}

/* ---- generated credentials ---------------------------------------------- */

/* 20 characters of the XKS access key id alphabet (A-Z, 2-7), "KW" first. */
KW_MUST_USE static kw_result gen_akid(char **slot)
{
        static const char b32[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
        uint8_t r[18];
        char s[21] = "KW";
        KW_TRY(kw_random(r, sizeof r));
        for (size_t i = 0; i < sizeof r; i++)
                s[2 + i] = b32[r[i] & 31];
        char *d = strdup(s);
        KW_ENSURE(d != NULL, KW_ERR_NOMEM);
        free(*slot);
        *slot = d;
        return KW_OK;
}

/* 44 characters of base64 (33 random bytes: no padding). */
KW_MUST_USE static kw_result gen_secret(char **slot)
{
        uint8_t r[33];
        struct kw_buf b;
        kw_buf_init(&b, 64);
        kw_result res = kw_random(r, sizeof r);
        if (res.code == 0)
                res = kw_b64_encode(r, sizeof r, &b);
        kw_wipe(r, sizeof r);
        char *d = NULL;
        if (res.code == 0 && (d = strndup((const char *)b.p, b.len)) == NULL)
                res = KW_RESULT(KW_ERR_NOMEM);
        kw_buf_free(&b);
        KW_TRY(res);
        if (*slot != NULL)
                kw_wipe(*slot, strlen(*slot));
        free(*slot);
        *slot = d;
        return KW_OK;
}

kw_result kwp_doc_fill_credentials(struct kwp_doc *d)
{
        KW_ENSURE(d != NULL && d->cfg != NULL, KW_ERR_INPUT);
        struct kw_config *c = d->cfg;
        if (c->xks.aws_xks_enable) {
                if (empty(c->xks.aws_xks_sigv4_access_key_id))
                        KW_TRY(gen_akid(&c->xks.aws_xks_sigv4_access_key_id));
                if (empty(c->xks.aws_xks_sigv4_secret_access_key))
                        KW_TRY(gen_secret(&c->xks.aws_xks_sigv4_secret_access_key));
        }
        for (size_t i = 0; i < c->n_xks_stores; i++) {
                struct kw_xks_store *s = &c->xks_stores[i];
                if (empty(s->access_key_id))
                        KW_TRY(gen_akid(&s->access_key_id));
                if (empty(s->secret_access_key))
                        KW_TRY(gen_secret(&s->secret_access_key));
        }
        return kw_config_validate(c);
}
