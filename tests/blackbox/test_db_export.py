"""keywardctl db export / db import (docs/fleet-migration.md): a key store
moved, sealed, into another store on the same HSM token, SQLCipher to
SQLCipher here (PostgreSQL as the target: tests/fleet/).

One appliance with AES and RSA keys of several versions, a disabled key, a
key pending deletion, a destroyed key, tokens (one revoked), a console user
and an XKS store made through the API; ciphertexts made before the export
decrypt on a server started on the imported store; the checksum printed
matches; the file holds no clear secret; a changed file, a non-empty target
and another master key are refused.
"""
import base64
import hashlib
import json
import os
import re
import stat
import subprocess
import time

import pytest

from conftest import KEYWARDCTL, KEYWARDD
from test_xks import AKID, REGION, SECRET, TOML, Xks


def ctl_db(s, *args, env=None, timeout=120):
    e = dict(s.env, **(env or {}))
    e["KEYWARDD"] = KEYWARDD
    return subprocess.run([KEYWARDCTL, "db"] + list(args), env=e, capture_output=True, text=True,
                          timeout=timeout)


def share_token(dst, src):
    """dst's configuration on src's SoftHSM2 token (same master key)."""
    dst.env["SOFTHSM2_CONF"] = src.env["SOFTHSM2_CONF"]
    with open(dst.conf) as f:
        text = f.read()
    text = re.sub(r'pin_file = ".*"', 'pin_file = "%s"' % os.path.join(src.dir, "softhsm", "pin"),
                  text)
    with open(dst.conf, "w") as f:
        f.write(text)


