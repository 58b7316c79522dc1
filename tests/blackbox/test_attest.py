"""Attestation end to end: keywardd quoting with a real TPM 2.0 (swtpm, one
per test on free loopback ports), verified by keyward-attest (mbedTLS) and,
independently, by tpm2-tools' tpm2_checkquote; negative cases: bad nonce,
a PCR extended after the policy was made, another AK, and a replay of the
evidence by a server with the same or another TLS key; an image policy
(issue 15) signed with an image key made here, used only with that key."""
import base64
import hashlib
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import BUILD
from swtpm import Swtpm, swtpm  # noqa: F401 (the fixture)

ATTEST = os.path.join(BUILD, "keyward-attest")


def attest_env(tpm, ak="0x81010002", rate="100"):
    return {"KEYWARD_ATTESTATION_ENABLE": "true",
            "KEYWARD_ATTESTATION_TPM_TCTI": tpm.tcti,
            "KEYWARD_ATTESTATION_PCRS": "0,1,2,3,4,7,11",
            "KEYWARD_ATTESTATION_AK_HANDLE": ak,
            "KEYWARD_ATTESTATION_SNP_DEVICE": "",
            "KEYWARD_ATTESTATION_TSM_REPORT_DIR": "",
            "KEYWARD_ATTESTATION_EVENT_LOG": "",
            "KEYWARD_ATTESTATION_RATE_LIMIT": rate}


def url_of(s):
    # the development certificate names DNS:localhost and IP:127.0.0.1; the IP
    # form is covered by test_attest_ip_literal_host_matches_ip_san
    return "https://localhost:%d" % s.port


def attest(*args, timeout=60):
    return subprocess.run([ATTEST] + list(args), capture_output=True, text=True, timeout=timeout)


def spki_sha256(cert_pem_path):
    with open(cert_pem_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).digest()


def binding(nonce, spki):
    return hashlib.sha256(b"KEYWARD-ATTEST-v1\0" + nonce + spki).digest()


def make_policy(s, tmp):
    p = attest("policy-from", url_of(s), "--ca", s.cacert)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "TRUST ON FIRST USE" in p.stderr
    pol = json.loads(p.stdout)
    assert pol["tofu"] is True and "TRUST ON FIRST USE" in pol["comment"]
    path = os.path.join(tmp, "policy.json")
    with open(path, "w") as f:
        f.write(p.stdout)
    return path, pol


