"""Secrets stay where they belong (issue 6): after a run that imports known
AES and RSA keys through the admin API and moves known plaintexts through
EKM wrap/unwrap and XKS encrypt/decrypt, none of the key bytes, plaintexts
(raw or in the encodings the protocols carry them in) or the admin token
appear in the database file, the logs, or a core image of the running front
process (taken with gdb's gcore).  The custody process, which does hold key
material, must not be able to dump core at all."""
import base64
import os
import shutil
import signal
import subprocess
import time

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ekm_certs import make_pki
from test_ekm import ALLOWED_CN, API, CTX, EKM_RULES, OTHER_CN, PREFIX, ekm_env
from test_xks import TOML, Xks


def b64(b):
    return base64.b64encode(b).decode()


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def forms(label, raw):
    """The needles for one secret: its raw bytes and the text encodings it
    travels in (only long enough to be unambiguous)."""
    out = {label + ":raw": raw}
    if len(raw) >= 12:
        out[label + ":b64"] = base64.b64encode(raw)[:-4]     # the last quad may be padded
        out[label + ":b64u"] = base64.urlsafe_b64encode(raw).rstrip(b"=")[:-4]
        out[label + ":hex"] = raw.hex().encode()
    return out


def scan(path, needles):
    with open(path, "rb") as f:
        data = f.read()
    return sorted(k for k, v in needles.items() if v in data)


