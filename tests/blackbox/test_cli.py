"""keywardctl against a real server: the lifecycle, human and --json output,
exit codes, help at every level."""
import json
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import KEYWARDCTL, Server, free_port


@pytest.fixture(scope="module")
def srv():
    d = tempfile.mkdtemp(prefix="kw-bb-cli-")
    s = Server(d).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def ok(s, *args):
    p = s.ctl(*args)
    assert p.returncode == 0, (args, p.returncode, p.stdout, p.stderr)
    return p


def js(s, *args):
    return json.loads(ok(s, "--json", *args).stdout)


def key_names(s):
    r = s.api("GET", "/api/v1/keys?limit=1000")
    return sorted(k["name"] for k in r.json()["keys"])


def test_key_lifecycle(srv):
    s = srv
    p = ok(s, "key", "create", "cli-aes", "--type", "aes", "--tag", "env=dev", "--tag", "team=x")
    assert "cli-aes" in p.stdout and "enabled" in p.stdout
    d = s.api("GET", "/api/v1/keys/cli-aes").json()
    assert d["type"] == "AES" and d["tags"] == {"env": "dev", "team": "x"}

    d = js(s, "key", "create", "cli-rsa", "--type", "rsa", "--size", "2048", "--ops", "wrap")
    assert d["type"] == "RSA" and d["size"] == 2048 and d["operations"] == ["wrap"]

    p = ok(s, "key", "list")
    assert "cli-aes" in p.stdout and "cli-rsa" in p.stdout
    d = js(s, "key", "list", "--type", "rsa")
    assert [k["name"] for k in d["keys"]] == ["cli-rsa"]

    p = ok(s, "key", "get", "cli-aes")
    assert "cli-aes" in p.stdout and "AES" in p.stdout
    assert js(s, "key", "get", "cli-aes") == s.api("GET", "/api/v1/keys/cli-aes").json()

    assert js(s, "key", "disable", "cli-aes")["state"] == "disabled"
    p = ok(s, "key", "enable", "cli-aes")
    assert s.api("GET", "/api/v1/keys/cli-aes").json()["state"] == "enabled"
    assert js(s, "key", "rotate", "cli-aes")["current_version"] == 2
    ok(s, "key", "rotate", "cli-aes")
    assert s.api("GET", "/api/v1/keys/cli-aes").json()["current_version"] == 3

    d = js(s, "key", "delete", "cli-aes", "--wait-seconds", "3600")
    assert d["state"] == "pending_deletion" and d["delete_at"]
    d = js(s, "key", "cancel-deletion", "cli-aes")
    assert d["state"] == "disabled"
    p = ok(s, "key", "delete", "cli-aes", "--wait-days", "7")
    assert s.api("GET", "/api/v1/keys/cli-aes").json()["state"] == "pending_deletion"
    ok(s, "key", "cancel-deletion", "cli-aes")

    ok(s, "key", "set-tags", "cli-aes", "--tag", "env=prod")
    assert s.api("GET", "/api/v1/keys/cli-aes").json()["tags"] == {"env": "prod"}
    ok(s, "key", "set-ops", "cli-aes", "--ops", "encrypt,decrypt")
    assert s.api("GET", "/api/v1/keys/cli-aes").json()["operations"] == ["encrypt", "decrypt"]


