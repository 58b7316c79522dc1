#!/bin/sh
# lint.sh - cheap grep rules for the bans of STYLE.md, plus cppcheck.
set -u
cd "$(dirname "$0")/.."
fail=0
src=$(find server attest appliance provisioning -name '*.c' ! -name '*_test.c' 2>/dev/null)
rule() {   # rule "message" grep-args...
        msg=$1; shift
        hits=$(grep -nE "$@" $src 2>/dev/null | grep -v 'lint: allow')
        if [ -n "$hits" ]; then
                echo "lint: $msg"; echo "$hits" | sed 's/^/    /'; fail=1
        fi
}
rule "unbounded string functions (use snprintf / kw_buf)" '\b(strcpy|strcat|sprintf|vsprintf|gets|strtok)\s*\('
rule "alloca / VLA-style stack allocation" '\balloca\s*\('
rule "raw memcmp/strcmp on secrets: use kw_ct_equal/CRYPTO_memcmp (mark harmless uses with 'lint: allow')" \
     '(memcmp|strcmp|strncmp)\s*\([^)]*(tag|mac|sig|signature|token|secret|hash|pin|password)'
rule "OpenSSL 1.1 peer certificate API (use SSL_get1_peer_certificate)" 'SSL_get_peer_certificate\s*\('
rule "free() of a secret (use kw_secret_free)" '\bfree\s*\([^)]*(secret|\.aes|dbkey)'
n=$(grep -c 'mg_write\s*(' server/front/http.c 2>/dev/null || echo 0)
if [ "$n" != "1" ]; then
        echo "lint: server/front/http.c must write each response with exactly one mg_write call (found $n call sites)"; fail=1
fi
if command -v cppcheck >/dev/null 2>&1; then
        if ! cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr \
                --suppress=missingIncludeSystem --std=c11 -D__GNUC__ -Iserver $src 2>/tmp/kw-cppcheck.$$; then
                echo "lint: cppcheck:"; sed 's/^/    /' /tmp/kw-cppcheck.$$; fail=1
        fi
        rm -f /tmp/kw-cppcheck.$$
fi
[ $fail -eq 0 ] && echo "lint: ok"
exit $fail
