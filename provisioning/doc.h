/*
 * doc.h - the provisioning document (docs/provisioning.md, "The document").
 *
 * keyward.toml's syntax, read by the server's own parser (config.h,
 * kw_config_parse_ext), with the tables of first boot: [provision],
 * [provision.disk], [provision.unlock], [provision.hsm], [provision.tls],
 * [provision.admin] and one [key.<name>] per initial key.  The server's
 * tables that a customer chooses ([http], [log], [audit],
 * [azure_ekm_config], [aws_xks_config], [aws_xks_store.<name>]) are read
 * over the appliance's own settings; those the appliance fixes ([tls],
 * [db], [hsm], [admin], [custody], [front], [sandbox], [attestation]) are
 * refused with the table of this document that says the same.  The XKS
 * key stores ([aws_xks_store.<name>]: uri_prefix, region) are made through
 * the admin API, so that their credentials live in the encrypted key store
 * and never in keyward.toml, which the front reads; [aws_xks_config]'s own
 * store (aws_xks_enable = true), whose secret would be in that file, is
 * refused.
 *
 * Every error is "name:line: message", the first one stops the parse.
 * Secrets (the HSM PIN, a TLS private key, an XKS secret access key) are
 * refused unless [provision] allow_secrets = true; when allowed, a warning
 * says where they end up.  An XKS access key id or secret left out is
 * generated on the appliance (kwp_doc_fill_credentials).
 */
#ifndef KWP_DOC_H
#define KWP_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../server/common/result.h"
#include "../server/config.h"
#include "tls.h"

#define KWP_DOC_MAX_KEYS 64
#define KWP_DOC_MAX_WARNINGS 8

enum kwp_tpm2_policy { KWP_TPM2_SIGNED, KWP_TPM2_PCRS, KWP_TPM2_NONE };

struct kwp_doc_key {                 /* [key.<name>]                                  */
        char *name;
        char *type;                  /* "aes" | "rsa"                                 */
        int64_t size;                /* 0 = the type's default (256 / 3072)           */
        struct kw_strlist ops;       /* encrypt, decrypt, wrap, unwrap                */
        struct kw_strlist xks_stores;
        struct kw_strlist ekm_clients;
        uint32_t line;               /* of its header                                 */
};

struct kwp_doc_store {               /* [aws_xks_store.<name>]: made through the admin API */
        char *name;
        char *uri_prefix;
        char *region;
};

struct kwp_doc {
        struct kw_config *cfg;       /* the server's configuration it gives           */
        char *name;                  /* for messages                                  */
        struct {                     /* [provision]                                   */
                int64_t version;     /* 1; required                                   */
                bool allow_secrets;
        } provision;
        struct {                     /* [provision.disk]                              */
                char *device;        /* "" = the first empty disk                     */
        } disk;
        struct {                     /* [provision.unlock]                            */
                char *tpm2;          /* "signed" (default), "pcrs", "none"            */
                char *tpm2_pcrs;     /* literal PCRs, "7+11"                          */
                char *tpm2_public_key; /* "" = the image's key                        */
                bool snp;
                char *snp_tcb;       /* 16 hex digits; "" = the committed TCB         */
        } unlock;
        struct {                     /* [provision.hsm]                               */
                bool evaluation;     /* a local SoftHSM2 token                        */
                char *module;
                char *token_label;
                char *pin;           /* secret                                        */
                char *master_key_label;
        } hsm;
        struct {                     /* [provision.tls]                               */
                char *mode;          /* "self-signed" (default), "csr", "supplied"    */
                struct kw_strlist names;
                char *key_type;      /* "ec-p256" (default)                           */
                int64_t days;        /* 825                                           */
                char *certificate;   /* PEM chain (supplied)                          */
                char *private_key;   /* PEM (supplied); secret                        */
                char *client_ca;     /* PEM: the CA of the clients' certificates (Azure
                                        Managed HSM's, for EKM's mutual TLS)          */
        } tls;
        struct {                     /* [provision.admin]                             */
                char *token_sha256;  /* "" = a token generated and shown once         */
                char *listen;        /* "" = the main listener                        */
        } admin;
        struct kwp_doc_key keys[KWP_DOC_MAX_KEYS];
        size_t n_keys;
        /* the XKS key stores: not in cfg (whose file the front reads) but
         * made in the key store, their credentials generated there */
        struct kwp_doc_store xks[KW_XKS_MAX_STORES];
        size_t n_xks;

        enum kwp_tpm2_policy tpm2;   /* decoded from unlock.tpm2                      */
        enum kwp_tls_mode tls_mode;  /* decoded from tls.mode                         */
        enum kwp_tls_key_type tls_key; /* decoded from tls.key_type                   */
        char warnings[KWP_DOC_MAX_WARNINGS][512];
        size_t n_warnings;
        /* private: the line each field was set on, for messages */
        uint32_t line_[64];
        uint32_t key_lines_[KWP_DOC_MAX_KEYS][8];
};

/*
 * The appliance's fixed settings, over which a document's server tables are
 * read: where the data volume is mounted (paths in [db], [hsm], [tls],
 * [admin] are under it) and the defaults of an appliance ([http] listen on
 * port 443).  data_dir: "/var/lib/keyward" in the image.
 */
struct kwp_doc_base {
        const char *data_dir;
        const char *softhsm_module;  /* NULL: KWP_SOFTHSM_MODULE                      */
        const char *tpm_tcti;        /* NULL: [attestation] tpm_tcti's default        */
};

/* With tpm2 = "signed" and no tpm2_pcrs, the volume is also sealed to PCR 12's
 * value at enrollment (docs/image.md): systemd-stub 252 replaces the UKI's
 * command line with the boot option's when Secure Boot is off and measures
 * that into PCR 12, not 11; a host could otherwise boot our UKI with another
 * root hash under the same PCR 11. */
#define KWP_SIGNED_LITERAL_PCRS "12"
/* the PCRs the appliance quotes (docs/attestation.md): the default's and 12 */
#define KWP_ATTEST_PCRS "0,1,2,3,4,7,11,12"
#define KWP_SOFTHSM_MODULE "/usr/lib/softhsm/libsofthsm2.so"
#define KWP_CLIENT_CA_FILE "client-ca.pem"   /* in data/etc/tls */
#define KWP_EVALUATION_TOKEN "keyward-evaluation"

/* Parses and checks text[0..len) (name is used in messages), the server's
 * configuration included (kw_config_validate, after the credentials left
 * out were made: kwp_doc_fill_credentials).  On failure *ret is NULL and
 * kw_err_detail() is "name:line: message". */
KW_MUST_USE kw_result kwp_doc_parse(const struct kwp_doc_base *base, const char *name,
                                    const char *text, size_t len, struct kwp_doc **ret);
void kwp_doc_free(struct kwp_doc *d);

/*
 * The XKS credentials left out of the configuration: each enabled store's
 * access key id (20 of A-Z and 2-7, starting "KW") and secret (44 base64
 * characters), from the OS's random source.  Then the whole configuration
 * is validated as keywardd would (kw_config_validate).
 */
KW_MUST_USE kw_result kwp_doc_fill_credentials(struct kwp_doc *d);

#endif
