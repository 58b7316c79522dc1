/* luks2_check.c - the LUKS2 header JSON checked against one shape (luks2_check.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cJSON.h>

#include "../../server/common/b64.h"
#include "../../server/common/json_io.h"
#include "luks2_check.h"

#define HDR_JSON_DEPTH 8
#define TPM2_BLOB_MAX (16u * 1024u)    /* TPM2B_PRIVATE + TPM2B_PUBLIC, base64   */
#define TPM2_PUBKEY_MAX (16u * 1024u)  /* a PEM public key, base64               */

/* Every check fails through here: one sentence naming what and where. */
#define REFUSE(...)                                         \
        do {                                                \
                kw_err_set_detail(__VA_ARGS__);             \
                KW_BAIL(KW_ERR_LUKS_TAMPERED);              \
        } while (0)

void kwu_expect_default(struct kwu_expect *exp)
{
        exp->cipher = KWU_CIPHER_DEFAULT;
        exp->key_bytes = KWU_KEY_BYTES_DEFAULT;
        exp->extra_keyslots = 0;
}

const char *kwu_token_type_name(enum kwu_token_type t)
{
        return t == KWU_TOKEN_SYSTEMD_TPM2       ? "systemd-tpm2"
               : t == KWU_TOKEN_SYSTEMD_RECOVERY ? "systemd-recovery"
               : t == KWU_TOKEN_KEYWARD_SNP      ? "keyward-snp"
                                                 : "?";
}

/* ---------------------------------------------------------------- helpers */

/* Refuses any member of obj not in names (NULL-terminated). */
static kw_result only_members(const cJSON *obj, const char *const *names, const char *where)
{
        for (const cJSON *m = obj->child; m != NULL; m = m->next) {
                size_t i = 0;
                while (names[i] != NULL && strcmp(names[i], m->string) != 0)
                        i++;
                if (names[i] == NULL)
                        REFUSE("%s has an unexpected member \"%.40s\"", where, m->string);
        }
        return KW_OK;
}

static const cJSON *member(const cJSON *obj, const char *name)
{
        return cJSON_GetObjectItemCaseSensitive(obj, name);
}

static kw_result need_object(const cJSON *v, const char *where)
{
        if (!cJSON_IsObject(v))
                REFUSE("%s is missing or not an object", where);
        return KW_OK;
}

/* A string member equal to want. */
static kw_result need_str(const cJSON *obj, const char *name, const char *want, const char *where)
{
        const cJSON *v = member(obj, name);
        if (!cJSON_IsString(v))
                REFUSE("%s.%s is missing or not a string", where, name);
        if (want != NULL && strcmp(v->valuestring, want) != 0)
                REFUSE("%s.%s is \"%.40s\", expected \"%s\"", where, name, v->valuestring, want);
        return KW_OK;
}

/* A string member among the NULL-terminated choices; *ret points into obj. */
static kw_result need_choice(const cJSON *obj, const char *name, const char *const *choices,
                             const char *where, const char **ret)
{
        KW_TRY(need_str(obj, name, NULL, where));
        const char *s = member(obj, name)->valuestring;
        for (size_t i = 0; choices[i] != NULL; i++)
                if (strcmp(s, choices[i]) == 0) {
                        *ret = choices[i];
                        return KW_OK;
                }
        REFUSE("%s.%s is \"%.40s\", which is not accepted", where, name, s);
}

/* A number member holding an integer in [min, max]. */
static kw_result need_int(const cJSON *obj, const char *name, int64_t min, int64_t max, const char *where,
                          int64_t *ret)
{
        const cJSON *v = member(obj, name);
        if (!cJSON_IsNumber(v))
                REFUSE("%s.%s is missing or not a number", where, name);
        double d = v->valuedouble;
        if (!(d >= (double)min && d <= (double)max) || d != (double)(int64_t)d)
                REFUSE("%s.%s is out of range", where, name);
        if (ret != NULL)
                *ret = (int64_t)d;
        return KW_OK;
}

/* A string member holding a decimal unsigned number (LUKS2 writes offsets
 * and sizes as strings). */
