"""Azure Managed HSM EKM proxy API (docs/ekm.md) over real mutual TLS on
loopback: client certificates minted by the test (ekm_certs.py), keys made
through the admin API, every wrap checked and every unwrap fed by
python3-cryptography (an independent implementation), and one test per row
of the error table, each asserting status, code and that nothing changed."""
import base64
import json
import os
import shutil
import signal
import tempfile
import time

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.keywrap import (
    InvalidUnwrap, aes_key_unwrap, aes_key_unwrap_with_padding, aes_key_wrap,
    aes_key_wrap_with_padding)

from conftest import Server
from ekm_certs import make_pki

ALLOWED_CN = "contoso.managedhsmclient.azure.net"
OTHER_CN = "fabrikam.managedhsmclient.azure.net"
PREFIX = "tenant0/pool-1"
# A key is reachable over EKM only when its rules name EKM: here through the
# path prefix the tests' Managed HSM uses
EKM_RULES = {"ekm": {"path_prefixes": ["/azureekm/" + PREFIX]}}
API = "?api-version=0.1-preview"
CTX = {"request_id": "6ad1b2c4-0000-4000-8000-000000000001",
       "correlation_id": "c0ffee00-1111-4222-8333-444455556666", "pool_name": "contoso-mhsm"}
UNWRAP_MSG = "the value cannot be unwrapped with this key and algorithm"
RSA_SIZES = (2048, 3072, 4096)


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    assert "=" not in s and "+" not in s and "/" not in s, s
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def oaep(alg):
    h = hashes.SHA256() if alg == "RSA-OAEP-256" else hashes.SHA1()
    return padding.OAEP(mgf=padding.MGF1(algorithm=h), algorithm=h, label=None)


def ekm_env(pki, **extra):
    env = {"KEYWARD_TLS_CLIENTS_CA_CERT_FILE": pki["ca"],
           "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_ENABLE": "true",
           "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_PATH_PREFIX": PREFIX,
           "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS": ALLOWED_CN + ",other.example",
           "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_PROXY_VENDOR": "Keyward Test Vendor",
           "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_PROXY_NAME": "EKM Proxy Service v0.1-preview",
           "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_EKM_VENDOR": "SoftHSM",
           "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_EKM_PRODUCT": "SoftHSM2 test token"}
    env.update(extra)
    return env


class Ekm:
    """An EKM client with one identity (a (cert, key) pair or None)."""

    def __init__(self, server, cert, prefix=PREFIX):
        self.s = server
        self.cert = cert
        self.base = server.url + "/azureekm" + ("/" + prefix if prefix else "")
        self.session = requests.Session()

    def post(self, path, body=None, query=API, raw=None, method="POST", headers=None):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = raw if raw is not None else json.dumps(body if body is not None
                                                      else {"request_context": CTX})
        return self.session.request(method, self.base + path + query, data=data, headers=h,
                                    cert=self.cert, verify=self.s.cacert, timeout=30)

    def wrap(self, key, alg, value, op="wrapkey"):
        return self.post("/%s/%s" % (key, op), {"request_context": CTX, "alg": alg,
                                                "value": b64u(value) if isinstance(value, bytes)
                                                else value})

    def unwrap(self, key, alg, value):
        return self.wrap(key, alg, value, "unwrapkey")