def test_import(srv, tmp_path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    mat = tmp_path / "aes.key"
    mat.write_bytes(os.urandom(32))
    d = js(srv, "key", "import", "cli-imp-aes", "--type", "aes", "--material-file", str(mat))
    assert d["type"] == "AES" and d["size"] == 256
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = tmp_path / "rsa.pem"
    pem.write_bytes(priv.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    d = js(srv, "key", "import", "cli-imp-rsa", "--type", "rsa", "--pem-file", str(pem))
    assert d["size"] == 2048
    import base64
    n = int.from_bytes(base64.urlsafe_b64decode(d["public_key"]["n"] + "=="), "big")
    assert n == priv.public_key().public_numbers().n


def test_create_and_import_with_access_rules(srv, tmp_path):
    # issue 10: the key's access rules at creation, in the same request
    s = srv
    ok(s, "key", "create", "cli-rules", "--type", "aes", "--xks-store", "a", "--ekm-client",
       "foo.example")
    r = s.api("GET", "/api/v1/keys/cli-rules")
    assert r.status_code == 200, r.text
    assert r.json()["rules"] == {"xks": {"key_stores": ["a"]}, "ekm": {"client_cns": ["foo.example"]}}
    # repeatable, in order; one kind alone gives one section
    d = js(s, "key", "create", "cli-rules-2", "--type", "rsa", "--size", "2048",
           "--ekm-client", "mhsm-a.example", "--ekm-client", "mhsm-b.example")
    assert d["rules"] == {"ekm": {"client_cns": ["mhsm-a.example", "mhsm-b.example"]}}
    d = js(s, "key", "create", "cli-rules-3", "--type", "aes", "--xks-store", "tenant-a",
           "--xks-store", "default")
    assert d["rules"] == {"xks": {"key_stores": ["tenant-a", "default"]}}
    # none given: no rules (as before)
    assert js(s, "key", "create", "cli-rules-4", "--type", "aes")["rules"] == {}
    # key import takes them too
    mat = tmp_path / "aes.key"
    mat.write_bytes(os.urandom(32))
    d = js(s, "key", "import", "cli-rules-imp", "--type", "aes", "--material-file", str(mat),
           "--xks-store", "b")
    assert d["rules"] == {"xks": {"key_stores": ["b"]}}
    # the human output shows them
    p = ok(s, "key", "get", "cli-rules")
    assert "foo.example" in p.stdout and "key_stores" in p.stdout, p.stdout
    # an empty or repeated value is a usage error, and nothing is created
    before = key_names(s)
    for args, msg in ((["--xks-store", ""], "--xks-store takes an XKS key store name"),
                      (["--ekm-client", "x.example", "--ekm-client", "x.example"],
                       "--ekm-client 'x.example' is given twice")):
        p = s.ctl("key", "create", "cli-rules-bad", "--type", "aes", *args)
        assert p.returncode == 2, (args, p.returncode, p.stderr)
        assert msg in p.stderr, p.stderr
    assert key_names(s) == before
    # documented in --help
    p = ok(s, "key", "create", "--help")
    assert "--xks-store" in p.stdout and "--ekm-client" in p.stdout
    p = ok(s, "key", "import", "--help")
    assert "--xks-store" in p.stdout and "--ekm-client" in p.stdout


def test_tokens(srv, tmp_path):
    s = srv
    d = js(s, "token", "create", "cli-op", "--role", "operator")
    assert d["role"] == "operator" and d["token"].startswith("kw_")
    tf = tmp_path / "op.token"
    tf.write_text(d["token"] + "\n")
    tf.chmod(0o600)
    # the new token works for keys, not for tokens (exit 4)
    p = s.ctl("key", "list", token_file=str(tf))
    assert p.returncode == 0, p.stderr
    p = s.ctl("token", "list", token_file=str(tf))
    assert p.returncode == 4, (p.returncode, p.stderr)
    p = ok(s, "token", "list")
    assert "cli-op" in p.stdout and "initial-admin" in p.stdout
    assert d["token"] not in p.stdout and s.token not in p.stdout
    lst = js(s, "token", "list")["tokens"]
    assert d["id"] in [t["id"] for t in lst]
    ok(s, "token", "revoke", d["id"])
    p = s.ctl("key", "list", token_file=str(tf))
    assert p.returncode == 4, (p.returncode, p.stderr)
    # human create prints the token once
    p = ok(s, "token", "create", "cli-aud", "--role", "auditor")
    assert "kw_" in p.stdout


def test_audit_and_status(srv):
    s = srv
    ok(s, "key", "create", "cli-audited", "--type", "aes")
    p = ok(s, "audit", "list", "--key", "cli-audited")
    assert "key.create" in p.stdout
    d = js(s, "audit", "list", "--action", "key.create", "--limit", "1000")
    assert "cli-audited" in [e["key"] for e in d["events"]]
    p = ok(s, "audit", "verify")
    assert p.stdout.strip()
    d = js(s, "audit", "verify")
    assert d["ok"] is True
    p = ok(s, "status")
    assert p.stdout.strip()
    d = js(s, "status")
    assert d["custody"]["hsm"]["state"] == "up"


def test_nodes(srv):
    """keywardctl nodes on a single appliance: one row, this node, ACTIVE;
    --json is the API's document; an auditor may list them."""
    s = srv
    d = js(s, "nodes")
    assert d["engine"] == "sqlcipher" and d["state"] == "ACTIVE", d
    assert [n["id"] for n in d["nodes"]] == [d["self"]] and d["nodes"][0]["self"] is True, d
    api = s.api("GET", "/api/v1/nodes").json()
    for doc in (d, api):   # the heartbeat moves between the two reads
        for n in doc["nodes"]:
            del n["seen_ms"], n["age_ms"]
    assert d == api
    p = ok(s, "nodes")
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["engine:", "sqlcipher", "(single", "appliance)"], p.stdout
    assert lines[1] == "this node: %s, ACTIVE" % d["self"], p.stdout
    assert lines[2] == "" and lines[3].split() == ["NODE", "STATE", "ADDRESS", "VERSION",
                                                   "HEARTBEAT", "THIS", "DETAIL"], p.stdout
    row = lines[4].split()
    assert len(lines) == 5 and row[:4] == [d["self"], "ACTIVE", d["nodes"][0]["address"], "0.1.0"]
    assert row[4:] == [row[4], "s", "ago", "*", "-"] and float(row[4]) < 60, p.stdout
    tok = s.api("POST", "/api/v1/tokens", {"name": "cli-nodes-aud", "role": "auditor"}).json()["token"]
    tf = os.path.join(s.dir, "auditor-nodes.token")
    with open(tf, "w") as f:
        f.write(tok)
    p = s.ctl("nodes", token_file=tf)
    assert p.returncode == 0 and d["self"] in p.stdout, (p.returncode, p.stdout, p.stderr)
    # no arguments; listed in the top help
    p = s.ctl("nodes", "extra")
    assert p.returncode == 2 and "unexpected argument" in p.stderr, p.stderr
    top = ok(s, "--help").stdout
    assert [l for l in top.splitlines() if l.split()[:1] == ["nodes"]], top


def test_exit_refused_1(srv):
    before = key_names(srv)
    for args in (["key", "get", "cli-nope"], ["key", "rotate", "cli-nope"],
                 ["key", "create", "bad name", "--type", "aes"],
                 ["key", "create", "cli-x", "--type", "aes", "--size", "128"],
                 # list limits are passed through and refused by the server
                 ["key", "list", "--limit", "0"], ["audit", "list", "--limit", "x"]):
        p = srv.ctl(*args)
        assert p.returncode == 1, (args, p.returncode, p.stdout, p.stderr)
        assert p.stderr.startswith("keywardctl: "), p.stderr
    ok(srv, "key", "create", "cli-dup", "--type", "aes")
    p = srv.ctl("key", "create", "cli-dup", "--type", "aes")
    assert p.returncode == 1 and "keywardctl:" in p.stderr
    assert key_names(srv) == sorted(before + ["cli-dup"])


@pytest.mark.parametrize("args", [
    [],
    ["frobnicate"],
    ["key"],
    ["key", "frobnicate"],
    ["key", "create"],
    ["key", "create", "x"],                       # --type is required
    ["key", "create", "x", "--type"],
    ["key", "create", "x", "--type", "aes", "--bogus"],
    ["key", "get"],
    ["key", "get", "a", "b"],
    ["key", "delete", "x", "--wait-seconds", "soon"],
    ["token", "create", "x"],                     # --role is required
])
def test_exit_usage_2(srv, args):
    before = key_names(srv)
    p = srv.ctl(*args)
    assert p.returncode == 2, (args, p.returncode, p.stdout, p.stderr)
    assert p.stderr.strip(), "a usage error says what is wrong"
    assert key_names(srv) == before


def test_exit_connect_3(srv, tmp_path):
    port = free_port()
    p = srv.ctl("--url", "https://127.0.0.1:%d" % port, "key", "list")
    assert p.returncode == 3, (p.returncode, p.stderr)
    # wrong CA: TLS verification fails
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(other)],
                   check=True, capture_output=True, timeout=30)
    p = srv.ctl("--cacert", str(other), "key", "list")
    assert p.returncode == 3, (p.returncode, p.stderr)