def int_bytes(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


@pytest.fixture
def run(make_server, tmp_path):
    pki = make_pki(str(tmp_path / "pki"), ALLOWED_CN, OTHER_CN)
    # few worker threads: a smaller core to write and scan
    s = make_server(env=ekm_env(pki, KEYWARD_HTTP_MAX_CONNECTIONS="16"), extra_toml=TOML).start()
    needles = {}
    # AES keys imported through the admin API (one for EKM, one for XKS)
    aes_ekm, aes_xks = os.urandom(32), os.urandom(32)
    needles.update(forms("aes-ekm", aes_ekm))
    needles.update(forms("aes-xks", aes_xks))
    for name, raw, ops, rules in (("sec-ekm", aes_ekm, ["wrap", "unwrap"], EKM_RULES),
                                  ("sec-xks", aes_xks, ["encrypt", "decrypt"],
                                   {"xks": {"key_stores": ["default"]}})):
        r = s.api("POST", "/api/v1/keys/import", {"name": name, "type": "AES", "material": b64(raw),
                                                  "operations": ops, "rules": rules})
        assert r.status_code == 201, r.text
    # an RSA key imported as PEM: its private numbers must not be anywhere
    priv = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    nums = priv.private_numbers()
    for label, n in (("rsa-d", nums.d), ("rsa-p", nums.p), ("rsa-q", nums.q)):
        needles[label + ":raw"] = int_bytes(n)
    pem = priv.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    needles["rsa-pem-body"] = pem.splitlines()[5]         # one line of the base64 body
    r = s.api("POST", "/api/v1/keys/import", {"name": "sec-rsa", "type": "RSA", "pem": pem.decode(),
                                              "operations": ["wrap", "unwrap"], "rules": EKM_RULES})
    assert r.status_code == 201, r.text
    # EKM: wrap and unwrap known key bytes (AES-KW and RSA-OAEP)
    sess = requests.Session()
    base = s.url + "/azureekm/" + PREFIX
    for i in range(3):
        cek = os.urandom(32)
        needles.update(forms("ekm-cek-%d" % i, cek))
        for key, alg in (("sec-ekm", "A256KW"), ("sec-rsa", "RSA-OAEP-256")):
            w = sess.post(base + "/%s/wrapkey%s" % (key, API), cert=pki["allowed"], verify=s.cacert,
                          json={"request_context": CTX, "alg": alg, "value": b64u(cek)}, timeout=30)
            assert w.status_code == 200, w.text
            u = sess.post(base + "/%s/unwrapkey%s" % (key, API), cert=pki["allowed"],
                          verify=s.cacert, timeout=30,
                          json={"request_context": CTX, "alg": alg, "value": w.json()["value"]})
            assert u.status_code == 200 and u.json()["value"] == b64u(cek), u.text
    # a wrap made outside (python) unwrapped by keyward
    cek = os.urandom(32)
    needles.update(forms("ekm-cek-ext", cek))
    ct = priv.public_key().encrypt(cek, padding.OAEP(mgf=padding.MGF1(hashes.SHA256()),
                                                     algorithm=hashes.SHA256(), label=None))
    u = sess.post(base + "/sec-rsa/unwrapkey" + API, cert=pki["allowed"], verify=s.cacert,
                  json={"request_context": CTX, "alg": "RSA-OAEP-256", "value": b64u(ct)}, timeout=30)
    assert u.status_code == 200 and u.json()["value"] == b64u(cek), u.text
    # XKS: encrypt and decrypt known plaintexts
    x = Xks(s)
    for i in range(3):
        pt = os.urandom(48)
        needles.update(forms("xks-pt-%d" % i, pt))
        e = x.enc("/a", "sec-xks", pt, aad=b"secrets-test")
        assert e.status_code == 200, e.text
        d = x.dec("/a", "sec-xks", e.json(), aad=b"secrets-test")
        assert d.status_code == 200 and base64.b64decode(d.json()["plaintext"]) == pt, d.text
    needles["admin-token"] = s.token.encode()
    # the token as the front's authenticator would see it, without the prefix
    needles["admin-token-tail"] = s.token.encode()[-24:]
    time.sleep(0.3)    # the audit group commit and the log flush
    return s, needles


def test_no_secret_in_database_logs_or_front_core(run, tmp_path):
    s, needles = run
    files = [os.path.join(s.dir, "keyward.db"), s.log_path]
    for extra in ("keyward.db-wal", "keyward.db-journal"):
        p = os.path.join(s.dir, extra)
        if os.path.exists(p):
            files.append(p)
    found = {}
    for f in files:
        hit = scan(f, needles)
        if hit:
            found[f] = hit
    if shutil.which("gcore") is None:
        pytest.fail("gcore (gdb) is not installed: run `make deps`")
    prefix = str(tmp_path / "front-core")
    p = subprocess.run(["gcore", "-o", prefix, str(s.front_pid())], capture_output=True, text=True,
                       timeout=120)
    core = "%s.%d" % (prefix, s.front_pid())
    assert p.returncode == 0 and os.path.exists(core), p.stdout + p.stderr
    assert os.path.getsize(core) > 1 << 20
    try:
        # the core is a real image of the front: the server certificate's
        # public PEM and the EKM prefix are in it (so the scan can find things)
        with open(core, "rb") as f:
            img = f.read()
        assert PREFIX.encode() in img
        hit = sorted(k for k, v in needles.items() if v in img)
        if hit:
            found["front core"] = hit
    finally:
        keep = os.environ.get("KEYWARD_SECRETS_KEEP")      # a directory, to debug a finding
        if keep:
            import pickle
            shutil.copy(core, os.path.join(keep, "front.core"))
            with open(os.path.join(keep, "needles.pickle"), "wb") as f:
                pickle.dump(needles, f)
        os.unlink(core)
    assert s.proc.poll() is None       # gcore detached; the front still serves
    assert requests.get(s.url + "/healthz", verify=s.cacert, timeout=10).status_code == 200
    assert not found, sorted((k, sorted(v)) for k, v in found.items())


def test_custody_cannot_dump_core(run):
    s, _ = run
    pid = s.custody_pid()
    with open("/proc/%d/limits" % pid) as f:
        core = [l for l in f.read().splitlines() if l.startswith("Max core file size")][0]
    soft, hard = core.split()[4:6]
    assert soft == "0" and hard == "0", core
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith("|") or "/" in pattern:
        pytest.skip("core_pattern %r: no core file in the process's directory to look for" % pattern)
    cwd = os.readlink("/proc/%d/cwd" % pid)
    before = set(os.listdir(cwd))
    os.kill(pid, signal.SIGSEGV)      # a crash that would dump core
    deadline = time.time() + 20
    while time.time() < deadline:
        new = s.custody_pid()
        if new and new != pid:
            break
        time.sleep(0.05)
    assert new and new != pid, s.logs()
    time.sleep(0.5)
    cores = [n for n in set(os.listdir(cwd)) - before if n.startswith(pattern.split("%")[0])]
    assert not cores, "the custody process dumped core: %s" % cores
    # and the restarted custody is hardened the same way
    with open("/proc/%d/limits" % new) as f:
        assert [l for l in f.read().splitlines() if l.startswith("Max core file size")][0].split()[4] == "0"
