/*
 * run_api.c - the steps that use the started appliance (run_api.h).
 */
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include "../server/common/b64.h"
#include "../server/common/json_io.h"
#include "../server/common/err.h"
#include "../server/common/log.h"
#include "../server/common/secret.h"
#include "../server/common/tpm_ak.h"
#include "httpc.h"
#include "run_api.h"
#include "selftest.h"
#include "spawn.h"
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

/* One request to our own listener (the admin API with token, or a public
 * path with token NULL); *ret_status the HTTP status. */
KW_MUST_USE static kw_result api_call(const char *method, const char *url, const char *pin,
                                      const char *token, const char *body, long *ret_status,
                                      struct kw_buf *answer)
{
        struct kwp_http_body hb = { .buf = answer, .cap = answer->max };
        CURL *c = kwp_http_new("https", 15000, &hb);
        KW_ENSURE(c != NULL, KW_ERR_NOMEM);
        char auth[1100] = "Accept: application/json";
        if (token != NULL)
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
        for (struct curl_slist *x = hl; x != NULL; x = x->next)
                kw_wipe(x->data, strlen(x->data)); /* libcurl's copy of the bearer token */
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

static bool empty(const char *s) { return s == NULL || s[0] == '\0'; }

/* The admin API as provisioning uses it: where, pinned to what, with which token. */
struct api {
        char base[300];
        char pin[128];
        char token[1025];
        bool temporary;              /* made by keywardd --recover-admin for this step */
};

/* A call with a few tries while the services start (503, no connection). */
KW_MUST_USE static kw_result api_try(struct api *a, const char *method, const char *path, const char *body,
                                     long *st, struct kw_buf *ans)
{
        char url[600];
        snprintf(url, sizeof url, "%s%s", a->base, path);
        unsigned backoff = 250;
        kw_result r = KW_OK;
        for (int i = 0; i < 20; i++) {
                kw_buf_reset(ans);
                r = api_call(method, url, a->pin, a->token, body, st, ans);
                if (r.code == 0 && *st != 503)
                        return KW_OK;
                kwp_http_backoff(&backoff);
        }
        return r.code != 0 ? r : KW_FAIL(KW_ERR_BAD_STATE, "%s %s: still 503 (the services do not answer)",
                                         method, path);
}

/* The first admin token: the generated one, or (the document gave only its
 * hash) provisioning's own (kwp_provisioning_token), revoked at the end. */
KW_MUST_USE static kw_result api_open(struct api *a, const struct kwp_doc *doc, const struct kw_config *cfg,
                                      const struct kwp_run_opts *o, const struct kwp_paths *p)
{
        memset(a, 0, sizeof *a);
        KW_TRY(spki_pin(p, a->pin, sizeof a->pin));
        url_of(o->host, admin_listen(cfg), a->base, sizeof a->base);
        a->temporary = !empty(doc->admin.token_sha256);
        struct kw_buf tok;
        kw_buf_init(&tok, 1024);
        KW_TRY(kwp_read_secret_file(cfg->admin.token_file, &tok));
        while (tok.len > 0 && (tok.p[tok.len - 1] == '\n' || tok.p[tok.len - 1] == '\r'))
                tok.len--;
        snprintf(a->token, sizeof a->token, "%.*s", (int)tok.len, (const char *)tok.p);
        kw_buf_free(&tok);
        return KW_OK;
}

/* The temporary token revoked (the customer's, whose hash they gave, stays)
 * and its file removed. */
KW_MUST_USE static kw_result api_close(struct api *a, const struct kw_config *cfg)
{
        kw_result r = KW_OK;
        if (a->temporary) {
                struct kw_buf ans;
                kw_buf_init(&ans, 256 * 1024);
                long st = 0;
                r = api_try(a, "GET", "/api/v1/tokens", NULL, &st, &ans);
                cJSON *doc = NULL;
                if (r.code == 0 && (st != 200 || kw_json_parse(ans.p, ans.len, 8, &doc).code != 0))
                        r = KW_FAIL(KW_ERR_BAD_STATE, "GET /api/v1/tokens: %ld", st);
                const cJSON *t = NULL;
                const cJSON *list = doc != NULL ? cJSON_GetObjectItemCaseSensitive(doc, "tokens") : NULL;
                cJSON_ArrayForEach(t, list) {
                        const cJSON *id = cJSON_GetObjectItemCaseSensitive(t, "id");
                        const cJSON *name = cJSON_GetObjectItemCaseSensitive(t, "name");
                        const cJSON *rev = cJSON_GetObjectItemCaseSensitive(t, "revoked");
                        if (r.code != 0 || !cJSON_IsString(id) || !cJSON_IsString(name) ||
                            strncmp(name->valuestring, "recovered-admin-", 16) != 0 || !cJSON_IsNull(rev))
                                continue;
                        char path[128];
                        snprintf(path, sizeof path, "/api/v1/tokens/%.64s", id->valuestring);
                        r = api_try(a, "DELETE", path, NULL, &st, &ans);
                        if (r.code == 0 && st != 200)
                                r = KW_FAIL(KW_ERR_BAD_STATE, "revoke provisioning's token: %ld", st);
                        if (r.code == 0)
                                kw_log(KW_LOG_INFO, "provision_token_revoked", "token", id->valuestring, KW_END);
                }
                cJSON_Delete(doc);
                kw_buf_free(&ans);
                if (r.code == 0)
                        kwp_remove_secret_file(cfg->admin.token_file);
        }
        kw_wipe(a, sizeof *a);
        return r;
}

/* POST body (taken: freed here; NULL: out of memory) to path. */
KW_MUST_USE static kw_result api_create(struct api *a, const char *path, char *body, long *st,
                                        struct kw_buf *ans)
{
        kw_result r = body != NULL ? api_try(a, "POST", path, body, st, ans) : KW_RESULT(KW_ERR_NOMEM);
        free(body);
        return r;
}

/* The API's refusal of the document's [table.name], its answer quoted. */
static kw_result api_refused(const char *table, const char *name, long st, const struct kw_buf *ans)
{
        return KW_FAIL(KW_ERR_BAD_STATE, "[%s.%s]: the admin API answered %ld: %.*s", table, name, st,
                       (int)(ans->len > 300 ? 300 : ans->len), (const char *)ans->p);
}

/* {"name","uri_prefix","region"} */
static char *store_body(const struct kwp_doc_store *s)
{
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", s->name);
        cJSON_AddStringToObject(o, "uri_prefix", s->uri_prefix);
        cJSON_AddStringToObject(o, "region", s->region);
        char *t = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        return t;
}

/* Each store made (or found: a run resumed), its import file kept for the
 * self-test and the output: {"stores":[the API's answers]}, in a file
 * only root reads on the encrypted volume. */
KW_MUST_USE static kw_result make_stores(struct api *a, const struct kwp_doc *doc, const struct kwp_paths *p)
{
        struct kw_buf all, ans;
        kw_buf_init(&all, 256 * 1024);
        kw_buf_init(&ans, 64 * 1024);
        kw_result r = kw_buf_put(&all, "{\"stores\":[", 11);
        for (size_t i = 0; i < doc->n_xks && r.code == 0; i++) {
                const struct kwp_doc_store *s = &doc->xks[i];
                long st = 0;
                r = api_create(a, "/api/v1/xks/stores", store_body(s), &st, &ans);
                if (r.code == 0 && st == 409) {
                        char path[128];
                        snprintf(path, sizeof path, "/api/v1/xks/stores/%s/import-file", s->name);
                        r = api_try(a, "GET", path, NULL, &st, &ans);
                        if (r.code == 0 && st != 200)
                                r = KW_FAIL(KW_ERR_BAD_STATE, "[aws_xks_store.%s]: the store's name or prefix is "
                                            "taken by another store (%ld)", s->name, st);
                } else if (r.code == 0 && st != 201) {
                        r = api_refused("aws_xks_store", s->name, st, &ans);
                }
                if (r.code == 0 && i > 0)
                        r = kw_buf_put(&all, ",", 1);
                if (r.code == 0)
                        r = kw_buf_put(&all, ans.p, ans.len);
                if (r.code == 0)
                        kw_log(KW_LOG_INFO, "provision_xks_store", "store", s->name, KW_END);
        }
        if (r.code == 0)
                r = kw_buf_put(&all, "]}", 2);
        if (r.code == 0)
                r = kwp_write_secret_file(p->xks_import, all.p, all.len, 0, 0);
        kw_buf_free(&all);
        kw_buf_free(&ans);
        return r;
}

KW_MUST_USE static kw_result make_keys(struct api *a, const struct kwp_doc *doc)
{
        kw_result r = KW_OK;
        struct kw_buf ans;
        kw_buf_init(&ans, 16384);
        for (size_t i = 0; i < doc->n_keys && r.code == 0; i++) {
                const struct kwp_doc_key *k = &doc->keys[i];
                long st = 0;
                r = api_create(a, "/api/v1/keys", key_body(k), &st, &ans);
                if (r.code == 0 && st == 409)
                        kw_log(KW_LOG_INFO, "provision_key_exists", "key", k->name, KW_END);
                else if (r.code == 0 && st != 201)
                        r = api_refused("key", k->name, st, &ans);
                else if (r.code == 0)
                        kw_log(KW_LOG_INFO, "provision_key_created", "key", k->name, KW_END);
        }
        kw_buf_free(&ans);
        return r;
}

kw_result kwp_provisioning_token(const struct kwp_doc *doc, const struct kw_config *cfg,
                                 const struct kwp_run_opts *o, const struct kwp_paths *p)
{
        if (empty(doc->admin.token_sha256) || (doc->n_keys == 0 && doc->n_xks == 0) ||
            access(cfg->admin.token_file, F_OK) == 0)
                return KW_OK;
        char conf_env[KWP_PATH_MAX + 16];
        snprintf(conf_env, sizeof conf_env, "SOFTHSM2_CONF=%s", p->softhsm_conf);
        const char *env[] = { conf_env, NULL };
        const char *argv[] = { o->keywardd_bin, "--config", p->conf, "--recover-admin", NULL };
        struct kwp_spawn sp = { .argv = argv, .env = env, .timeout_ms = 120000 };
        int st = 0;
        kw_result r = kwp_spawn_run(&sp, NULL, &st);
        if (r.code != 0 || st != 0)
                return KW_FAIL(KW_ERR_IO, "keywardd --recover-admin (a token for provisioning's own "
                                          "calls): %s", r.code ? kw_err_detail() : "failed");
        return KW_OK;
}

kw_result kwp_initial_keys(const struct kwp_doc *doc, const struct kw_config *cfg,
                           const struct kwp_run_opts *o, const struct kwp_paths *p)
{
        if (doc->n_keys == 0 && doc->n_xks == 0)
                return KW_OK;
        struct api a;
        KW_TRY(api_open(&a, doc, cfg, o, p));
        kw_result r = make_stores(&a, doc, p);
        if (r.code == 0)
                r = make_keys(&a, doc);
        char why[512];
        snprintf(why, sizeof why, "%s", kw_err_detail());
        kw_result c = api_close(&a, cfg);
        if (r.code != 0)
                kw_err_set_detail("%s", why); /* the first failure is the one to fix */
        return r.code != 0 ? r : c;
}

/* The pin from one evidence document answering nonce. */
static void ak_of_evidence(const struct kw_buf *ans, const char *nonce, struct kwp_ak_pin *ret)
{
        cJSON *ev = NULL;
        if (kw_json_parse(ans->p, ans->len, 8, &ev).code != 0 || !cJSON_IsObject(ev)) {
                snprintf(ret->why, sizeof ret->why, "GET /attestation did not answer evidence");
                cJSON_Delete(ev);
                return;
        }
        const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(ev, "nonce"));
        const cJSON *tpm = cJSON_GetObjectItemCaseSensitive(ev, "tpm");
        const char *absent = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tpm, "absent"));
        const char *akp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(tpm, "ak_public"));
        if (n == NULL || strcmp(n, nonce) != 0)
                snprintf(ret->why, sizeof ret->why, "the evidence does not answer our nonce");
        else if (absent != NULL)
                snprintf(ret->why, sizeof ret->why, "no TPM: %.240s", absent);
        else if (kw_tpm_ak_sha256(akp, ret->sha256).code != 0)
                snprintf(ret->why, sizeof ret->why, "the evidence's tpm.ak_public is not a TPM2B_PUBLIC");
        cJSON_Delete(ev);
}

