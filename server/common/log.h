/*
 * log.h - JSON log lines on stderr, one line per event, written with one
 * write(2) so lines from threads and processes never interleave.
 *
 * Never pass key bytes, plaintext, PINs, passwords or tokens to these calls.
 */
#ifndef KW_LOG_H
#define KW_LOG_H

enum kw_log_level { KW_LOG_DEBUG = 0, KW_LOG_INFO, KW_LOG_WARN, KW_LOG_ERROR };

/* Process-wide settings: minimum level and the "proc" field (front/custody). */
void kw_log_setup(enum kw_log_level min, const char *proc);
/* Parses "debug"|"info"|"warn"|"error"; returns -1 on anything else. */
int kw_log_level_parse(const char *s);
int kw_log_enabled(enum kw_log_level lvl);

/*
 * One event: kw_log(KW_LOG_WARN, "hsm_down", "reason", "timeout", NULL);
 * Arguments after the event are key/value string pairs, NULL-terminated;
 * values are JSON-escaped; a NULL value is written as null.
 */
void kw_log(enum kw_log_level lvl, const char *event, ...) __attribute__((sentinel));
/* The sentinel, typed: a bare NULL may be an int 0 in a variadic call. */
#define KW_END ((const char *)NULL)

/* A pre-built JSON object body (without braces) appended to the standard
 * fields: {"ts":..,"level":..,"proc":..,<fields>}.  Used for request lines.
 * Whatever fields_json holds, the line written is valid UTF-8 on one line:
 * bytes that are not well-formed UTF-8 become \ufffd, control characters
 * a space (the caller is still responsible for the JSON structure). */
void kw_log_raw(enum kw_log_level lvl, const char *fields_json);

#endif
