#!/bin/bash
# tests/fleet/pg.sh CMD... - run CMD against a throw-away PostgreSQL (issue 16).
#
# Starts a private cluster (Debian's PostgreSQL 15: initdb and pg_ctl in a temp
# dir, as the `postgres` system user when run as root, since initdb refuses
# root), listening on a free port of 127.0.0.1 only, its Unix socket in the
# temp dir; creates the role `keyward` (LOGIN, a random scram-sha-256
# password) owning the database `keyward`; exports for CMD:
#
#   KW_TEST_PG               the keyward conninfo, no password in it:
#                              host=127.0.0.1 port=N dbname=keyward user=keyward
#                              sslmode=disable connect_timeout=3
#                            with PG_TLS=1: sslmode=verify-full sslrootcert=<ca>
#   KW_TEST_PG_PASSWORD_FILE its password (mode 0600, owned by the caller, no
#                            trailing newline, as tests/softhsm-init.sh's pin)
#   KW_TEST_PGPASS           the same in libpq's pgpass format, for psql as
#                            keyward: PGPASSFILE=$KW_TEST_PGPASS psql "$KW_TEST_PG"
#                            (deliberately not exported as PGPASSFILE: keywardd
#                            must find its password through [db] password_file)
#   KW_TEST_PG_SUPER         the superuser's conninfo over the Unix socket (trust
#                            auth; the socket dir is 0700), to tamper with rows
#   KW_TEST_PG_DATA          the data directory
#   KW_TEST_PG_CTL           a command prefix running pg_ctl as the cluster's
#                            owner on that data dir with bounded waits:
#                              $KW_TEST_PG_CTL stop -m fast ; $KW_TEST_PG_CTL start
#   KW_TEST_PG_CA            (PG_TLS=1 only) the throw-away CA's certificate
#   KW_TEST_PG_BIN           PostgreSQL's bin directory (psql, pg_ctl, ...)
#   KW_TEST_PG_LOG           the server's log file
#
# PG_FSYNC=1: PostgreSQL's durable defaults (fsync, synchronous_commit,
# full_page_writes on) instead of the fast test settings.
#
# PG_TLS=1: a throw-away CA and server certificate (CN 127.0.0.1, SAN
# IP:127.0.0.1 and DNS:localhost), ssl = on, and pg_hba accepts TCP only as
# `hostssl` (the fleet tests use this: the issue demands TLS with certificate
# verification).  Every wait is bounded (pg_ctl -w -t 30); the cluster is stopped
# and removed on any exit.  Returns CMD's status (or 1 with one line on stderr
# when the cluster cannot be started).
set -euo pipefail
umask 077

