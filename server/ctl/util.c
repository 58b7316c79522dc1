/* util.c - keywardctl's pure helpers: values, URL escaping, files. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "../common/b64.h"
#include "../common/readfile.h"
#include "ctl.h"

void ctl_err(const char *fmt, ...)
{
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        fprintf(stderr, "keywardctl: %s\n", msg);
}

const char *ctl_args_get(const struct ctl_args *a, const char *name)
{
        const char *v = NULL;
        for (size_t i = 0; i < a->no; i++)
                if (strcmp(a->o[i].name, name) == 0)
                        v = a->o[i].value;
        return v;
}

int ctl_args_has(const struct ctl_args *a, const char *name)
{
        for (size_t i = 0; i < a->no; i++)
                if (strcmp(a->o[i].name, name) == 0)
                        return 1;
        return 0;
}

cJSON *ctl_args_list(const struct ctl_args *a, const char *name, const char **ret_bad)
{
        cJSON *arr = cJSON_CreateArray();
        if (arr == NULL)
                return NULL;
        for (size_t i = 0; i < a->no; i++) {
                if (strcmp(a->o[i].name, name) != 0)
                        continue;
                const char *v = a->o[i].value;
                int bad = v == NULL || v[0] == '\0';
                for (const cJSON *e = arr->child; !bad && e != NULL; e = e->next)
                        bad = strcmp(e->valuestring, v) == 0;
                cJSON *item = bad ? NULL : cJSON_CreateString(v);
                if (item == NULL) {
                        if (ret_bad != NULL)
                                *ret_bad = v != NULL ? v : "";
                        cJSON_Delete(arr);
                        return NULL;
                }
                cJSON_AddItemToArray(arr, item);
        }
        return arr;
}

int ctl_exit_for_status(long status)
{
        if (status >= 200 && status < 300)
                return CTL_OK;
        if (status == 401 || status == 403)
                return CTL_AUTH;
        if (status >= 400 && status < 500)
                return CTL_REFUSED;
        return CTL_SERVER; /* 5xx, and anything a proxy might invent */
}

int ctl_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
        size_t n = strlen(s);
        if (n == 0 || n > 20)
                return -1;
        uint64_t v = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] < '0' || s[i] > '9')
                        return -1;
                unsigned d = (unsigned)(s[i] - '0');
                if (v > (UINT64_MAX - d) / 10)
                        return -1;
                v = v * 10 + d;
        }
        if (v < min || v > max)
                return -1;
        *ret = v;
        return 0;
}

kw_result ctl_url_escape(const char *s, struct kw_buf *out)
{
        static const char hex[] = "0123456789ABCDEF";
        size_t mark = out->len;
        for (; *s; s++) {
                unsigned char c = (unsigned char)*s;
                kw_result r;
                if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '.' || c == '_' || c == '~') {
                        r = kw_buf_put_u8(out, c);
                } else {
                        char e[3] = { '%', hex[c >> 4], hex[c & 15] };
                        r = kw_buf_put(out, e, 3);
                }
                if (r.code != 0) {
                        out->len = mark;
                        return r;
                }
        }
        return KW_OK;
}

kw_result ctl_query_add(struct kw_buf *path, const char *name, const char *value)
{
        int first = path->len == 0 || memchr(path->p, '?', path->len) == NULL;
        size_t mark = path->len;
        kw_result r = kw_buf_printf(path, "%c%s=", first ? '?' : '&', name);
        if (r.code == 0)
                r = ctl_url_escape(value, path);
        if (r.code != 0)
                path->len = mark;
        return r;
}

int ctl_tag_add(cJSON *obj, const char *kv)
{
        const char *eq = strchr(kv, '=');
        if (eq == NULL || eq == kv)
                return -1;
        char key[129];
        size_t kl = (size_t)(eq - kv);
        if (kl >= sizeof key)
                return -1;
        memcpy(key, kv, kl);
        key[kl] = '\0';
        if (cJSON_GetObjectItemCaseSensitive(obj, key) != NULL)
                return -1;
        return cJSON_AddStringToObject(obj, key, eq + 1) != NULL ? 0 : -1;
}

cJSON *ctl_ops_parse(const char *csv)
{
        static const char *const names[] = { "encrypt", "decrypt", "wrap", "unwrap" };
        cJSON *arr = cJSON_CreateArray();
        const char *s = csv;
        if (arr == NULL)
                return NULL;
        for (;;) {
                const char *comma = strchr(s, ',');
                size_t n = comma ? (size_t)(comma - s) : strlen(s);
                size_t i = 0;
                while (i < 4 && !(strlen(names[i]) == n && memcmp(names[i], s, n) == 0))
                        i++;
                int dup = 0;
                for (const cJSON *e = arr->child; i < 4 && e != NULL; e = e->next)
                        dup |= strcmp(e->valuestring, names[i]) == 0;
                if (i == 4 || dup || cJSON_AddItemToArray(arr, cJSON_CreateString(names[i])) == 0) {
                        cJSON_Delete(arr);
                        return NULL;
                }
                if (comma == NULL)
                        return arr;
                s = comma + 1;
        }
}

kw_result ctl_read_file(const char *path, size_t max, struct kw_buf *out)
{
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kw_err_set_detail("cannot read %s: %s", path, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        struct kw_buf b;
        kw_buf_init(&b, max);
        kw_result r = kw_read_fd(fd, path, max, &b);
        close(fd);
        if (r.code != 0) {
                kw_buf_free(&b);
                return r;
        }
        kw_buf_free(out);
        *out = b;
        return KW_OK;
}

static int ctl_space(uint8_t c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

kw_result ctl_token_parse(const uint8_t *p, size_t n, struct kw_secret *ret)
{
        while (n > 0 && ctl_space(p[n - 1]))
                n--;
        KW_ENSURE(n > 0 && n <= 512, KW_ERR_AUTH);
        for (size_t i = 0; i < n; i++) {
                uint8_t c = p[i];
                int ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~' ||
                         c == '+' || c == '/' || c == '=';
                KW_ENSURE(ok, KW_ERR_AUTH);
        }
        struct kw_secret s;
        KW_TRY(kw_secret_alloc(n + 1, &s)); /* NUL-terminated for libcurl */
        memcpy(s.p, p, n);
        s.p[n] = '\0';
        s.len = n + 1;
        *ret = s;
        return KW_OK;
}

kw_result ctl_material_parse(const uint8_t *p, size_t n, struct kw_secret *ret)
{
        if (n == 32)
                return kw_secret_dup(p, 32, ret);
        while (n > 0 && ctl_space(p[n - 1]))
                n--;
        while (n > 0 && ctl_space(p[0])) {
                p++;
                n--;
        }
        struct kw_secret s = { 0 };
        KW_TRY(kw_b64_decode_secret((const char *)p, n, &s));
        if (s.len != 32) {
                kw_secret_free(&s);
                KW_BAIL(KW_ERR_BAD_LENGTH);
        }
        *ret = s;
        return KW_OK;
}