def assert_ekm_err(r, status, code, message=None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith("application/json")
    body = r.json()
    assert set(body) == {"code", "message"}, body
    assert body["code"] == code, body
    if message is not None:
        assert body["message"] == message, body
    return body


# --------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="kw-bb-ekm-")
    pki = make_pki(os.path.join(d, "pki"), ALLOWED_CN, OTHER_CN)
    # RSA-4096 generation takes seconds (more on a loaded machine)
    s = Server(os.path.join(d, "srv"), env=ekm_env(pki, KEYWARD_CUSTODY_TIMEOUT_MS="60000")).start()
    keys = {}

    def admin(method, path, body=None):
        if path in ("/api/v1/keys", "/api/v1/keys/import") and "rules" not in body:
            body = dict(body, rules=EKM_RULES)   # an EKM key (opt-in, issue 10)
        r = s.api(method, path, body)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)
        return r.json()

    # AES keys imported, so that python can check every wrap with the KEK
    for name in ("aes-1", "aes-disabled", "aes-pending", "aes-gcm-only", "aes-wrap-only",
                 "aes-ruled", "aes-ruled-ok", "aes-xks-only"):
        kek = os.urandom(32)
        keys[name] = kek
        ops = {"aes-gcm-only": ["encrypt", "decrypt"], "aes-wrap-only": ["wrap"]}.get(
            name, ["wrap", "unwrap"])
        body = {"name": name, "type": "AES", "material": base64.b64encode(kek).decode(),
                "operations": ops}
        if name == "aes-ruled":
            body["rules"] = {"ekm": {"client_cns": ["someone-else.managedhsmclient.azure.net"]}}
        if name == "aes-ruled-ok":
            body["rules"] = {"ekm": {"client_cns": ["*.managedhsmclient.azure.net"]}}
        if name == "aes-xks-only":
            body["rules"] = {"xks": {"key_stores": ["default"]}}
        admin("POST", "/api/v1/keys/import", body)
    admin("POST", "/api/v1/keys/aes-disabled/disable")
    admin("POST", "/api/v1/keys/aes-pending/schedule-deletion", {"wait_seconds": 86400 * 30})
    admin("POST", "/api/v1/keys", {"name": "not_ekm.addressable", "type": "AES",
                                   "operations": ["wrap", "unwrap"]})
    # RSA at every size: imported (python holds the private half) ...
    for bits in RSA_SIZES:
        priv = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        keys["rsa-%d" % bits] = priv
        pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption()).decode()
        admin("POST", "/api/v1/keys/import", {"name": "rsa-%d" % bits, "type": "RSA", "pem": pem,
                                              "operations": ["wrap", "unwrap"]})
    # ... and generated inside keyward (python only knows the public half)
    for bits in RSA_SIZES:
        admin("POST", "/api/v1/keys", {"name": "rsa-gen-%d" % bits, "type": "RSA", "size": bits,
                                       "operations": ["wrap", "unwrap"]})
    yield {"s": s, "pki": pki, "keys": keys, "dir": d,
           "ok": Ekm(s, pki["allowed"]), "admin": admin}
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def snapshot(s):
    """Everything an EKM failure must leave alone: every key document and
    the audit trail's length (after the group commit has flushed)."""
    time.sleep(0.2)
    keys = s.api("GET", "/api/v1/keys?limit=1000").json()["keys"]
    audit = s.api("POST", "/api/v1/audit/verify").json()
    assert audit["ok"] is True
    return {"keys": keys, "audit_rows": audit["rows"]}


def last_audit(s, n=1):
    ev = []
    after = 0
    while True:
        page = s.api("GET", "/api/v1/audit?limit=1000&after=%d" % after).json()
        ev += page["events"]
        if page["next"] is None:
            return ev[-n:]
        after = page["next"]


def assert_unchanged(s, before, audited=None):
    """audited=None: the request never reached the custody (no audit row);
    otherwise exactly one new row for that action/key with that result."""
    after = snapshot(s)
    assert after["keys"] == before["keys"]
    if audited is None:
        assert after["audit_rows"] == before["audit_rows"]
    else:
        assert after["audit_rows"] == before["audit_rows"] + 1
        ev = last_audit(s)[0]
        assert (ev["action"], ev["key"], ev["result"]) == audited, ev
        assert ev["actor"] == "ekm:" + ALLOWED_CN
        assert ev["request_id"] == CTX["correlation_id"]


# ------------------------------------------------------------- happy paths

def test_info(env):
    r = env["ok"].post("/info")
    assert r.status_code == 200, r.text
    assert r.json() == {"api_version": "0.1-preview", "proxy_vendor": "Keyward Test Vendor",
                        "proxy_name": "EKM Proxy Service v0.1-preview", "ekm_vendor": "SoftHSM",
                        "ekm_product": "SoftHSM2 test token"}


def test_metadata_aes(env):
    r = env["ok"].post("/aes-1/metadata")
    assert r.status_code == 200, r.text
    assert r.json() == {"key_type": "oct", "key_size": 256, "key_ops": ["wrapKey", "unwrapKey"]}
    r = env["ok"].post("/aes-wrap-only/metadata")
    assert r.json() == {"key_type": "oct", "key_size": 256, "key_ops": ["wrapKey"]}


@pytest.mark.parametrize("bits", RSA_SIZES)
def test_metadata_rsa_n_e(env, bits):
    pub = env["keys"]["rsa-%d" % bits].public_key().public_numbers()
    r = env["ok"].post("/rsa-%d/metadata" % bits)
    assert r.status_code == 200, r.text
    m = r.json()
    assert set(m) == {"key_type", "key_size", "key_ops", "n", "e"}
    assert (m["key_type"], m["key_size"], m["key_ops"]) == ("RSA", bits, ["wrapKey", "unwrapKey"])
    n, e = unb64u(m["n"]), unb64u(m["e"])
    assert len(n) == bits // 8 and n[0] != 0 and e[0] != 0        # unsigned, minimal
    assert int.from_bytes(n, "big") == pub.n and int.from_bytes(e, "big") == pub.e


@pytest.mark.parametrize("size", [16, 24, 32, 40, 64, 512])
def test_a256kw_interop(env, size):
    kek, dek = env["keys"]["aes-1"], os.urandom(size)
    r = env["ok"].wrap("aes-1", "A256KW", dek)
    assert r.status_code == 200, r.text
    wrapped = unb64u(r.json()["value"])
    assert aes_key_unwrap(kek, wrapped) == dek
    # and python's output unwraps on our side
    ours = aes_key_wrap(kek, dek)
    r = env["ok"].unwrap("aes-1", "A256KW", ours)
    assert r.status_code == 200, r.text
    assert r.json() == {"value": b64u(dek)}