static kw_result need_u64_str(const cJSON *obj, const char *name, const char *where, uint64_t *ret)
{
        KW_TRY(need_str(obj, name, NULL, where));
        const char *s = member(obj, name)->valuestring;
        size_t n = strlen(s);
        if (n == 0 || n > 19 || strspn(s, "0123456789") != n || (n > 1 && s[0] == '0'))
                REFUSE("%s.%s is not a decimal number", where, name);
        if (ret != NULL)
                *ret = strtoull(s, NULL, 10);
        return KW_OK;
}

/* Object keys that are LUKS2 ids: "0".."31", no leading zero. */
static int slot_id(const char *s, unsigned *ret)
{
        size_t n = strlen(s);
        if (n == 0 || n > 2 || strspn(s, "0123456789") != n || (n == 2 && s[0] == '0'))
                return 0;
        unsigned v = (unsigned)atoi(s);
        if (v >= KWU_MAX_SLOTS)
                return 0;
        *ret = v;
        return 1;
}

/* An array of id strings, each naming a keyslot in have; the mask in *ret. */
static kw_result need_slot_refs(const cJSON *obj, const char *name, uint32_t have, const char *where,
                                uint32_t *ret)
{
        const cJSON *a = member(obj, name);
        if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) == 0)
                REFUSE("%s.%s is missing, empty or not an array", where, name);
        uint32_t mask = 0;
        for (const cJSON *e = a->child; e != NULL; e = e->next) {
                unsigned id;
                if (!cJSON_IsString(e) || !slot_id(e->valuestring, &id))
                        REFUSE("%s.%s holds something that is not a keyslot id", where, name);
                if (!(have & (1u << id)))
                        REFUSE("%s.%s names keyslot %u, which does not exist", where, name, id);
                if (mask & (1u << id))
                        REFUSE("%s.%s names keyslot %u twice", where, name, id);
                mask |= 1u << id;
        }
        *ret = mask;
        return KW_OK;
}

/* A PCR list: JSON integers 0..23, no repeats. */
static kw_result need_pcrs(const cJSON *obj, const char *name, const char *where, uint32_t *ret)
{
        const cJSON *a = member(obj, name);
        if (!cJSON_IsArray(a))
                REFUSE("%s.%s is missing or not an array", where, name);
        uint32_t mask = 0;
        for (const cJSON *e = a->child; e != NULL; e = e->next) {
                double d = cJSON_IsNumber(e) ? e->valuedouble : -1;
                if (!(d >= 0 && d <= 23) || d != (double)(int)d)
                        REFUSE("%s.%s holds something that is not a PCR index (0..23)", where, name);
                if (mask & (1u << (int)d))
                        REFUSE("%s.%s names PCR %d twice", where, name, (int)d);
                mask |= 1u << (int)d;
        }
        *ret = mask;
        return KW_OK;
}

/* ------------------------------------------------------- cipher_null scan */

/* Any string anywhere naming the null cipher; *path gets where (the first). */
static int names_null_cipher(const cJSON *v, char *path, size_t cap)
{
        if (cJSON_IsString(v)) {
                for (const char *p = v->valuestring; *p != '\0'; p++)
                        if (strncasecmp(p, "cipher_null", 11) == 0)
                                return 1;
                return strcasecmp(v->valuestring, "null") == 0 && v->string != NULL &&
                       strcmp(v->string, "encryption") == 0;
        }
        for (const cJSON *c = v->child; c != NULL; c = c->next)
                if (names_null_cipher(c, path, cap)) {
                        char tail[160];
                        snprintf(tail, sizeof tail, "%s", path);
                        if (c->string != NULL)
                                snprintf(path, cap, ".%.40s%.150s", c->string, tail);
                        else
                                snprintf(path, cap, "[]%.150s", tail);
                        return 1;
                }
        return 0;
}

/* -------------------------------------------------------------- sections */

