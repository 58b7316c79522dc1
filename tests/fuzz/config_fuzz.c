/*
 * config_fuzz.c - libFuzzer target for the configuration parser.
 *
 * Default mode: the input is a TOML document parsed over the defaults (and,
 * when it parses, parsed a second time over the result, which exercises
 * re-opened [aws_xks_store.*] tables), then validated and freed.
 * Input starting with "ENV\n": the rest is a list of '\n'-separated
 * environment entries given to kw_config_load(NULL, envp, ...).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define FUZZ_MAX_ENV 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_env(const uint8_t *data, size_t size)
{
        char *buf = malloc(size + 1);
        char *envp[FUZZ_MAX_ENV + 1];
        size_t n = 0;
        if (buf == NULL)
                return;
        memcpy(buf, data, size);
        buf[size] = '\0';
        for (char *s = buf; n < FUZZ_MAX_ENV;) {
                char *nl = strchr(s, '\n');
                envp[n++] = s;
                if (nl == NULL)
                        break;
                *nl = '\0';
                s = nl + 1;
        }
        envp[n] = NULL;
        struct kw_config *cfg = NULL;
        if (kw_ok(kw_config_load(NULL, envp, &cfg)))
                kw_config_free(cfg);
        free(buf);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size >= 4 && memcmp(data, "ENV\n", 4) == 0) {
                fuzz_env(data + 4, size - 4);
                return 0;
        }
        struct kw_config *cfg = NULL;
        if (!kw_ok(kw_config_defaults(&cfg)))
                return 0;
        if (kw_ok(kw_config_parse("fuzz.toml", (const char *)data, size, cfg))) {
                kw_ignore(kw_config_validate(cfg));
                if (kw_ok(kw_config_parse("fuzz2.toml", (const char *)data, size, cfg)))
                        kw_ignore(kw_config_validate(cfg));
        }
        kw_config_free(cfg);
        return 0;
}
