/*
 * result.h - the one result type of Keyward, and its three verbs.
 *
 * Every fallible internal function returns a kw_result.  code == 0 is
 * success; otherwise code is one of the stable negative KW_ERR_* values of
 * err.h.  Callers propagate with KW_TRY, check with KW_ENSURE and fail with
 * KW_BAIL.  The macros are do { } while (0)-safe and record file:line of the
 * failure in a thread-local trace (debug aid, never shown to clients).
 */
#ifndef KW_RESULT_H
#define KW_RESULT_H

#include "err.h"

typedef struct {
        int code;
} kw_result;

#define KW_MUST_USE __attribute__((warn_unused_result))

/* A failure with its detail in one call: sets kw_err_set_detail(fmt, ...),
 * records the trace and returns KW_RESULT(code), for `return KW_FAIL(...)`
 * and `r = KW_FAIL(...)` alike. */
kw_result kw_fail_at(int code, const char *file, int line, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
#define KW_FAIL(c, ...) kw_fail_at((c), __FILE__, __LINE__, __VA_ARGS__)

#define KW_OK ((kw_result){ 0 })
#define KW_RESULT(c) ((kw_result){ (c) })
#define KW_BAIL(c)                                                  \
        do {                                                        \
                kw_trace((c), __FILE__, __LINE__);                  \
                return (kw_result){ (c) };                          \
        } while (0)
#define KW_ENSURE(x, c)                                             \
        do {                                                        \
                if (!(x))                                           \
                        KW_BAIL(c);                                 \
        } while (0)
#define KW_TRY(expr)                                                \
        do {                                                        \
                kw_result r_ = (expr);                              \
                if (r_.code != 0)                                   \
                        return r_;                                  \
        } while (0)
/* Like KW_TRY, but jumps to a label (for functions with one out: exit). */
#define KW_TRY_GOTO(res, expr, label)                               \
        do {                                                        \
                (res) = (expr);                                     \
                if ((res).code != 0)                                \
                        goto label;                                 \
        } while (0)

static inline int kw_ok(kw_result r) { return r.code == 0; }
/* Explicitly drops a result (gcc ignores a (void) cast on warn_unused_result). */
static inline void kw_ignore(kw_result r) { (void)r; }

#endif
