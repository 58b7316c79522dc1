/* output.c - keywardctl's human output: aligned fields and tables. */
#include <stdio.h>
#include <string.h>

#include "ctl.h"

#define CTL_CELL_MAX 512
#define CTL_ROWS_MAX 1000000

void ctl_value_text(const cJSON *v, char *out, size_t outsz)
{
        out[0] = '\0';
        if (v == NULL || cJSON_IsNull(v)) {
                snprintf(out, outsz, "-");
        } else if (cJSON_IsString(v)) {
                snprintf(out, outsz, "%s", v->valuestring);
        } else if (cJSON_IsBool(v)) {
                snprintf(out, outsz, "%s", cJSON_IsTrue(v) ? "true" : "false");
        } else if (cJSON_IsNumber(v)) {
                double d = v->valuedouble;
                if (d > -9007199254740992.0 && d < 9007199254740992.0 && (double)(long long)d == d)
                        snprintf(out, outsz, "%lld", (long long)d);
                else
                        snprintf(out, outsz, "%g", d);
        } else if (cJSON_IsArray(v)) {
                size_t o = 0;
                for (const cJSON *e = v->child; e != NULL && o + 1 < outsz; e = e->next) {
                        char cell[CTL_CELL_MAX];
                        ctl_value_text(e, cell, sizeof cell);
                        int n = snprintf(out + o, outsz - o, "%s%s", o ? "," : "", cell);
                        if (n < 0)
                                break;
                        o += (size_t)n < outsz - o ? (size_t)n : outsz - o - 1;
                }
                if (v->child == NULL)
                        snprintf(out, outsz, "-");
        } else {
                char *s = cJSON_PrintUnformatted(v);
                snprintf(out, outsz, "%s", s ? s : "?");
                cJSON_free(s);
        }
        /* one line per value: control characters would break the layout */
        for (char *c = out; *c; c++)
                if ((unsigned char)*c < 0x20 || *c == 0x7f)
                        *c = ' ';
}

/* Collects (name, value) pairs of obj, nested objects flattened. */
struct ctl_field {
        char name[128];
        const cJSON *v;
};

static size_t ctl_collect(const cJSON *obj, const char *prefix, struct ctl_field *f, size_t n,
                          size_t max)
{
        for (const cJSON *m = obj->child; m != NULL && n < max; m = m->next) {
                char name[128];
                snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "",
                         m->string ? m->string : "?");
                if (cJSON_IsObject(m) && m->child != NULL && prefix[0] == '\0') {
                        n = ctl_collect(m, name, f, n, max);
                        continue;
                }
                snprintf(f[n].name, sizeof f[n].name, "%s", name);
                f[n].v = m;
                n++;
        }
        return n;
}

void ctl_print_fields(const cJSON *obj)
{
        struct ctl_field f[256];
        size_t n = ctl_collect(obj, "", f, 0, sizeof f / sizeof f[0]);
        size_t w = 0;
        for (size_t i = 0; i < n; i++)
                if (strlen(f[i].name) > w)
                        w = strlen(f[i].name);
        for (size_t i = 0; i < n; i++) {
                char val[4096];
                if (cJSON_IsObject(f[i].v) && f[i].v->child == NULL)
                        snprintf(val, sizeof val, "-");
                else
                        ctl_value_text(f[i].v, val, sizeof val);
                printf("%s:%*s %s\n", f[i].name, (int)(w - strlen(f[i].name)), "", val);
        }
}

static const cJSON *ctl_col_value(const cJSON *row, const struct ctl_col *col)
{
        for (size_t k = 0; k < 4 && col->fields[k] != NULL; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, col->fields[k]);
                if (v != NULL)
                        return v;
        }
        return NULL;
}

void ctl_print_table(const cJSON *arr, const struct ctl_col *cols, size_t ncols)
{
        size_t w[16] = { 0 };
        if (ncols > 16)
                ncols = 16;
        for (size_t c = 0; c < ncols; c++)
                w[c] = strlen(cols[c].header);
        size_t rows = 0;
        for (const cJSON *r = arr ? arr->child : NULL; r && rows < CTL_ROWS_MAX; r = r->next) {
                rows++;
                for (size_t c = 0; c < ncols; c++) {
                        char cell[CTL_CELL_MAX];
                        ctl_value_text(ctl_col_value(r, &cols[c]), cell, sizeof cell);
                        if (strlen(cell) > w[c])
                                w[c] = strlen(cell);
                }
        }
        for (size_t c = 0; c < ncols; c++) {
                if (c + 1 < ncols)
                        printf("%-*s  ", (int)w[c], cols[c].header);
                else
                        printf("%s\n", cols[c].header);
        }
        rows = 0;
        for (const cJSON *r = arr ? arr->child : NULL; r && rows < CTL_ROWS_MAX; r = r->next) {
                rows++;
                for (size_t c = 0; c < ncols; c++) {
                        char cell[CTL_CELL_MAX];
                        ctl_value_text(ctl_col_value(r, &cols[c]), cell, sizeof cell);
                        if (c + 1 < ncols)
                                printf("%-*s  ", (int)w[c], cell);
                        else
                                printf("%s\n", cell);
                }
        }
}
