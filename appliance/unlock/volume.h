/*
 * volume.h - the data volume through libcryptsetup, from a checked header
 * (docs/unlock.md).  The one place libcryptsetup is called; its errors are
 * converted here (STYLE.md 3).
 *
 * kwu_volume_open reads the header once (luks2_hdr), checks it
 * (luks2_check), and hands libcryptsetup a private copy of what was checked
 * (a memfd holding both header copies and the keyslot areas) as a detached
 * header, with the device as the data device: whatever the disk says after
 * the check, libcryptsetup never reads the disk's header.
 */
#ifndef KWU_VOLUME_H
#define KWU_VOLUME_H

#include <stddef.h>

#include "../../server/common/result.h"
#include "luks2_check.h"
#include "luks2_hdr.h"
#include "recovery_key.h"

struct kwu_volume;

/*
 * Opens device for unlocking: KW_ERR_DEVICE, KW_ERR_LUKS_NOT_LUKS2,
 * KW_ERR_LUKS_TAMPERED (also when libcryptsetup reads the checked copy
 * differently from us), KW_ERR_NOMEM, KW_ERR_IO (libcryptsetup failed).
 * Free with kwu_volume_close.
 */
KW_MUST_USE kw_result kwu_volume_open(const char *device, const struct kwu_expect *exp, struct kwu_volume **ret);
void kwu_volume_close(struct kwu_volume *v);

const struct kwu_hdr *kwu_volume_header(const struct kwu_volume *v);
const struct kwu_layout *kwu_volume_layout(const struct kwu_volume *v);
/* With exp->repair_copies: 1 when the disk's two header copies differed
 * and the checked copy is the newest valid one (kwu_volume_commit writes
 * both); 0 otherwise. */
int kwu_volume_repaired(const struct kwu_volume *v);

/*
 * Tries pass[0..n) on keyslot.  name NULL: nothing is activated (the
 * activation-free check, which needs no device-mapper); otherwise
 * /dev/mapper/<name> is set up.  KW_ERR_AUTH when the key does not open
 * that keyslot; KW_ERR_IO for anything else libcryptsetup refuses.
 */
KW_MUST_USE kw_result kwu_volume_unlock(struct kwu_volume *v, int keyslot, const char *pass, size_t n,
                                        const char *name);

/* A keyslot to add beside the recovery one (a TPM2 or SEV-SNP binding):
 * its number, passphrase, the token JSON recording it, and optionally a
 * second token about it (keyward-tpm2-pcrs). */
struct kwu_extra_slot {
        int keyslot;
        const char *pass;
        size_t pass_len;
        const char *token_json;
        const char *token2_json;    /* NULL: none */
};

/*
 * Formats device as the data volume: LUKS2, aes-xts-plain64 with a
 * 512-bit random volume key, 4096-byte sectors, label "keyward-data", UUID
 * uuid (NULL: a random one; given when a binding derives its passphrase
 * from it).  The device must be blank (its first MiB all zeros) and at
 * least 32 MiB.  Adds the recovery keyslot 0 (PBKDF2-SHA512, 1000
 * iterations: the key carries 256 bits of entropy) recorded by a
 * systemd-recovery token, and each of the nextra keyslots (same KDF), and
 * writes the recovery key to recovery_out.  Before returning it opens the
 * volume again through kwu_volume_open and checks that every key opens it.
 * On failure after formatting began, the header area is zeroed so that a
 * retry starts from a blank device again.
 * KW_ERR_EXISTS when the device is not blank; KW_ERR_DEVICE, KW_ERR_IO.
 */
KW_MUST_USE kw_result kwu_volume_format(const char *device, const char *uuid, const struct kwu_extra_slot *extra,
                                        size_t nextra, char recovery_out[KWU_RECOVERY_KEY_LEN + 1]);

/*
 * Re-enrollment (docs/unlock.md, "Recovery"): keyslots added and removed on
 * the checked copy through libcryptsetup, then written to the device by
 * kwu_volume_commit.  kwu_volume_free_slots: the n lowest unused keyslot
 * numbers (KW_ERR_TOO_LARGE when fewer are free).  kwu_volume_add: a
 * keyslot add->keyslot opened by add->pass, unlocked with key (an existing
 * keyslot's passphrase: KW_ERR_AUTH when it opens none), PBKDF2 as at
 * format time, and add->token_json (and token2_json) as new tokens.
 * kwu_volume_remove: the binding token tok records and its keyslot (the
 * area wiped), with the keyward-tpm2-pcrs token beside it.
 */
KW_MUST_USE kw_result kwu_volume_free_slots(struct kwu_volume *v, int *slots, size_t n);
KW_MUST_USE kw_result kwu_volume_add(struct kwu_volume *v, const char *key, size_t key_len,
                                     const struct kwu_extra_slot *add);
KW_MUST_USE kw_result kwu_volume_remove(struct kwu_volume *v, const struct kwu_token *tok);

enum kwu_commit {
        KWU_COMMIT_AREAS_FIRST,     /* after adding keyslots   */
        KWU_COMMIT_HEADERS_FIRST,   /* after removing keyslots */
};

/*
 * Writes what changed on the copy to the device: only when the changed
 * header passes every check an open makes (else KW_ERR_INTERNAL) and the
 * disk still holds exactly what was checked (else KW_ERR_LUKS_TAMPERED,
 * nothing written).  Changed blocks only, each group synced: the keyslot
 * areas, the primary and the secondary header copy in the order given, so
 * that an interruption leaves the old or the new bindings usable (between
 * the two copies, the copies differ and open refuses the volume until
 * recover rewrites them).  Afterwards the volume's header and layout are
 * the new ones.  KW_ERR_DEVICE when the device cannot be written.
 */
KW_MUST_USE kw_result kwu_volume_commit(struct kwu_volume *v, enum kwu_commit order);

#endif
