/*
 * source.h - where keyward-provision finds its provisioning document
 * (docs/provisioning.md, "Input").
 *
 * First found wins, in this order: a local file; a NoCloud config disk
 * (a file system labelled CIDATA holding user-data); Azure's provisioning
 * CD-ROM (ovf-env.xml, its CustomData: ovf.h); the instance metadata of
 * AWS (IMDSv2: a session token PUT first, then user-data with it), Azure
 * (IMDS userData, base64, with "Metadata: true") and GCP (attributes/
 * user-data with "Metadata-Flavor: Google", and only from a server that
 * answers with that header too).  A source "has" a document when it
 * answers 200 with a non-empty body; 404 or an empty body means this cloud
 * has no user data (the next source is tried); a connection failure, a
 * timeout or another status is retried a bounded number of times, then
 * counts as absent.  Each source's base URL is configurable ("" turns it
 * off) so that tests point it at a loopback stub, and each device path
 * (media.h) so that they point it at a loop device.
 *
 * HTTP only (the metadata services are link-local and plain HTTP), no
 * proxy from the environment, no redirect followed, at most
 * KWP_DOC_MAX bytes.  The document may hold secrets (when the document
 * allows them): it is returned in a kw_buf the caller wipes, and never
 * logged; what is logged is which source answered and how each failed.
 */
#ifndef KWP_SOURCE_H
#define KWP_SOURCE_H

#include <stddef.h>

#include "../server/common/buf.h"
#include "../server/common/result.h"

#define KWP_DOC_MAX (64u * 1024u)   /* Azure's user data limit; AWS allows 16 KiB */

#define KWP_AWS_URL "http://169.254.169.254"
#define KWP_AZURE_URL "http://169.254.169.254"
#define KWP_GCP_URL "http://metadata.google.internal"
#define KWP_NOCLOUD_DEVICE "/dev/disk/by-label/CIDATA"
#define KWP_OVF_DEVICE "/dev/sr0"

enum kwp_source_kind {
        KWP_SRC_NONE = 0,
        KWP_SRC_FILE,
        KWP_SRC_NOCLOUD,
        KWP_SRC_AZURE_OVF,
        KWP_SRC_AWS,
        KWP_SRC_AZURE,
        KWP_SRC_GCP,
};

struct kwp_sources {
        const char *file;          /* NULL or "": none                         */
        const char *nocloud_device;/* NULL or "": that source is off            */
        const char *ovf_device;
        const char *aws_url;       /* base URLs; NULL or "": that source is off */
        const char *azure_url;
        const char *gcp_url;
        unsigned timeout_ms;       /* per request (connect included)           */
        unsigned attempts;         /* per source, at least 1                   */
        unsigned backoff_ms;       /* before the second attempt; doubles       */
};

/* The defaults above: every source on, no file, 2 s, 3 attempts, 250 ms. */
void kwp_sources_default(struct kwp_sources *s);

/* "file", "nocloud", "azure-ovf", "aws-imds", "azure-imds", "gcp-metadata",
 * "none". */
const char *kwp_source_name(enum kwp_source_kind k);

/*
 * Tries the sources in order; the first document found goes into doc
 * (reset first) and its source into *which.  KW_ERR_NOT_FOUND when none
 * has one (kw_err_detail() says what each answered); KW_ERR_TOO_LARGE for
 * a document past KWP_DOC_MAX; KW_ERR_BAD_FIELD for Azure user data that
 * is not base64; KW_ERR_IO for a local file that exists but cannot be read.
 * A source that answers with a document stops the search even when the
 * document turns out unusable: the next source is never a fallback for a
 * bad document.
 */
KW_MUST_USE kw_result kwp_fetch(const struct kwp_sources *s, struct kw_buf *doc, enum kwp_source_kind *which);

#endif