def test_attest_swtpm_quote_verifies_end_to_end(make_server, swtpm, tmp_path):
    s = make_server(env=attest_env(swtpm)).start()
    nonce = os.urandom(32)
    r = requests.get(s.url + "/attestation", params={"nonce": nonce.hex()}, verify=s.cacert, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers.get("Cache-Control") == "no-store"
    ev = r.json()
    assert ev["version"] == 1 and ev["nonce"] == nonce.hex()
    spki = spki_sha256(s.cacert)
    assert ev["tls_spki_sha256"] == spki.hex()
    assert "absent" in ev["snp"] and "absent" in ev["azure"]
    assert sorted(int(k) for k in ev["tpm"]["pcrs"]) == [0, 1, 2, 3, 4, 7, 11]

    # independent check: tpm2-tools verifies signature, nonce (qualification) and PCR digest
    d = str(tmp_path)
    for name in ("ak_public", "quote", "signature"):
        with open(os.path.join(d, name), "wb") as f:
            f.write(base64.b64decode(ev["tpm"][name]))
    with open(os.path.join(d, "pcrs"), "wb") as f:   # tpm2_pcrread -o layout: values in selection order
        for i in (0, 1, 2, 3, 4, 7, 11):
            f.write(bytes.fromhex(ev["tpm"]["pcrs"][str(i)]))
    cq = ["tpm2_checkquote", "-u", os.path.join(d, "ak_public"), "-m", os.path.join(d, "quote"),
          "-s", os.path.join(d, "signature"), "-g", "sha256"]
    ok = subprocess.run(cq + ["-q", binding(nonce, spki).hex()], capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = subprocess.run(cq + ["-q", binding(os.urandom(32), spki).hex()], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode != 0

    # our verifier: TOFU policy, then verification with a fresh nonce
    pol_path, pol = make_policy(s, d)
    assert pol["require"]["tpm"] is True and len(pol["tpm"]["ak_sha256"]) == 64
    v = attest("verify", url_of(s), "--policy", pol_path, "--ca", s.cacert)
    assert v.returncode == 0, v.stdout + v.stderr
    for check in ("evidence.nonce", "tpm.ak_attributes", "tpm.signature", "tpm.extra_data",
                  "tpm.pcr_digest", "tpm.pcrs_policy", "tpm.ak_pinned"):
        assert check in v.stdout
    j = attest("verify", url_of(s), "--policy", pol_path, "--ca", s.cacert, "--json")
    assert j.returncode == 0
    res = json.loads(j.stdout)
    assert res["ok"] is True
    assert {c["name"]: c["status"] for c in res["checks"]}["tpm.signature"] == "pass"

    # a PCR extended after the policy was made
    ext = swtpm.tool("tpm2_pcrextend", "7:sha256=" + "ab" * 32)
    assert ext.returncode == 0, ext.stderr
    v = attest("verify", url_of(s), "--policy", pol_path, "--ca", s.cacert)
    assert v.returncode == 1, v.stdout + v.stderr
    assert "tpm.pcrs_policy" in v.stderr and "tpm.signature" not in v.stderr

    # a TLS certificate the verifier does not trust: exit 2 (TLS), not 1
    other = attest("verify", url_of(s), "--policy", pol_path, "--ca", pol_path)
    assert other.returncode == 2


def test_attest_nonce_must_be_64_hex(make_server, swtpm):
    s = make_server(env=attest_env(swtpm)).start()
    for bad in ("", "00", "zz" * 32, "0" * 63, "0" * 66):
        r = requests.get(s.url + "/attestation", params={"nonce": bad}, verify=s.cacert, timeout=30)
        assert r.status_code == 400, bad
        assert r.json()["error"] == "bad_nonce"
    r = requests.post(s.url + "/attestation?nonce=" + "0" * 64, verify=s.cacert, timeout=30)
    assert r.status_code == 405


def test_attest_another_ak_is_rejected(make_server, swtpm, tmp_path):
    s1 = make_server(env=attest_env(swtpm, ak="0x81010002")).start()
    pol_path, _ = make_policy(s1, str(tmp_path))
    s1.stop()
    s2 = make_server(env=attest_env(swtpm, ak="0x81010003")).start()
    v = attest("verify", url_of(s2), "--policy", pol_path, "--ca", s2.cacert)
    assert v.returncode == 1, v.stdout + v.stderr
    assert "tpm.ak_pinned" in v.stderr
    assert "tpm.signature" not in v.stderr and "tpm.pcrs_policy" not in v.stderr


class _Replay(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *a):
        pass


def replay_server(body, cert, key):
    _Replay.body = body
    httpd = http.server.HTTPServer(("127.0.0.1", 0), _Replay)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


def test_attest_replayed_evidence_is_rejected(make_server, swtpm, tmp_path):
    d = str(tmp_path)
    s = make_server(env=attest_env(swtpm)).start()
    pol_path, _ = make_policy(s, d)
    saved = os.path.join(d, "evidence.json")
    v = attest("verify", url_of(s), "--policy", pol_path, "--ca", s.cacert, "--save", saved)
    assert v.returncode == 0, v.stdout + v.stderr
    show = attest("show", saved)
    assert show.returncode == 0 and "PCR  7" in show.stdout and "snp: absent" in show.stdout
    with open(saved, "rb") as f:
        body = f.read()

    # the same TLS key (a copy of the server's): the evidence answers another nonce
    same = replay_server(body, s.cacert, os.path.join(s.dir, "tls", "key.pem"))
    try:
        v = attest("verify", "https://localhost:%d" % same.server_address[1], "--policy", pol_path,
                   "--ca", s.cacert)
    finally:
        same.shutdown()
    assert v.returncode == 1, v.stdout + v.stderr
    assert "evidence.nonce" in v.stderr and "tpm.extra_data" in v.stderr

    # another TLS key: the binding names the first server's key
    cert, key = os.path.join(d, "other.pem"), os.path.join(d, "other.key")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-days", "2", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=30)
    other = replay_server(body, cert, key)
    try:
        v = attest("verify", "https://localhost:%d" % other.server_address[1], "--policy", pol_path,
                   "--ca", cert)
    finally:
        other.shutdown()
    assert v.returncode == 1, v.stdout + v.stderr
    assert "evidence.tls_key" in v.stderr and "tpm.extra_data" in v.stderr


def test_attest_rate_limited_and_disabled_by_default(make_server, swtpm):
    s = make_server(env=attest_env(swtpm, rate="1")).start()
    codes = [requests.get(s.url + "/attestation", params={"nonce": os.urandom(32).hex()},
                          verify=s.cacert, timeout=30).status_code for _ in range(4)]
    assert 429 in codes and codes[0] == 200
    plain = make_server().start()
    r = requests.get(plain.url + "/attestation", params={"nonce": "0" * 64}, verify=plain.cacert, timeout=30)
    assert r.status_code == 404


def test_attest_ip_literal_host_matches_ip_san(make_server, swtpm, tmp_path):
    # the development certificate lists IP:127.0.0.1: https://127.0.0.1 must work end to end
    # (mbedTLS 2.28 matches dNSName entries only; keyward-attest checks iPAddress itself)
    s = make_server(env=attest_env(swtpm)).start()
    ip_url = "https://127.0.0.1:%d" % s.port
    p = attest("policy-from", ip_url, "--ca", s.cacert)
    assert p.returncode == 0, p.stdout + p.stderr
    pol_path = os.path.join(str(tmp_path), "policy.json")
    with open(pol_path, "w") as f:
        f.write(p.stdout)
    v = attest("verify", ip_url, "--policy", pol_path, "--ca", s.cacert)
    assert v.returncode == 0, v.stdout + v.stderr
    assert "VERIFIED" in v.stdout


def test_attest_tls_failures_name_their_cause(tmp_path):
    d = str(tmp_path)
    policy = os.path.join(d, "policy.json")
    with open(policy, "w") as f:
        json.dump({"keyward_policy": 1, "tofu": True,
                   "require": {"snp": False, "tpm": False, "azure": False, "event_log": False}}, f)

    def cert(name, san):
        c, k = os.path.join(d, name + ".pem"), os.path.join(d, name + ".key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-days", "2", "-subj", "/CN=" + name, "-addext", "subjectAltName=" + san,
                        "-keyout", k, "-out", c], check=True, capture_output=True, timeout=30)
        return c, k

    dns_c, dns_k = cert("dns-only", "DNS:localhost,DNS:keyward.example")
    ip_c, ip_k = cert("ip-other", "IP:10.9.8.7,IP:::1")
    dns_srv, ip_srv = replay_server(b"{}", dns_c, dns_k), replay_server(b"{}", ip_c, ip_k)
    try:
        dns_port, ip_port = dns_srv.server_address[1], ip_srv.server_address[1]
        # an IP literal the certificate does not list: the names it does list, exit 2
        v = attest("verify", "https://127.0.0.1:%d" % dns_port, "--policy", policy, "--ca", dns_c)
        assert v.returncode == 2, v.stdout + v.stderr
        assert ("the server certificate (subject CN=dns-only, issuer CN=dns-only) does not name "
                "127.0.0.1 (its subjectAltName lists: DNS:localhost, DNS:keyward.example): connect "
                "with a name it lists, or reissue it with IP:127.0.0.1") in v.stderr, v.stderr
        assert "not trusted" not in v.stderr and "not issued by" not in v.stderr, v.stderr
        # the same server by a name it lists: TLS passes (the fake server's "{}" is no evidence)
        v = attest("verify", "https://localhost:%d" % dns_port, "--policy", policy, "--ca", dns_c)
        assert "TLS" not in v.stderr and "certificate" not in v.stderr, v.stderr
        # IP entries that are not ours, and a DNS name the certificate does not list
        v = attest("verify", "https://127.0.0.1:%d" % ip_port, "--policy", policy, "--ca", ip_c)
        assert v.returncode == 2, v.stderr
        assert "does not name 127.0.0.1 (its subjectAltName lists: IP:10.9.8.7, IP:::1)" in v.stderr
        v = attest("verify", "https://localhost:%d" % ip_port, "--policy", policy, "--ca", ip_c)
        assert v.returncode == 2, v.stderr
        assert "does not name localhost (its subjectAltName lists: IP:10.9.8.7, IP:::1)" in v.stderr
        assert "reissue it with DNS:localhost" in v.stderr
        # a name it lists, but another CA: the trust problem, and only that
        v = attest("verify", "https://localhost:%d" % dns_port, "--policy", policy, "--ca", ip_c)
        assert v.returncode == 2, v.stderr
        assert ("the server certificate (subject CN=dns-only, issuer CN=dns-only) is not issued by "
                "a CA in %s: give the CA that issued it with --ca" % ip_c) in v.stderr, v.stderr
        assert "does not name" not in v.stderr
    finally:
        dns_srv.shutdown()
        ip_srv.shutdown()


def test_attest_without_tpm_logs_one_json_line(make_server):
    # issue 10: no TPM behind the TCTI (a port where nothing listens). tpm2-tss
    # used to print raw "ERROR:tcti:..." lines; now every line of the server's
    # output is JSON and the failure is one warning, logged once, not per request.
    from conftest import free_port
    tcti = "swtpm:host=127.0.0.1,port=%d" % free_port()
    env = {"KEYWARD_ATTESTATION_ENABLE": "true", "KEYWARD_ATTESTATION_TPM_TCTI": tcti,
           "KEYWARD_ATTESTATION_SNP_DEVICE": "", "KEYWARD_ATTESTATION_TSM_REPORT_DIR": "",
           "KEYWARD_ATTESTATION_EVENT_LOG": "", "KEYWARD_ATTESTATION_RATE_LIMIT": "0"}
    s = make_server(env=env).start()
    answers = [requests.get(s.url + "/attestation", params={"nonce": os.urandom(32).hex()},
                            verify=s.cacert, timeout=30) for _ in range(3)]
    s.stop()
    with open(s.log_path) as f:
        out = f.read()
    raw = [l for l in out.splitlines() if not l.startswith("{")]
    assert raw == [], out
    lines = [json.loads(l) for l in out.splitlines()]
    for r in answers:
        assert r.status_code == 200, r.text
        assert r.json()["tpm"]["absent"].startswith("cannot open the TPM: tcti:IO failure"), r.text
    warn = [l for l in lines if l.get("event") == "attestation_tpm_unavailable"]
    assert len(warn) == 1, out
    assert warn[0]["level"] == "warn" and warn[0]["proc"] == "custody", warn   # evidence is collected in custody
    assert warn[0]["detail"] == ('[attestation] tpm_tcti "%s": Tss2_TctiLdr_Initialize: tcti:IO '
                                 'failure (TSS2_RC 0xa000a); is the TPM simulator listening there?'
                                 % tcti), warn

    # an operator's own TSS2_LOG is kept (here: tpm2-tss's errors wanted on stderr)
    s2 = make_server(env=dict(env, TSS2_LOG="all+ERROR")).start()
    r = requests.get(s2.url + "/attestation", params={"nonce": os.urandom(32).hex()},
                     verify=s2.cacert, timeout=30)
    assert r.status_code == 200, r.text
    s2.stop()
    with open(s2.log_path) as f:
        assert "ERROR:tcti:" in f.read()


def openssl(*args):
    r = subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r


def image_key(d, name):
    """An RSA 2048 image key: the private half signs, the public one is published."""
    priv, pub = os.path.join(d, name + ".key"), os.path.join(d, name + ".pem")
    openssl("genrsa", "-out", priv, "2048")
    openssl("rsa", "-in", priv, "-pubout", "-out", pub)
    return priv, pub


def image_policy(swtpm, d, priv):
    """policy.json as the image build writes it (contract of issue 15), with
    the PCR values read from the swtpm itself, signed as the build signs it:
    RSA PKCS#1 v1.5 SHA-256 over the file's bytes, in policy.json.sig."""
    raw = os.path.join(d, "pcrs.bin")
    r = swtpm.tool("tpm2_pcrread", "sha256:4,11", "-o", raw)
    assert r.returncode == 0, r.stderr
    with open(raw, "rb") as f:
        vals = f.read()
    pcr4, pcr11 = vals[:32].hex(), vals[32:64].hex()
    h = hashlib.sha256(b"test").hexdigest()
    pol = {"keyward_policy": 1, "tofu": False,
           "comment": "expected values of the Keyward 0.1.0 image, computed by its build",
           "source": "image build", "created": "2026-01-01T00:00:00Z",
           "require": {"snp": False, "tpm": True, "azure": False, "event_log": False},
           "tpm": {"pcrs": {"4": pcr4, "11": pcr11}},
           "image": {"version": "0.1.0", "verity_root_hash": h, "cmdline": "roothash=%s ro" % h,
                     "uki_sha256": h, "uki_authenticode_sha256": h,
                     "pcr11": {"": h, "sysinit": h, "sysinit:ready": pcr11},
                     "pcr_public_key_sha256": h,
                     "pcr_signature": {"sha256": [{"pcrs": [11], "pkfp": h, "pol": h, "sig": "AAAA"}]},
                     "manifest_sha256": h}}
    path = os.path.join(d, "policy.json")
    with open(path, "w") as f:
        f.write(json.dumps(pol, indent=2) + "\n")
    openssl("dgst", "-sha256", "-sign", priv, "-out", path + ".sig", path)
    return path


def test_attest_image_policy_signed_with_the_image_key(make_server, swtpm, tmp_path):
    s = make_server(env=attest_env(swtpm)).start()
    d = str(tmp_path)
    priv, pub = image_key(d, "image-key")
    _, other = image_key(d, "other-key")
    path = image_policy(swtpm, d, priv)
    # the instance's AK, as policy-from computes it (provisioning prints the same)
    os.mkdir(os.path.join(d, "tofu"))
    tofu, pol = make_policy(s, os.path.join(d, "tofu"))
    ak = pol["tpm"]["ak_sha256"]
    base = ["verify", url_of(s), "--policy", path, "--ca", s.cacert]

    ok = attest(*base, "--policy-key", pub, "--ak-sha256", ak, "--json")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    checks = {c["name"]: c for c in json.loads(ok.stdout)["checks"]}
    assert checks["policy.signature"]["status"] == "pass" and checks["policy.signature"]["required"]
    assert checks["tpm.ak_pinned"]["status"] == "pass"
    assert checks["tpm.pcrs_policy"]["status"] == "pass"
    assert "policy.tofu" not in checks
    human = attest(*base, "--policy-key", pub, "--ak-sha256", ak)
    assert human.returncode == 0 and "policy.signature" in human.stdout, human.stdout + human.stderr

    # the signature file named explicitly
    os.rename(path + ".sig", os.path.join(d, "elsewhere.sig"))
    missing = attest(*base, "--policy-key", pub, "--ak-sha256", ak)
    assert missing.returncode == 2 and "policy.json.sig" in missing.stderr, missing.stderr
    there = attest(*base, "--policy-key", pub, "--policy-sig", os.path.join(d, "elsewhere.sig"), "--ak-sha256", ak)
    assert there.returncode == 0, there.stdout + there.stderr
    os.rename(os.path.join(d, "elsewhere.sig"), path + ".sig")

    # an image policy is never used unsigned
    nokey = attest(*base, "--ak-sha256", ak)
    assert nokey.returncode == 2 and "--policy-key" in nokey.stderr and "published with the image" in nokey.stderr

    # another key
    wrong = attest(*base, "--policy-key", other, "--ak-sha256", ak)
    assert wrong.returncode == 2 and "NOT signed" in wrong.stderr, wrong.stderr

    # one byte of the file changed (a PCR value a step closer to this instance)
    with open(path, "rb") as f:
        text = f.read()
    i = text.index(b'"4": "') + 6
    with open(path, "wb") as f:
        f.write(text[:i] + bytes([text[i] ^ 1]) + text[i + 1:])
    flipped = attest(*base, "--policy-key", pub, "--ak-sha256", ak)
    assert flipped.returncode == 2 and "NOT signed" in flipped.stderr, flipped.stderr
    with open(path, "wb") as f:
        f.write(text)

    # the AK: not pinned, pinned to another, or given twice in disagreement
    unpinned = attest(*base, "--policy-key", pub)
    assert unpinned.returncode == 1 and "tpm.ak_pinned" in unpinned.stderr, unpinned.stdout + unpinned.stderr
    other_ak = attest(*base, "--policy-key", pub, "--ak-sha256", "00" * 32)
    assert other_ak.returncode == 1 and "tpm.ak_pinned" in other_ak.stderr
    bad_hex = attest(*base, "--policy-key", pub, "--ak-sha256", ak[:-1])
    assert bad_hex.returncode == 2 and "64 hex" in bad_hex.stderr
    both = attest("verify", url_of(s), "--policy", tofu, "--ca", s.cacert, "--ak-sha256", "00" * 32)
    assert both.returncode == 2 and "differs" in both.stderr
    # a TOFU policy still verifies as before, and with its own AK given again
    again = attest("verify", url_of(s), "--policy", tofu, "--ca", s.cacert, "--ak-sha256", ak)
    assert again.returncode == 0, again.stdout + again.stderr
