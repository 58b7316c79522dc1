#!/bin/sh
# check-hardening.sh BIN... - the hardening flags, checked on the binaries.
set -u
fail=0
for bin in "$@"; do
        [ -f "$bin" ] || { echo "hardening: $bin missing"; fail=1; continue; }
        h=$(readelf -h "$bin"); l=$(readelf -lW "$bin"); d=$(readelf -dW "$bin"); s=$(readelf -sW --dyn-syms "$bin")
        echo "$h" | grep -q 'Type:.*DYN' || { echo "hardening: $bin is not PIE"; fail=1; }
        echo "$l" | grep -q GNU_RELRO || { echo "hardening: $bin lacks RELRO"; fail=1; }
        echo "$d" | grep -qE 'BIND_NOW|FLAGS.*NOW' || { echo "hardening: $bin lacks BIND_NOW"; fail=1; }
        echo "$l" | grep GNU_STACK | grep -q 'RWE' && { echo "hardening: $bin has an executable stack"; fail=1; }
        echo "$s" | grep -q '__stack_chk_fail' || { echo "hardening: $bin lacks the stack protector"; fail=1; }
        echo "$s" | grep -qE '__[a-z]+_chk' || { echo "hardening: $bin lacks _FORTIFY_SOURCE checks"; fail=1; }
done
[ $fail -eq 0 ] && echo "hardening: ok ($*)"
exit $fail