def b64(b):
    return base64.b64encode(b).decode()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A stopped appliance with one of everything, its export, and what
    was made before it."""
    from conftest import Server
    s = Server(str(tmp_path_factory.mktemp("dbsrc")), extra_toml=TOML).start()
    x = Xks(s)
    made = {}
    raw = os.urandom(32)
    r = s.api("POST", "/api/v1/keys/import", {"name": "aes-imp", "type": "AES", "material": b64(raw),
                                               "rules": {"xks": {"key_stores": ["default"]}},
                                               "tags": {"team": "pay", "env": "prod"}})
    assert r.status_code == 201, r.text
    # a ciphertext per version: v1, then rotated twice, v3
    cts = [x.enc("/a", "aes-imp", b"before the move v1", aad=b"ctx").json()]
    for _ in range(2):
        assert s.api("POST", "/api/v1/keys/aes-imp/rotate").status_code == 200
    cts.append(x.enc("/a", "aes-imp", b"before the move v3", aad=b"ctx").json())
    assert all("ciphertext" in c for c in cts), cts
    made["cts"] = cts
    made["raw"] = raw
    r = s.api("POST", "/api/v1/keys", {"name": "rsa-k", "type": "RSA", "size": 2048})
    assert r.status_code == 201, r.text
    assert s.api("POST", "/api/v1/keys/rsa-k/rotate").status_code == 200
    made["rsa_spki"] = s.api("GET", "/api/v1/keys/rsa-k").json()["public_key"]["spki"]
    for name in ("off", "pend", "gone"):
        assert s.api("POST", "/api/v1/keys", {"name": name, "type": "AES", "size": 256}).status_code == 201
    assert s.api("POST", "/api/v1/keys/off/disable").status_code == 200
    assert s.api("POST", "/api/v1/keys/pend/schedule-deletion", {"wait_seconds": 86400}).status_code == 200
    assert s.api("POST", "/api/v1/keys/gone/schedule-deletion", {"wait_seconds": 1}).status_code == 200
    # tokens: one kept, one revoked
    op = s.api("POST", "/api/v1/tokens", {"name": "ops", "role": "operator"}).json()
    made["op_token"] = op["token"]
    old = s.api("POST", "/api/v1/tokens", {"name": "old", "role": "auditor"}).json()
    made["old_token"] = old["token"]
    assert s.api("DELETE", "/api/v1/tokens/" + old["id"]).status_code in (200, 204)
    # a console user
    made["password"] = "correct horse battery staple 42"
    r = s.api("POST", "/api/v1/users", {"name": "alice", "role": "admin", "password": made["password"]})
    assert r.status_code == 201, r.text
    # an XKS store made through the API, rotated once (two sealed credentials)
    r = s.api("POST", "/api/v1/xks/stores", {"name": "c", "uri_prefix": "/c/d", "region": "us-west-2"})
    assert r.status_code == 201, r.text
    c1 = r.json()["import_file"]["XksProxyAuthenticationCredential"]
    c2 = s.api("POST", "/api/v1/xks/stores/c/rotate").json()["import_file"]["XksProxyAuthenticationCredential"]
    made["xks_creds"] = [c1, c2]
    # the destroyed key: the sweeper's next pass (every 10 s)
    deadline = time.time() + 30
    while s.api("GET", "/api/v1/keys/gone").json().get("state") != "destroyed":
        assert time.time() < deadline, s.api("GET", "/api/v1/keys/gone").text
        time.sleep(0.5)
    made["admin_token"] = s.token
    s.stop()
    made["export"] = os.path.join(s.dir, "export.json")
    made["source"] = s
    made["x"] = x
    yield made


def checksum_of(doc):
    """dbio.h's checksum, computed independently from the file."""
    def field(b):
        if isinstance(b, str):
            b = b.encode()
        return len(b).to_bytes(4, "big") + b
    ops = ["encrypt", "decrypt", "wrap", "unwrap"]
    h = hashlib.sha256(b"keyward-export-checksum-v1\0")
    for k in sorted(doc["keys"], key=lambda k: k["id"]):
        out = b"".join(field(k[f]) if f != "size" else field(str(k[f]))
                       for f in ("id", "name", "type", "size", "state"))
        if k["state"] != "destroyed":
            mask = sum(1 << ops.index(o) for o in k["operations"])
            out += field(str(mask)) + field(str(k["current_version"]))
            for f in ("tags", "rules"):
                out += field(json.dumps(k[f], sort_keys=True, separators=(",", ":"),
                                        ensure_ascii=False))
            der = k["public_der"]
            out += field(base64.b64decode(der)) if der else b"\xff\xff\xff\xff"
            out += field(str(len(k["versions"])))
            for v in k["versions"]:
                out += field(str(v["version"])) + hashlib.sha256(base64.b64decode(v["blob"])).digest()
        h.update(out)
    return h.hexdigest()


def parse_report(out):
    m = re.search(r"^checksum: ([0-9a-f]{64})", out, re.M)
    return m.group(1) if m else None


