/*
 * json_fuzz.c - kw_json_parse on arbitrary bytes.
 *
 * On success every member is read back through each getter (which must
 * return one of its documented codes), the tree is written with
 * kw_json_write, and that output must itself parse (strict round trip).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/json_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_code(int code, int a, int b, int c)
{
        if (code != 0 && code != a && code != b && code != c)
                abort();
}

static void walk(const cJSON *obj)
{
        for (const cJSON *m = obj->child; m != NULL; m = m->next) {
                const char *name = m->string;
                const char *s = NULL;
                int64_t i = 0;
                int b = 0;
                const cJSON *o = NULL;
                check_code(kw_json_get_str(obj, name, 1, 1, 64, &s).code, KW_ERR_BAD_FIELD, -1, -1);
                check_code(kw_json_get_int(obj, name, 1, -1000, 1000, &i).code, KW_ERR_BAD_FIELD, -1, -1);
                check_code(kw_json_get_bool(obj, name, 1, &b).code, KW_ERR_BAD_FIELD, -1, -1);
                check_code(kw_json_get_strarray(obj, name, 1, 4, 16, &o).code, KW_ERR_BAD_FIELD, -1, -1);
                if (kw_json_get_obj(obj, name, 1, &o).code == 0)
                        walk(o);
                /* a name that cannot be present: never a success with a value */
                s = NULL;
                check_code(kw_json_get_str(obj, "\x01missing", 1, 0, 8, &s).code, KW_ERR_MISSING_FIELD, -1, -1);
                if (s != NULL)
                        abort();
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        cJSON *j = NULL;
        kw_result r = kw_json_parse(data, size, KW_JSON_MAX_DEPTH, &j);
        if (r.code != 0) {
                check_code(r.code, KW_ERR_BAD_ENCODING, KW_ERR_BAD_JSON, KW_ERR_NOMEM);
                if (j != NULL)
                        abort();
                return 0;
        }
        if (!cJSON_IsObject(j))
                abort();
        walk(j);

        struct kw_buf out;
        kw_buf_init(&out, 4u << 20);
        if (kw_json_write(j, &out).code == 0) {
                cJSON *again = NULL;
                if (kw_json_parse(out.p, out.len, KW_JSON_MAX_DEPTH, &again).code != 0)
                        abort();
                cJSON_Delete(again);
        }
        kw_buf_free(&out);
        cJSON_Delete(j);
        return 0;
}