@pytest.mark.parametrize("size", [1, 7, 8, 9, 20, 32, 100, 1000])
def test_a256kwp_interop(env, size):
    kek, dek = env["keys"]["aes-1"], os.urandom(size)
    r = env["ok"].wrap("aes-1", "A256KWP", dek)
    assert r.status_code == 200, r.text
    assert aes_key_unwrap_with_padding(kek, unb64u(r.json()["value"])) == dek
    r = env["ok"].unwrap("aes-1", "A256KWP", aes_key_wrap_with_padding(kek, dek))
    assert r.status_code == 200, r.text
    assert unb64u(r.json()["value"]) == dek


@pytest.mark.parametrize("bits", RSA_SIZES)
@pytest.mark.parametrize("alg", ["RSA-OAEP-256", "RSA-OAEP"])
def test_rsa_oaep_interop(env, bits, alg):
    priv = env["keys"]["rsa-%d" % bits]
    dek = os.urandom(32)
    r = env["ok"].wrap("rsa-%d" % bits, alg, dek)
    assert r.status_code == 200, r.text
    ct = unb64u(r.json()["value"])
    assert len(ct) == bits // 8
    assert priv.decrypt(ct, oaep(alg)) == dek
    r = env["ok"].unwrap("rsa-%d" % bits, alg, priv.public_key().encrypt(dek, oaep(alg)))
    assert r.status_code == 200, r.text
    assert unb64u(r.json()["value"]) == dek


@pytest.mark.parametrize("bits", RSA_SIZES)
@pytest.mark.parametrize("alg", ["RSA-OAEP-256", "RSA-OAEP"])
def test_rsa_generated_key_unwraps_what_python_wraps_with_metadata(env, bits, alg):
    """The way Azure uses a key it never saw: public key from metadata,
    encrypt locally, unwrap through the proxy."""
    m = env["ok"].post("/rsa-gen-%d/metadata" % bits).json()
    pub = rsa.RSAPublicNumbers(int.from_bytes(unb64u(m["e"]), "big"),
                               int.from_bytes(unb64u(m["n"]), "big")).public_key()
    dek = os.urandom(32)
    r = env["ok"].unwrap("rsa-gen-%d" % bits, alg, pub.encrypt(dek, oaep(alg)))
    assert r.status_code == 200, r.text
    assert unb64u(r.json()["value"]) == dek


def test_rule_allowing_the_cn_by_glob(env):
    r = env["ok"].wrap("aes-ruled-ok", "A256KW", os.urandom(32))
    assert r.status_code == 200, r.text


def test_every_request_logged_once_with_request_context(env):
    s = env["s"]
    corr = "log-check-%s" % os.urandom(4).hex()
    body = {"request_context": dict(CTX, correlation_id=corr), "alg": "A256KW",
            "value": b64u(os.urandom(32))}
    assert env["ok"].post("/aes-1/wrapkey", body).status_code == 200
    time.sleep(0.2)
    lines = [json.loads(l) for l in open(s.log_path, encoding="utf-8", errors="replace")
             if corr in l]
    assert len(lines) == 1, lines
    ln = lines[0]
    assert (ln["route"], ln["status"], ln["principal"]) == ("ekm.wrapkey", 200, "ekm:" + ALLOWED_CN)
    assert (ln["request_id"], ln["pool_name"]) == (CTX["request_id"], CTX["pool_name"])
    assert body["value"] not in open(s.log_path, encoding="utf-8", errors="replace").read()


def test_key_rotation_the_azure_way(env):
    """A new Managed HSM key version = a new external key; the old name
    keeps unwrapping until an admin disables it."""
    ok, admin = env["ok"], env["admin"]
    admin("POST", "/api/v1/keys", {"name": "rot-v1", "type": "AES", "operations": ["wrap", "unwrap"]})
    dek = os.urandom(32)
    old = ok.wrap("rot-v1", "A256KW", dek).json()["value"]
    admin("POST", "/api/v1/keys", {"name": "rot-v2", "type": "AES", "operations": ["wrap", "unwrap"]})
    new = ok.wrap("rot-v2", "A256KW", dek).json()["value"]
    assert ok.unwrap("rot-v1", "A256KW", old).json()["value"] == b64u(dek)
    assert ok.unwrap("rot-v2", "A256KW", new).json()["value"] == b64u(dek)
    admin("POST", "/api/v1/keys/rot-v1/disable")
    assert_ekm_err(ok.unwrap("rot-v1", "A256KW", old), 403, "KeyDisabled")
    assert ok.unwrap("rot-v2", "A256KW", new).status_code == 200


