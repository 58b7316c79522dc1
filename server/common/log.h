/*
 * log.h - JSON log lines on stderr, one line per event; a line is never
 * split and never interleaved with another, from any thread or process.
 *
 * Two ways a line reaches stderr:
 *   - directly, with one write(2) on the calling thread (the parent, and
 *     any process before kw_log_writer_start);
 *   - through the log writer (logq.h), once kw_log_writer_start has run
 *     (the front and custody): the calling thread only formats its line in
 *     its own buffer and hands it over; one thread writes many lines per
 *     write(2), in the order they came.  Then a stderr that blocks (a
 *     reader that does not read) never holds up a line below warn: when the
 *     queue is full such a line (request lines included) is dropped and
 *     counted (kw_log_dropped_total, a "log_lines_dropped" warning at most
 *     each second).  Warnings and errors are never dropped: they may use a
 *     reserve of the queue, and when even that is full their caller waits
 *     for the writer.
 *
 * Never pass key bytes, plaintext, PINs, passwords or tokens to these calls.
 */
#ifndef KW_LOG_H
#define KW_LOG_H

#include <stdint.h>

#include "result.h"

enum kw_log_level { KW_LOG_DEBUG = 0, KW_LOG_INFO, KW_LOG_WARN, KW_LOG_ERROR };

/* Process-wide settings: minimum level and the "proc" field (front/custody). */
void kw_log_setup(enum kw_log_level min, const char *proc);
/* Parses "debug"|"info"|"warn"|"error"; returns -1 on anything else. */
int kw_log_level_parse(const char *s);
int kw_log_enabled(enum kw_log_level lvl);

/*
 * One event: kw_log(KW_LOG_WARN, "hsm_down", "reason", "timeout", NULL);
 * Arguments after the event are key/value string pairs, NULL-terminated;
 * values are JSON-escaped; a NULL value is written as null, the value
 * KW_LOG_TRUE as the JSON literal true, and a pair whose value is
 * KW_LOG_OMIT is left out (a field present only when a flag is set:
 * "evaluation", on ? KW_LOG_TRUE : KW_LOG_OMIT).
 */
void kw_log(enum kw_log_level lvl, const char *event, ...) __attribute__((sentinel));
/* The sentinel, typed: a bare NULL may be an int 0 in a variadic call. */
#define KW_END ((const char *)NULL)
/* Values told apart by their address, not their text (log.c). */
extern const char kw_log_true_[];
extern const char kw_log_omit_[];
#define KW_LOG_TRUE ((const char *)kw_log_true_)
#define KW_LOG_OMIT ((const char *)kw_log_omit_)

/* A pre-built JSON object body (without braces) appended to the standard
 * fields: {"ts":..,"level":..,"proc":..,<fields>}.  Used for request lines.
 * Whatever fields_json holds, the line written is valid UTF-8 on one line:
 * bytes that are not well-formed UTF-8 become \ufffd, control characters
 * a space (the caller is still responsible for the JSON structure). */
void kw_log_raw(enum kw_log_level lvl, const char *fields_json);

/*
 * Starts the log writer thread for stderr (see above).  Call it after
 * anything per-thread that new threads inherit (the capability bounding
 * set), before the threads whose lines it should carry; the process must
 * not fork afterwards without exec.  Its thread needs only system calls
 * the sandboxes allow (logq.h).  Also registers an atexit handler
 * that runs kw_log_writer_stop, so a return from main loses nothing.
 * A second call while the writer runs does nothing; one after
 * kw_log_writer_stop frees the stopped queue (tests: no thread may log or
 * read the counters meanwhile).  Fails with
 * KW_ERR_NOMEM or KW_ERR_INTERNAL (then lines keep going directly).
 */
KW_MUST_USE kw_result kw_log_writer_start(void);
/*
 * Writes every queued line, then stops the writer; waits at most 2 s for a
 * stderr that does not drain.  Lines logged afterwards are written directly.
 * Call it when the threads that log have stopped (a line logged meanwhile
 * is not lost: it is queued, or written directly).  NULL-safe to repeat.
 */
void kw_log_writer_stop(void);
/* Lines dropped because the writer could not keep up (since it started). */
uint64_t kw_log_dropped_total(void);
/* Lines lost because writing to stderr failed (EPIPE, EBADF, ENOSPC...). */
uint64_t kw_log_lost_total(void);

#endif
