/*
 * connlimit.h - the front's registry of open connections: a cap on
 * simultaneous connections per client address, and a watchdog that closes
 * idle connections when a listener runs short of worker threads.
 *
 * CivetWeb gives every connection a worker thread from the start of its TLS
 * handshake to its close, whether requests come or not; a client that opens
 * connections and sends nothing holds threads that others need.  So:
 * - every connection is registered when its handshake starts
 *   (kw_connlimit_open, in its worker thread, with its socket) and refused
 *   there when its peer address already has per_client connections in the
 *   same pool (a listener: the admin listener's clients are counted apart);
 * - it is busy while a request is handled (kw_connlimit_busy) and idle
 *   otherwise (kw_connlimit_idle: in the handshake, before the first
 *   request, between requests);
 * - when the registered connections of a pool (the worker threads of one
 *   CivetWeb context) reach 3/4 of its threads, the watchdog shuts down
 *   (shutdown(2), never close(2)) the connections of that pool idle for
 *   longer than idle_ms; their worker threads see the end of the stream
 *   and close them as usual;
 * - it is unregistered (kw_connlimit_close) before its socket is closed.
 *   Registration and unregistration take the registry lock, and so does the
 *   watchdog while it shuts sockets down: a registered fd is open and is the
 *   connection's, never a reused descriptor.
 *
 * A client address is an IPv4 address, or the /64 of an IPv6 address (one
 * host has a whole /64); an IPv4-mapped IPv6 address counts as its IPv4
 * address.
 */
#ifndef KW_CONNLIMIT_H
#define KW_CONNLIMIT_H

#include <stdint.h>

#include "../common/buf.h"
#include "../common/result.h"

#define KW_CONNLIMIT_POOLS 2

struct kw_connlimit;

struct kw_connlimit_cfg {
        int64_t per_client;                 /* connections per client address, >= 1 */
        int64_t idle_ms;                    /* idle time after which, under load, one is closed */
        int pools;                          /* 1..KW_CONNLIMIT_POOLS */
        int threads[KW_CONNLIMIT_POOLS];    /* worker threads of each pool, >= 1 */
};

/* A registry for cfg; the watchdog is not running yet.  KW_ERR_INPUT for a
 * cfg out of range, KW_ERR_NOMEM.  *ret owned by the caller (free below). */
KW_MUST_USE kw_result kw_connlimit_new(const struct kw_connlimit_cfg *cfg, struct kw_connlimit **ret);
/* Starts the watchdog thread: one kw_connlimit_sweep every period_ms (>= 1).
 * KW_ERR_INTERNAL when it cannot start or already runs. */
KW_MUST_USE kw_result kw_connlimit_start(struct kw_connlimit *cl, int64_t period_ms);
/* Stops the watchdog (waits for it) and frees.  NULL-safe.  No connection
 * may be opened or closed during or after the call. */
void kw_connlimit_free(struct kw_connlimit *cl);

/* A connection on the connected socket fd begins in pool, idle.  KW_OK with
 * *ret_slot (its handle); KW_ERR_OVERLOAD when its peer address has
 * per_client connections registered in pool already (counted in the metrics,
 * nothing registered: the caller refuses it); KW_ERR_IO when the peer
 * address cannot be read; KW_ERR_INTERNAL for a bad pool or fd, or no free
 * slot (more connections than threads).  *ret_slot untouched on failure. */
KW_MUST_USE kw_result kw_connlimit_open(struct kw_connlimit *cl, int pool, int fd, int *ret_slot);
/* A request is being handled on slot: the watchdog leaves it alone. */
void kw_connlimit_busy(struct kw_connlimit *cl, int slot);
/* slot waits for its next request from now on. */
void kw_connlimit_idle(struct kw_connlimit *cl, int slot);
/* slot's connection ends; call before its socket is closed.  slot < 0 is a no-op. */
void kw_connlimit_close(struct kw_connlimit *cl, int slot);

/* One watchdog pass: in every pool under load, shuts down the connections
 * idle for longer than idle_ms.  Returns how many it shut down. */
int kw_connlimit_sweep(struct kw_connlimit *cl);
/* Prometheus text of the registry (appended to out; all or nothing), every
 * sample labelled node="<node>" (a value that needs no escaping). */
KW_MUST_USE kw_result kw_connlimit_metrics(struct kw_connlimit *cl, const char *node,
                                           struct kw_buf *out);

#endif