def test_export_then_import_into_a_fresh_store_on_the_same_token(source, make_server):
    s, path = source["source"], source["export"]
    p = ctl_db(s, "export", "--config", s.conf, "--out", path)
    assert p.returncode == 0, p.stdout + p.stderr
    out = p.stdout + p.stderr
    assert "exported 5 keys (1 destroyed), 7 versions, 3 tokens, 1 users, 1 XKS stores (2 credentials)" in out, out
    assert "round trip: 4 keys, 7 versions: ok" in out and "XKS credentials unsealed: 2: ok" in out, out
    checksum = parse_report(out)
    assert checksum, out
    with open(path, "rb") as f:
        data = f.read()
    st = os.stat(path)
    assert stat.S_IMODE(st.st_mode) == 0o600
    sha = hashlib.sha256(data).hexdigest()
    assert "sha256: %s  %s" % (sha, path) in p.stdout, p.stdout
    doc = json.loads(data)
    assert doc["format"] == "keyward-export" and doc["version"] == 1
    assert doc["checksum"] == checksum and doc["engine"] == "sqlcipher"
    assert checksum_of(doc) == checksum
    assert "no clear secret" in doc["notice"]
    assert doc["counts"] == {"keys": 5, "destroyed": 1, "versions": 7, "tokens": 3, "users": 1,
                             "xks_stores": 1, "xks_credentials": 2}
    gone = [k for k in doc["keys"] if k["name"] == "gone"][0]
    assert set(gone) == {"id", "name", "type", "size", "state", "created", "updated"}
    # no clear secret anywhere in the file
    text = data.decode()
    for secret in [source["op_token"], source["old_token"], source["admin_token"], source["password"],
                   b64(source["raw"]), source["raw"].hex(), SECRET] + \
                  [c["RawSecretAccessKey"] for c in source["xks_creds"]]:
        assert secret not in text
    assert "$argon2id$" in text

    # the target: a fresh store on the same token, never started
    t = make_server(extra_toml=TOML)
    share_token(t, s)
    p = ctl_db(t, "import", "--config", t.conf, "--in", path)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "imported 5 keys (1 destroyed), 7 versions, 3 tokens, 1 users, 1 XKS stores (2 credentials)" in p.stdout, p.stdout
    assert "checksum: %s" % checksum in p.stdout, p.stdout
    assert "round trip: 4 keys, 7 versions: ok" in p.stdout and "XKS credentials unsealed: 2: ok" in p.stdout, p.stdout

    # importing again: the target is not empty, nothing written
    before = os.stat(os.path.join(t.dir, "keyward.db")).st_mtime_ns
    p = ctl_db(t, "import", "--config", t.conf, "--in", path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "not empty" in p.stderr and "nothing was written" in p.stderr, p.stderr

    # the server on the imported store: same keys, old ciphertexts decrypt
    t.start()
    tok = source["admin_token"]
    keys = {k["name"]: k for k in t.api("GET", "/api/v1/keys?state=enabled", token=tok).json()["keys"]}
    assert set(keys) == {"aes-imp", "rsa-k"}, keys
    assert keys["aes-imp"]["current_version"] == 3 and keys["aes-imp"]["tags"] == {"team": "pay", "env": "prod"}
    assert t.api("GET", "/api/v1/keys/off", token=tok).json()["state"] == "disabled"
    pend = t.api("GET", "/api/v1/keys/pend", token=tok).json()
    assert pend["state"] == "pending_deletion" and pend["delete_at"]
    assert t.api("GET", "/api/v1/keys/gone", token=tok).json()["state"] == "destroyed"
    assert t.api("GET", "/api/v1/keys/rsa-k", token=tok).json()["public_key"]["spki"] == source["rsa_spki"]
    x = Xks(t)
    for c, want in zip(source["cts"], (b"before the move v1", b"before the move v3")):
        r = x.dec("/a", "aes-imp", c, aad=b"ctx")
        assert r.status_code == 200, r.text
        assert base64.b64decode(r.json()["plaintext"]) == want
    # the XKS store's sealed credentials moved: the newest two both work
    for c in source["xks_creds"]:
        r = x.health("/c/d", akid=c["AccessKeyId"], secret=c["RawSecretAccessKey"], region="us-west-2")
        assert r.status_code == 200, r.text
    # tokens: the operator's works, the revoked one does not; the user is there
    assert t.api("GET", "/api/v1/keys", token=source["op_token"]).status_code == 200
    assert t.api("GET", "/api/v1/keys", token=source["old_token"]).status_code == 401
    users = t.api("GET", "/api/v1/users", token=tok).json()["users"]
    assert [u["name"] for u in users] == ["alice"]
    # every import step is audited
    r = t.api("GET", "/api/v1/audit?action=db.import&limit=1000", token=tok)
    assert r.status_code == 200, r.text
    evs = r.json()["events"]
    assert len(evs) >= 5 and all(e["actor"] == "keywardd --db-import" for e in evs), evs

    # and back: the imported store exports to the same checksum
    t.stop()
    back = os.path.join(t.dir, "back.json")
    p = ctl_db(t, "export", "--config", t.conf, "--out", back)
    assert p.returncode == 0, p.stdout + p.stderr
    assert parse_report(p.stdout + p.stderr) == checksum


def tampered(path, dst, change):
    with open(path) as f:
        doc = json.load(f)
    change(doc)
    with open(dst, "w") as f:
        json.dump(doc, f)
    return dst


def set_state(doc):
    [k for k in doc["keys"] if k["name"] == "off"][0]["state"] = "enabled"


def flip_blob(doc):
    v = [k for k in doc["keys"] if k["name"] == "aes-imp"][0]["versions"][1]
    b = bytearray(base64.b64decode(v["blob"]))
    b[-1] ^= 1
    v["blob"] = base64.b64encode(bytes(b)).decode()


def widen_rules(doc):
    [k for k in doc["keys"] if k["name"] == "aes-imp"][0]["rules"] = {}


def unknown_field(doc):
    doc["keys"][0]["extra"] = 1


def bad_base64(doc):
    [k for k in doc["keys"] if k["name"] == "rsa-k"][0]["public_der"] = "not base64!"


@pytest.mark.parametrize("change,why", [
    (set_state, "checksum"), (flip_blob, "checksum"), (widen_rules, "checksum"),
    (unknown_field, "keys[0].extra: unknown field"), (bad_base64, "public_der: not base64"),
])
def test_a_changed_file_is_refused_and_nothing_is_written(source, make_server, change, why):
    s, path = source["source"], source["export"]
    if not os.path.exists(path):
        assert ctl_db(s, "export", "--config", s.conf, "--out", path).returncode == 0
    t = make_server(extra_toml=TOML)
    share_token(t, s)
    bad = tampered(path, os.path.join(t.dir, "bad.json"), change)
    p = ctl_db(t, "import", "--config", t.conf, "--in", bad)
    assert p.returncode == 1, p.stdout + p.stderr
    assert why in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(t.dir, "keyward.db"))


