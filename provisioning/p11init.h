/*
 * p11init.h - the HSM link at provisioning: a PKCS#11 module, a token and
 * its PIN.  With evaluation = true, a local SoftHSM2 token is initialised
 * (the module reads its token directory from SOFTHSM2_CONF, which the
 * caller sets first); otherwise the customer's module, token and PIN must
 * log in.  The master key itself is made by keywardd --init, as custody's
 * first start would (one code path for it).
 */
#ifndef KWP_P11INIT_H
#define KWP_P11INIT_H

#include "../server/common/result.h"

/* Initialises a token labelled `label` in a free slot with these PINs,
 * unless a token with that label exists already (a run resumed), which
 * must then accept `pin`.  KW_ERR_HSM_MODULE, KW_ERR_HSM_TOKEN (no free
 * slot), KW_ERR_HSM_PIN, KW_ERR_HSM. */
KW_MUST_USE kw_result kwp_p11_init_token(const char *module, const char *label, const char *so_pin,
                                         const char *pin);

/* The module loads, a token labelled `label` is present, and a user
 * session logs in with `pin`. */
KW_MUST_USE kw_result kwp_p11_check_login(const char *module, const char *label, const char *pin);

#endif
