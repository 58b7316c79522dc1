/*
 * run_api.c - the steps that use the started appliance (run_api.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "../server/common/b64.h"
#include "../server/common/err.h"
#include "../server/common/log.h"
#include "../server/common/secret.h"
#include "httpc.h"
#include "run_api.h"
#include "selftest.h"
#include "tls.h"

/* https://HOST:PORT of a listen address ("0.0.0.0:443", "[::]:8443"). */
static void url_of(const char *host, const char *listen, char *out, size_t cap)
{
        const char *colon = strrchr(listen, ':');
        bool v6 = strchr(host, ':') != NULL;
        snprintf(out, cap, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "",
                 colon != NULL ? colon + 1 : "443");
}

static const char *admin_listen(const struct kw_config *cfg)
{
        return cfg->admin.listen != NULL && cfg->admin.listen[0] != '\0' ? cfg->admin.listen
                                                                         : cfg->http.listen;
}

/* The appliance's certificate file, read. */
KW_MUST_USE static kw_result read_cert(const struct kwp_paths *p, struct kw_buf *pem)
{
        char path[KWP_PATH_MAX + 16];
        snprintf(path, sizeof path, "%s/" KWP_TLS_CERT_FILE, p->tls);
        return kwp_read_secret_file(path, pem);
}

/* "sha256//<base64>" of the certificate's public key, for CURLOPT_PINNEDPUBLICKEY. */
KW_MUST_USE static kw_result spki_pin(const struct kwp_paths *p, char *out, size_t cap)
{
        struct kw_buf pem;
        kw_buf_init(&pem, KWP_TLS_PEM_MAX);
        KW_TRY(read_cert(p, &pem));
        BIO *bio = BIO_new_mem_buf(pem.p, (int)pem.len);
        X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        BIO_free(bio);
        kw_buf_free(&pem);
        unsigned char *der = NULL;
        int n = x != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der) : -1;
        X509_free(x);
        if (n <= 0)
                return KW_FAIL(KW_ERR_CRYPTO, "the appliance's certificate cannot be read");
        unsigned char md[32];
        unsigned mdn = 0;
        int ok = EVP_Digest(der, (size_t)n, md, &mdn, EVP_sha256(), NULL);
        OPENSSL_free(der);
        KW_ENSURE(ok == 1, KW_ERR_CRYPTO);
        struct kw_buf b64;
        kw_buf_init(&b64, 64);
        kw_result r = kw_b64_encode(md, sizeof md, &b64);
        if (r.code == 0)
                snprintf(out, cap, "sha256//%.*s", (int)b64.len, (const char *)b64.p);
        kw_buf_free(&b64);
        return r;
}

/* One admin API request; *ret_status the HTTP status. */
KW_MUST_USE static kw_result api_call(const char *method, const char *url, const char *pin,
                                      const char *token, const char *body, long *ret_status,
                                      struct kw_buf *answer)
{
        struct kwp_http_body hb = { .buf = answer, .cap = answer->max };
        CURL *c = kwp_http_new("https", 15000, &hb);
        KW_ENSURE(c != NULL, KW_ERR_NOMEM);
        char auth[1100];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        struct curl_slist *hl = curl_slist_append(NULL, auth);
        hl = hl != NULL ? curl_slist_append(hl, "Content-Type: application/json") : NULL;
        kw_wipe(auth, sizeof auth);
        if (hl == NULL) {
                curl_easy_cleanup(c);
                KW_BAIL(KW_ERR_NOMEM);
        }
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        /* a loopback connection to our own key: pinned, no name to check */
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
        curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
        curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, pin);
        if (body != NULL)
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        CURLcode cc = curl_easy_perform(c);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, ret_status);
        curl_easy_cleanup(c);
        curl_slist_free_all(hl);
        if (cc != CURLE_OK)
                return KW_FAIL(KW_ERR_IO, "%s %s: %s", method, url, curl_easy_strerror(cc));
        return KW_OK;
}

static cJSON *str_array(const struct kw_strlist *l)
{
        cJSON *a = cJSON_CreateArray();
        for (size_t i = 0; a != NULL && i < l->n; i++)
                cJSON_AddItemToArray(a, cJSON_CreateString(l->v[i]));
        return a;
}

/* {"name","type","size","operations","rules":{"xks":{"key_stores"},"ekm":{"client_cns"}}} */
static char *key_body(const struct kwp_doc_key *k)
{
        cJSON *o = cJSON_CreateObject();
        bool aes = strcmp(k->type, "aes") == 0;
        cJSON_AddStringToObject(o, "name", k->name);
        cJSON_AddStringToObject(o, "type", aes ? "AES" : "RSA");
        if (k->size != 0)
                cJSON_AddNumberToObject(o, "size", (double)k->size);
        if (k->ops.n != 0)
                cJSON_AddItemToObject(o, "operations", str_array(&k->ops));
        cJSON *rules = cJSON_AddObjectToObject(o, "rules");
        if (k->xks_stores.n != 0)
                cJSON_AddItemToObject(cJSON_AddObjectToObject(rules, "xks"), "key_stores",
                                      str_array(&k->xks_stores));
        if (k->ekm_clients.n != 0)
                cJSON_AddItemToObject(cJSON_AddObjectToObject(rules, "ekm"), "client_cns",
                                      str_array(&k->ekm_clients));
        char *s = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return s;
}