def test_another_master_key_is_refused_before_anything_is_written(source, make_server):
    s, path = source["source"], source["export"]
    if not os.path.exists(path):
        assert ctl_db(s, "export", "--config", s.conf, "--out", path).returncode == 0
    t = make_server(extra_toml=TOML)   # its own token: no master key yet
    p = ctl_db(t, "import", "--config", t.conf, "--in", path)
    # an import never makes a master key
    assert p.returncode == 4, p.stdout + p.stderr
    assert "hsm" in p.stderr, p.stderr
    # the token's own master key, made by a first start; its store removed
    t.start()
    t.stop()
    for f in ("keyward.db", "keyward.db.key", "keyward.db-wal", "keyward.db-shm"):
        if os.path.exists(os.path.join(t.dir, f)):
            os.unlink(os.path.join(t.dir, f))
    p = ctl_db(t, "import", "--config", t.conf, "--in", path)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "does not unseal under the master key" in p.stderr and "nothing written" in p.stderr, p.stderr
    with open(path) as f:
        first = json.load(f)["keys"][0]["name"]
    assert "key %s version 1" % first in p.stderr, p.stderr


def test_help_says_it_runs_keywardd_here_and_usage_errors():
    env = dict(os.environ, KEYWARD_URL="https://127.0.0.1:1")   # no server involved
    for args in (["--help"], ["db", "--help"], ["db", "export", "--help"], ["db", "import", "--help"]):
        p = subprocess.run([KEYWARDCTL] + args, capture_output=True, text=True, timeout=30, env=env)
        assert p.returncode == 0 and p.stdout.startswith("Usage: keywardctl"), (args, p.stderr)
        assert "keywardd" in p.stdout, (args, p.stdout)
    p = subprocess.run([KEYWARDCTL, "--help"], capture_output=True, text=True, env=env)
    assert "nothing goes through the\nnetwork" in p.stdout or "network or the API" in p.stdout, p.stdout
    for args in (["db", "export"], ["db", "import"], ["db", "export", "--out", ""]):
        p = subprocess.run([KEYWARDCTL] + args, capture_output=True, text=True, timeout=30,
                           env=dict(env, KEYWARDD=KEYWARDD))
        assert p.returncode == 2, (args, p.returncode, p.stderr)
    # keywardd itself: one mode at a time
    p = subprocess.run([KEYWARDD, "--db-export", "-", "--db-import", "-"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