def test_admin_shows_the_ekm_url(env):
    s = env["s"]
    doc = s.api("GET", "/api/v1/keys/aes-1").json()
    assert doc["ekm_url"] == "https://127.0.0.1:%d/azureekm/%s/aes-1" % (s.port, PREFIX)
    # the URL works as the base of the endpoints
    r = requests.post(doc["ekm_url"] + "/metadata" + API, json={"request_context": CTX},
                      cert=env["pki"]["allowed"], verify=s.cacert, timeout=10)
    assert r.status_code == 200, r.text
    assert "ekm_url" not in s.api("GET", "/api/v1/keys/not_ekm.addressable").json()
    out = s.ctl("key", "get", "aes-1", check=True).stdout
    assert doc["ekm_url"] in out


def test_admin_ekm_url_uses_public_host(make_server, tmp_path):
    pki = make_pki(str(tmp_path / "pki"), ALLOWED_CN, OTHER_CN)
    s = make_server(env=ekm_env(pki, KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_PUBLIC_HOST="ekm.contoso.example",
                                KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_PATH_PREFIX="")).start()
    assert s.api("POST", "/api/v1/keys", {"name": "k-1", "type": "AES", "rules": EKM_RULES}).status_code == 201
    assert s.api("GET", "/api/v1/keys/k-1").json()["ekm_url"] == \
        "https://ekm.contoso.example/azureekm/k-1"


# ------------------------------------------------------- the error table

@pytest.mark.parametrize("case", ["no-cert", "other-cn", "foreign-ca", "expired"])
def test_401_unauthorized(env, case):
    s = env["s"]
    cert = {"no-cert": None, "other-cn": env["pki"]["other"], "foreign-ca": env["pki"]["foreign"],
            "expired": env["pki"]["expired"]}[case]
    before = snapshot(s)
    c = Ekm(s, cert)
    for r in (c.post("/info"), c.wrap("aes-1", "A256KW", os.urandom(32)),
              c.unwrap("aes-1", "A256KW", os.urandom(40)), c.post("/aes-1/metadata"),
              c.post("/info", method="GET"), c.post("/nope/nope/nope")):
        assert_ekm_err(r, 401, "Unauthorized")
    assert_unchanged(s, before)


@pytest.mark.parametrize("case", [
    "bad-json", "not-object", "no-context", "no-correlation", "no-pool", "context-not-object",
    "bad-id-chars", "no-alg", "alg-not-string", "no-value", "value-not-string", "padded-b64",
    "std-alphabet-b64", "empty-value", "too-long-value", "kw-length", "bad-key-name",
    "long-key-name", "not-addressable-name", "unknown-path", "trailing-slash", "no-prefix",
    "empty-body", "wrong-content-type", "rsa-too-long-input"])
def test_400_invalid_request(env, case):
    s, ok = env["s"], env["ok"]
    wrap = {"request_context": CTX, "alg": "A256KW", "value": b64u(os.urandom(32))}
    path, body, raw, headers, audited = "/aes-1/wrapkey", wrap, None, None, None
    if case == "bad-json":
        raw = '{"request_context": {'
    elif case == "not-object":
        raw = "[1]"
    elif case == "no-context":
        body = {"alg": "A256KW", "value": wrap["value"]}
    elif case == "no-correlation":
        body = dict(wrap, request_context={"pool_name": "p"})
    elif case == "no-pool":
        body = dict(wrap, request_context={"correlation_id": "c"})
    elif case == "context-not-object":
        body = dict(wrap, request_context="x")
    elif case == "bad-id-chars":
        body = dict(wrap, request_context=dict(CTX, pool_name='a"b'))
    elif case == "no-alg":
        body = {"request_context": CTX, "value": wrap["value"]}
    elif case == "alg-not-string":
        body = dict(wrap, alg=1)
    elif case == "no-value":
        body = {"request_context": CTX, "alg": "A256KW"}
    elif case == "value-not-string":
        body = dict(wrap, value=5)
    elif case == "padded-b64":
        body = dict(wrap, value=base64.urlsafe_b64encode(os.urandom(31)).decode())
        assert body["value"].endswith("=")
    elif case == "std-alphabet-b64":
        v = os.urandom(33)
        while "+" not in base64.b64encode(v).decode() and "/" not in base64.b64encode(v).decode():
            v = os.urandom(33)
        body = dict(wrap, value=base64.b64encode(v).decode())
    elif case == "empty-value":
        body = dict(wrap, value="")
    elif case == "too-long-value":
        body = dict(wrap, alg="A256KWP", value=b64u(os.urandom(9000)))
    elif case == "kw-length":
        body = dict(wrap, value=b64u(os.urandom(20)))          # A256KW: multiple of 8
        audited = ("key.wrap", "aes-1", "bad_length")
    elif case == "rsa-too-long-input":
        path = "/rsa-2048/wrapkey"
        body = dict(wrap, alg="RSA-OAEP-256", value=b64u(os.urandom(256 - 2 * 32 - 1)))
        audited = ("key.wrap", "rsa-2048", None)
    elif case == "bad-key-name":
        path = "/bad_name/wrapkey"
    elif case == "long-key-name":
        path = "/%s/wrapkey" % ("a" * 65)
    elif case == "not-addressable-name":
        path = "/not_ekm.addressable/metadata"
    elif case == "unknown-path":
        path = "/aes-1/encrypt"
    elif case == "trailing-slash":
        path = "/aes-1/wrapkey/"
    elif case == "empty-body":
        raw = ""
    elif case == "wrong-content-type":
        headers = {"Content-Type": "text/plain"}
    before = snapshot(s)
    if case == "no-prefix":
        r = Ekm(s, env["pki"]["allowed"], prefix="").post("/info")
    else:
        r = ok.post(path, body, raw=raw, headers=headers)
    assert_ekm_err(r, 400, "InvalidRequest")
    if audited and audited[2] is None:
        # the result name is the custody's; only its presence matters here
        after = snapshot(s)
        assert after["keys"] == before["keys"]
        assert after["audit_rows"] == before["audit_rows"] + 1
        ev = last_audit(s)[0]
        assert (ev["action"], ev["key"]) == audited[:2] and ev["result"] != "ok"
    else:
        assert_unchanged(s, before, audited)


