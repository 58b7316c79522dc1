/*
 * sdproto.h - the two systemd protocols keywardd speaks when systemd starts
 * its processes one unit each (docs/appliance-units.md): readiness
 * (sd_notify: a "READY=1" datagram to $NOTIFY_SOCKET) and socket activation
 * ($LISTEN_PID / $LISTEN_FDS, the first passed descriptor being 3).  Written
 * from the protocol as systemd documents it (sd_notify(3),
 * sd_listen_fds(3)), without libsystemd.
 */
#ifndef KW_SDPROTO_H
#define KW_SDPROTO_H

#include "result.h"

/*
 * Sends "READY=1" to $NOTIFY_SOCKET: an absolute path, or an abstract
 * address written with a leading '@'.  KW_OK when sent, or when
 * NOTIFY_SOCKET is unset or empty (nobody waits: nothing to do).
 * KW_ERR_CONFIG (with a detail) for an address that is neither, KW_ERR_IO
 * when the datagram cannot be sent.  Uses socket(AF_UNIX) and sendto only:
 * callable inside either process's seccomp sandbox.
 */
KW_MUST_USE kw_result kw_sd_notify_ready(void);

/*
 * The listening socket systemd passed for path, if any.  *ret_fd = -1 and
 * KW_OK when nothing was passed to this process ($LISTEN_PID unset or
 * another process's).  When one was: it must be exactly one descriptor, a
 * listening AF_UNIX stream socket bound to path (KW_ERR_CONFIG with a
 * detail otherwise); it is made close-on-exec, the LISTEN_* variables are
 * removed from the environment, and *ret_fd is 3.  The caller owns it.
 */
KW_MUST_USE kw_result kw_sd_listen_fd(const char *path, int *ret_fd);

#endif