static kw_result check_config(const cJSON *cfg, uint64_t hdr_size)
{
        static const char *const names[] = { "json_size", "keyslots_size", "flags", "requirements", NULL };
        KW_TRY(need_object(cfg, "config"));
        KW_TRY(only_members(cfg, names, "config"));
        uint64_t js = 0;
        KW_TRY(need_u64_str(cfg, "json_size", "config", &js));
        if (js != hdr_size - 4096)
                REFUSE("config.json_size %llu does not match the header size %llu", (unsigned long long)js,
                       (unsigned long long)hdr_size);
        KW_TRY(need_u64_str(cfg, "keyslots_size", "config", NULL));
        const cJSON *f = member(cfg, "flags");
        if (f != NULL && (!cJSON_IsArray(f) || cJSON_GetArraySize(f) != 0))
                REFUSE("config.flags is set (activation flags are not ours to accept)");
        if (member(cfg, "requirements") != NULL)
                REFUSE("config.requirements is set (e.g. a reencryption in progress)");
        return KW_OK;
}

static kw_result check_segments(const cJSON *segs, const struct kwu_expect *exp, struct kwu_layout *out)
{
        static const char *const names[] = { "type", "offset", "size", "iv_tweak", "encryption", "sector_size", NULL };
        KW_TRY(need_object(segs, "segments"));
        if (cJSON_GetArraySize(segs) != 1 || !cJSON_IsObject(member(segs, "0")))
                REFUSE("segments must be exactly one data segment \"0\"");
        const cJSON *s = member(segs, "0");
        KW_TRY(only_members(s, names, "segments.0"));
        KW_TRY(need_str(s, "type", "crypt", "segments.0"));
        KW_TRY(need_str(s, "encryption", exp->cipher, "segments.0"));
        KW_TRY(need_str(s, "iv_tweak", "0", "segments.0"));
        KW_TRY(need_u64_str(s, "offset", "segments.0", &out->data_offset));
        const cJSON *size = member(s, "size");
        if (!cJSON_IsString(size) || strcmp(size->valuestring, "dynamic") != 0)
                KW_TRY(need_u64_str(s, "size", "segments.0", NULL));
        int64_t sector = 0;
        KW_TRY(need_int(s, "sector_size", 512, 4096, "segments.0", &sector));
        if (sector != 512 && sector != 4096)
                REFUSE("segments.0.sector_size %lld is neither 512 nor 4096", (long long)sector);
        out->sector_size = (unsigned)sector;
        snprintf(out->cipher, sizeof out->cipher, "%s", exp->cipher);
        return KW_OK;
}

static kw_result check_kdf(const cJSON *kdf, const char *where, struct kwu_keyslot *ks)
{
        static const char *const types[] = { "pbkdf2", "argon2i", "argon2id", NULL };
        static const char *const hashes[] = { "sha256", "sha512", NULL };
        static const char *const pbkdf2[] = { "type", "hash", "iterations", "salt", NULL };
        static const char *const argon2[] = { "type", "time", "memory", "cpus", "salt", NULL };
        KW_TRY(need_object(kdf, where));
        const char *type = NULL;
        KW_TRY(need_choice(kdf, "type", types, where, &type));
        snprintf(ks->kdf, sizeof ks->kdf, "%s", type);
        KW_TRY(need_str(kdf, "salt", NULL, where));
        int64_t cost = 0;
        if (strcmp(type, "pbkdf2") == 0) {
                const char *hash = NULL;
                KW_TRY(only_members(kdf, pbkdf2, where));
                KW_TRY(need_choice(kdf, "hash", hashes, where, &hash));
                KW_TRY(need_int(kdf, "iterations", 1000, UINT32_MAX, where, &cost));
                snprintf(ks->kdf_hash, sizeof ks->kdf_hash, "%s", hash);
        } else {
                KW_TRY(only_members(kdf, argon2, where));
                KW_TRY(need_int(kdf, "time", 1, UINT32_MAX, where, &cost));
                KW_TRY(need_int(kdf, "memory", 32, 4 * 1024 * 1024, where, NULL));
                KW_TRY(need_int(kdf, "cpus", 1, 64, where, NULL));
        }
        ks->kdf_cost = (uint64_t)cost;
        return KW_OK;
}