def test_400_unwrap_failures_are_indistinguishable(env):
    """No oracle: bad base64url, wrong lengths, integrity and OAEP failures
    all answer the same status, code and message."""
    s, ok = env["s"], env["ok"]
    kek = env["keys"]["aes-1"]
    good_kw = aes_key_wrap(kek, os.urandom(32))
    bad_kw = bytearray(good_kw)
    bad_kw[5] ^= 1
    good_kwp = aes_key_wrap_with_padding(kek, os.urandom(20))
    bad_kwp = bytearray(good_kwp)
    bad_kwp[-1] ^= 0x80
    priv = env["keys"]["rsa-2048"]
    good_rsa = priv.public_key().encrypt(os.urandom(32), oaep("RSA-OAEP-256"))
    bad_rsa = bytearray(good_rsa)
    bad_rsa[100] ^= 4
    cases = [
        ("aes-1", "A256KW", bytes(bad_kw)),                # integrity check
        ("aes-1", "A256KW", good_kw[:-1]),                 # not a multiple of 8
        ("aes-1", "A256KW", good_kw[:8]),                  # too short
        ("aes-1", "A256KW", aes_key_wrap(os.urandom(32), os.urandom(32))),   # other KEK
        ("aes-1", "A256KWP", bytes(bad_kwp)),
        ("aes-1", "A256KW", good_kwp),                     # KWP blob under KW
        ("aes-1", "A256KWP", good_kw),                     # KW blob under KWP
        ("rsa-2048", "RSA-OAEP-256", bytes(bad_rsa)),      # OAEP decoding
        ("rsa-2048", "RSA-OAEP", good_rsa),                # wrong hash
        ("rsa-2048", "RSA-OAEP-256", good_rsa[:-1]),       # not the modulus length
        ("rsa-2048", "RSA-OAEP-256", good_rsa + b"\0"),
        ("rsa-2048", "RSA-OAEP-256", b"\xff" * 256),       # >= modulus
        ("aes-1", "A256KW", base64.urlsafe_b64encode(good_kw).decode() + "="),   # padded
        ("aes-1", "A256KW", base64.b64encode(b"\xfb\xff" * 20).decode()),       # std alphabet
        ("rsa-2048", "RSA-OAEP-256", "!!!!"),
        ("aes-1", "A256KW", ""),
        ("aes-1", "A256KWP", b64u(os.urandom(9000))),      # over the value cap
    ]
    seen = set()
    for key, alg, value in cases:
        before = snapshot(s)
        r = ok.unwrap(key, alg, value)
        b = assert_ekm_err(r, 400, "InvalidRequest", UNWRAP_MSG)
        seen.add((r.status_code, json.dumps(b, sort_keys=True), r.headers.get("Content-Length")))
        after = snapshot(s)
        assert after["keys"] == before["keys"]
    assert len(seen) == 1, seen


@pytest.mark.parametrize("query", ["", "?api-version=", "?api-version=0.2-preview",
                                   "?api-version=0.1-PREVIEW",
                                   "?api-version=0.1-preview&api-version=0.1-preview",
                                   "?apiversion=0.1-preview"])
def test_400_unsupported_api_version(env, query):
    s = env["s"]
    before = snapshot(s)
    for path in ("/info", "/aes-1/metadata"):
        r = env["ok"].post(path, query=query)
        b = assert_ekm_err(r, 400, "UnsupportedApiVersion")
        assert "0.1-preview" in b["message"]
    r = env["ok"].session.post(env["ok"].base + "/aes-1/wrapkey" + query,
                               json={"request_context": CTX, "alg": "A256KW",
                                     "value": b64u(os.urandom(32))},
                               cert=env["pki"]["allowed"], verify=s.cacert, timeout=10)
    assert_ekm_err(r, 400, "UnsupportedApiVersion")
    assert_unchanged(s, before)


