/*
 * cli_recover.c - keyward-unlock recover: open the volume with the recovery
 * key, then re-enroll the measured bindings after an intended change
 * (cli.h; docs/unlock.md, "Recovery").
 *
 * Re-enrollment never leaves the volume with fewer working keys than it
 * had: every new passphrase is sealed (or derived) first, and a failure
 * there changes nothing; the new keyslots and tokens are written (keyslot
 * areas before the header that points at them), each new keyslot is tried,
 * and only then are the replaced ones removed (header first, areas wiped
 * after).  The recovery keyslot itself is never touched.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "../../server/common/b64.h"
#include "cli.h"
#include "unlock_record.h"
#include "recovery_key.h"
#include "snp_key.h"

#define MAX_PLANS KWU_MAX_SLOTS

/* One binding to re-enroll, add, or drop. */
struct plan {
        enum kwu_token_type type;
        int old_token, old_slot;          /* -1: a binding added          */
        struct kwu_token old;             /* what it replaces             */
        int drop;                         /* removed, nothing in its place */
        struct kwu_tpm_binding tb;
        struct kw_buf pem;                /* tb.pk_pem's storage          */
        struct kwu_snp_bind sb;
        char what[96];
        int slot;                         /* the new keyslot              */
        char pass[KWU_PASSPHRASE_LEN + 1];
        char *token, *token2;
};

struct recover {
        const struct opts *o;
        struct kwu_volume *v;
        struct kwu_tpm_ctx c;
        struct plan p[MAX_PLANS];
        unsigned n;
        struct kwu_tpm_binding opt_tb;    /* from the command line        */
        char *opt_pem;
};

static struct plan *plan_new(struct recover *rc, enum kwu_token_type type)
{
        if (rc->n == MAX_PLANS)
                return NULL;
        struct plan *p = &rc->p[rc->n++];
        memset(p, 0, sizeof *p);
        p->type = type;
        p->old_token = p->old_slot = -1;
        kw_buf_init(&p->pem, 16384);
        return p;
}

/* A recorded TPM2 token's policy, to seal again to this boot's values. */
static kw_result recorded_tpm(struct recover *rc, const struct kwu_token *tok, struct plan *p)
{
        if (tok->pin || strcmp(tok->bank, "sha256") != 0) {
                kw_err_set_detail("token %u needs a PIN or another bank than sha256: re-enroll it with "
                                  "systemd-cryptenroll, or replace it with --tpm2-pcrs / --tpm2-public-key",
                                  tok->id);
                KW_BAIL(KW_ERR_UNSUPPORTED);
        }
        p->tb.pcrs = tok->pcrs;
        if (!tok->has_pubkey)
                return KW_OK;
        const struct kwu_hdr *h = kwu_volume_header(rc->v);
        struct kw_buf b64;
        kw_buf_init(&b64, 32 * 1024);
        kw_result r = kwu_token_str(h->json, h->json_len, tok->id, "tpm2_pubkey", &b64);
        if (r.code == 0)
                r = kw_b64_decode((const char *)b64.p, b64.len, &p->pem);
        kw_buf_free(&b64);
        if (r.code != 0) {
                kw_err_set_detail("token %u's tpm2_pubkey is not base64 of a key", tok->id);
                KW_BAIL(KW_ERR_LUKS_TAMPERED);
        }
        p->tb.pk_pcrs = tok->pubkey_pcrs;
        p->tb.pk_pem = (const char *)p->pem.p;
        p->tb.pk_pem_len = p->pem.len;
        return KW_OK;
}

/*
 * Which bindings to seal again: each recorded one that does not open now
 * (all of them with --reenroll-all; those of a kind the command line gives
 * a new policy for), and one of each kind the command line asks for that
 * the volume does not have.  Says on stdout what it found for each.
 */