static kw_result check_keyslot(const cJSON *k, unsigned id, const struct kwu_expect *exp, struct kwu_keyslot *ks)
{
        static const char *const names[] = { "type", "key_size", "af", "area", "kdf", "priority", NULL };
        static const char *const af_names[] = { "type", "stripes", "hash", NULL };
        static const char *const area_names[] = { "type", "offset", "size", "encryption", "key_size", NULL };
        static const char *const hashes[] = { "sha256", "sha512", NULL };
        char where[48], sub[64];
        snprintf(where, sizeof where, "keyslots.%u", id);
        KW_TRY(need_object(k, where));
        KW_TRY(only_members(k, names, where));
        KW_TRY(need_str(k, "type", "luks2", where));
        KW_TRY(need_int(k, "key_size", exp->key_bytes, exp->key_bytes, where, NULL));
        if (member(k, "priority") != NULL)
                KW_TRY(need_int(k, "priority", 0, 2, where, NULL));

        const cJSON *af = member(k, "af");
        snprintf(sub, sizeof sub, "%s.af", where);
        KW_TRY(need_object(af, sub));
        KW_TRY(only_members(af, af_names, sub));
        KW_TRY(need_str(af, "type", "luks1", sub));
        KW_TRY(need_int(af, "stripes", 4000, 4000, sub, NULL));
        const char *h = NULL;
        KW_TRY(need_choice(af, "hash", hashes, sub, &h));

        const cJSON *area = member(k, "area");
        snprintf(sub, sizeof sub, "%s.area", where);
        KW_TRY(need_object(area, sub));
        KW_TRY(only_members(area, area_names, sub));
        KW_TRY(need_str(area, "type", "raw", sub));
        KW_TRY(need_str(area, "encryption", exp->cipher, sub));
        KW_TRY(need_int(area, "key_size", exp->key_bytes, exp->key_bytes, sub, NULL));
        KW_TRY(need_u64_str(area, "offset", sub, NULL));
        KW_TRY(need_u64_str(area, "size", sub, NULL));

        snprintf(sub, sizeof sub, "%s.kdf", where);
        KW_TRY(check_kdf(member(k, "kdf"), sub, ks));
        ks->id = id;
        return KW_OK;
}

static kw_result check_keyslots(const cJSON *slots, const struct kwu_expect *exp, struct kwu_layout *out,
                                uint32_t *ret_have)
{
        KW_TRY(need_object(slots, "keyslots"));
        uint32_t have = 0;
        for (const cJSON *k = slots->child; k != NULL; k = k->next) {
                unsigned id;
                if (!slot_id(k->string, &id))
                        REFUSE("keyslots has an entry \"%.20s\" that is not a keyslot id", k->string);
                have |= 1u << id;
        }
        if (have == 0)
                REFUSE("the header has no keyslot");
        out->nslots = 0;
        for (unsigned id = 0; id < KWU_MAX_SLOTS; id++) {
                if (!(have & (1u << id)))
                        continue;
                char key[4];
                snprintf(key, sizeof key, "%u", id);
                KW_TRY(check_keyslot(member(slots, key), id, exp, &out->slots[out->nslots]));
                out->nslots++;
        }
        *ret_have = have;
        return KW_OK;
}

static kw_result check_digests(const cJSON *digs, uint32_t have)
{
        static const char *const names[] = { "type", "keyslots", "segments", "hash", "iterations", "salt", "digest", NULL };
        static const char *const hashes[] = { "sha256", "sha512", NULL };
        KW_TRY(need_object(digs, "digests"));
        if (cJSON_GetArraySize(digs) != 1)
                REFUSE("digests must be exactly one (the volume key's)");
        const cJSON *d = digs->child;
        unsigned id;
        if (!slot_id(d->string, &id))
                REFUSE("digests has an entry \"%.20s\" that is not an id", d->string);
        char where[32];
        snprintf(where, sizeof where, "digests.%u", id);
        KW_TRY(need_object(d, where));
        KW_TRY(only_members(d, names, where));
        KW_TRY(need_str(d, "type", "pbkdf2", where));
        const char *h = NULL;
        KW_TRY(need_choice(d, "hash", hashes, where, &h));
        KW_TRY(need_int(d, "iterations", 1000, UINT32_MAX, where, NULL));
        KW_TRY(need_str(d, "salt", NULL, where));
        KW_TRY(need_str(d, "digest", NULL, where));
        const cJSON *segs = member(d, "segments");
        if (!cJSON_IsArray(segs) || cJSON_GetArraySize(segs) != 1 || !cJSON_IsString(segs->child) ||
            strcmp(segs->child->valuestring, "0") != 0)
                REFUSE("%s.segments must be exactly [\"0\"]", where);
        uint32_t bound = 0;
        KW_TRY(need_slot_refs(d, "keyslots", have, where, &bound));
        if (bound != have)
                REFUSE("%s does not bind every keyslot to the data segment", where);
        return KW_OK;
}

