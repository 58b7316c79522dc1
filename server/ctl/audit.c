/*
 * audit.c - keywardctl audit verify-export FILE [--prev-hash H] [--last-hash H]:
 * an audit export file (docs/audit.md) checked offline, without a server:
 * every record's hash recomputed from its fields and the previous hash, the
 * links, the seq range and the end line (server/custody/audit_export_verify.c,
 * the same code the custody process runs on each file before it prunes).
 * --prev-hash / --last-hash pin the file to the chain around it: the
 * previous file's last hash, or the checkpoint the key store holds.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../custody/audit_export.h"
#include "ctl.h"

/* --NAME: 64 hex digits into out; 0 when absent, -1 when malformed. */
static int hash_opt(const struct ctl_args *a, const char *name, uint8_t out[KW_AUDIT_HASH_LEN])
{
        const char *v = ctl_args_get(a, name);
        if (v == NULL)
                return 0;
        if (kw_audit_unhex32(v, out) != 0) {
                ctl_err("--%s must be 64 hex digits", name);
                return -1;
        }
        return 1;
}

static void print_json(const struct kw_audit_export_check *k, const char *path)
{
        char prev[65], last[65], sha[65];
        kw_audit_hex(k->prev_hash, KW_AUDIT_HASH_LEN, prev);
        kw_audit_hex(k->last_hash, KW_AUDIT_HASH_LEN, last);
        kw_audit_hex(k->sha256, 32, sha);
        cJSON *d = cJSON_CreateObject();
        if (d == NULL)
                return;
        cJSON_AddStringToObject(d, "file", path);
        cJSON_AddBoolToObject(d, "ok", k->ok);
        cJSON_AddNumberToObject(d, "first_seq", (double)k->first_seq);
        cJSON_AddNumberToObject(d, "last_seq", (double)k->last_seq);
        cJSON_AddNumberToObject(d, "records", (double)k->records);
        cJSON_AddStringToObject(d, "prev_hash", prev);
        cJSON_AddStringToObject(d, "last_hash", last);
        cJSON_AddStringToObject(d, "sha256", sha);
        if (!k->ok) {
                cJSON_AddNumberToObject(d, "bad_line", (double)k->bad_line);
                if (k->bad_seq != 0)
                        cJSON_AddNumberToObject(d, "bad_seq", (double)k->bad_seq);
                cJSON_AddStringToObject(d, "reason", k->why);
        }
        char *s = cJSON_PrintUnformatted(d);
        if (s != NULL)
                printf("%s\n", s);
        cJSON_free(s);
        cJSON_Delete(d);
}

int ctl_cmd_audit_verify_export(struct ctl *c, const struct ctl_args *a)
{
        const char *path = a->pos[0];
        uint8_t want_prev[KW_AUDIT_HASH_LEN], want_last[KW_AUDIT_HASH_LEN];
        int hp = hash_opt(a, "prev-hash", want_prev), hl = hash_opt(a, "last-hash", want_last);
        if (hp < 0 || hl < 0)
                return CTL_USAGE;
        struct kw_audit_export_check k;
        kw_result r = kw_audit_export_verify(path, &k);
        if (!kw_ok(r)) {
                ctl_err("%s", kw_err_detail()[0] ? kw_err_detail() : kw_strerror(r.code));
                return r.code == KW_ERR_IO ? CTL_USAGE : CTL_SERVER;
        }
        if (k.ok && hp && CRYPTO_memcmp(k.prev_hash, want_prev, KW_AUDIT_HASH_LEN) != 0) { /* lint: allow */
                k.ok = 0;
                k.bad_line = 1;
                snprintf(k.why, sizeof k.why, "the file does not start from --prev-hash");
        }
        if (k.ok && hl && CRYPTO_memcmp(k.last_hash, want_last, KW_AUDIT_HASH_LEN) != 0) { /* lint: allow */
                k.ok = 0;
                k.bad_line = k.records + 2;
                snprintf(k.why, sizeof k.why, "the file does not end at --last-hash");
        }
        if (c->json) {
                print_json(&k, path);
        } else if (k.ok) {
                char last[65];
                kw_audit_hex(k.last_hash, KW_AUDIT_HASH_LEN, last);
                printf("audit export intact: %s: sequences %llu-%llu, %llu records, last hash %s\n",
                       path, (unsigned long long)k.first_seq, (unsigned long long)k.last_seq,
                       (unsigned long long)k.records, last);
        } else {
                printf("audit export BROKEN: %s: line %llu", path, (unsigned long long)k.bad_line);
                if (k.bad_seq != 0)
                        printf(" (sequence %llu)", (unsigned long long)k.bad_seq);
                printf(": %s\n", k.why);
        }
        return k.ok ? CTL_OK : CTL_BROKEN;
}
