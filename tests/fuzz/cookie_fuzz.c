/*
 * cookie_fuzz.c - the console's Cookie header scan (admin_session.c) on
 * arbitrary bytes, as a client sends them.
 *
 * Properties: the scan never reads past the header's NUL; what it returns
 * lies inside the header and names our cookie (the bytes before it are
 * "__Host-keyward_session=" at a pair's start); a value it accepts as a
 * session id is exactly 43 base64url characters.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "front/admin_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static const char name[] = "__Host-keyward_session=";
        char *hdr = malloc(size + 1);
        if (hdr == NULL)
                return 0;
        memcpy(hdr, data, size);
        hdr[size] = '\0';
        size_t len = strlen(hdr);
        const char *v = NULL;
        size_t n = 0;
        int found = admin_cookie_scan(hdr, &v, &n);
        if (found < 0)
                abort();
        if (found > 0) {
                if (v == NULL || v < hdr + sizeof name - 1 || v + n > hdr + len)
                        abort();
                if (memcmp(v - (sizeof name - 1), name, sizeof name - 1) != 0)
                        abort();
                if (admin_session_form_ok(v, n)) {
                        if (n != 43)
                                abort();
                        for (size_t i = 0; i < n; i++) {
                                char c = v[i];
                                if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                                      (c >= '0' && c <= '9') || c == '-' || c == '_'))
                                        abort();
                        }
                }
        } else if (v != NULL) {
                abort();
        }
        free(hdr);
        return 0;
}
