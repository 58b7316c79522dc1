/*
 * custody.h - the key custody process: the only process that opens the key
 * store, talks to the HSM and sees key bytes.  It answers the fixed request
 * table of proto.h on a Unix socket.
 */
#ifndef KW_CUSTODY_H
#define KW_CUSTODY_H

#include "../config.h"

/*
 * Runs the custody process until SIGTERM/SIGINT.  Start-up failures (HSM,
 * database key, database) are logged as one actionable line and returned as
 * a non-zero exit status: 3 configuration/file, 4 HSM, 5 database.  When
 * ready_fd >= 0, one byte is written to it once the socket accepts requests.
 */
int kw_custody_main(const struct kw_config *cfg, int ready_fd);

#endif
