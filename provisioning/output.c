/*
 * output.c - what the customer gets back (output.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <unistd.h>

#include "../server/common/buf.h"
#include "../server/common/err.h"
#include "../server/common/json_io.h"
#include "../server/common/secret.h"
#include "output.h"
#include "run_api.h"
#include "tls.h"

#define OUT_MAX (64u * 1024u)

KW_MUST_USE static kw_result put(struct kw_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
KW_MUST_USE static kw_result put(struct kw_buf *b, const char *fmt, ...)
{
        char line[2048];
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        KW_ENSURE(n >= 0 && (size_t)n < sizeof line, KW_ERR_TOO_LARGE);
        kw_result r = kw_buf_put(b, line, (size_t)n);
        kw_wipe(line, sizeof line);
        return r;
}

void kwp_public_host(const struct kwp_doc *doc, const struct kw_config *cfg, char *host, size_t cap)
{
        const char *listen = cfg->http.listen;
        const char *colon = strrchr(listen, ':');
        const char *port = colon != NULL ? colon + 1 : "443";
        const char *name = doc->tls.names.n > 0 ? doc->tls.names.v[0] : NULL;
        char addr[128];
        if (name == NULL) {
                size_t n = colon != NULL ? (size_t)(colon - listen) : strlen(listen);
                snprintf(addr, sizeof addr, "%.*s", (int)n, listen);
                name = addr;
        }
        bool v6 = strchr(name, ':') != NULL && name[0] != '[';
        snprintf(host, cap, "%s%s%s%s%s", v6 ? "[" : "", name, v6 ? "]" : "",
                 strcmp(port, "443") == 0 ? "" : ":", strcmp(port, "443") == 0 ? "" : port);
}

/* The stores' import files (the keys step's answers of the admin API),
 * each with the endpoint the KMS console also asks for. */
KW_MUST_USE static kw_result put_stores(struct kw_buf *b, const char *host, const struct kwp_paths *p)
{
        if (access(p->xks_import, F_OK) != 0)
                return KW_OK;
        struct kw_buf raw;
        kw_buf_init(&raw, 256 * 1024);
        KW_TRY(kwp_read_secret_file(p->xks_import, &raw));
        cJSON *all = NULL;
        kw_result r = kw_json_parse(raw.p, raw.len, 8, &all);
        kw_buf_free(&raw);
        KW_TRY(r);
        const cJSON *stores = cJSON_GetObjectItemCaseSensitive(all, "stores");
        r = put(b, "AWS XKS (each import file goes into the KMS console's \"external key store\" form):\n");
        const cJSON *e = NULL;
        cJSON_ArrayForEach(e, stores) {
                const cJSON *store = cJSON_GetObjectItemCaseSensitive(e, "store");
                cJSON *file = cJSON_GetObjectItemCaseSensitive(e, "import_file");
                const cJSON *path = cJSON_GetObjectItemCaseSensitive(file, "XksProxyUriPath");
                if (r.code != 0 || !cJSON_IsString(store) || !cJSON_IsString(path))
                        continue;
                char endpoint[320];
                snprintf(endpoint, sizeof endpoint, "https://%s", host);
                cJSON *copy = cJSON_Duplicate(file, 1);
                cJSON *with = cJSON_CreateObject();
                char *text = NULL;
                if (copy != NULL && with != NULL && cJSON_AddStringToObject(with, "XksProxyUriEndpoint", endpoint)) {
                        for (cJSON *m = copy->child; m != NULL;) {
                                cJSON *next = m->next;
                                cJSON_AddItemToObject(with, m->string, cJSON_DetachItemViaPointer(copy, m));
                                m = next;
                        }
                        text = cJSON_PrintUnformatted(with);
                }
                if (text == NULL)
                        r = KW_RESULT(KW_ERR_NOMEM);
                if (r.code == 0)
                        r = put(b, "  key store %s: endpoint https://%s, path %s\n    import file: %s\n",
                                store->valuestring, host, path->valuestring, text);
                if (text != NULL) {
                        kw_wipe(text, strlen(text));
                        free(text);
                }
                cJSON_Delete(with);
                cJSON_Delete(copy);
        }
        /* the secrets in the parsed tree */
        cJSON_ArrayForEach(e, stores) {
                const cJSON *sec = cJSON_GetObjectItemCaseSensitive(
                        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(e, "import_file"),
                                                         "XksProxyAuthenticationCredential"),
                        "RawSecretAccessKey");
                if (cJSON_IsString(sec))
                        kw_wipe(sec->valuestring, strlen(sec->valuestring));
        }
        cJSON_Delete(all);
        return r;
}

