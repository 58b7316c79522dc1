/*
 * selftest_judge_fuzz.c - keyward-provision's verdicts on the appliance's
 * answers (provisioning/selftest_judge.c) on arbitrary bodies.  The first
 * byte picks the HTTP status.  Invariants: no crash; the why is
 * NUL-terminated printable ASCII; a pass only from a 200 (or EKM's 401), a
 * retry only from a 503 or a 429.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../provisioning/selftest_judge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef enum kwp_verdict (*judge_fn)(long, const uint8_t *, size_t, char *, size_t);

static void check(judge_fn f, long status, const uint8_t *body, size_t len, int may_pass_401)
{
        char why[KWP_WHY_MAX];
        memset(why, 0x7f, sizeof why);
        enum kwp_verdict v = f(status, body, len, why, sizeof why);
        size_t n = strnlen(why, sizeof why);
        if (n == sizeof why)
                abort();
        for (size_t i = 0; i < n; i++)
                if (why[i] < 0x20 || why[i] >= 0x7f)
                        abort();
        if ((v == KWP_PASS || v == KWP_WARN) && status != 200 && !(may_pass_401 && status == 401))
                abort();
        if (v == KWP_RETRY && status != 503 && status != 429)
                abort();
        if (v != KWP_PASS && v != KWP_WARN && v != KWP_RETRY && v != KWP_FAIL)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const long statuses[] = { 200, 401, 404, 429, 500, 503, 400, 0 };
        if (size == 0)
                return 0;
        long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
        check(kwp_judge_healthz, status, data + 1, size - 1, 0);
        check(kwp_judge_xks_health, status, data + 1, size - 1, 0);
        check(kwp_judge_ekm_info, status, data + 1, size - 1, 1);
        return 0;
}