void kwp_ak_pin(const struct kw_config *cfg, const struct kwp_run_opts *o, const struct kwp_paths *p,
                struct kwp_ak_pin *ret)
{
        memset(ret, 0, sizeof *ret);
        if (!cfg->attestation.enable) {
                snprintf(ret->why, sizeof ret->why, "[attestation] enable = false");
                return;
        }
        uint8_t nonce[32];
        char nhex[65], base[300], url[400], pin[128];
        struct kw_buf ans;
        kw_buf_init(&ans, 4u << 20);
        kw_result r = RAND_bytes(nonce, sizeof nonce) == 1 ? KW_OK : KW_FAIL(KW_ERR_RANDOM, "RAND_bytes");
        for (size_t i = 0; r.code == 0 && i < sizeof nonce; i++)
                snprintf(nhex + 2 * i, 3, "%02x", nonce[i]);
        if (r.code == 0)
                r = spki_pin(p, pin, sizeof pin);
        url_of(o->host, cfg->http.listen, base, sizeof base);
        snprintf(url, sizeof url, "%s/attestation?nonce=%s", base, r.code == 0 ? nhex : "");
        long st = 0;
        unsigned backoff = 250;
        /* the services answer already (the self-test); 503 while custody sets
         * the collector up, 429 past its rate */
        for (int i = 0; r.code == 0 && i < 8; i++) {
                kw_buf_reset(&ans);
                r = api_call("GET", url, pin, NULL, NULL, &st, &ans);   /* public: no token */
                if (r.code != 0 || (st != 503 && st != 429))
                        break;
                kwp_http_backoff(&backoff);
        }
        if (r.code != 0)
                snprintf(ret->why, sizeof ret->why, "%.290s", kw_err_detail());
        else if (st != 200)
                snprintf(ret->why, sizeof ret->why, "GET /attestation answered %ld", st);
        else
                ak_of_evidence(&ans, nhex, ret);
        kw_buf_free(&ans);
}

