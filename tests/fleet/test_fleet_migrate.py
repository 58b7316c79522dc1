"""A single appliance's SQLCipher key store moved into a fleet database and
back (issue 16): `keywardctl db export` / `keywardctl db import`, sealed
material moved sealed under the same HSM master key.

A single appliance started the ordinary way (tests/blackbox's Server: its
own SoftHSM2 token, SQLCipher database) makes keys of each kind and state,
an XKS store of the API with its credential and an operator token, and
ciphertexts with them; it is exported, the document imported into an empty
PostgreSQL database, a fleet node started on it with the appliance's token:
every key, state, version, credential and token is there and every
ciphertext made before the move decrypts.  Then the same from PostgreSQL to
a fresh SQLCipher store."""
import json
import os
import re
import shutil
import subprocess
import tempfile

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicNumbers
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from fleetlib import (ALLOWED_CN, KEYWARDCTL, OTHER_CN, XKS_TOML, Ekm, Fleet, Server, api_ok, b64,
                      bb, custody_owned, ekm_env, make_pki, pg_env, unb64, xks_client, xks_key)
from test_ekm import b64u, unb64u

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def db_tool(cmd, server, path, timeout=120):
    """keywardctl db export|import --config CFG --out|--in FILE, as the
    appliance's operator runs it (root; it becomes the custody user)."""
    flag = "--out" if cmd == "export" else "--in"
    p = subprocess.run([KEYWARDCTL, "db", cmd, "--config", server.conf, flag, path],
                       env=server.env, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, "keywardctl db %s --config %s -> %d\n%s%s" % (
        cmd, server.conf, p.returncode, p.stdout, p.stderr)
    return p


def key_set(server):
    r = api_ok(server, "GET", "/api/v1/keys?limit=1000")
    assert not r.get("next"), "more than 1000 keys?"
    return {k["name"]: (k["id"], k["type"], k["size"], k["state"], k["current_version"],
                        sorted(k["operations"]), json.dumps(k["rules"], sort_keys=True),
                        json.dumps(k.get("tags", {}), sort_keys=True),
                        (k.get("public_key") or {}).get("spki"))
            for k in r["keys"]}


@pytest.fixture(scope="module")
def world():
    pg_env()
    d = tempfile.mkdtemp(prefix="kw-fleet-migrate-")
    os.chmod(d, 0o711)
    pki = make_pki(os.path.join(d, "pki"), ALLOWED_CN, OTHER_CN)
    os.chmod(os.path.join(d, "pki"), 0o755)
    env = ekm_env(pki)
    xfer = os.path.join(d, "xfer")          # where the custody user writes the documents
    os.makedirs(xfer)
    custody_owned(xfer)
    w = {"dir": d, "pki": pki, "env": env, "xfer": xfer, "servers": [], "fleets": []}
    try:
        yield w
    finally:
        for s in w["servers"]:
            s.stop()
        for f in w["fleets"]:
            f.cleanup()
        shutil.rmtree(d, ignore_errors=True)


class Made:
    """What the single appliance made before the move, and how to check it."""

    def __init__(self, s, pki):
        self.raw = os.urandom(32)
        xks_key(s, "m-imported", raw=self.raw)
        xks_key(s, "m-generated")
        xks_key(s, "m-rotated")
        xks_key(s, "m-disabled")
        xks_key(s, "m-pending")
        api_ok(s, "POST", "/api/v1/keys", {"name": "m-rsa", "type": "RSA", "size": 2048,
                                           "operations": ["wrap", "unwrap"],
                                           "rules": {"ekm": {"path_prefixes": [
                                               "/azureekm/tenant0/pool-1"]}},
                                           "tags": {"team": "payments"}})
        store = api_ok(s, "POST", "/api/v1/xks/stores", {"name": "mapi", "uri_prefix": "/mapi"})
        c = store["import_file"]["XksProxyAuthenticationCredential"]
        self.cred = {"akid": c["AccessKeyId"], "secret": c["RawSecretAccessKey"],
                     "region": "us-east-1"}
        xks_key(s, "m-api-store", stores=["mapi"])
        tok = api_ok(s, "POST", "/api/v1/tokens", {"name": "m-operator", "role": "operator"})
        self.operator = tok["token"]
        x = xks_client(s)
        self.cts = []                   # (key, prefix, doc, plaintext, aad, credential)
        for key in ("m-imported", "m-generated", "m-rotated", "m-disabled"):
            pt, aad = os.urandom(40), b"before the move"
            r = x.enc("/a", key, pt, aad=aad)
            assert r.status_code == 200, r.text
            self.cts.append((key, "/a", r.json(), pt, aad, {}))
        api_ok(s, "POST", "/api/v1/keys/m-rotated/rotate")
        pt = os.urandom(40)
        r = x.enc("/a", "m-rotated", pt, aad=b"v2")
        assert r.status_code == 200 and r.json()["ciphertextMetadata"] != self.cts[2][2][
            "ciphertextMetadata"], r.text
        self.cts.append(("m-rotated", "/a", r.json(), pt, b"v2", {}))
        pt = os.urandom(40)
        r = x.enc("/mapi", "m-api-store", pt, **self.cred)
        assert r.status_code == 200, r.text
        self.cts.append(("m-api-store", "/mapi", r.json(), pt, None, self.cred))
        api_ok(s, "POST", "/api/v1/keys/m-disabled/disable")
        api_ok(s, "POST", "/api/v1/keys/m-pending/schedule-deletion", {"wait_seconds": 86400})
        ekm = Ekm(s, pki["allowed"])
        self.dek = os.urandom(32)
        r = ekm.wrap("m-imported", "A256KWP", self.dek)
        assert r.status_code == 200, r.text
        self.wrapped = r.json()["value"]
        m = ekm.post("/m-rsa/metadata").json()
        n, e = (int.from_bytes(unb64u(m[k]), "big") for k in ("n", "e"))
        self.rsa_wrapped = RSAPublicNumbers(e, n).public_key().encrypt(self.dek, OAEP)
        self.keys = key_set(s)

    def check(self, s, pki, where):
        assert key_set(s) == self.keys, where
        x = xks_client(s)
        for key, prefix, doc, pt, aad, cred in self.cts:
            d = x.dec(prefix, key, doc, aad=aad, **cred)
            if key == "m-disabled":
                assert d.status_code == 400 and d.json()["errorName"] == "InvalidStateException", \
                    (where, d.text)
                continue
            assert d.status_code == 200, (where, key, d.text)
            assert unb64(d.json()["plaintext"]) == pt, (where, key)
        r = x.enc("/a", "m-pending", b"x")
        assert r.status_code == 400 and r.json()["errorName"] == "InvalidStateException", r.text
        # the XKS store's credential came along (and still only it)
        r = x.health("/mapi", **self.cred)
        assert r.status_code == 200, (where, r.text)
        ekm = Ekm(s, pki["allowed"])
        r = ekm.unwrap("m-imported", "A256KWP", self.wrapped)
        assert r.status_code == 200 and unb64u(r.json()["value"]) == self.dek, (where, r.text)
        r = ekm.unwrap("m-imported", "A256KWP", aes_key_wrap_with_padding(self.raw, self.dek))
        assert r.status_code == 200 and unb64u(r.json()["value"]) == self.dek, (where, r.text)
        r = ekm.unwrap("m-rsa", "RSA-OAEP-256", self.rsa_wrapped)
        assert r.status_code == 200 and unb64u(r.json()["value"]) == self.dek, (where, r.text)
        # the operator token works, with its role
        assert s.api("GET", "/api/v1/keys?limit=1", token=self.operator).status_code == 200, where
        assert s.api("GET", "/api/v1/tokens", token=self.operator).status_code == 403, where
        # and the moved store keeps working for new writes
        xks_key(s, "m-new-" + where)
        api_ok(s, "POST", "/api/v1/keys/m-generated/rotate")
        pt = os.urandom(8)
        r = x.enc("/a", "m-generated", pt)
        assert r.status_code == 200 and x.dec("/a", "m-generated", r.json()).status_code == 200


def check_document(path, made):
    with open(path) as f:
        text = f.read()
    doc = json.loads(text)
    assert doc["format"] == "keyward-export", list(doc)
    names = {k["name"] for k in doc["keys"]}
    assert set(made.keys) <= names, (set(made.keys) - names)
    # sealed only: no clear key material, credential secret or token in it
    for secret in (made.raw, made.cred["secret"].encode(), made.operator.encode()):
        for form in (secret.hex(), b64(secret), b64u(secret)):
            assert form not in text, "a clear secret in the export document"
    assert re.fullmatch(r"[0-9a-f]{64}", doc["checksum"]), doc["checksum"]
    return doc


def test_sqlcipher_to_postgresql_and_back(world):
    d, pki, env = world["dir"], world["pki"], world["env"]
    # 1. a single appliance, the ordinary way (SQLCipher, its own token)
    s = Server(os.path.join(d, "single"), extra_toml=XKS_TOML, env=env)
    world["servers"].append(s)
    s.start()
    made = Made(s, pki)
    s.stop()
    out = os.path.join(world["xfer"], "single.json")
    db_tool("export", s, out)
    doc = check_document(out, made)
    assert len(doc["keys"]) == len(made.keys), (len(doc["keys"]), sorted(made.keys))

    # 2. into an empty fleet database; a fleet node on the appliance's token
    f = Fleet("migrate", n=1, hsm=os.path.join(s.dir, "softhsm"), hsm_label="keyward-dev",
              env=env)
    world["fleets"].append(f)
    f.setup()
    node = f.nodes[0]
    db_tool("import", node, out)
    f.admin_token = s.token                 # the appliance's admin token moved with the rest
    f.token_file = os.path.join(s.dir, "admin.token")
    f.start()
    made.check(node, pki, "fleet")
    assert int(f.sql("SELECT count(*) FROM keys")) == len(made.keys) + 1   # + m-new-fleet

    # 3. back: from PostgreSQL to a fresh SQLCipher store, same token
    made.keys = key_set(node)               # as the fleet left it (a rotation, a new key)
    back = os.path.join(world["xfer"], "fleet.json")
    db_tool("export", node, back)
    check_document(back, made)
    node.stop()
    s2dir = os.path.join(d, "single2")
    os.makedirs(s2dir)
    port = bb.free_port()
    with open(s.conf) as fh:
        conf = fh.read()
    hsm = s.dir + "/softhsm/"
    conf = conf.replace(hsm, "\0").replace(s.dir, s2dir).replace("\0", hsm)
    conf = re.sub(r'listen = "127\.0\.0\.1:\d+"', 'listen = "127.0.0.1:%d"' % port, conf)
    with open(os.path.join(s2dir, "keyward.toml"), "w") as fh:
        fh.write(conf)
    s2 = Server(s2dir, port=port, env=dict(env, SOFTHSM2_CONF=s.env["SOFTHSM2_CONF"]))
    world["servers"].append(s2)
    assert not os.path.exists(os.path.join(s2dir, "keyward.db"))
    db_tool("import", s2, back)
    with open(os.path.join(s.dir, "admin.token")) as fh:
        tok = fh.read()
    with open(os.path.join(s2dir, "admin.token"), "w") as fh:   # the token moved: its file too
        fh.write(tok)
    s2.start()
    made.check(s2, pki, "sqlcipher")
