#!/bin/sh
# devstate.sh DIR [PORT] - a development state for keywardd under DIR:
# a SoftHSM2 token (DIR/softhsm), a self-signed TLS certificate (DIR/tls),
# and DIR/keyward.toml pointing at them.  Idempotent: what exists is kept.
# Used by `make run` (DIR=./var, PORT=9998) and by the black-box tests.
set -eu
dir=${1:?usage: devstate.sh DIR [PORT]}
port=${2:-9998}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
umask 077
# audit-export: where an [audit] export_dir can point (owned by the custody
# user below, like the rest of the state)
mkdir -p "$dir/tls" "$dir/run" "$dir/audit-export"

"$here/softhsm-init.sh" "$dir/softhsm" keyward-dev "$(cat "$dir/softhsm/pin" 2>/dev/null || od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"

if [ ! -f "$dir/tls/cert.pem" ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=keyward-dev" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$dir/tls/key.pem" -out "$dir/tls/cert.pem" 2>/dev/null
fi

if [ ! -f "$dir/keyward.toml" ]; then
  cat > "$dir/keyward.toml" <<TOML
# Development configuration written by tests/devstate.sh.  Not for production.
[http]
listen = "127.0.0.1:$port"

[tls]
tls_cert_file = "$dir/tls/cert.pem"
tls_key_file = "$dir/tls/key.pem"

[db]
path = "$dir/keyward.db"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "keyward-dev"
pin_file = "$dir/softhsm/pin"
master_key_label = "keyward-master"

[custody]
socket_path = "$dir/run/custody.sock"

[admin]
token_file = "$dir/admin.token"

[log]
level = "info"
TOML
fi

# Started as root, keywardd runs its custody process as keyward-custody and
# its front as keyward-front (make users): the key store's directory, the
# HSM token and its PIN belong to the custody user alone; the state
# directory can be traversed (the front reaches the custody socket under it)
# but not listed.  The TLS key and the configuration are read by the front
# before it drops root.
if [ "$(id -u)" = 0 ] && id -u keyward-custody >/dev/null 2>&1 && id -u keyward-front >/dev/null 2>&1; then
  # Both users must reach the directory (the custody process its files, the
  # front the custody socket): a checkout under /root is not reachable by
  # other users, so give the two users search permission (x only, no listing)
  # on the directories above it that lack it, through an ACL when the file
  # system has them.
  p=$(dirname "$dir")
  while [ "$p" != "/" ]; do
    for u in keyward-custody keyward-front; do
      if ! runuser -u "$u" -- test -x "$p" 2>/dev/null; then
        if setfacl -m "u:$u:x" "$p" 2>/dev/null; then
          echo "devstate: gave $u search permission on $p (setfacl u:$u:x)"
        else
          chmod o+x "$p" && echo "devstate: gave other users search permission on $p (chmod o+x)"
        fi
      fi
    done
    p=$(dirname "$p")
  done
  # (also what an earlier version, whose custody process ran as root, left)
  chown -R keyward-custody: "$dir"
  chmod 0711 "$dir"
  chown -R root:root "$dir/keyward.toml" "$dir/tls"
  chmod 0644 "$dir/keyward.toml" "$dir/tls/cert.pem"
fi