def test_exit_auth_4(srv, tmp_path):
    bad = tmp_path / "bad.token"
    bad.write_text("kw_" + "A" * 43 + "\n")
    before = key_names(srv)
    p = srv.ctl("key", "create", "cli-unauth", "--type", "aes", token_file=str(bad))
    assert p.returncode == 4, (p.returncode, p.stderr)
    p = srv.ctl("key", "list", token_file=str(tmp_path / "missing.token"))
    assert p.returncode == 4, (p.returncode, p.stderr)
    assert key_names(srv) == before


@pytest.mark.parametrize("args", [
    ["--help"], ["key", "--help"], ["token", "--help"], ["audit", "--help"], ["status", "--help"],
    ["key", "create", "--help"], ["key", "import", "--help"], ["key", "list", "--help"],
    ["key", "get", "--help"], ["key", "enable", "--help"], ["key", "disable", "--help"],
    ["key", "rotate", "--help"], ["key", "delete", "--help"], ["key", "cancel-deletion", "--help"],
    ["key", "set-rules", "--help"], ["key", "set-tags", "--help"], ["key", "set-ops", "--help"],
    ["audit", "list", "--help"], ["audit", "verify", "--help"], ["token", "create", "--help"],
    ["token", "list", "--help"], ["token", "revoke", "--help"], ["nodes", "--help"],
])
def test_help_everywhere(args):
    env = dict(os.environ, KEYWARD_URL="https://127.0.0.1:1")   # help needs no server
    p = subprocess.run([KEYWARDCTL] + args, capture_output=True, text=True, timeout=30, env=env)
    assert p.returncode == 0, (args, p.returncode, p.stderr)
    assert p.stdout.startswith("Usage: keywardctl"), p.stdout
    assert p.stderr == ""
