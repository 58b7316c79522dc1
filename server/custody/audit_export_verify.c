/*
 * audit_export_verify.c - checks an audit export file on its own (format
 * in audit_export.h): used by the custody process on every file it writes,
 * before it prunes, and by keywardctl audit verify-export, offline.
 *
 * The file is read as untrusted: lines are capped (LINE_MAX_BYTES), each is
 * parsed by the strict JSON parser, every member is checked for its type
 * and bounds, unknown members are refused, and each record's hash is
 * recomputed from its fields and the previous hash.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <zlib.h>

#include "../common/b64.h"
#include "../common/json_io.h"
#include "audit_export.h"

#define LINE_MAX_BYTES (256u * 1024u)
#define SEQ_MAX ((int64_t)1 << 53)    /* exact in a JSON number */

static const char *const field_names[KW_AUDIT_FIELDS] = { "actor", "action", "key", "result",
                                                          "detail", "request_id" };

struct vstate {
        struct kw_audit_export_check *c;
        struct kw_audit_hasher *h;
        uint8_t prev[KW_AUDIT_HASH_LEN];
        uint64_t next_seq;
        int have_header, have_end;
        struct kw_buf field[KW_AUDIT_FIELDS];
};

/* A finding: the first bad line and why. */
static kw_result bad(struct vstate *v, uint64_t line, uint64_t seq, const char *why)
{
        v->c->ok = 0;
        v->c->bad_line = line;
        v->c->bad_seq = seq;
        snprintf(v->c->why, sizeof v->c->why, "%s", why);
        return KW_OK;
}

static int members_only(const cJSON *o, const char *const *names, size_t n)
{
        for (const cJSON *m = o->child; m != NULL; m = m->next) {
                int known = 0;
                for (size_t i = 0; i < n && !known; i++)
                        known = strcmp(m->string, names[i]) == 0;
                if (!known)
                        return 0;
        }
        return 1;
}

static int get_hash(const cJSON *o, const char *name, uint8_t out[KW_AUDIT_HASH_LEN])
{
        const char *s = NULL;
        return kw_ok(kw_json_get_str(o, name, 1, 0, 64, &s)) && kw_audit_unhex32(s, out) == 0;
}

/* One field of a record: "<name>" (UTF-8 text) or "<name>_b64" (bytes). */
static int get_field(const cJSON *o, const char *name, struct kw_buf *out)
{
        char b64name[32];
        snprintf(b64name, sizeof b64name, "%s_b64", name);
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, name);
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(o, b64name);
        kw_buf_reset(out);
        if ((t == NULL) == (b == NULL))
                return 0;   /* one of the two, exactly */
        if (t != NULL) {
                if (!cJSON_IsString(t) || t->valuestring == NULL)
                        return 0;
                size_t n = strlen(t->valuestring);
                return n <= KW_AUDIT_FIELD_MAX && kw_ok(kw_buf_put(out, t->valuestring, n));
        }
        if (!cJSON_IsString(b) || b->valuestring == NULL)
                return 0;
        return kw_ok(kw_b64_decode(b->valuestring, strlen(b->valuestring), out)) &&
               out->len <= KW_AUDIT_FIELD_MAX && memchr(out->p, '\0', out->len) == NULL;
}

static kw_result header_line(struct vstate *v, const cJSON *o, uint64_t line)
{
        static const char *const names[] = { "keyward_audit_export", "first_seq", "prev_hash", "created" };
        int64_t fmt = 0, first = 0;
        const char *created = NULL;
        if (!members_only(o, names, 4) || !kw_ok(kw_json_get_int(o, "keyward_audit_export", 1, 1, 1, &fmt)) ||
            !kw_ok(kw_json_get_int(o, "first_seq", 1, 1, SEQ_MAX, &first)) ||
            !get_hash(o, "prev_hash", v->prev) ||
            !kw_ok(kw_json_get_str(o, "created", 1, 0, 40, &created)))
                return bad(v, line, 0, "the first line is not an export header (format 1)");
        v->have_header = 1;
        v->next_seq = (uint64_t)first;
        v->c->first_seq = (uint64_t)first;
        memcpy(v->c->prev_hash, v->prev, KW_AUDIT_HASH_LEN);
        return KW_OK;
}

