/*
 * recovery_key.h - the data volume's recovery key, in systemd's format
 * (systemd-cryptenroll --recovery-key), so that the same key opens the
 * volume with systemd's tools too.
 *
 * 32 random bytes written as 64 "modhex" characters (the alphabet
 * cbdefghijklnrtuv, which reads the same on most keyboard layouts) in 8
 * groups of 8 joined by '-': 71 characters, which are the keyslot's
 * passphrase as they are.  Generated at enrollment, shown once, never
 * stored on the machine.
 */
#ifndef KWU_RECOVERY_KEY_H
#define KWU_RECOVERY_KEY_H

#include <stddef.h>

#include "../../server/common/result.h"

#define KWU_RECOVERY_KEY_LEN 71     /* without the NUL */

/* A new key in out (NUL-terminated).  KW_ERR_RANDOM without randomness;
 * out is wiped on failure. */
KW_MUST_USE kw_result kwu_recovery_key_new(char out[KWU_RECOVERY_KEY_LEN + 1]);

/*
 * The canonical form of a key as typed: letters of either case, with or
 * without the dashes, spaces and tabs anywhere, one trailing newline.
 * KW_ERR_BAD_ENCODING when it is not 64 modhex characters (out wiped).
 */
KW_MUST_USE kw_result kwu_recovery_key_normalize(const char *in, size_t n, char out[KWU_RECOVERY_KEY_LEN + 1]);

#endif