kw_result kwp_initial_keys(const struct kwp_doc *doc, const struct kw_config *cfg,
                           const struct kwp_run_opts *o, const struct kwp_paths *p)
{
        if (doc->n_keys == 0)
                return KW_OK;
        char pin[128], base[300];
        KW_TRY(spki_pin(p, pin, sizeof pin));
        url_of(o->host, admin_listen(cfg), base, sizeof base);
        struct kw_buf tok;
        kw_buf_init(&tok, 1024);
        KW_TRY(kwp_read_secret_file(cfg->admin.token_file, &tok));
        while (tok.len > 0 && (tok.p[tok.len - 1] == '\n' || tok.p[tok.len - 1] == '\r'))
                tok.len--;
        char token[1025];
        snprintf(token, sizeof token, "%.*s", (int)tok.len, (const char *)tok.p);
        kw_buf_free(&tok);
        kw_result r = KW_OK;
        for (size_t i = 0; i < doc->n_keys && r.code == 0; i++) {
                const struct kwp_doc_key *k = &doc->keys[i];
                char url[400];
                snprintf(url, sizeof url, "%s/api/v1/keys", base);
                char *body = key_body(k);
                if (body == NULL) {
                        r = KW_RESULT(KW_ERR_NOMEM);
                        break;
                }
                struct kw_buf ans;
                kw_buf_init(&ans, 16384);
                long st = 0;
                /* the services may still be starting: a few tries */
                unsigned backoff = 250;
                for (int a = 0; a < 20; a++) {
                        kw_buf_reset(&ans);
                        r = api_call("POST", url, pin, token, body, &st, &ans);
                        if (r.code == 0 && st != 503)
                                break;
                        kwp_http_backoff(&backoff);
                }
                free(body);
                if (r.code == 0 && st == 409) {
                        kw_log(KW_LOG_INFO, "provision_key_exists", "key", k->name, KW_END);
                } else if (r.code == 0 && st != 201) {
                        r = KW_FAIL(KW_ERR_BAD_STATE, "[key.%s]: the admin API answered %ld: %.*s", k->name,
                                     st, (int)(ans.len > 300 ? 300 : ans.len), (const char *)ans.p);
                } else if (r.code == 0) {
                        kw_log(KW_LOG_INFO, "provision_key_created", "key", k->name, KW_END);
                }
                kw_buf_free(&ans);
        }
        kw_wipe(token, sizeof token);
        return r;
}

kw_result kwp_run_selftest(const struct kw_config *cfg, const struct kwp_run_opts *o,
                           const struct kwp_paths *p)
{
        struct kwp_selftest_opts so;
        kwp_selftest_opts_default(&so);
        char url[300], fp[KWP_TLS_FINGERPRINT_SIZE], pin[65];
        url_of(o->host, cfg->http.listen, url, sizeof url);
        so.url = url;
        struct kw_buf pem;
        kw_buf_init(&pem, KWP_TLS_PEM_MAX);
        kw_result r = read_cert(p, &pem);
        if (r.code == 0)
                r = kwp_tls_fingerprint((const char *)pem.p, pem.len, fp);
        kw_buf_free(&pem);
        KW_TRY(r);
        size_t n = 0;
        for (const char *s = fp; *s != '\0' && n < 64; s++)
                if (*s != ':')
                        pin[n++] = (char)(*s >= 'A' && *s <= 'F' ? *s - 'A' + 'a' : *s);
        pin[n] = '\0';
        so.pin_sha256 = pin;
        so.attempts = 20;
        so.timeout_ms = 5000;
        const char *secret = NULL;
        if (cfg->xks.aws_xks_enable) {
                so.xks_prefix = cfg->xks.aws_xks_uri_prefix;
                so.access_key_id = cfg->xks.aws_xks_sigv4_access_key_id;
                secret = cfg->xks.aws_xks_sigv4_secret_access_key;
                so.region = cfg->xks.aws_xks_region;
                so.service = cfg->xks.aws_xks_service;
        } else if (cfg->n_xks_stores > 0) {
                const struct kw_xks_store *s = &cfg->xks_stores[0];
                so.xks_prefix = s->uri_prefix;
                so.access_key_id = s->access_key_id;
                secret = s->secret_access_key;
                so.region = s->region;
                so.service = s->service;
        }
        if (secret != NULL) {
                so.secret = (const uint8_t *)secret;
                so.secret_len = strlen(secret);
        }
        if (cfg->ekm.azure_ekm_enable)
                so.ekm_prefix = cfg->ekm.azure_ekm_path_prefix;
        struct kwp_selftest_report rep;
        return kwp_selftest_run(&so, &rep);
}