static kw_result end_line(struct vstate *v, const cJSON *o, uint64_t line)
{
        static const char *const names[] = { "keyward_audit_export_end", "last_seq", "last_hash",
                                             "records" };
        int64_t fmt = 0, last = 0, records = 0;
        uint8_t h[KW_AUDIT_HASH_LEN];
        if (!members_only(o, names, 4) ||
            !kw_ok(kw_json_get_int(o, "keyward_audit_export_end", 1, 1, 1, &fmt)) ||
            !kw_ok(kw_json_get_int(o, "last_seq", 1, 1, SEQ_MAX, &last)) ||
            !kw_ok(kw_json_get_int(o, "records", 1, 1, SEQ_MAX, &records)) || !get_hash(o, "last_hash", h))
                return bad(v, line, 0, "a malformed end line");
        if (v->c->records == 0 || (uint64_t)last != v->next_seq - 1 ||
            (uint64_t)records != v->c->records)
                return bad(v, line, 0, "the end line does not match the records before it");
        if (CRYPTO_memcmp(h, v->prev, KW_AUDIT_HASH_LEN) != 0)   /* lint: allow (constant time) */
                return bad(v, line, 0, "last_hash is not the last record's hash");
        v->have_end = 1;
        v->c->last_seq = (uint64_t)last;
        memcpy(v->c->last_hash, h, KW_AUDIT_HASH_LEN);
        return KW_OK;
}

static kw_result record_line(struct vstate *v, const cJSON *o, uint64_t line)
{
        static const char *const names[] = {
                "seq", "time", "ts_ms", "actor", "action", "key", "result", "detail", "request_id",
                "hash", "actor_b64", "action_b64", "key_b64", "result_b64", "detail_b64",
                "request_id_b64",
        };
        int64_t seq = 0, ts = 0;
        const char *time_s = NULL;
        uint8_t h[KW_AUDIT_HASH_LEN];
        if (!members_only(o, names, sizeof names / sizeof names[0]) ||
            !kw_ok(kw_json_get_int(o, "seq", 1, 1, SEQ_MAX, &seq)) ||
            !kw_ok(kw_json_get_int(o, "ts_ms", 1, -SEQ_MAX, SEQ_MAX, &ts)) ||
            !kw_ok(kw_json_get_str(o, "time", 1, 0, 40, &time_s)) || !get_hash(o, "hash", h))
                return bad(v, line, 0, "a malformed record line");
        struct kw_audit_rec r = { .ts_ms = ts };
        for (int i = 0; i < KW_AUDIT_FIELDS; i++) {
                if (!get_field(o, field_names[i], &v->field[i]))
                        return bad(v, line, (uint64_t)seq, "a record field is missing or malformed");
                KW_TRY(kw_buf_put_u8(&v->field[i], 0));   /* a C string for the hasher */
                r.f[i] = (const char *)v->field[i].p;
                r.flen[i] = v->field[i].len - 1;
        }
        if ((uint64_t)seq != v->next_seq)
                return bad(v, line, (uint64_t)seq, "records are missing or out of order before it");
        uint8_t want[KW_AUDIT_HASH_LEN];
        KW_TRY(kw_audit_chain_step(v->h, v->prev, (uint64_t)seq, &r, want));
        if (CRYPTO_memcmp(want, h, KW_AUDIT_HASH_LEN) != 0)   /* lint: allow (constant time) */
                return bad(v, line, (uint64_t)seq, "its fields do not hash to its hash (or the "
                                                   "previous record's hash is not its link)");
        memcpy(v->prev, h, KW_AUDIT_HASH_LEN);
        v->next_seq++;
        v->c->records++;
        return KW_OK;
}