def test_api_version_other_parameters_ignored_and_encoded_value_accepted(env):
    assert env["ok"].post("/info", query="?x=1&api-version=0.1%2Dpreview&y").status_code == 200


@pytest.mark.parametrize("key,alg,audited", [
    ("aes-1", "A128KW", None),                  # unknown alg: refused by the front
    ("aes-1", "RSA-OAEP-256", "unsupported_algorithm"),
    ("aes-1", "RSA-OAEP", "unsupported_algorithm"),
    ("rsa-2048", "A256KW", "unsupported_algorithm"),
    ("rsa-2048", "A256KWP", "unsupported_algorithm"),
    ("aes-1", "dir", None),
])
@pytest.mark.parametrize("op", ["wrapkey", "unwrapkey"])
def test_400_unsupported_algorithm(env, key, alg, audited, op):
    s = env["s"]
    before = snapshot(s)
    r = env["ok"].wrap(key, alg, os.urandom(32 if op == "wrapkey" else 40), op)
    assert_ekm_err(r, 400, "UnsupportedAlgorithm")
    action = "key.wrap" if op == "wrapkey" else "key.unwrap"
    assert_unchanged(s, before, (action, key, audited) if audited else None)


@pytest.mark.parametrize("key", ["aes-disabled", "aes-pending"])
def test_403_key_disabled(env, key):
    s, ok = env["s"], env["ok"]
    result = "key_disabled" if key == "aes-disabled" else "key_pending_deletion"
    before = snapshot(s)
    assert_ekm_err(ok.post("/%s/metadata" % key), 403, "KeyDisabled")
    assert_unchanged(s, before)    # metadata reads, it is not audited
    for op, action in (("wrapkey", "key.wrap"), ("unwrapkey", "key.unwrap")):
        before = snapshot(s)
        value = os.urandom(32) if op == "wrapkey" else aes_key_wrap(env["keys"][key], os.urandom(32))
        assert_ekm_err(ok.wrap(key, "A256KW", value, op), 403, "KeyDisabled")
        assert_unchanged(s, before, (action, key, result))


@pytest.mark.parametrize("key,op,action", [
    ("aes-gcm-only", "wrapkey", "key.wrap"),
    ("aes-gcm-only", "unwrapkey", "key.unwrap"),
    ("aes-wrap-only", "unwrapkey", "key.unwrap"),
])
def test_403_operation_not_allowed(env, key, op, action):
    s = env["s"]
    before = snapshot(s)
    value = os.urandom(32) if op == "wrapkey" else aes_key_wrap(env["keys"][key], os.urandom(32))
    assert_ekm_err(env["ok"].wrap(key, "A256KW", value, op), 403, "OperationNotAllowed")
    assert_unchanged(s, before, (action, key, "operation_not_allowed"))


def test_403_metadata_of_a_key_without_wrap_or_unwrap(env):
    s = env["s"]
    before = snapshot(s)
    assert_ekm_err(env["ok"].post("/aes-gcm-only/metadata"), 403, "OperationNotAllowed")
    assert_unchanged(s, before)


def test_404_key_not_found_and_invisible_key_look_the_same(env):
    s, ok = env["s"], env["ok"]
    bodies = set()
    for key, audited in (("no-such-key", "not_found"), ("aes-ruled", "access_denied")):
        before = snapshot(s)
        b = assert_ekm_err(ok.post("/%s/metadata" % key), 404, "KeyNotFound")
        bodies.add(json.dumps(b))
        assert_unchanged(s, before)
        for op, action in (("wrapkey", "key.wrap"), ("unwrapkey", "key.unwrap")):
            before = snapshot(s)
            b = assert_ekm_err(ok.wrap(key, "A256KW", os.urandom(40), op), 404, "KeyNotFound")
            bodies.add(json.dumps(b))
            assert_unchanged(s, before, (action, key, audited))
    assert len(bodies) == 1, bodies
    # the rule that denied is in the log, not in the answer
    time.sleep(0.2)
    log = open(s.log_path, encoding="utf-8", errors="replace").read()
    assert any('"route":"ekm.wrapkey"' in l and '"detail":"denied by rule ekm.client_cns"' in l
               for l in log.splitlines()), log


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_405_method_not_allowed(env, method):
    s = env["s"]
    before = snapshot(s)
    for path in ("/info", "/aes-1/wrapkey"):
        r = env["ok"].post(path, method=method)
        assert_ekm_err(r, 405, "InvalidRequest")
        assert r.headers["Allow"] == "POST"
    assert_unchanged(s, before)


