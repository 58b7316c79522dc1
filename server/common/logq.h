/*
 * logq.h - the log writer: a bounded queue of whole log lines and one thread
 * that writes them to a descriptor in batches (issue 11).
 *
 * A producer (any thread) hands over one complete line, ending in '\n':
 * one lock, one memcpy, and a wake-up of the writer only when it sleeps
 * with nothing queued, when the queue passes its high-water mark, or for
 * an urgent line.  The writer waits up to flush_ms for more lines to
 * gather, takes the whole queue at once (two buffers, swapped under the
 * lock) and writes it with as few write(2) calls as whole lines allow:
 *
 *   - regular file: the whole batch in one write (appends to a file are
 *     atomic, so lines of other processes sharing it stay whole);
 *   - anything else (pipe, journald's stream socket, terminal): writes of
 *     at most PIPE_BUF bytes of whole lines, the size up to which a write
 *     to a pipe is atomic, so that a line never mixes with one that
 *     another process (the parent, custody) writes to the same stderr.
 *     A single line longer than that is written alone.
 *
 * Bounded memory: two buffers of cfg->cap bytes.  A line pushed with
 * KW_LOGQ_MAY_DROP is dropped and counted when the queue holds more than
 * cap - reserve bytes; the writer then writes a line of its own (cfg->report)
 * at most once per report_ms and when it stops.  A line pushed with
 * KW_LOGQ_KEEP may use the reserve too, and when even that is full its
 * producer waits until the writer has taken the queue (back-pressure):
 * such a line is never dropped.
 *
 * Order: lines are written in the order they were pushed (so per thread);
 * a line is never split, and never interleaved with another line of this
 * queue.
 *
 * The writer thread makes only these system calls: futex, clock_gettime,
 * write, poll (a descriptor set non-blocking by someone else),
 * rt_sigprocmask and prctl(PR_SET_NAME) at its start: all allowed by the
 * front's and custody's seccomp filters (sandbox.c).
 */
#ifndef KW_LOGQ_H
#define KW_LOGQ_H

#include <stddef.h>
#include <stdint.h>

#include "result.h"

struct kw_logq;

struct kw_logq_cfg {
        int fd;                 /* where lines go; not closed by the queue */
        size_t cap;             /* bytes per buffer (there are two); > reserve */
        size_t reserve;         /* bytes of cap that only KW_LOGQ_KEEP lines may use */
        unsigned flush_ms;      /* how long a queued line may wait for others, 1..1000 */
        unsigned report_ms;     /* at most one drop report per this period */
        /* Formats the drop report ("n lines dropped") into out[0..outsz),
         * one line ending in '\n'; returns its length, 0 for none.  Runs on
         * the writer thread: it must not log. */
        size_t (*report)(uint64_t n, char *out, size_t outsz);
};

enum kw_logq_mode { KW_LOGQ_MAY_DROP = 0, KW_LOGQ_KEEP = 1 };

enum kw_logq_push_result {
        KW_LOGQ_QUEUED = 0,     /* will be written */
        KW_LOGQ_DROPPED,        /* MAY_DROP line over the bound: counted */
        KW_LOGQ_NOT_TAKEN,      /* the writer has stopped, or the line is longer
                                 * than cap: the caller writes it itself */
};

/* Allocates the queue and starts its writer thread.  Every thread created
 * afterwards inherits nothing from it; the writer blocks every signal.
 * Fails with KW_ERR_CONFIG on a bad cfg, KW_ERR_NOMEM, KW_ERR_INTERNAL
 * when the thread cannot start; *ret is set on success only. */
KW_MUST_USE kw_result kw_logq_start(const struct kw_logq_cfg *cfg, struct kw_logq **ret);

/* Queues line[0..n), which must be one whole line ending in '\n'. */
enum kw_logq_push_result kw_logq_push(struct kw_logq *q, const void *line, size_t n,
                                      enum kw_logq_mode mode);

/* Has the writer write everything queued (and a last drop report), then
 * stop.  Waits at most timeout_ms (a reader that does not read would
 * otherwise hold the caller forever).  Returns 0 when the writer has
 * finished and exited (kw_logq_free may follow), -1 when it is still
 * blocked in a write at the deadline (then the queue must not be freed).
 * Pushes after the writer finished return KW_LOGQ_NOT_TAKEN.  Call once. */
int kw_logq_stop(struct kw_logq *q, unsigned timeout_ms);

/* Frees a queue whose kw_logq_stop returned 0, when no thread pushes to it
 * any more.  NULL-safe. */
void kw_logq_free(struct kw_logq *q);

/* Lines dropped over the bound, since the start. */
uint64_t kw_logq_dropped(const struct kw_logq *q);
/* Lines lost because a write failed (EPIPE, EBADF, ENOSPC, EIO...). */
uint64_t kw_logq_lost(const struct kw_logq *q);

#endif
