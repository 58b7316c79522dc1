/*
 * luks2_check.h - what a LUKS2 header's JSON may say before keyward-unlock
 * uses it (docs/unlock.md, "The header is checked before use").
 *
 * The header is not authenticated: whoever controls the disk can rewrite
 * it, and Debian 12's libcryptsetup (2.6.1) predates the fix for the
 * "null cipher" attack, in which a rewritten header makes the guest write
 * its data in clear or under a key the host knows.  So the JSON is parsed
 * strictly (UTF-8, no duplicate member, which json-c and cJSON would read
 * differently) and checked against one expected shape, everything else
 * refused before any keyslot is tried:
 *   - no "cipher_null" anywhere;
 *   - one data segment "0": type crypt, the expected cipher, 512- or
 *     4096-byte sectors, no integrity, no flags;
 *   - keyslots of type luks2 only, each with the expected volume key size,
 *     its area under the expected cipher, a known KDF (pbkdf2 with sha256 or
 *     sha512 and at least 1000 iterations, argon2i/argon2id), the luks1
 *     anti-forensic splitter with 4000 stripes;
 *   - one digest, binding every keyslot to segment "0";
 *   - config: json_size matching the header, no flags, no requirements
 *     (e.g. a reencryption in progress);
 *   - tokens of known types only (systemd-tpm2, systemd-recovery, and our
 *     keyward-snp), each naming existing keyslots, with exactly the fields
 *     that type has;
 *   - every keyslot recorded by exactly one of them (enrollment writes one
 *     per keyslot), unless the caller allows it as an extra;
 *   - beside a systemd-tpm2 token, at most one keyward-tpm2-pcrs token for
 *     its keyslot: the values its literal PCRs had when sealed (exactly
 *     those PCRs), so that a refusal names which differ.  It is not a
 *     binding (kept on the systemd-tpm2 token as expected_token, not in
 *     tokens[]), and not trusted as such: tpm2_seal.c checks the values
 *     against the policy digest before it says they were expected.
 * Unknown members are refused at every level.
 */
#ifndef KWU_LUKS2_CHECK_H
#define KWU_LUKS2_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "../../server/common/buf.h"
#include "../../server/common/result.h"
#include "snp_key.h"

#define KWU_MAX_SLOTS 32          /* LUKS2 keyslots and tokens are 0..31 */
#define KWU_CIPHER_DEFAULT "aes-xts-plain64"
#define KWU_KEY_BYTES_DEFAULT 64u /* AES-256 in XTS mode: a 512-bit key */

struct kwu_expect {
        const char *cipher;       /* data and keyslot area cipher          */
        unsigned key_bytes;       /* volume key size                       */
        uint32_t extra_keyslots;  /* keyslots allowed without a token (bit n = slot n) */
        int repair_copies;        /* recover: header copies an interrupted update left
                                   * different are taken from the newest valid one
                                   * (kwu_hdr_parse_repair) */
};

/* The defaults above, no extra keyslot. */
void kwu_expect_default(struct kwu_expect *exp);

enum kwu_token_type {
        KWU_TOKEN_SYSTEMD_TPM2 = 1,
        KWU_TOKEN_SYSTEMD_RECOVERY,
        KWU_TOKEN_KEYWARD_SNP,
};

struct kwu_token {
        unsigned id;
        enum kwu_token_type type;
        uint32_t keyslots;          /* bit n = keyslot n                            */
        /* systemd-tpm2 only */
        uint32_t pcrs;              /* tpm2-pcrs: literal PCR policy                */
        uint32_t pubkey_pcrs;       /* tpm2_pubkey_pcrs: signed PCR policy          */
        int has_pubkey;             /* tpm2_pubkey present                          */
        int pin;                    /* tpm2-pin                                     */
        char bank[8];               /* tpm2-pcr-bank ("sha256" when absent)         */
        char primary_alg[4];        /* tpm2-primary-alg ("ecc" when absent)         */
        int has_expected;           /* a keyward-tpm2-pcrs token records its values */
        unsigned expected_token;    /* that token's id                              */
        /* keyward-snp only */
        struct kwu_snp_bind snp;
};

struct kwu_keyslot {
        unsigned id;
        char kdf[10];               /* pbkdf2, argon2i or argon2id                  */
        char kdf_hash[8];           /* pbkdf2's hash, "" for argon2                 */
        uint64_t kdf_cost;          /* pbkdf2 iterations, argon2 time cost          */
};

struct kwu_layout {
        unsigned nslots;
        struct kwu_keyslot slots[KWU_MAX_SLOTS];     /* by id, ascending */
        unsigned ntokens;
        struct kwu_token tokens[KWU_MAX_SLOTS];      /* by id, ascending */
        unsigned sector_size;
        uint64_t data_offset;       /* bytes                                         */
        char cipher[32];
};

/*
 * Checks the header JSON (json[0..len), hdr_size: the binary header's) as
 * described above.  On success fills *ret.  On failure returns
 * KW_ERR_LUKS_TAMPERED (or KW_ERR_NOMEM) with kw_err_detail() naming the
 * first thing refused and where; *ret is untouched.
 */
KW_MUST_USE kw_result kwu_check_json(const char *json, size_t len, uint64_t hdr_size,
                                     const struct kwu_expect *exp, struct kwu_layout *ret);

/*
 * A string field of token id from header JSON that kwu_check_json accepted
 * (e.g. "tpm2-blob"), copied NUL-terminated into out.  KW_ERR_NOT_FOUND
 * when absent, KW_ERR_TOO_LARGE past out's cap.
 */
KW_MUST_USE kw_result kwu_token_str(const char *json, size_t len, unsigned id, const char *field,
                                    struct kw_buf *out);

/*
 * The values keyward-tpm2-pcrs token id of header JSON (accepted by
 * kwu_check_json) records: *ret_mask which PCRs, out[i] PCR i's value.
 */
KW_MUST_USE kw_result kwu_token_pcr_values(const char *json, size_t len, unsigned id, uint32_t *ret_mask,
                                           uint8_t (*out)[32]);

/* "7+11" from a keyslot or PCR mask ("none" for 0). */
void kwu_mask_text(uint32_t m, char *out, size_t cap);

/* "systemd-tpm2" / "systemd-recovery" / "keyward-snp". */
const char *kwu_token_type_name(enum kwu_token_type t);

#endif
