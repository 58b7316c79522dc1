/*
 * luks2_hdr.h - the LUKS2 on-disk header, read once into memory and
 * verified before anything trusts it (docs/unlock.md).
 *
 * A LUKS2 device starts with two copies of its header, each a 4096-byte
 * binary part and a JSON area, hdr_size bytes in all: the primary at 0, the
 * secondary at hdr_size.  Nothing in it is authenticated (a checksum is not
 * a MAC), so whoever controls the disk can rewrite it; what this module
 * guarantees is only that the copy in memory is self-consistent and that
 * the two on-disk copies agree.  What the JSON may say is luks2_check's.
 *
 * Stricter than libcryptsetup, on purpose: both copies must be valid, with
 * the same seqid and the same JSON (cryptsetup would silently repair one
 * from the other), the checksum must be SHA-256, and the JSON area must be
 * zero after the JSON text.
 */
#ifndef KWU_LUKS2_HDR_H
#define KWU_LUKS2_HDR_H

#include <stddef.h>
#include <stdint.h>

#include "../../server/common/result.h"

#define KWU_HDR_BIN 4096u                 /* binary part of one copy          */
#define KWU_HDR_MIN (16u * 1024u)         /* smallest hdr_size LUKS2 allows   */
#define KWU_HDR_MAX (4u * 1024u * 1024u)  /* largest                           */

struct kwu_hdr {
        uint64_t hdr_size;     /* one copy, binary + JSON area, bytes          */
        uint64_t seqid;        /* both copies carry this one                   */
        char uuid[40];         /* NUL-terminated                               */
        char label[48];        /* NUL-terminated, may be empty                 */
        char *json;            /* the JSON text, NUL-terminated (malloc)       */
        size_t json_len;       /* strlen(json)                                 */
        uint8_t *raw;          /* both copies as read, 2 * hdr_size bytes:
                                * what a later activation uses, so nothing can
                                * change between the check and the use        */
        size_t raw_len;
};

/*
 * Verifies the two header copies in buf (at least 2 * hdr_size bytes from
 * the start of the device).  On success fills *ret (free with
 * kwu_hdr_free).  Failures, with kw_err_detail() saying what and where:
 *   KW_ERR_LUKS_NOT_LUKS2  no LUKS2 magic or version, or buf too short;
 *   KW_ERR_LUKS_TAMPERED   a bad size, checksum, field or JSON area, or the
 *                          two copies disagree;
 *   KW_ERR_NOMEM.
 * *ret is untouched on failure.
 */
KW_MUST_USE kw_result kwu_hdr_parse(const uint8_t *buf, size_t len, struct kwu_hdr *ret);

/*
 * Reads both copies from fd (a block device or an image file) with pread,
 * then kwu_hdr_parse.  KW_ERR_DEVICE when the reads fail or come short of
 * the first copy's binary part; otherwise kwu_hdr_parse's results.
 */
KW_MUST_USE kw_result kwu_hdr_read_fd(int fd, struct kwu_hdr *ret);

/*
 * As kwu_hdr_parse, but a header whose copies differ because an update was
 * interrupted (docs/unlock.md, "Recovery") is taken from its newest valid
 * copy: both copies valid with different seqids (the higher wins), or only
 * one valid.  The other copy is rebuilt from it in *ret's raw bytes and
 * *repaired set; the result then passes every check kwu_hdr_parse makes.
 * Only recover uses it (the recovery key proves the operator), so that the
 * header it rewrites is the one an interrupted re-enrollment meant.
 * Copies with the same seqid and different contents stay refused.
 */
KW_MUST_USE kw_result kwu_hdr_parse_repair(const uint8_t *buf, size_t len, struct kwu_hdr *ret, int *repaired);
KW_MUST_USE kw_result kwu_hdr_read_fd_repair(int fd, struct kwu_hdr *ret, int *repaired);

/* Frees what kwu_hdr_parse filled; h may be NULL or zeroed. */
void kwu_hdr_free(struct kwu_hdr *h);

#endif