/* The instance's AK pin and the command that verifies the appliance with
 * the image's signed policy (docs/attestation.md). */
KW_MUST_USE static kw_result put_verify(struct kw_buf *b, const char *host, const struct kwp_ak_pin *ak)
{
        if (ak->sha256[0] != '\0')
                KW_TRY(put(b, "Attestation key (AK) of this instance, SHA-256 of its TPMT_PUBLIC (the pin "
                              "to verify it with; keep it):\n  %s\n", ak->sha256));
        else
                KW_TRY(put(b, "Attestation key (AK) of this instance: none (%s)\n", ak->why));
        return put(b, "Verify this appliance from outside (policy.json, policy.json.sig and image-key.pem "
                      "are published with the image):\n  keyward-attest verify https://%s --policy "
                      "policy.json --policy-key image-key.pem%s%s\n", host,
                   ak->sha256[0] != '\0' ? " --ak-sha256 " : "", ak->sha256);
}

KW_MUST_USE static kw_result compose(const struct kwp_doc *doc, const char *doc_sha, const struct kw_config *cfg,
                                     const struct kwp_run_opts *o, const struct kwp_paths *p, struct kw_buf *b)
{
        char host[300], fp[KWP_TLS_FINGERPRINT_SIZE] = "";
        kwp_public_host(doc, cfg, host, sizeof host);
        char when[32];
        time_t t = time(NULL);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);

        struct kw_buf rk, tok;
        kw_buf_init(&rk, 4096);
        kw_buf_init(&tok, 4096);
        /* absent when re-provisioning: shown by the first provisioning only */
        kw_result r = kwp_read_secret_file(p->recovery, &rk);
        if (r.code == KW_ERR_NOT_FOUND)
                r = KW_OK;
        if (r.code == 0 && (doc->admin.token_sha256 == NULL || doc->admin.token_sha256[0] == '\0'))
                r = kwp_read_secret_file(cfg->admin.token_file, &tok);
        char cert[KWP_PATH_MAX + 16];
        snprintf(cert, sizeof cert, "%s/" KWP_TLS_CERT_FILE, p->tls);
        struct kw_buf pem;
        kw_buf_init(&pem, KWP_TLS_PEM_MAX);
        if (r.code == 0)
                r = kwp_read_secret_file(cert, &pem);
        if (r.code == 0)
                r = kwp_tls_fingerprint((const char *)pem.p, pem.len, fp);
        kw_buf_free(&pem);
        while (tok.len > 0 && (tok.p[tok.len - 1] == '\n' || tok.p[tok.len - 1] == '\r'))
                tok.len--;
        if (r.code != 0)
                goto out;
        KW_TRY_GOTO(r, put(b, "\n==== Keyward: provisioned %s, document sha256 %.16s (shown once; also in "
                              "%s, root only) ====\n", when, doc_sha, p->output), out);
        if (doc->hsm.evaluation)
                KW_TRY_GOTO(r, put(b, "EVALUATION MODE: the HSM is a local SoftHSM2 token on the data "
                                      "volume. Not for production keys.\n"), out);
        if (rk.len > 0)
                KW_TRY_GOTO(r, put(b, "Recovery key of the data volume (keep it offline; it opens the volume "
                                      "when the TPM or SEV-SNP binding no longer does):\n  %.*s\n",
                                   (int)rk.len, (const char *)rk.p), out);
        else
                KW_TRY_GOTO(r, put(b, "Recovery key of the data volume: unchanged (shown by the first "
                                      "provisioning; not kept on the appliance)\n"), out);
        if (tok.len > 0)
                KW_TRY_GOTO(r, put(b, "First admin API token (Authorization: Bearer ...):\n  %.*s\n",
                                   (int)tok.len, (const char *)tok.p), out);
        else
                KW_TRY_GOTO(r, put(b, "Admin access: the token whose SHA-256 the document gave "
                                      "([provision.admin] token_sha256)\n"), out);
        KW_TRY_GOTO(r, put(b, "TLS certificate SHA-256 fingerprint: %s\n", fp), out);
        if (doc->tls_mode == KWP_TLS_CSR)
                KW_TRY_GOTO(r, put(b, "Certificate request to sign with your CA: %s/" KWP_TLS_CSR_FILE " (the "
                                      "appliance serves a self-signed certificate for the same key "
                                      "until the signed one is installed)\n", p->tls), out);
        struct kwp_ak_pin ak;
        kwp_ak_pin(cfg, o, p, &ak);
        KW_TRY_GOTO(r, put_verify(b, host, &ak), out);
        KW_TRY_GOTO(r, put_stores(b, host, p), out);
        if (cfg->ekm.azure_ekm_enable) {
                const char *pp = cfg->ekm.azure_ekm_path_prefix;
                KW_TRY_GOTO(r, put(b, "Azure EKM: register key URLs https://%s/azureekm/%s%s<key name>\n",
                                   host, pp, pp[0] != '\0' ? "/" : ""), out);
                for (size_t i = 0; i < doc->n_keys; i++)
                        if (doc->keys[i].ekm_clients.n > 0)
                                KW_TRY_GOTO(r, put(b, "  %s: https://%s/azureekm/%s%s%s\n", doc->keys[i].name,
                                                   host, pp, pp[0] != '\0' ? "/" : "", doc->keys[i].name),
                                            out);
        }
        KW_TRY_GOTO(r, put(b, "==== end ====\n"), out);