static kw_result check_tpm2_token(const cJSON *t, const char *where, struct kwu_token *tok)
{
        static const char *const names[] = { "type", "keyslots", "tpm2-blob", "tpm2-pcrs", "tpm2-pcr-bank",
                                             "tpm2-primary-alg", "tpm2-policy-hash", "tpm2-pin",
                                             "tpm2_pubkey_pcrs", "tpm2_pubkey", NULL };
        static const char *const banks[] = { "sha1", "sha256", "sha384", "sha512", NULL };
        static const char *const algs[] = { "ecc", "rsa", NULL };
        KW_TRY(only_members(t, names, where));
        KW_TRY(need_str(t, "tpm2-blob", NULL, where));
        const char *blob = member(t, "tpm2-blob")->valuestring;
        size_t bl = strlen(blob);
        struct kw_buf raw;
        kw_buf_init(&raw, TPM2_BLOB_MAX);
        kw_result r = bl <= TPM2_BLOB_MAX ? kw_b64_decode(blob, bl, &raw) : KW_RESULT(KW_ERR_TOO_LARGE);
        size_t rawlen = raw.len;
        kw_buf_free(&raw);
        if (r.code != 0 || rawlen < 4)
                REFUSE("%s.tpm2-blob is not a base64 TPM object", where);
        KW_TRY(need_pcrs(t, "tpm2-pcrs", where, &tok->pcrs));
        KW_TRY(need_str(t, "tpm2-policy-hash", NULL, where));
        const char *ph = member(t, "tpm2-policy-hash")->valuestring;
        if (strlen(ph) != 64 || strspn(ph, "0123456789abcdef") != 64)
                REFUSE("%s.tpm2-policy-hash is not a SHA-256 digest in lower-case hex", where);
        const char *v = "sha256";
        if (member(t, "tpm2-pcr-bank") != NULL)
                KW_TRY(need_choice(t, "tpm2-pcr-bank", banks, where, &v));
        snprintf(tok->bank, sizeof tok->bank, "%s", v);
        v = "ecc";
        if (member(t, "tpm2-primary-alg") != NULL)
                KW_TRY(need_choice(t, "tpm2-primary-alg", algs, where, &v));
        snprintf(tok->primary_alg, sizeof tok->primary_alg, "%s", v);
        const cJSON *pin = member(t, "tpm2-pin");
        if (pin != NULL && !cJSON_IsBool(pin))
                REFUSE("%s.tpm2-pin is not a boolean", where);
        tok->pin = cJSON_IsTrue(pin);
        const cJSON *pk = member(t, "tpm2_pubkey");
        const cJSON *pkp = member(t, "tpm2_pubkey_pcrs");
        if ((pk == NULL) != (pkp == NULL))
                REFUSE("%s has one of tpm2_pubkey and tpm2_pubkey_pcrs without the other", where);
        if (pk != NULL) {
                if (!cJSON_IsString(pk) || strlen(pk->valuestring) > TPM2_PUBKEY_MAX ||
                    strlen(pk->valuestring) == 0)
                        REFUSE("%s.tpm2_pubkey is not a base64 public key", where);
                KW_TRY(need_pcrs(t, "tpm2_pubkey_pcrs", where, &tok->pubkey_pcrs));
                if (tok->pubkey_pcrs == 0)
                        REFUSE("%s signs a PCR policy over no PCR", where);
                tok->has_pubkey = 1;
        }
        if (tok->pcrs == 0 && !tok->has_pubkey)
                REFUSE("%s binds to no PCR at all (it would unseal on any machine with this TPM)", where);
        return KW_OK;
}

/* The PCR values of a keyward-tpm2-pcrs token: an object of PCR index to
 * SHA-256 value in lower-case hex; *ret_mask the indexes.  out (may be
 * NULL): the values by index. */
