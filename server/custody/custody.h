/*
 * custody.h - the key custody process: the only process that opens the key
 * store, talks to the HSM and sees key bytes.  It answers the fixed request
 * table of proto.h on a Unix socket.
 */
#ifndef KW_CUSTODY_H
#define KW_CUSTODY_H

#include "../config.h"

#include <sys/types.h>

#include "../common/result.h"

struct kw_custody_start {
        int ready_fd;         /* one byte is written to it once serving; -1: none     */
        int control_fd;       /* the parent's "front <pid> <uid>\n" lines; -1: none  */
        pid_t front_pid;      /* the process allowed to connect until told otherwise */
        uid_t front_uid;      /* and its user                                        */
        int standalone;       /* 1: started on its own (a systemd unit, no parent):  */
                              /* the peer is any process of the [front] user, which  */
                              /* must differ from the [custody] user; the socket may */
                              /* come from systemd; readiness goes to NOTIFY_SOCKET; */
                              /* front_pid/front_uid and the fds are not used        */
};

/*
 * Runs the custody process until SIGTERM/SIGINT: as [custody] user when
 * started as root (sandbox.h), serving only the front (st).  Standalone,
 * refuses to start (2) when the [front] user is the [custody] user, and the
 * secure heap must be locked even when not started as root.  Start-up
 * failures (users, HSM, database key, database) are logged as one
 * actionable line and returned as a non-zero exit status: 2 users,
 * 3 configuration/file/sandbox, 4 HSM, 5 database.
 */
int kw_custody_main(struct kw_config *cfg, const struct kw_custody_start *st);

/*
 * keywardd --recover-admin: opens the key store as the custody process
 * does, creates a new admin token in [admin] token_file, audited as
 * "console:<console_user>".  0, or the exit status of kw_custody_main.
 */
int kw_custody_recover_admin(struct kw_config *cfg, const char *console_user);

/*
 * keywardd --init: creates the key store when it does not exist yet, then
 * returns without serving.  As the custody process does (same user: as
 * root it becomes [custody] user first, so the files it makes are that
 * user's; same HSM; the same open_store, so a master key is made only when
 * neither the database nor its key file exists and [hsm] create_master_key
 * is true): the master key, the database key file, the database, the first
 * admin token (ensure_first_token: [admin] initial_token_sha256, else a
 * token written to [admin] token_file); then it opens the store again as
 * the next start will.  On an existing store it creates nothing.  Prints
 * one line to stdout, no secret in it:
 *   {"master_key":"created"|"found","database":"created"|"found",
 *    "admin":"token_file"|"initial_token_sha256"|"exists"}
 * 0, or the exit status of kw_custody_main (2 users, 3 secure memory,
 * privileges, the token file or stdout, 4 HSM, 5 database), with one
 * startup_failed log line saying why.
 */
int kw_custody_init(struct kw_config *cfg);

/* Attestation (custody_attest.c): reads the server certificate and sets up
 * the evidence collector; called before privileges are dropped.  Failures
 * only make attestation unavailable (logged). */
KW_MUST_USE kw_result kw_custody_attest_prepare(const struct kw_config *cfg);

#endif
