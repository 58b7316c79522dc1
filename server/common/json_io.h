/*
 * json_io.h - strict JSON input and compact JSON output (both processes).
 *
 * Parsing (cJSON underneath): the body must be valid UTF-8 (checked on the
 * raw bytes before parsing; overlong forms, surrogates and code points above
 * U+10FFFF rejected), one JSON value with nothing after it, no duplicate
 * member names in any object, nesting at most max_depth, and a top-level
 * object.  Errors: KW_ERR_BAD_ENCODING (UTF-8), KW_ERR_BAD_JSON (the rest),
 * with a short detail (never echoing the body).
 *
 * Getters validate type and bounds: KW_ERR_MISSING_FIELD when absent (and
 * required), KW_ERR_BAD_FIELD for a wrong type or length; detail names the
 * field.  Out-parameters are set only on success.
 */
#ifndef KW_JSON_IO_H
#define KW_JSON_IO_H

#include <stddef.h>
#include <stdint.h>

#include <cJSON.h>

#include "../common/buf.h"
#include "../common/result.h"

#define KW_JSON_MAX_DEPTH 16

KW_MUST_USE kw_result kw_json_parse(const uint8_t *body, size_t len, int max_depth, cJSON **ret);
/* 1 when s[0..n) is valid UTF-8 (as above). */
int kw_utf8_valid(const uint8_t *s, size_t n);

/* String member: length 1..maxlen bytes (0..maxlen when allow_empty).
 * *ret points into obj (owned by it).  required=0: absent -> KW_OK, *ret untouched. */
KW_MUST_USE kw_result kw_json_get_str(const cJSON *obj, const char *name, int required,
                                      int allow_empty, size_t maxlen, const char **ret);
/* Integer member within [min, max] (JSON number with no fraction/exponent part
 * beyond an integral value). */
KW_MUST_USE kw_result kw_json_get_int(const cJSON *obj, const char *name, int required,
                                      int64_t min, int64_t max, int64_t *ret);
KW_MUST_USE kw_result kw_json_get_bool(const cJSON *obj, const char *name, int required, int *ret);
/* Object member (any content). */
KW_MUST_USE kw_result kw_json_get_obj(const cJSON *obj, const char *name, int required,
                                      const cJSON **ret);
/* Array of strings, each 1..maxlen, at most max_items. */
KW_MUST_USE kw_result kw_json_get_strarray(const cJSON *obj, const char *name, int required,
                                           size_t max_items, size_t maxlen, const cJSON **ret);

/* Compact output (no spaces, no newline) of a cJSON tree appended to out. */
KW_MUST_USE kw_result kw_json_write(const cJSON *v, struct kw_buf *out);

#endif