out:
        kw_buf_free(&rk);
        kw_buf_free(&tok);
        return r;
}

KW_MUST_USE static kw_result to_console(const char *console, const struct kw_buf *b)
{
        int fd = open(console, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_APPEND);
        if (fd < 0) {
                kw_err_set_detail("open the console %s: %s", console, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        size_t off = 0;
        while (off < b->len) {
                ssize_t w = write(fd, b->p + off, b->len - off);
                if (w < 0 && errno == EINTR)
                        continue;
                if (w <= 0)
                        break;
                off += (size_t)w;
        }
        close(fd);
        if (off != b->len) {
                kw_err_set_detail("write to the console %s: %s", console, strerror(errno));
                KW_BAIL(KW_ERR_IO);
        }
        return KW_OK;
}

/* The output file was written for this document (a run stopped after it). */
static bool written_for(const struct kwp_paths *p, const char *doc_sha, struct kw_buf *b)
{
        char mark[40];
        snprintf(mark, sizeof mark, "document sha256 %.16s ", doc_sha);
        if (access(p->recovery, F_OK) == 0 || kwp_read_secret_file(p->output, b).code != 0)
                return false;
        const char *nl = memchr(b->p + 1, '\n', b->len > 1 ? b->len - 1 : 0);
        size_t head = nl != NULL ? (size_t)(nl - (const char *)b->p) : 0;
        return memmem(b->p, head, mark, strlen(mark)) != NULL;
}

kw_result kwp_output(const struct kwp_doc *doc, const char *doc_sha, const struct kw_config *cfg,
                     const struct kwp_run_opts *o, const struct kwp_paths *p)
{
        struct kw_buf b;
        kw_buf_init(&b, OUT_MAX);
        kw_result r = KW_OK;
        if (written_for(p, doc_sha, &b)) {
                /* written before a stop: the file is the copy; shown again */
        } else {
                kw_buf_reset(&b);
                r = compose(doc, doc_sha, cfg, o, p, &b);
                if (r.code == 0)
                        r = kwp_write_file(p->output, b.p, b.len, 0400, 0, 0);
                if (r.code == 0) {
                        kwp_remove_secret_file(p->recovery);
                        kwp_remove_secret_file(p->xks_import);
                }
        }
        if (r.code == 0)
                r = to_console(o->console, &b);
        kw_buf_free(&b);
        return r;
}
