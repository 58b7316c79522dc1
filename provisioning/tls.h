/*
 * tls.h - the appliance's TLS key and certificate at first boot, for the
 * provisioning document's three TLS modes (docs/provisioning.md, "TLS").
 *
 *   self-signed  a key made here and a self-signed certificate for the names
 *   csr          the same, plus a PKCS#10 request (csr.pem) for the
 *                customer's CA; the self-signed certificate is served until
 *                the customer installs the signed one as cert.pem
 *   supplied     the customer's chain and key, checked and installed
 *
 * Files, all in req->dir (which must exist; this module never creates or
 * chowns it):
 *   key.pem   the private key, PKCS#8 PEM, unencrypted, mode 0600
 *   cert.pem  what the server serves: the leaf, then the rest of the chain
 *             (supplied mode), mode 0644
 *   csr.pem   csr mode: the request, mode 0644
 * The files are owned by the calling user; giving them to the server's user
 * is the caller's step.
 *
 * Idempotent and resumable: every file is written whole or not at all (a
 * temporary file in the directory, created O_EXCL, fsync, rename, fsync of
 * the directory), and a run killed at any point is finished by running again
 * with the same request; the temporary files a killed run leaves are removed.
 *   - key.pem is never overwritten (not even by a file that appears while
 *     the key is made: the rename refuses to replace).  When it exists it is
 *     reused, its mode brought back to 0600.  When it is not one unencrypted
 *     private key (the PEM blocks a supplied key may have, below), holds
 *     another key type than asked, or (supplied) another key than the one
 *     supplied, kwp_tls_ensure fails with KW_ERR_EXISTS and writes nothing:
 *     removing it is an operator's decision.
 *   - cert.pem is kept when it is currently valid, for key.pem's key, and
 *     names every requested name in its subjectAltNames (a self-issued one,
 *     such as the ones made here, exactly those names, and the first as its
 *     CN); otherwise it is replaced (supplied: kept only when it already
 *     holds exactly the supplied chain).  So a certificate the customer's
 *     CA signed for the request is kept by later runs of csr mode.
 *   - csr.pem is kept when it is for key.pem's key, its signature holds and
 *     it asks for exactly the requested names; otherwise it is replaced.
 * A changed validity in the request does not replace a certificate that is
 * kept; a changed key type is refused (above).
 *
 * Nothing here logs: failures set kw_err_set_detail() (naming the file,
 * entry or date at fault), and warnings come back in the result for the
 * caller to log.  No private key byte reaches a message.  Private keys in
 * memory are held by OpenSSL (its secure heap when kw_secret_init ran) and
 * every buffer that held one is wiped.
 */
#ifndef KWP_TLS_H
#define KWP_TLS_H

#include <stddef.h>

#include "../server/common/result.h"

#define KWP_TLS_KEY_FILE "key.pem"
#define KWP_TLS_CERT_FILE "cert.pem"
#define KWP_TLS_CSR_FILE "csr.pem"

#define KWP_TLS_MAX_NAMES 32
#define KWP_TLS_NAME_MAX 253            /* characters of a DNS name */
#define KWP_TLS_DEFAULT_DAYS 825        /* Apple's limit for a TLS server certificate */
#define KWP_TLS_MAX_DAYS 3650
#define KWP_TLS_PEM_MAX (64u * 1024u)   /* a supplied PEM, or a file read back */
#define KWP_TLS_MAX_CHAIN 8             /* certificates in a supplied chain */
#define KWP_TLS_FINGERPRINT_SIZE 96     /* "AB:CD:...": 32 bytes as 95 characters, NUL */
#define KWP_TLS_WARNING_MAX 1024

enum kwp_tls_mode {
        KWP_TLS_SELF_SIGNED = 1,
        KWP_TLS_CSR,
        KWP_TLS_SUPPLIED,
};

enum kwp_tls_key_type {
        KWP_TLS_KEY_EC_P256 = 0,        /* the default */
        KWP_TLS_KEY_EC_P384,
        KWP_TLS_KEY_RSA_2048,
        KWP_TLS_KEY_RSA_3072,
        KWP_TLS_KEY_RSA_4096,
};

struct kwp_tls_req {
        const char *dir;                /* existing directory for the files above */
        enum kwp_tls_mode mode;
        /* DNS names (RFC 1123 labels; "*." as the whole first label allowed)
         * and IPv4/IPv6 literals, 1..KWP_TLS_MAX_NAMES, no repeats; DNS names
         * are written in lower case.  The first is the CN of what is made here
         * (no CN when it is longer than 64: then the subjectAltName extension
         * is critical, RFC 5280 4.2.1.6). */
        const char *const *names;
        size_t n_names;
        /* self-signed and csr: the key made when key.pem does not exist, and
         * the days a certificate made here is valid (0: KWP_TLS_DEFAULT_DAYS;
         * 1..KWP_TLS_MAX_DAYS).  Not used in supplied mode. */
        enum kwp_tls_key_type key_type;
        unsigned days;
        /* supplied only (NULL otherwise): PEM, at most KWP_TLS_PEM_MAX bytes
         * each.  The chain holds only CERTIFICATE blocks, the leaf first, at
         * most KWP_TLS_MAX_CHAIN; the key one unencrypted private key
         * (PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY; an EC PARAMETERS
         * block beside it is allowed): RSA of 2048 bits or more, or EC P-256,
         * P-384 or P-521.  Both are re-encoded, never copied as given.  The
         * key's bytes are the caller's to wipe. */
        const char *chain_pem;
        size_t chain_len;
        const char *key_pem;
        size_t key_len;
};