def test_429_too_many_requests(make_server, tmp_path):
    pki = make_pki(str(tmp_path / "pki"), ALLOWED_CN, OTHER_CN)
    s = make_server(env=ekm_env(pki, KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_RATE_LIMIT="2")).start()
    assert s.api("POST", "/api/v1/keys", {"name": "k-1", "type": "AES", "rules": EKM_RULES}).status_code == 201
    c = Ekm(s, pki["allowed"])
    before = snapshot(s)
    codes = []
    for _ in range(6):
        r = c.wrap("k-1", "A256KW", os.urandom(32))
        codes.append(r.status_code)
        if r.status_code == 429:
            assert_ekm_err(r, 429, "TooManyRequests")
            assert int(r.headers["Retry-After"]) >= 1
    assert 429 in codes and codes[0] == 200, codes
    # only the admitted requests reached the custody (one audit row each)
    after = snapshot(s)
    assert after["keys"] == before["keys"]
    assert after["audit_rows"] == before["audit_rows"] + codes.count(200)
    time.sleep(1.1)
    assert c.wrap("k-1", "A256KW", os.urandom(32)).status_code == 200


def test_502_hsm_unreachable(make_server, tmp_path):
    pki = make_pki(str(tmp_path / "pki"), ALLOWED_CN, OTHER_CN)
    s = make_server(env=ekm_env(pki), faulthsm=True).start()
    assert s.api("POST", "/api/v1/keys", {"name": "k-1", "type": "AES", "rules": EKM_RULES}).status_code == 201
    s.stop()           # a fresh custody: nothing unsealed in its cache
    s.start()
    c = Ekm(s, pki["allowed"])
    before = snapshot(s)
    s.hsm("mode=down")
    time.sleep(0.2)
    t0 = time.time()
    r = c.wrap("k-1", "A256KW", os.urandom(32))
    assert time.time() - t0 < 3
    assert_ekm_err(r, 502, "BadGateway")
    s.hsm("mode=up")
    after = snapshot(s)
    assert after["keys"] == before["keys"]
    assert after["audit_rows"] == before["audit_rows"] + 1
    ev = last_audit(s)[0]
    assert (ev["action"], ev["result"]) == ("key.wrap", "hsm_unavailable")
    deadline = time.time() + 10
    while time.time() < deadline:
        r = c.wrap("k-1", "A256KW", os.urandom(32))
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text


def test_503_custody_unavailable(make_server, tmp_path):
    pki = make_pki(str(tmp_path / "pki"), ALLOWED_CN, OTHER_CN)
    s = make_server(env=ekm_env(pki, KEYWARD_CUSTODY_TIMEOUT_MS="500")).start()
    assert s.api("POST", "/api/v1/keys", {"name": "k-1", "type": "AES", "rules": EKM_RULES}).status_code == 201
    c = Ekm(s, pki["allowed"])
    before = snapshot(s)
    pid = s.custody_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        r = c.wrap("k-1", "A256KW", os.urandom(32))
        assert_ekm_err(r, 503, "ServiceUnavailable")
        assert int(r.headers["Retry-After"]) >= 1
        # info needs no custody: Azure's reachability probe still answers
        assert c.post("/info").status_code == 200
    finally:
        os.kill(pid, signal.SIGCONT)
    deadline = time.time() + 15
    while time.time() < deadline:
        r = c.wrap("k-1", "A256KW", os.urandom(32))
        if r.status_code == 200:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert s.api("GET", "/api/v1/keys?limit=1000").json()["keys"] == before["keys"]


# ------------------------------------------------------ configuration

def test_start_refused_without_client_ca_or_cns(tmp_path):
    pki = make_pki(str(tmp_path / "pki"), ALLOWED_CN, OTHER_CN)
    for extra, words in (({"KEYWARD_TLS_CLIENTS_CA_CERT_FILE": ""}, "clients_ca_cert_file"),
                         ({"KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS": ""}, "azure_ekm_client_cns"),
                         ({"KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CA_FILE": pki["ca"]},
                          "azure_ekm_client_ca_file"),
                         ({"KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_PATH_PREFIX": "/bad"},
                          "azure_ekm_path_prefix")):
        d = tempfile.mkdtemp(prefix="kw-bb-ekmcfg-")
        try:
            env = ekm_env(pki)
            env.update(extra)
            rc, out = Server(d, env=env).run_to_exit()
            assert rc == 2, out
            assert words in out, out
        finally:
            shutil.rmtree(d, ignore_errors=True)


def test_disable_client_auth_for_tests_only(make_server, tmp_path):
    pki = make_pki(str(tmp_path / "pki"), ALLOWED_CN, OTHER_CN)
    s = make_server(env=ekm_env(pki, KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_DISABLE_CLIENT_AUTH="true",
                                KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS="")).start()
    assert Ekm(s, None).post("/info").status_code == 200
    assert "azure_ekm_disable_client_auth is set" in s.logs()


def test_ekm_disabled_has_no_route(server):
    r = requests.post(server.url + "/azureekm/info" + API, json={"request_context": CTX},
                      verify=server.cacert, timeout=10)
    assert r.status_code == 404