/* The first store's credential, from the import files the keys step kept. */
KW_MUST_USE static kw_result first_store(const struct kwp_paths *p, cJSON **ret_doc, const cJSON **ret_file)
{
        struct kw_buf b;
        kw_buf_init(&b, 256 * 1024);
        kw_result r = kwp_read_secret_file(p->xks_import, &b);
        cJSON *doc = NULL;
        if (r.code == 0 && kw_json_parse(b.p, b.len, 8, &doc).code != 0)
                r = KW_FAIL(KW_ERR_BAD_FIELD, "%s is not what the keys step wrote", p->xks_import);
        kw_buf_free(&b);
        KW_TRY(r);
        *ret_doc = doc;
        *ret_file = cJSON_GetObjectItemCaseSensitive(
                cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(doc, "stores"), 0), "import_file");
        return KW_OK;
}

kw_result kwp_run_selftest(const struct kw_config *cfg, const struct kwp_run_opts *o,
                           const struct kwp_paths *p, const char *xks_region)
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
        cJSON *imp = NULL;
        const cJSON *file = NULL;
        if (access(p->xks_import, F_OK) == 0)
                KW_TRY(first_store(p, &imp, &file));
        const cJSON *cred = cJSON_GetObjectItemCaseSensitive(file, "XksProxyAuthenticationCredential");
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(file, "XksProxyUriPath");
        const cJSON *akid = cJSON_GetObjectItemCaseSensitive(cred, "AccessKeyId");
        const cJSON *sec = cJSON_GetObjectItemCaseSensitive(cred, "RawSecretAccessKey");
        char prefix[200] = "";
        if (cJSON_IsString(path) && cJSON_IsString(akid) && cJSON_IsString(sec)) {
                size_t pl = strlen(path->valuestring), tail = strlen("/kms/xks/v1");
                snprintf(prefix, sizeof prefix, "%.*s", (int)(pl >= tail ? pl - tail : 0), path->valuestring);
                so.xks_prefix = prefix;
                so.access_key_id = akid->valuestring;
                so.secret = (const uint8_t *)sec->valuestring;
                so.secret_len = strlen(sec->valuestring);
                if (xks_region != NULL && xks_region[0] != '\0')
                        so.region = xks_region;   /* the store's: the front checks the scope */
        }
        if (cfg->ekm.azure_ekm_enable)
                so.ekm_prefix = cfg->ekm.azure_ekm_path_prefix;
        struct kwp_selftest_report rep;
        r = kwp_selftest_run(&so, &rep);
        if (cJSON_IsString(sec))
                kw_wipe(sec->valuestring, strlen(sec->valuestring));
        cJSON_Delete(imp);
        return r;
}
