/*
 * xks_format.h - the AWS XKS ciphertext format, owned by the custody process
 * in both directions (docs/xks.md):
 *
 *   ciphertextMetadata  = "kwv1:" + decimal key version (1..4294967295,
 *                         no leading zero), at most 15 bytes (XKS: <= 20)
 *   AES-GCM AAD         = u16be(len(AAD)) || AAD || u8(len(md)) || md
 *   CDIV                = SHA-256(AAD || md || IV || ciphertext || tag)
 *
 * Binding the metadata into the AAD makes any change to it (or to the AAD)
 * an authentication failure, and the version in it lets rotated keys keep
 * decrypting what older versions encrypted.
 */
#ifndef KW_XKS_FORMAT_H
#define KW_XKS_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"

#define KW_XKS_MD_PREFIX "kwv1:"
#define KW_XKS_MD_MAX 20            /* ciphertextMetadata we accept to parse */
#define KW_XKS_AAD_MAX 65535        /* u16be length                          */

/* Writes the metadata of version into out (>= 16 bytes); returns its length. */
size_t kw_xks_md_format(uint32_t version, char out[16]);
/* The version in a metadata value; KW_ERR_DECRYPT when it is not ours. */
KW_MUST_USE kw_result kw_xks_md_parse(const uint8_t *md, size_t n, uint32_t *ret_version);
/* Appends the bound AAD to out.  KW_ERR_TOO_LARGE past the u16/u8 lengths. */
KW_MUST_USE kw_result kw_xks_aad_bind(const uint8_t *aad, size_t aad_len, const uint8_t *md,
                                      size_t md_len, struct kw_buf *out);
/* CDIV (raw 32 bytes). */
KW_MUST_USE kw_result kw_xks_cdiv(const uint8_t *aad, size_t aad_len, const uint8_t *md,
                                  size_t md_len, const uint8_t *iv, size_t iv_len,
                                  const uint8_t *ct, size_t ct_len, const uint8_t *tag,
                                  size_t tag_len, uint8_t ret[32]);

#endif