static kw_result plan_all(struct recover *rc)
{
        const struct opts *o = rc->o;
        const struct kwu_layout *l = kwu_volume_layout(rc->v);
        int tpm_new = (rc->opt_tb.pcrs | rc->opt_tb.pk_pcrs) != 0, tpm_seen = 0, snp_seen = 0;
        for (unsigned i = 0; i < l->ntokens; i++) {
                const struct kwu_token *tok = &l->tokens[i];
                if (tok->type == KWU_TOKEN_SYSTEMD_RECOVERY)
                        continue;
                int is_tpm = tok->type == KWU_TOKEN_SYSTEMD_TPM2, slot = __builtin_ctz(tok->keyslots);
                char what[96];
                kwu_cli_binding_text(tok, what, sizeof what);
                int forced = o->reenroll_all || (is_tpm && tpm_new) || (!is_tpm && o->snp_tcb_set);
                if (!forced) {
                        kw_result r = kwu_cli_binding_open(o, rc->v, tok, &rc->c, NULL);
                        if (r.code == 0) {
                                printf("token %u (%s), keyslot %d: opens now, kept\n", tok->id, what, slot);
                                if (is_tpm)
                                        tpm_seen = 1;
                                else
                                        snp_seen = 1;
                                continue;
                        }
                        printf("token %u (%s), keyslot %d: does not open now (%s: %s): re-enrolling\n", tok->id,
                               what, slot, kwu_cli_headline(r.code), kw_err_detail());
                }
                struct plan *p = plan_new(rc, tok->type);
                KW_ENSURE(p != NULL, KW_ERR_TOO_LARGE);
                p->old_token = (int)tok->id;
                p->old_slot = slot;
                p->old = *tok;
                snprintf(p->what, sizeof p->what, "%s", what);
                if (is_tpm && tpm_new) {
                        /* the command line's policy replaces every TPM2 binding by one */
                        p->drop = tpm_seen;
                        p->tb = rc->opt_tb;
                } else if (is_tpm) {
                        KW_TRY(recorded_tpm(rc, tok, p));
                } else {
                        p->sb = tok->snp;
                        if (o->snp_tcb_set)
                                p->sb.tcb = o->snp_tcb;
                }
                if (is_tpm)
                        tpm_seen = 1;
                else
                        snp_seen = 1;
        }
        if (tpm_new && !tpm_seen) {
                struct plan *p = plan_new(rc, KWU_TOKEN_SYSTEMD_TPM2);
                KW_ENSURE(p != NULL, KW_ERR_TOO_LARGE);
                p->tb = rc->opt_tb;
        }
        if (o->snp && !snp_seen) {
                struct plan *p = plan_new(rc, KWU_TOKEN_KEYWARD_SNP);
                KW_ENSURE(p != NULL, KW_ERR_TOO_LARGE);
                KW_TRY(kwu_cli_snp_binding(o, &p->sb));
        }
        return KW_OK;
}

/* Every new passphrase and token, before anything is written. */
static kw_result seal_all(struct recover *rc)
{
        int slots[MAX_PLANS];
        unsigned k = 0;
        for (unsigned i = 0; i < rc->n; i++)
                k += !rc->p[i].drop;
        if (k == 0)
                return KW_OK;
        KW_TRY(kwu_volume_free_slots(rc->v, slots, k));
        k = 0;
        const char *uuid = kwu_volume_header(rc->v)->uuid;
        for (unsigned i = 0; i < rc->n; i++) {
                struct plan *p = &rc->p[i];
                if (p->drop)
                        continue;
                p->slot = slots[k++];
                if (p->type == KWU_TOKEN_SYSTEMD_TPM2) {
                        if (rc->c.t == NULL)
                                KW_TRY(kwu_tpm_open(rc->o->tpm2_device, &rc->c.t));
                        KW_TRY(kwu_tpm_seal(rc->c.t, &p->tb, p->slot, p->pass, &p->token, &p->token2));
                } else {
                        KW_TRY(kwu_snp_passphrase(NULL, rc->o->snp_device, &p->sb, uuid, p->pass));
                        p->token = kwu_snp_token_json(&p->sb, p->slot);
                        KW_ENSURE(p->token != NULL, KW_ERR_NOMEM);
                }
        }
        return KW_OK;
}

/* Adds the new keyslots, tries each, then removes the ones they replace. */
static kw_result write_all(struct recover *rc, const char *key)
{
        int added = 0;
        for (unsigned i = 0; i < rc->n; i++) {
                struct plan *p = &rc->p[i];
                if (p->drop)
                        continue;
                struct kwu_extra_slot s = { .keyslot = p->slot, .pass = p->pass, .pass_len = strlen(p->pass),
                                            .token_json = p->token, .token2_json = p->token2 };
                KW_TRY(kwu_volume_add(rc->v, key, KWU_RECOVERY_KEY_LEN, &s));
                added = 1;
        }
        if (added)
                KW_TRY(kwu_volume_commit(rc->v, KWU_COMMIT_AREAS_FIRST));
        for (unsigned i = 0; i < rc->n; i++)
                if (!rc->p[i].drop)
                        KW_TRY(kwu_volume_unlock(rc->v, rc->p[i].slot, rc->p[i].pass, strlen(rc->p[i].pass), NULL));
        int removed = 0;
        for (unsigned i = 0; i < rc->n; i++) {
                struct plan *p = &rc->p[i];
                if (p->old_token < 0)
                        continue;
                KW_TRY(kwu_volume_remove(rc->v, &p->old));
                removed = 1;
        }
        if (removed)
                KW_TRY(kwu_volume_commit(rc->v, KWU_COMMIT_HEADERS_FIRST));
        return KW_OK;
}