enum kwp_tls_action {
        KWP_TLS_UNUSED = 0,             /* not a file of this mode: not looked at */
        KWP_TLS_KEPT,                   /* was there and fits: left as it was */
        KWP_TLS_CREATED,                /* was not there: written */
        KWP_TLS_REPLACED,               /* was there and did not fit: rewritten (cert.pem, csr.pem) */
};

struct kwp_tls_result {
        enum kwp_tls_action key, cert, csr;
        /* supplied: 1 when every requested name is covered by the leaf's
         * subjectAltNames (X509_check_host/_ip rules, so a wildcard covers
         * one label), 0 when not (the warning lists them).  Otherwise 1. */
        int names_covered;
        /* SHA-256 of the leaf of cert.pem, as kwp_tls_fingerprint gives it */
        char fingerprint[KWP_TLS_FINGERPRINT_SIZE];
        /* "" or sentences, separated by "; ", for the caller to log at
         * warning level: names not covered, a supplied chain out of order or
         * expiring within 30 days, why a file was replaced. */
        char warning[KWP_TLS_WARNING_MAX];
};

/* "self-signed", "csr", "supplied" into *ret.  KW_ERR_BAD_FIELD otherwise
 * (the detail quotes it). */
KW_MUST_USE kw_result kwp_tls_mode_parse(const char *s, enum kwp_tls_mode *ret);
/* "ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096" into *ret.
 * KW_ERR_BAD_FIELD otherwise. */
KW_MUST_USE kw_result kwp_tls_key_type_parse(const char *s, enum kwp_tls_key_type *ret);
/* The names above; "?" for a value out of range.  Never NULL. */
const char *kwp_tls_mode_name(enum kwp_tls_mode m);
const char *kwp_tls_key_type_name(enum kwp_tls_key_type t);
/* "unused", "kept", "created", "replaced". */
const char *kwp_tls_action_name(enum kwp_tls_action a);

/*
 * Checks names[0..n) as kwp_tls_ensure does, so that a document can be
 * refused before any step runs.  KW_ERR_BAD_FIELD with a detail naming the
 * first bad entry (printable characters only, shortened) and why: an empty
 * list, more than KWP_TLS_MAX_NAMES, an empty or over-long name, a label
 * that is empty, over 63 characters, starts or ends with '-' or holds
 * another character than letters, digits and '-', a '*' anywhere but as a
 * whole first label followed by two labels or more, a last label of digits
 * only (an IPv4 address inet_pton refuses), an IPv6 literal inet_pton
 * refuses (a zone "%eth0" included), a trailing dot, a name given twice
 * (DNS names compared without case, addresses as addresses).
 */
KW_MUST_USE kw_result kwp_tls_check_names(const char *const *names, size_t n);

/*
 * Makes the directory hold what req asks for (see the top of this file).
 * On success *ret says what was done with each file, the served leaf's
 * fingerprint and any warning; on failure *ret is untouched, the detail
 * says why, and the files already completed stay (the next run resumes):
 *   KW_ERR_BAD_FIELD  the request (names, days, mode, key type, PEM given
 *                     or missing for the mode), or the supplied chain or key:
 *                     not PEM of the kinds above, encrypted, too weak, the
 *                     leaf's key not the private key, the leaf not valid yet
 *                     or expired (the detail gives the date, UTC), an
 *                     extendedKeyUsage without serverAuth, a keyUsage
 *                     without digitalSignature
 *   KW_ERR_TOO_LARGE  a supplied PEM, or a file found there, past KWP_TLS_PEM_MAX
 *   KW_ERR_EXISTS     key.pem exists and is not a key to reuse (see above),
 *                     or a file name is taken by something not a regular file
 *   KW_ERR_IO         the directory or a file cannot be opened, read, written
 *   KW_ERR_CRYPTO, KW_ERR_RANDOM, KW_ERR_NOMEM
 */
KW_MUST_USE kw_result kwp_tls_ensure(const struct kwp_tls_req *req, struct kwp_tls_result *ret);

/*
 * SHA-256 of the DER of the first certificate in pem[0..len), as upper-case
 * hex bytes separated by ':' (what `openssl x509 -fingerprint -sha256`
 * prints after "sha256 Fingerprint="), into ret.  KW_ERR_BAD_FIELD when
 * pem holds no certificate, KW_ERR_TOO_LARGE past KWP_TLS_PEM_MAX; ret is
 * set only on success.
 */
KW_MUST_USE kw_result kwp_tls_fingerprint(const char *pem, size_t len, char ret[KWP_TLS_FINGERPRINT_SIZE]);

#endif