static kw_result pcr_values_of(const cJSON *t, const char *where, uint32_t *ret_mask, uint8_t (*out)[32])
{
        const cJSON *vals = member(t, "tpm2-pcr-values");
        if (!cJSON_IsObject(vals) || vals->child == NULL)
                REFUSE("%s.tpm2-pcr-values is missing, empty or not an object", where);
        uint32_t mask = 0;
        for (const cJSON *v = vals->child; v != NULL; v = v->next) {
                unsigned i;
                if (!slot_id(v->string, &i) || i > 23)
                        REFUSE("%s.tpm2-pcr-values has \"%.20s\", not a PCR index (0..23)", where, v->string);
                if (!cJSON_IsString(v) || strlen(v->valuestring) != 64 ||
                    strspn(v->valuestring, "0123456789abcdef") != 64)
                        REFUSE("%s.tpm2-pcr-values.%u is not a SHA-256 value in lower-case hex", where, i);
                mask |= 1u << i;
                for (unsigned j = 0; out != NULL && j < 32; j++) {
                        char hex[3] = { v->valuestring[2 * j], v->valuestring[2 * j + 1], 0 };
                        out[i][j] = (uint8_t)strtoul(hex, NULL, 16);
                }
        }
        *ret_mask = mask;
        return KW_OK;
}

/* keyward-tpm2-pcrs: the values a systemd-tpm2 token's literal PCRs had
 * when keyward-unlock sealed it, so that a refusal can say which differ.
 * It records that token's one keyslot; check_tokens ties the two. */
static kw_result check_pcrs_token(const cJSON *t, const char *where, struct kwu_token *tok)
{
        static const char *const names[] = { "type", "keyslots", "tpm2-pcr-bank", "tpm2-pcr-values", NULL };
        KW_TRY(only_members(t, names, where));
        KW_TRY(need_str(t, "tpm2-pcr-bank", "sha256", where));
        if (__builtin_popcount(tok->keyslots) != 1)
                REFUSE("%s records other than one keyslot", where);
        return pcr_values_of(t, where, &tok->pcrs, NULL);
}

/* keyward-snp: what snp_key.h binds, exactly these fields. */
static kw_result check_snp_token(const cJSON *t, const char *where, struct kwu_token *tok)
{
        static const char *const names[] = { "type", "keyslots", "root_key", "fields", "vmpl", "guest_svn",
                                             "tcb_version", "label", NULL };
        static const char *const roots[] = { "vcek", "vmrk", NULL };
        static const char *const fields[] = { "policy", "image_id", "family_id", "measurement", "guest_svn",
                                              "tcb_version", NULL };
        KW_TRY(only_members(t, names, where));
        const char *root = NULL;
        KW_TRY(need_choice(t, "root_key", roots, where, &root));
        tok->snp.root = strcmp(root, "vcek") == 0 ? 0 : 1;
        const cJSON *f = member(t, "fields");
        if (!cJSON_IsArray(f))
                REFUSE("%s.fields is missing or not an array", where);
        for (const cJSON *e = f->child; e != NULL; e = e->next) {
                unsigned i = 0;
                while (fields[i] != NULL && !(cJSON_IsString(e) && strcmp(e->valuestring, fields[i]) == 0))
                        i++;
                if (fields[i] == NULL)
                        REFUSE("%s.fields holds an unknown guest field", where);
                if (tok->snp.fields & (1u << i))
                        REFUSE("%s.fields names %s twice", where, fields[i]);
                tok->snp.fields |= 1u << i;
        }
        if ((tok->snp.fields & KWU_SNP_F_REQUIRED) != KWU_SNP_F_REQUIRED)
                REFUSE("%s binds less than the policy, the measurement and the TCB", where);
        int64_t v = 0;
        KW_TRY(need_int(t, "vmpl", 0, 3, where, &v));
        tok->snp.vmpl = (uint32_t)v;
        KW_TRY(need_int(t, "guest_svn", 0, UINT32_MAX, where, &v));
        tok->snp.guest_svn = (uint32_t)v;
        KW_TRY(need_str(t, "tcb_version", NULL, where));
        const char *tcb = member(t, "tcb_version")->valuestring;
        if (strlen(tcb) != 16 || strspn(tcb, "0123456789abcdef") != 16)
                REFUSE("%s.tcb_version is not 16 lower-case hex digits", where);
        tok->snp.tcb = strtoull(tcb, NULL, 16);
        KW_TRY(need_str(t, "label", KWU_SNP_LABEL, where));
        return KW_OK;
}

