/*
 * ovf.h - the provisioning document in Azure's ovf-env.xml (the
 * "custom data" of a VM, on its provisioning CD-ROM; docs/provisioning.md).
 *
 * Not an XML parser: a strict scanner for the one element read, the
 * CustomData element of any namespace prefix, whose text is the document
 * in base64.  The file also carries things never to be read (a user
 * password, for one), so nothing else is taken from it.  Refused rather
 * than guessed: a DOCTYPE (entities), CustomData twice, anything but
 * base64 and white space inside it (a nested element, CDATA, an entity
 * reference), an unterminated comment, tag or element.
 */
#ifndef KWP_OVF_H
#define KWP_OVF_H

#include <stddef.h>

#include "../server/common/buf.h"
#include "../server/common/result.h"

#define KWP_OVF_MAX (256u * 1024u)   /* the largest ovf-env.xml read */

/*
 * Decodes the CustomData of xml[0..len) into out (reset first; the caller
 * wipes it).  KW_ERR_NOT_FOUND when there is no CustomData element or it is
 * empty; KW_ERR_BAD_FIELD (the detail says what) for everything refused
 * above or text that is not base64; KW_ERR_TOO_LARGE past KWP_OVF_MAX.
 */
KW_MUST_USE kw_result kwp_ovf_custom_data(const char *xml, size_t len, struct kw_buf *out);

#endif
