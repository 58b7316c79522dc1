/*
 * spawn.h - the programs provisioning runs (keyward-unlock, keywardd,
 * systemctl, mkfs): a fixed argv (no shell), a clean environment, bounded
 * in time, optionally as another user, stdout captured for the caller
 * (a recovery key: wiped by kw_buf_free), stderr passed through.
 */
#ifndef KWP_SPAWN_H
#define KWP_SPAWN_H

#include <stddef.h>

#include "../server/common/buf.h"
#include "../server/common/result.h"

struct kwp_spawn {
        const char *const *argv;     /* argv[0]: an absolute path                     */
        const char *const *env;      /* NAME=VALUE, NULL-terminated, added to PATH=   */
        const char *user;            /* run as this user and its groups; NULL: as we  */
        unsigned timeout_ms;         /* killed (SIGKILL) past it                      */
};

/*
 * Runs sp->argv[0] and waits.  *ret_status: the exit status, or 128 + the
 * signal.  out (NULL: stdout to /dev/null) gets stdout, at most its max.
 * KW_ERR_IO past the time (the process killed; the detail says so) or
 * when it cannot start; a non-zero exit status is not an error here.
 */
KW_MUST_USE kw_result kwp_spawn_run(const struct kwp_spawn *sp, struct kw_buf *out, int *ret_status);

#endif