static kw_result check_tokens(const cJSON *toks, uint32_t have, const struct kwu_expect *exp,
                              struct kwu_layout *out)
{
        static const char *const types[] = { "systemd-tpm2", "systemd-recovery", "keyward-snp", "keyward-tpm2-pcrs",
                                             NULL };
        static const char *const recovery[] = { "type", "keyslots", NULL };
        KW_TRY(need_object(toks, "tokens"));
        uint32_t present = 0, owned = 0;
        struct kwu_token notes[KWU_MAX_SLOTS];   /* keyward-tpm2-pcrs, tied below */
        unsigned nnotes = 0;
        for (const cJSON *t = toks->child; t != NULL; t = t->next) {
                unsigned id;
                if (!slot_id(t->string, &id))
                        REFUSE("tokens has an entry \"%.20s\" that is not a token id", t->string);
                present |= 1u << id;
        }
        out->ntokens = 0;
        for (unsigned id = 0; id < KWU_MAX_SLOTS; id++) {
                if (!(present & (1u << id)))
                        continue;
                char key[4], where[32];
                snprintf(key, sizeof key, "%u", id);
                snprintf(where, sizeof where, "tokens.%u", id);
                const cJSON *t = member(toks, key);
                KW_TRY(need_object(t, where));
                struct kwu_token tok;
                memset(&tok, 0, sizeof tok);
                tok.id = id;
                const cJSON *type = member(t, "type");
                if (!cJSON_IsString(type))
                        REFUSE("%s.type is missing or not a string", where);
                const char *tn = NULL;
                if (need_choice(t, "type", types, where, &tn).code != 0)
                        REFUSE("%s is of an unknown type \"%.40s\"", where, type->valuestring);
                KW_TRY(need_slot_refs(t, "keyslots", have, where, &tok.keyslots));
                if (strcmp(tn, "systemd-tpm2") == 0) {
                        tok.type = KWU_TOKEN_SYSTEMD_TPM2;
                        KW_TRY(check_tpm2_token(t, where, &tok));
                } else if (strcmp(tn, "keyward-snp") == 0) {
                        tok.type = KWU_TOKEN_KEYWARD_SNP;
                        KW_TRY(check_snp_token(t, where, &tok));
                } else if (strcmp(tn, "keyward-tpm2-pcrs") == 0) {
                        KW_TRY(check_pcrs_token(t, where, &tok));
                        notes[nnotes++] = tok;
                        continue;
                } else {
                        tok.type = KWU_TOKEN_SYSTEMD_RECOVERY;
                        KW_TRY(only_members(t, recovery, where));
                }
                if (tok.keyslots & owned)
                        REFUSE("%s names a keyslot that another token already records", where);
                owned |= tok.keyslots;
                out->tokens[out->ntokens++] = tok;
        }
        for (unsigned i = 0; i < nnotes; i++) {
                struct kwu_token *b = NULL;
                for (unsigned j = 0; j < out->ntokens && b == NULL; j++)
                        if (out->tokens[j].keyslots == notes[i].keyslots)
                                b = &out->tokens[j];
                if (b == NULL || b->type != KWU_TOKEN_SYSTEMD_TPM2)
                        REFUSE("tokens.%u records the PCR values of keyslot %d, which no systemd-tpm2 token "
                               "records",
                               notes[i].id, __builtin_ctz(notes[i].keyslots));
                if (b->has_expected)
                        REFUSE("tokens.%u records keyslot %d's PCR values again", notes[i].id,
                               __builtin_ctz(notes[i].keyslots));
                if (notes[i].pcrs != b->pcrs)
                        REFUSE("tokens.%u records other PCRs than token %u's literal ones", notes[i].id, b->id);
                b->has_expected = 1;
                b->expected_token = notes[i].id;
        }
        uint32_t stray = have & ~owned & ~exp->extra_keyslots;
        if (stray != 0)
                REFUSE("keyslot %d is recorded by no token (not one enrollment wrote)", __builtin_ctz(stray));
        return KW_OK;
}