if [ $# -lt 1 ]; then
        echo "usage: [PG_TLS=1] $0 CMD [ARGS...]" >&2
        exit 2
fi

PGBIN=${KW_PG_BIN:-/usr/lib/postgresql/15/bin}
for b in initdb pg_ctl psql; do
        if [ ! -x "$PGBIN/$b" ]; then
                echo "pg.sh: $PGBIN/$b not found (install Debian's postgresql package)" >&2
                exit 1
        fi
done
PY=/usr/bin/python3

# As root, the cluster belongs to `postgres`; otherwise to the caller.
if [ "$(id -u)" = 0 ]; then
        if ! id -u postgres >/dev/null 2>&1; then
                echo "pg.sh: running as root but there is no postgres system user" >&2
                exit 1
        fi
        owner=postgres
        as_owner=(runuser -u postgres --)
else
        owner=$(id -un)
        as_owner=()
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kw-pg.XXXXXXXX")
chmod 0755 "$tmp"                       # the owner must traverse it; files below are private
data=$tmp/data
sock=$tmp/sock
log=$tmp/postgres.log
pwfile=$tmp/keyward.password
pgpass=$tmp/keyward.pgpass
mkdir -m 0700 "$data" "$sock"
touch "$log"
chown "$owner" "$data" "$sock" "$log"
ctl=("${as_owner[@]}" "$PGBIN/pg_ctl" -D "$data" -w -t 30 -l "$log")

started=0
cleanup() {
        local rc=$?
        trap - EXIT INT TERM HUP
        if [ "$started" = 1 ] && [ -f "$data/postmaster.pid" ]; then
                "${ctl[@]}" stop -m immediate >/dev/null 2>&1 || true
        fi
        rm -rf "$tmp"
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

fail() {
        echo "pg.sh: $*" >&2
        if [ -s "$log" ]; then
                echo "pg.sh: the server's log ($log):" >&2
                tail -n 20 "$log" >&2
        fi
        exit 1
}

"${as_owner[@]}" "$PGBIN/initdb" -D "$data" -U postgres -A trust -E UTF8 --locale=C \
        --no-instructions >"$tmp/initdb.log" 2>&1 || { cat "$tmp/initdb.log" >&2; fail "initdb failed"; }

# TLS: a throw-away CA (P-256) and a server certificate for 127.0.0.1/localhost.
tls=${PG_TLS:-0}
if [ "$tls" = 1 ]; then
        ca=$tmp/ca.pem
        (
                cd "$tmp"
                openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                        -keyout ca.key -out ca.pem -days 2 -subj "/CN=keyward test PostgreSQL CA" \
                        -addext "basicConstraints=critical,CA:TRUE" \
                        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
                openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
                        -keyout server.key -out server.csr -subj "/CN=127.0.0.1" 2>/dev/null
                printf '%s\n' "basicConstraints=critical,CA:FALSE" \
                        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" \
                        "subjectAltName=IP:127.0.0.1,DNS:localhost" >server.ext
                openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
                        -out server.pem -days 2 -extfile server.ext 2>/dev/null
                rm -f server.csr server.ext ca.srl ca.key
                chmod 0644 ca.pem server.pem
                chown "$owner" server.key server.pem
        ) || fail "could not make the throw-away TLS certificates (openssl)"
fi

# The server's settings, in postgresql.conf so that `$KW_TEST_PG_CTL start`
# after a stop comes back the same.  fsync, synchronous_commit and
# full_page_writes are off: a throw-away test cluster, never killed itself
# (the tests kill keywardd, and stop PostgreSQL with pg_ctl, which
# checkpoints), so durability against power loss buys nothing here but time.
# PG_FSYNC=1 keeps PostgreSQL's durable defaults (the bench: its figures
# stand next to SQLCipher's, which syncs).
durable=${PG_FSYNC:-0}
write_conf() {
        {
                echo "# written by tests/fleet/pg.sh"
                echo "listen_addresses = '127.0.0.1'"
                echo "port = $1"
                echo "unix_socket_directories = '$sock'"
                echo "unix_socket_permissions = 0700"
                echo "max_connections = 100"
                echo "shared_buffers = 32MB"
                if [ "$durable" != 1 ]; then
                        echo "fsync = off"
                        echo "synchronous_commit = off"
                        echo "full_page_writes = off"
                fi
                echo "password_encryption = 'scram-sha-256'"
                echo "log_min_messages = warning"
                echo "log_connections = off"
                if [ "$tls" = 1 ]; then
                        echo "ssl = on"
                        echo "ssl_cert_file = '$tmp/server.pem'"
                        echo "ssl_key_file = '$tmp/server.key'"
                        echo "ssl_min_protocol_version = 'TLSv1.2'"
                fi
        } | "${as_owner[@]}" tee "$data/keyward-test.conf" >/dev/null
}
echo "include = 'keyward-test.conf'" | "${as_owner[@]}" tee -a "$data/postgresql.conf" >/dev/null

# pg_hba: the Unix socket (0700 dir: the owner and root only) trusts; TCP on
# 127.0.0.1 wants the scram password, over TLS only with PG_TLS=1.
{
        echo "# written by tests/fleet/pg.sh"
        echo "local all all trust"
        if [ "$tls" = 1 ]; then
                echo "hostssl all all 127.0.0.1/32 scram-sha-256"
        else
                echo "host all all 127.0.0.1/32 scram-sha-256"
        fi
} | "${as_owner[@]}" tee "$data/pg_hba.conf" >/dev/null

# A free port: ask the kernel for one, then start; another process may take it
# in between, so a failed start is retried on a new port (three tries).
free_port() {
        "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=
for try in 1 2 3; do
        port=$(free_port)
        write_conf "$port"
        : | "${as_owner[@]}" tee "$log" >/dev/null
        started=1
        if "${ctl[@]}" start >/dev/null 2>&1; then
                break
        fi
        started=0
        if [ "$try" = 3 ]; then
                fail "pg_ctl start failed three times"
        fi
        "${ctl[@]}" stop -m immediate >/dev/null 2>&1 || true
done

super="host=$sock port=$port dbname=postgres user=postgres"
password=$(openssl rand -hex 24)
"${as_owner[@]}" "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$super" >/dev/null <<EOF || fail "could not create the keyward role and database"
CREATE ROLE keyward LOGIN PASSWORD '$password';
CREATE DATABASE keyward OWNER keyward;
EOF
# The caller owns the password files (0600): keywardd runs as the caller
# (root in CI), and root reads them whoever owns them.
printf '%s' "$password" >"$pwfile"
printf '127.0.0.1:%s:*:keyward:%s\n' "$port" "$password" >"$pgpass"
chmod 0600 "$pwfile" "$pgpass"
unset password

conninfo="host=127.0.0.1 port=$port dbname=keyward user=keyward"
if [ "$tls" = 1 ]; then
        conninfo="$conninfo sslmode=verify-full sslrootcert=$ca connect_timeout=3"
        export KW_TEST_PG_CA=$ca
else
        conninfo="$conninfo sslmode=disable connect_timeout=3"
fi
export KW_TEST_PG=$conninfo
export KW_TEST_PG_PASSWORD_FILE=$pwfile
export KW_TEST_PGPASS=$pgpass
export KW_TEST_PG_SUPER="host=$sock port=$port dbname=keyward user=postgres"
export KW_TEST_PG_DATA=$data
export KW_TEST_PG_CTL="${as_owner[*]}${as_owner[*]:+ }$PGBIN/pg_ctl -D $data -w -t 30 -l $log"
export KW_TEST_PG_BIN=$PGBIN
export KW_TEST_PG_LOG=$log

# CMD runs in the foreground (not exec: the trap must remove the cluster).
set +e
"$@"
rc=$?
set -e
exit "$rc"
