#!/bin/bash
# softhsm-init.sh DIR LABEL PIN - a private SoftHSM2 token store for tests and
# `make run`.
#
# Creates DIR/tokens, DIR/softhsm2.conf (use it with SOFTHSM2_CONF=DIR/softhsm2.conf)
# and a token labelled LABEL whose user PIN is PIN (the SO PIN is random and
# thrown away); writes the PIN to DIR/pin (mode 0600, no trailing newline).
# Idempotent: when a token with that label exists, nothing is changed.
# Prints nothing on success; on failure, one line on stderr and a non-zero exit.
set -euo pipefail
umask 077

if [ $# -ne 3 ] || [ -z "$1" ] || [ -z "$2" ] || [ -z "$3" ]; then
        echo "usage: $0 DIR LABEL PIN" >&2
        exit 2
fi
dir=$1 label=$2 pin=$3

if [ ${#label} -gt 32 ]; then
        echo "softhsm-init: token label longer than 32 bytes: $label" >&2
        exit 2
fi
if ! command -v softhsm2-util >/dev/null 2>&1; then
        echo "softhsm-init: softhsm2-util not found (install the softhsm2 package)" >&2
        exit 1
fi

mkdir -p "$dir/tokens"
dir=$(cd "$dir" && pwd)
conf=$dir/softhsm2.conf
if [ ! -f "$conf" ]; then
        cat >"$conf.tmp" <<EOF
# written by tests/softhsm-init.sh
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
slots.removable = false
slots.mechanisms = ALL
library.reset_on_fork = false
EOF
        mv "$conf.tmp" "$conf"
fi
export SOFTHSM2_CONF=$conf

# A token with this label already exists: leave everything as it is (the PIN
# file included, unless it is missing).
if out=$(softhsm2-util --show-slots 2>/dev/null) &&
        printf '%s\n' "$out" | KW_LABEL=$label awk '
                /^[[:space:]]*Label:/ { sub(/^[[:space:]]*Label:[[:space:]]*/, ""); sub(/[[:space:]]+$/, "");
                                        if ($0 == ENVIRON["KW_LABEL"]) found = 1 }
                END { exit !found }'; then
        if [ ! -f "$dir/pin" ]; then
                printf '%s' "$pin" >"$dir/pin.tmp" && chmod 0600 "$dir/pin.tmp" && mv "$dir/pin.tmp" "$dir/pin"
        fi
        exit 0
fi

so_pin=$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
if ! out=$(softhsm2-util --init-token --free --label "$label" --pin "$pin" --so-pin "$so_pin" 2>&1); then
        echo "softhsm-init: softhsm2-util --init-token failed: $out" >&2
        exit 1
fi
printf '%s' "$pin" >"$dir/pin.tmp"
chmod 0600 "$dir/pin.tmp"
mv "$dir/pin.tmp" "$dir/pin"