static kw_result check_line(struct vstate *v, const char *s, size_t n, uint64_t line)
{
        if (v->have_end)
                return bad(v, line, 0, "lines after the end line");
        cJSON *o = NULL;
        if (!kw_ok(kw_json_parse((const uint8_t *)s, n, 2, &o)))
                return bad(v, line, 0, "not a JSON object");
        kw_result r;
        if (!v->have_header)
                r = header_line(v, o, line);
        else if (cJSON_GetObjectItemCaseSensitive(o, "keyward_audit_export_end") != NULL)
                r = end_line(v, o, line);
        else
                r = record_line(v, o, line);
        cJSON_Delete(o);
        return r;
}

static kw_result read_lines(struct vstate *v, gzFile gz, const char *path)
{
        char *buf = malloc(LINE_MAX_BYTES + 2);
        KW_ENSURE(buf != NULL, KW_ERR_NOMEM);
        kw_result r = KW_OK;
        for (uint64_t line = 1; kw_ok(r) && v->c->ok; line++) {
                if (gzgets(gz, buf, (int)LINE_MAX_BYTES + 2) == NULL) {
                        int zerr = 0;
                        const char *m = gzerror(gz, &zerr);
                        if (zerr != Z_OK && zerr != Z_STREAM_END) {
                                if (zerr == Z_ERRNO) {
                                        kw_err_set_detail("cannot read %s: %s", path, strerror(errno));
                                        r = KW_RESULT(KW_ERR_IO);
                                } else {
                                        r = bad(v, line, 0, m);   /* not gzip, or damaged */
                                }
                        }
                        break;
                }
                if (line == 1 && gzdirect(gz)) {
                        r = bad(v, line, 0, "not a gzip file");
                        break;
                }
                size_t n = strlen(buf);
                if (n == 0 || buf[n - 1] != '\n') {
                        r = bad(v, line, 0, n > LINE_MAX_BYTES ? "a line is too long"
                                                               : "the last line is cut short");
                        break;
                }
                r = check_line(v, buf, n - 1, line);
        }
        free(buf);
        return r;
}

/* SHA-256 of the file's bytes (what the checkpoint row records). */
static kw_result file_sha256(const char *path, uint8_t out[32])
{
        FILE *f = fopen(path, "rb");
        if (f == NULL) {
                kw_err_set_detail("cannot read %s: %s", path, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
        uint8_t b[65536];
        size_t n;
        while (ok && (n = fread(b, 1, sizeof b, f)) > 0)
                ok = EVP_DigestUpdate(ctx, b, n) == 1;
        ok = ok && !ferror(f) && EVP_DigestFinal_ex(ctx, out, NULL) == 1;
        EVP_MD_CTX_free(ctx);
        fclose(f);
        KW_ENSURE(ok, KW_ERR_IO);
        return KW_OK;
}

kw_result kw_audit_export_verify(const char *path, struct kw_audit_export_check *ret)
{
        KW_ENSURE(path != NULL && ret != NULL, KW_ERR_INPUT);
        struct kw_audit_export_check c;
        memset(&c, 0, sizeof c);
        c.ok = 1;
        KW_TRY(file_sha256(path, c.sha256));
        gzFile gz = gzopen(path, "rb");
        if (gz == NULL) {
                kw_err_set_detail("cannot open %s: %s", path, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        struct vstate v = { .c = &c };
        for (int i = 0; i < KW_AUDIT_FIELDS; i++)
                kw_buf_init(&v.field[i], KW_AUDIT_FIELD_MAX + 1);
        kw_result r = kw_audit_hasher_new(&v.h);
        if (kw_ok(r))
                r = read_lines(&v, gz, path);
        if (kw_ok(r) && c.ok && !v.have_header)
                r = bad(&v, 1, 0, "an empty file: no export header");
        else if (kw_ok(r) && c.ok && !v.have_end)
                r = bad(&v, c.records + 2, 0, "no end line: the export is incomplete");
        gzclose(gz);
        kw_audit_hasher_free(v.h);
        for (int i = 0; i < KW_AUDIT_FIELDS; i++)
                kw_buf_free(&v.field[i]);
        if (kw_ok(r))
                *ret = c;
        return r;
}