def test_keyward_rotation_keeps_old_wrapped_values_unwrapping(env):
    """A Keyward-side rotation of an EKM key: new wraps use the new version,
    values wrapped before it still unwrap (EKM values carry no version), and
    a bad value still fails like any failed unwrap."""
    s, ok = env["s"], env["ok"]
    name = "rot-ekm-" + os.urandom(3).hex()
    env["admin"]("POST", "/api/v1/keys", {"name": name, "type": "AES", "size": 256,
                                          "operations": ["wrap", "unwrap"]})
    dek = os.urandom(32)
    w1 = ok.wrap(name, "A256KWP", dek)
    assert w1.status_code == 200, w1.text
    env["admin"]("POST", "/api/v1/keys/%s/rotate" % name)
    w2 = ok.wrap(name, "A256KWP", dek)
    assert w2.status_code == 200, w2.text
    assert w2.json()["value"] != w1.json()["value"]
    for w in (w1, w2):
        u = ok.unwrap(name, "A256KWP", w.json()["value"])
        assert u.status_code == 200, u.text
        assert unb64u(u.json()["value"]) == dek
    bad = bytearray(unb64u(w1.json()["value"]))
    bad[0] ^= 1
    assert_ekm_err(ok.unwrap(name, "A256KWP", bytes(bad)), 400, "InvalidRequest")


def test_body_over_the_http_cap_is_an_ekm_error(env):
    """http.c refuses a body over [http] max_body_bytes before the route
    runs; the answer is still Microsoft's {code, message}."""
    ok = env["ok"]
    r = ok.post("/aes-1/wrapkey", {"request_context": CTX, "alg": "A256KWP",
                                   "value": "A" * 70000})
    assert_ekm_err(r, 400, "InvalidRequest")
    assert ok.post("/info").status_code == 200


def test_hidden_key_is_not_found_even_when_disabled(env):
    """Rules come before state for EKM callers: a key hidden by its rules
    does not exist for the caller, whatever its state."""
    s, ok = env["s"], env["ok"]
    name = "hidden-dis-" + os.urandom(3).hex()
    env["admin"]("POST", "/api/v1/keys", {
        "name": name, "type": "AES", "size": 256, "operations": ["wrap", "unwrap"],
        "rules": {"ekm": {"client_cns": ["someone-else.managedhsmclient.azure.net"]}}})
    env["admin"]("POST", "/api/v1/keys/%s/disable" % name)
    assert_ekm_err(ok.post("/%s/metadata" % name), 404, "KeyNotFound")
    assert_ekm_err(ok.wrap(name, "A256KW", os.urandom(32)), 404, "KeyNotFound")
    # a disabled key the caller may see is KeyDisabled
    assert_ekm_err(ok.post("/aes-disabled/metadata"), 403, "KeyDisabled")


def test_key_not_opted_into_ekm_is_not_found(env):
    """Issue 10, finding 8: a key is reachable over EKM only when its rules
    name EKM (ekm.client_cns or ekm.path_prefixes).  A key whose rules name
    only an XKS store answered wrapkey for an allowed Azure certificate;
    now it does not exist for EKM callers, exactly like a missing key, and
    nothing changes.  Opting it in (the upgrade path, docs/ekm.md) makes it
    reachable."""
    s, ok = env["s"], env["ok"]
    missing = assert_ekm_err(ok.post("/no-such-key/metadata"), 404, "KeyNotFound")
    before = snapshot(s)
    assert assert_ekm_err(ok.post("/aes-xks-only/metadata"), 404, "KeyNotFound") == missing
    assert_unchanged(s, before)
    for op, action in (("wrapkey", "key.wrap"), ("unwrapkey", "key.unwrap")):
        before = snapshot(s)
        b = assert_ekm_err(ok.wrap("aes-xks-only", "A256KW", os.urandom(40), op), 404,
                           "KeyNotFound")
        assert b == missing
        assert_unchanged(s, before, (action, "aes-xks-only", "access_denied"))
    time.sleep(0.2)
    log = open(s.log_path, encoding="utf-8", errors="replace").read()
    assert '"detail":"denied by rule ekm"' in log
    # the upgrade path: name EKM in the key's rules
    r = s.api("PATCH", "/api/v1/keys/aes-xks-only",
              {"rules": {"xks": {"key_stores": ["default"]}, "ekm": {"client_cns": [ALLOWED_CN]}}})
    assert r.status_code == 200, r.text
    w = ok.wrap("aes-xks-only", "A256KW", os.urandom(32))
    assert w.status_code == 200, w.text
    # a path prefix rule must name this deployment's prefix
    r = s.api("PATCH", "/api/v1/keys/aes-xks-only",
              {"rules": {"ekm": {"path_prefixes": ["/azureekm/another/prefix"]}}})
    assert r.status_code == 200, r.text
    assert_ekm_err(ok.wrap("aes-xks-only", "A256KW", os.urandom(32)), 404, "KeyNotFound")