static void report(const struct recover *rc)
{
        for (unsigned i = 0; i < rc->n; i++) {
                const struct plan *p = &rc->p[i];
                const char *kind = p->type == KWU_TOKEN_SYSTEMD_TPM2 ? "TPM2" : "SEV-SNP";
                if (p->old_token < 0)
                        printf("added: keyslot %d (%s)\n", p->slot, kind);
                else if (p->drop)
                        printf("token %d (%s), keyslot %d: removed (one TPM2 binding replaces it)\n", p->old_token,
                               p->what, p->old_slot);
                else
                        printf("token %d (%s), keyslot %d: re-enrolled as keyslot %d (%s, sealed to this %s)\n",
                               p->old_token, p->what, p->old_slot, p->slot, kind,
                               p->type == KWU_TOKEN_SYSTEMD_TPM2 ? "boot" : "VM");
        }
        if (rc->n != 0)
                return;
        const struct kwu_layout *l = kwu_volume_layout(rc->v);
        unsigned measured = 0;
        for (unsigned i = 0; i < l->ntokens; i++)
                measured += l->tokens[i].type != KWU_TOKEN_SYSTEMD_RECOVERY;
        printf(measured ? "every measured binding opens now: nothing re-enrolled\n"
                        : "the volume has no measured binding to re-enroll (add one with --tpm2-pcrs, "
                          "--tpm2-public-key or --snp)\n");
}

static kw_result reenroll(struct recover *rc, const char *key)
{
        KW_TRY(plan_all(rc));
        KW_TRY(seal_all(rc));
        KW_TRY(write_all(rc, key));
        if (kwu_volume_repaired(rc->v)) {
                /* nothing else written: the copies are still the disk's two */
                KW_TRY(kwu_volume_commit(rc->v, KWU_COMMIT_HEADERS_FIRST));
                printf("the header's two copies differed (an interrupted update): both rewritten from the "
                       "newest valid one\n");
        }
        report(rc);
        return KW_OK;
}

/* Opens with the recovery key: the keyslot it opened, or -1 (said why). */
static int open_with_key(const struct opts *o, struct kwu_volume *v, const char *key, kw_result *ret)
{
        const struct kwu_layout *l = kwu_volume_layout(v);
        int tried = 0;
        kw_result r = KW_RESULT(KW_ERR_AUTH);
        for (unsigned i = 0; i < l->ntokens; i++) {
                if (l->tokens[i].type != KWU_TOKEN_SYSTEMD_RECOVERY)
                        continue;
                int slot = __builtin_ctz(l->tokens[i].keyslots);
                tried++;
                r = kwu_volume_unlock(v, slot, key, KWU_RECOVERY_KEY_LEN, o->name);
                if (r.code == 0) {
                        printf("the recovery key opens keyslot %d%s%s\n", slot,
                               o->name ? ": activated as /dev/mapper/" : "",
                               o->name ? o->name : " (checked: nothing activated)");
                        *ret = KW_OK;
                        return slot;
                }
                if (r.code != KW_ERR_AUTH)
                        break;
        }
        if (tried == 0)
                kw_err_set_detail("the volume has no recovery keyslot");
        else if (r.code == KW_ERR_AUTH)
                kw_err_set_detail("the recovery key does not open this volume");
        *ret = r;
        return -1;
}

int kwu_cmd_recover(const struct opts *o)
{
        if (o->no_reenroll && (o->reenroll_all || o->snp || o->snp_tcb_set || o->tpm2_pcrs != 0 ||
                               o->tpm2_public_key != NULL)) {
                fprintf(stderr, "keyward-unlock recover: --no-reenroll changes nothing: it takes no binding "
                                "option\n");
                return EXIT_USAGE;
        }
        struct recover rc;
        memset(&rc, 0, sizeof rc);
        rc.o = o;
        kwu_cli_tpm_ctx_init(&rc.c);
        if (kwu_cli_tpm_binding(o, &rc.opt_tb, &rc.opt_pem) != 0) {
                kwu_cli_tpm_ctx_free(&rc.c);
                return EXIT_USAGE;
        }
        char line[256], key[KWU_RECOVERY_KEY_LEN + 1];
        size_t n = fread(line, 1, sizeof line - 1, stdin);
        kw_result r = kwu_recovery_key_normalize(line, n, key);
        OPENSSL_cleanse(line, sizeof line);
        int status = EXIT_DONE;
        if (r.code != 0) {
                fprintf(stderr, "keyward-unlock recover: %s (on stdin)\n", kw_err_detail());
                status = EXIT_USAGE;
                goto out;
        }
        struct kwu_expect exp = o->exp;
        exp.repair_copies = !o->no_reenroll;
        r = kwu_volume_open(o->device, &exp, &rc.v);
        int slot = r.code == 0 ? open_with_key(o, rc.v, key, &r) : -1;
        if (slot >= 0)
                kwu_cli_write_record(o, kwu_volume_layout(rc.v), "recovery");
        if (slot >= 0 && !o->no_reenroll)
                r = reenroll(&rc, key);
        if (r.code != 0)
                status = kwu_cli_fail(o->device, r);
out:
        OPENSSL_cleanse(key, sizeof key);
        for (unsigned i = 0; i < rc.n; i++) {
                OPENSSL_cleanse(rc.p[i].pass, sizeof rc.p[i].pass);
                free(rc.p[i].token);
                free(rc.p[i].token2);
                kw_buf_free(&rc.p[i].pem);
        }
        free(rc.opt_pem);
        kwu_cli_tpm_ctx_free(&rc.c);
        kwu_volume_close(rc.v);
        return status;
}
