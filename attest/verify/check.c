/*
 * check.c - the verifier's check list: every check has a stable name
 * ("snp.signature", "tpm.pcr_digest", ...), a status and a one-line detail.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kwa.h"

void kwa_check(struct kwa_checks *cs, const char *name, int required, enum kwa_status st,
               const char *fmt, ...)
{
        struct kwa_check c;
        memset(&c, 0, sizeof c);
        snprintf(c.name, sizeof c.name, "%s", name);
        c.status = st;
        c.required = required;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c.detail, sizeof c.detail, fmt, ap);
        va_end(ap);
        if (cs->n < KWA_MAX_CHECKS)
                cs->c[cs->n++] = c;
        else if (st == KWA_FAIL && required)   /* never lose a failure */
                cs->c[KWA_MAX_CHECKS - 1] = c;
        if (cs->print)
                printf("  %-4s %-26s %s%s\n",
                       st == KWA_PASS ? "ok" : st == KWA_FAIL ? (required ? "FAIL" : "warn") : "-",
                       c.name, c.detail, st == KWA_FAIL && !required ? " (not required by the policy)" : "");
}

const struct kwa_check *kwa_check_find(const struct kwa_checks *cs, const char *name)
{
        for (size_t i = 0; i < cs->n; i++)
                if (strcmp(cs->c[i].name, name) == 0)
                        return &cs->c[i];
        return NULL;
}

int kwa_checks_ok(const struct kwa_checks *cs)
{
        size_t passed = 0;
        for (size_t i = 0; i < cs->n; i++) {
                if (cs->c[i].status == KWA_FAIL && cs->c[i].required)
                        return 0;
                passed += cs->c[i].status == KWA_PASS;
        }
        return passed > 0;
}

static void json_str(const char *s)
{
        putchar('"');
        for (; *s; s++) {
                unsigned char ch = (unsigned char)*s;
                if (ch == '"' || ch == '\\')
                        printf("\\%c", ch);
                else if (ch < 0x20)
                        printf("\\u%04x", ch);
                else
                        putchar(ch);
        }
        putchar('"');
}

void kwa_checks_print_json(const struct kwa_checks *cs, int ok)
{
        printf("{\"ok\":%s,\"checks\":[", ok ? "true" : "false");
        for (size_t i = 0; i < cs->n; i++) {
                const struct kwa_check *c = &cs->c[i];
                printf("%s{\"name\":", i ? "," : "");
                json_str(c->name);
                printf(",\"status\":\"%s\",\"required\":%s,\"detail\":",
                       c->status == KWA_PASS ? "pass" : c->status == KWA_FAIL ? "fail" : "skip",
                       c->required ? "true" : "false");
                json_str(c->detail);
                putchar('}');
        }
        printf("]}\n");
}

void kwa_checks_print_failed(const struct kwa_checks *cs)
{
        int any = 0;
        for (size_t i = 0; i < cs->n; i++)
                if (cs->c[i].status == KWA_FAIL && cs->c[i].required) {
                        fprintf(stderr, "%s%s", any ? " " : "keyward-attest: FAILED checks: ", cs->c[i].name);
                        any = 1;
                }
        if (any)
                fputc('\n', stderr);
}
