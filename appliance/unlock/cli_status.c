/* cli_status.c - keyward-unlock status, and how a binding is described (cli.h). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli.h"
#include "luks2_check.h"
#include "luks2_hdr.h"

static cJSON *mask_json(uint32_t m)
{
        cJSON *a = cJSON_CreateArray();
        for (unsigned i = 0; a != NULL && i < 32; i++)
                if (m & (1u << i))
                        cJSON_AddItemToArray(a, cJSON_CreateNumber(i));
        return a;
}

static const struct kwu_token *token_of(const struct kwu_layout *l, unsigned slot)
{
        for (unsigned i = 0; i < l->ntokens; i++)
                if (l->tokens[i].keyslots & (1u << slot))
                        return &l->tokens[i];
        return NULL;
}

void kwu_cli_snp_fields_text(uint32_t f, char *out, size_t cap)
{
        static const char *const names[] = { "policy", "image_id", "family_id", "measurement", "guest_svn",
                                             "tcb_version" };
        size_t n = 0;
        out[0] = '\0';
        for (unsigned i = 0; i < 6 && n < cap; i++)
                if (f & (1u << i))
                        n += (size_t)snprintf(out + n, cap - n, "%s%s", n ? "+" : "", names[i]);
}

void kwu_cli_binding_text(const struct kwu_token *tok, char *out, size_t cap)
{
        if (tok->type == KWU_TOKEN_KEYWARD_SNP) {
                char f[96];
                kwu_cli_snp_fields_text(tok->snp.fields, f, sizeof f);
                snprintf(out, cap, "SEV-SNP, %s over %s, TCB %016llx, VMPL %u", tok->snp.root == 0 ? "VCEK" : "VMRK",
                         f, (unsigned long long)tok->snp.tcb, tok->snp.vmpl);
                return;
        }
        char a[64] = "", b[64] = "";
        if (tok->has_pubkey) {
                kwu_mask_text(tok->pubkey_pcrs, a, sizeof a);
                snprintf(b, sizeof b, "signed PCR %s", a);
        }
        if (tok->pcrs != 0) {
                kwu_mask_text(tok->pcrs, a, sizeof a);
                snprintf(out, cap, "TPM2, %s%sPCR %s", b, b[0] ? " + " : "", a);
        } else {
                snprintf(out, cap, "TPM2, %s", b);
        }
}

static void status_text(const char *device, const struct kwu_hdr *h, const struct kwu_layout *l)
{
        printf("device: %s\nuuid: %s\nlabel: %s\nheader: %llu bytes a copy, seqid %llu, both copies agree\n",
               device, h->uuid, h->label[0] ? h->label : "(none)", (unsigned long long)h->hdr_size,
               (unsigned long long)h->seqid);
        printf("data: %s, %u-byte sectors, from byte %llu\n", l->cipher, l->sector_size,
               (unsigned long long)l->data_offset);
        for (unsigned i = 0; i < l->nslots; i++) {
                const struct kwu_keyslot *k = &l->slots[i];
                const struct kwu_token *t = token_of(l, k->id);
                char kdf[48];
                if (k->kdf_hash[0])
                        snprintf(kdf, sizeof kdf, "%s-%s, %llu iterations", k->kdf, k->kdf_hash,
                                 (unsigned long long)k->kdf_cost);
                else
                        snprintf(kdf, sizeof kdf, "%s, time cost %llu", k->kdf, (unsigned long long)k->kdf_cost);
                if (t != NULL)
                        printf("keyslot %u: %s; recorded by token %u (%s)\n", k->id, kdf, t->id,
                               kwu_token_type_name(t->type));
                else
                        printf("keyslot %u: %s; no token (accepted with --extra-keyslot)\n", k->id, kdf);
        }
        for (unsigned i = 0; i < l->ntokens; i++) {
                const struct kwu_token *t = &l->tokens[i];
                char slots[64], pcrs[64], ppcrs[64];
                kwu_mask_text(t->keyslots, slots, sizeof slots);
                if (t->type == KWU_TOKEN_SYSTEMD_RECOVERY) {
                        printf("token %u: systemd-recovery, keyslot %s: a recovery key (never stored here)\n", t->id,
                               slots);
                        continue;
                }
                if (t->type == KWU_TOKEN_KEYWARD_SNP) {
                        char what[160];
                        kwu_cli_binding_text(t, what, sizeof what);
                        printf("token %u: keyward-snp, keyslot %s: %s\n", t->id, slots, what);
                        continue;
                }
                kwu_mask_text(t->pcrs, pcrs, sizeof pcrs);
                kwu_mask_text(t->pubkey_pcrs, ppcrs, sizeof ppcrs);
                printf("token %u: systemd-tpm2, keyslot %s: ", t->id, slots);
                if (t->has_pubkey)
                        printf("signed PCR policy over PCR %s, ", ppcrs);
                printf("literal PCRs %s; bank %s, primary key %s, PIN %s", pcrs, t->bank, t->primary_alg,
                       t->pin ? "yes" : "no");
                if (t->has_expected)
                        printf("; their values at sealing in token %u (keyward-tpm2-pcrs)", t->expected_token);
                printf("\n");
        }
        printf("header check: passed\n");
}

static int status_json(const char *device, const struct kwu_hdr *h, const struct kwu_layout *l)
{
        cJSON *o = cJSON_CreateObject();
        cJSON *slots = cJSON_AddArrayToObject(o, "keyslots");
        cJSON *toks = cJSON_AddArrayToObject(o, "tokens");
        cJSON_AddStringToObject(o, "device", device);
        cJSON_AddStringToObject(o, "uuid", h->uuid);
        cJSON_AddStringToObject(o, "label", h->label);
        cJSON_AddNumberToObject(o, "header_size", (double)h->hdr_size);
        cJSON_AddNumberToObject(o, "seqid", (double)h->seqid);
        cJSON_AddStringToObject(o, "cipher", l->cipher);
        cJSON_AddNumberToObject(o, "sector_size", l->sector_size);
        cJSON_AddNumberToObject(o, "data_offset", (double)l->data_offset);
        for (unsigned i = 0; slots != NULL && i < l->nslots; i++) {
                const struct kwu_keyslot *k = &l->slots[i];
                const struct kwu_token *t = token_of(l, k->id);
                cJSON *s = cJSON_CreateObject();
                cJSON_AddItemToArray(slots, s);
                cJSON_AddNumberToObject(s, "id", k->id);
                cJSON_AddStringToObject(s, "kdf", k->kdf);
                if (k->kdf_hash[0])
                        cJSON_AddStringToObject(s, "kdf_hash", k->kdf_hash);
                cJSON_AddNumberToObject(s, "kdf_cost", (double)k->kdf_cost);
                if (t != NULL)
                        cJSON_AddNumberToObject(s, "token", t->id);
                else
                        cJSON_AddNullToObject(s, "token");
        }
        for (unsigned i = 0; toks != NULL && i < l->ntokens; i++) {
                const struct kwu_token *t = &l->tokens[i];
                cJSON *j = cJSON_CreateObject();
                cJSON_AddItemToArray(toks, j);
                cJSON_AddNumberToObject(j, "id", t->id);
                cJSON_AddStringToObject(j, "type", kwu_token_type_name(t->type));
                cJSON_AddItemToObject(j, "keyslots", mask_json(t->keyslots));
                if (t->type == KWU_TOKEN_KEYWARD_SNP) {
                        char f[96], tcb[20];
                        kwu_cli_snp_fields_text(t->snp.fields, f, sizeof f);
                        snprintf(tcb, sizeof tcb, "%016llx", (unsigned long long)t->snp.tcb);
                        cJSON_AddStringToObject(j, "root_key", t->snp.root == 0 ? "vcek" : "vmrk");
                        cJSON_AddStringToObject(j, "fields", f);
                        cJSON_AddStringToObject(j, "tcb_version", tcb);
                        cJSON_AddNumberToObject(j, "vmpl", t->snp.vmpl);
                }
                if (t->type != KWU_TOKEN_SYSTEMD_TPM2)
                        continue;
                cJSON_AddItemToObject(j, "pcrs", mask_json(t->pcrs));
                if (t->has_pubkey)
                        cJSON_AddItemToObject(j, "signed_policy_pcrs", mask_json(t->pubkey_pcrs));
                cJSON_AddStringToObject(j, "bank", t->bank);
                cJSON_AddStringToObject(j, "primary_alg", t->primary_alg);
                cJSON_AddBoolToObject(j, "pin", t->pin);
                if (t->has_expected)
                        cJSON_AddNumberToObject(j, "pcr_values_token", t->expected_token);
        }
        cJSON_AddStringToObject(o, "header_check", "passed");
        char *text = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (text == NULL)
                return EXIT_OTHER;
        printf("%s\n", text);
        free(text);
        return EXIT_DONE;
}

int kwu_cmd_status(const struct opts *o)
{
        int fd = open(o->device, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kw_err_set_detail("cannot open it: %s", strerror(errno));
                return kwu_cli_fail(o->device, KW_RESULT(KW_ERR_DEVICE));
        }
        struct kwu_hdr h;
        kw_result r = kwu_hdr_read_fd(fd, &h);
        close(fd);
        if (r.code != 0)
                return kwu_cli_fail(o->device, r);
        struct kwu_layout *l = calloc(1, sizeof *l);
        r = l != NULL ? kwu_check_json(h.json, h.json_len, h.hdr_size, &o->exp, l) : KW_RESULT(KW_ERR_NOMEM);
        int rc;
        if (r.code != 0)
                rc = kwu_cli_fail(o->device, r);
        else if (o->json)
                rc = status_json(o->device, &h, l);
        else {
                status_text(o->device, &h, l);
                rc = EXIT_DONE;
        }
        free(l);
        kwu_hdr_free(&h);
        return rc;
}