/* ------------------------------------------------------------------ entry */

kw_result kwu_check_json(const char *json, size_t len, uint64_t hdr_size, const struct kwu_expect *exp,
                         struct kwu_layout *ret)
{
        static const char *const top[] = { "keyslots", "tokens", "segments", "digests", "config", NULL };
        KW_ENSURE(json != NULL && exp != NULL && exp->cipher != NULL && ret != NULL, KW_ERR_INPUT);
        cJSON *root = NULL;
        kw_result r = kw_json_parse((const uint8_t *)json, len, HDR_JSON_DEPTH, &root);
        if (r.code == KW_ERR_NOMEM)
                return r;
        if (r.code != 0)
                REFUSE("the header JSON does not parse strictly: %s", kw_err_detail());
        struct kwu_layout *out = calloc(1, sizeof *out);
        if (out == NULL) {
                cJSON_Delete(root);
                KW_BAIL(KW_ERR_NOMEM);
        }
        char path[200] = "";
        uint32_t have = 0;
        if (names_null_cipher(root, path, sizeof path)) {
                kw_err_set_detail("the header names the null cipher at %s: refused", path);
                r = KW_RESULT(KW_ERR_LUKS_TAMPERED);
        }
        if (r.code == 0)
                r = only_members(root, top, "the header JSON");
        if (r.code == 0)
                r = check_config(member(root, "config"), hdr_size);
        if (r.code == 0)
                r = check_segments(member(root, "segments"), exp, out);
        if (r.code == 0)
                r = check_keyslots(member(root, "keyslots"), exp, out, &have);
        if (r.code == 0)
                r = check_digests(member(root, "digests"), have);
        if (r.code == 0)
                r = check_tokens(member(root, "tokens"), have, exp, out);
        cJSON_Delete(root);
        if (r.code == 0)
                *ret = *out;
        free(out);
        return r;
}

void kwu_mask_text(uint32_t m, char *out, size_t cap)
{
        size_t n = 0;
        out[0] = '\0';
        for (unsigned i = 0; i < 32 && n + 4 < cap; i++)
                if (m & (1u << i))
                        n += (size_t)snprintf(out + n, cap - n, "%s%u", n ? "+" : "", i);
        if (n == 0)
                snprintf(out, cap, "none");
}

kw_result kwu_token_pcr_values(const char *json, size_t len, unsigned id, uint32_t *ret_mask, uint8_t (*out)[32])
{
        KW_ENSURE(json != NULL && ret_mask != NULL && out != NULL && id < KWU_MAX_SLOTS, KW_ERR_INPUT);
        cJSON *root = NULL;
        KW_TRY(kw_json_parse((const uint8_t *)json, len, HDR_JSON_DEPTH, &root));
        char key[4], where[32];
        snprintf(key, sizeof key, "%u", id);
        snprintf(where, sizeof where, "tokens.%u", id);
        kw_result r = pcr_values_of(member(member(root, "tokens"), key), where, ret_mask, out);
        cJSON_Delete(root);
        return r;
}

kw_result kwu_token_str(const char *json, size_t len, unsigned id, const char *field, struct kw_buf *out)
{
        KW_ENSURE(json != NULL && field != NULL && out != NULL && id < KWU_MAX_SLOTS, KW_ERR_INPUT);
        cJSON *root = NULL;
        KW_TRY(kw_json_parse((const uint8_t *)json, len, HDR_JSON_DEPTH, &root));
        char key[4];
        snprintf(key, sizeof key, "%u", id);
        const cJSON *v = member(member(member(root, "tokens"), key), field);
        kw_result r = KW_OK;
        if (!cJSON_IsString(v)) {
                kw_err_set_detail("token %u has no %s", id, field);
                r = KW_RESULT(KW_ERR_NOT_FOUND);
        } else {
                kw_buf_reset(out);
                r = kw_buf_put(out, v->valuestring, strlen(v->valuestring) + 1);
        }
        cJSON_Delete(root);
        return r;
}
