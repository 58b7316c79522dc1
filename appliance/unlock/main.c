/*
 * keyward-unlock - the data volume's LUKS2 header, checked before use
 * (docs/unlock.md).  This build has `status`; enroll, open, check and
 * recover (TPM2, SEV-SNP, recovery key) come with issue 12's next parts.
 *
 * Exit status (stable, documented in docs/unlock.md and --help):
 *   0  done (status: the header passed every check)
 *   2  usage error
 *   3  the device is missing or cannot be read
 *   4  not a LUKS2 volume
 *   5  the LUKS2 header was refused (tampered or not what enrollment wrote)
 *   1  anything else (out of memory, internal error)
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cJSON.h>

#include "luks2_check.h"
#include "luks2_hdr.h"

enum {
        EXIT_DONE = 0,
        EXIT_OTHER = 1,
        EXIT_USAGE = 2,
        EXIT_DEVICE = 3,
        EXIT_NOT_LUKS2 = 4,
        EXIT_HEADER = 5,
};

static const char USAGE[] =
        "usage: keyward-unlock COMMAND [OPTIONS] DEVICE\n"
        "\n"
        "commands:\n"
        "  status DEVICE   the header's keyslots and tokens, what each is bound to, and\n"
        "                  whether the header passes the checks done before any use\n"
        "\n"
        "options:\n"
        "  --json              machine-readable output (one JSON object)\n"
        "  --extra-keyslot N   accept keyslot N without a token recording it (e.g. the\n"
        "                      passphrase keyslot of a volume enrolled by systemd-cryptenroll);\n"
        "                      repeatable\n"
        "  -h, --help          this text\n"
        "\n"
        "exit status: 0 done (status: header passed), 2 usage, 3 device missing or unreadable,\n"
        "4 not a LUKS2 volume, 5 header refused (tampered or not what enrollment wrote),\n"
        "1 anything else.  Details: docs/unlock.md\n";

struct opts {
        int json;
        struct kwu_expect exp;
        const char *device;
};

static int exit_for(kw_result r)
{
        switch (r.code) {
        case 0: return EXIT_DONE;
        case KW_ERR_DEVICE: return EXIT_DEVICE;
        case KW_ERR_LUKS_NOT_LUKS2: return EXIT_NOT_LUKS2;
        case KW_ERR_LUKS_TAMPERED: return EXIT_HEADER;
        default: return EXIT_OTHER;
        }
}

/* One line on stderr for a failure: what, and the detail. */
static int fail(const char *device, kw_result r)
{
        const char *d = kw_err_detail();
        fprintf(stderr, "keyward-unlock: %s: %s%s%s\n", device, kw_strerror(r.code), d[0] ? ": " : "", d);
        return exit_for(r);
}

static void mask_text(uint32_t m, char *out, size_t cap)
{
        size_t n = 0;
        out[0] = '\0';
        for (unsigned i = 0; i < 32 && n + 4 < cap; i++)
                if (m & (1u << i))
                        n += (size_t)snprintf(out + n, cap - n, "%s%u", n ? "+" : "", i);
        if (n == 0)
                snprintf(out, cap, "none");
}

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
                mask_text(t->keyslots, slots, sizeof slots);
                if (t->type == KWU_TOKEN_SYSTEMD_RECOVERY) {
                        printf("token %u: systemd-recovery, keyslot %s: a recovery key (never stored here)\n", t->id,
                               slots);
                        continue;
                }
                mask_text(t->pcrs, pcrs, sizeof pcrs);
                mask_text(t->pubkey_pcrs, ppcrs, sizeof ppcrs);
                printf("token %u: systemd-tpm2, keyslot %s: ", t->id, slots);
                if (t->has_pubkey)
                        printf("signed PCR policy over PCR %s, ", ppcrs);
                printf("literal PCRs %s; bank %s, primary key %s, PIN %s\n", pcrs, t->bank, t->primary_alg,
                       t->pin ? "yes" : "no");
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
                if (t->type != KWU_TOKEN_SYSTEMD_TPM2)
                        continue;
                cJSON_AddItemToObject(j, "pcrs", mask_json(t->pcrs));
                if (t->has_pubkey)
                        cJSON_AddItemToObject(j, "signed_policy_pcrs", mask_json(t->pubkey_pcrs));
                cJSON_AddStringToObject(j, "bank", t->bank);
                cJSON_AddStringToObject(j, "primary_alg", t->primary_alg);
                cJSON_AddBoolToObject(j, "pin", t->pin);
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

static int cmd_status(const struct opts *o)
{
        int fd = open(o->device, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                kw_err_set_detail("cannot open it: %s", strerror(errno));
                return fail(o->device, KW_RESULT(KW_ERR_DEVICE));
        }
        struct kwu_hdr h;
        kw_result r = kwu_hdr_read_fd(fd, &h);
        close(fd);
        if (r.code != 0)
                return fail(o->device, r);
        struct kwu_layout *l = calloc(1, sizeof *l);
        r = l != NULL ? kwu_check_json(h.json, h.json_len, h.hdr_size, &o->exp, l) : KW_RESULT(KW_ERR_NOMEM);
        int rc;
        if (r.code != 0)
                rc = fail(o->device, r);
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

static const struct command {
        const char *name;
        int (*run)(const struct opts *o);
} commands[] = {
        { "status", cmd_status },
};

int main(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "json", no_argument, NULL, 'j' },
                { "extra-keyslot", required_argument, NULL, 'x' },
                { "help", no_argument, NULL, 'h' },
                { NULL, 0, NULL, 0 },
        };
        struct opts o;
        memset(&o, 0, sizeof o);
        kwu_expect_default(&o.exp);
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
                fputs(USAGE, stdout);
                return EXIT_DONE;
        }
        if (argc < 2) {
                fputs(USAGE, stderr);
                return EXIT_USAGE;
        }
        const struct command *cmd = NULL;
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        cmd = &commands[i];
        if (cmd == NULL) {
                fprintf(stderr, "keyward-unlock: unknown command \"%s\" (see --help)\n", argv[1]);
                return EXIT_USAGE;
        }
        optind = 2;
        int c;
        while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
                char *end = NULL;
                long n;
                switch (c) {
                case 'j':
                        o.json = 1;
                        break;
                case 'x':
                        n = strtol(optarg, &end, 10);
                        if (end == optarg || *end != '\0' || n < 0 || n >= KWU_MAX_SLOTS) {
                                fprintf(stderr, "keyward-unlock: --extra-keyslot wants a keyslot number 0..31\n");
                                return EXIT_USAGE;
                        }
                        o.exp.extra_keyslots |= 1u << n;
                        break;
                case 'h':
                        fputs(USAGE, stdout);
                        return EXIT_DONE;
                default:
                        return EXIT_USAGE;
                }
        }
        if (optind != argc - 1) {
                fprintf(stderr, "keyward-unlock %s: give exactly one DEVICE (see --help)\n", cmd->name);
                return EXIT_USAGE;
        }
        o.device = argv[optind];
        return cmd->run(&o);
}
