"""Privilege separation (issue 10): what a compromised front, another
process, or an outsider can and cannot make the server do.  One test per
finding of the security review; each failed on the release before this one
(run against it with KEYWARD_BUILD pointing at its build: the harness falls
back to the parent's pid where there is no separate front).

- finding 1: imported RSA private keys are never decoded in the front, so
  their primes are nowhere in its memory (all of it, read through
  /proc/PID/mem: gcore would skip MADV_DONTDUMP regions);
- finding 2: another process of the front's uid connecting to the custody
  socket gets nothing (and a front without proofs gets nothing either:
  server/custody/custody_test.c);
- finding 3: started as root, the front runs as keyward-front with no
  capabilities, no new privileges and a seccomp filter, the custody
  process as keyward-custody; the front's uid cannot read the PIN, the
  database or its key file;
- finding 4: the last admin token cannot be revoked, the server still
  starts, and keywardd --recover-admin makes a new admin token, audited;
- finding 6: unsigned XKS requests do not use up a key store's rate;
- finding 9 (custody half): SigV4 secrets only in secret memory.
"""
import base64
import concurrent.futures
import http.client
import json
import os
import pwd
import re
import socket
import ssl
import struct
import subprocess
import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import KEYWARDD, ROOT
from test_xks import AKID, SECRET, TOML, Xks

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="separate users need root")


# ---- helpers ----------------------------------------------------------------

def readable_memory(pid, skip_dontdump=False):
    """Every readable mapping of pid (root reads a non-dumpable process too),
    as (flags, bytes) pairs; with skip_dontdump, regions marked dd in smaps
    (MADV_DONTDUMP: the secure heap) are left out."""
    dd = set()
    if skip_dontdump:
        cur = None
        for line in open("/proc/%d/smaps" % pid):
            m = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if m:
                cur = m.group(1)
            elif line.startswith("VmFlags:") and " dd" in line:
                dd.add(cur)
    out = []
    mem = open("/proc/%d/mem" % pid, "rb")
    for line in open("/proc/%d/maps" % pid).read().splitlines():
        f = line.split()
        start = f[0].split("-")[0]
        if "r" not in f[1] or start in dd:
            continue
        if len(f) > 5 and f[5].startswith("/") and "w" not in f[1]:
            continue        # read-only file mappings (code, fonts): not process data
        a, b = (int(v, 16) for v in f[0].split("-"))
        try:
            mem.seek(a)
            out.append((line, mem.read(b - a)))
        except (OSError, ValueError, OverflowError):
            pass
    mem.close()
    return out


def int_bytes(n):
    return n.to_bytes((n.bit_length() + 7) // 8, "big")


def proto():
    """The custody protocol's numbers, from its header (whatever the version)."""
    text = open(os.path.join(ROOT, "server", "common", "proto.h")).read()
    nums = {m.group(1): int(m.group(2)) for m in re.finditer(r"\b(KW_\w+)\s*=\s*(\d+)", text)}
    nums["KW_PROTO_VERSION"] = int(re.search(r"#define KW_PROTO_VERSION (\d+)", text).group(1))
    return nums


def frame(p, op, fields):
    body = struct.pack(">BBHI", p["KW_PROTO_VERSION"], op, 0, 1)
    for tag, value in fields:
        body += struct.pack(">BI", tag, len(value)) + value
    return struct.pack(">I", len(body)) + body


def custody_answer(sock_path, req):
    """What one request on a new connection to the custody socket gets:
    'closed' or 'error <errno>' (refused), or 'code <status>' (answered)."""
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.settimeout(5)
    try:
        c.connect(sock_path)
        c.sendall(req)
        hdr = c.recv(4)
        if len(hdr) < 4:
            return "closed"
        n = struct.unpack(">I", hdr)[0]
        data = b""
        while len(data) < n:
            chunk = c.recv(n - len(data))
            if not chunk:
                break
            data += chunk
        code = struct.unpack(">i", data[8:12])[0] if len(data) >= 12 else None
        return "code %s" % code
    except OSError as e:
        return "error %s" % e.errno
    finally:
        c.close()


def status_of(pid):
    out = {}
    for line in open("/proc/%d/status" % pid):
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def as_user(uid, gid, fn):
    """Runs fn() in a child process with that uid/gid; returns its exit code."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            os._exit(fn())
        except BaseException:
            os._exit(99)
    return os.waitpid(pid, 0)[1] >> 8


# ---- finding 1 ------------------------------------------------------------------

def test_imported_rsa_private_key_is_never_in_the_front(make_server):
    """Accepted imports (PKCS#8 PEM, base64 DER) and refused ones (a
    1024-bit key, as traditional PEM and as PKCS#8: the release before this
    one decoded them in the front, refused them there, and left the primes
    of their DER in its freed heap)."""
    s = make_server(env={"KEYWARD_HTTP_MAX_CONNECTIONS": "16"}).start()
    needles = {}
    keys = [("pem", 2048, 201), ("pkcs8", 2048, 201), ("pem-trad", 1024, 400), ("pkcs8", 1024, 400)]
    for i, (form, bits, status) in enumerate(keys):
        priv = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        nums = priv.private_numbers()
        for label, n in (("p", nums.p), ("q", nums.q), ("d", nums.d), ("dmp1", nums.dmp1)):
            # as DER and PEM carry it (big-endian) and as a BIGNUM holds it
            # in memory (64-bit limbs, least significant first: little-endian)
            needles["%d-%s-%s" % (i, form, label)] = int_bytes(n)
            needles["%d-%s-%s-bn" % (i, form, label)] = int_bytes(n)[::-1]
        fmt = (serialization.PrivateFormat.TraditionalOpenSSL if form == "pem-trad"
               else serialization.PrivateFormat.PKCS8)
        if form.startswith("pem"):
            body = {"pem": priv.private_bytes(serialization.Encoding.PEM, fmt,
                                              serialization.NoEncryption()).decode()}
        else:
            body = {"pkcs8": base64.b64encode(priv.private_bytes(
                serialization.Encoding.DER, fmt, serialization.NoEncryption())).decode()}
        for attempt in range(3 if status == 400 else 1):
            r = s.api("POST", "/api/v1/keys/import",
                      dict(body, name="imp-%d-%d" % (i, attempt), type="RSA"))
            assert r.status_code == status, r.text
    front = s.front_pid()
    found = sorted({k for k, v in needles.items() for _, m in readable_memory(front) if v in m})
    assert not found, "private key parts in the front's memory: %s" % found
    # and after some traffic, as in the review (freed heap is reused, or not)
    for _ in range(200):
        assert s.api("GET", "/api/v1/keys?limit=5").status_code == 200
    found = sorted({k for k, v in needles.items() for _, m in readable_memory(front) if v in m})
    assert not found, "private key parts in the front's memory: %s" % found


# ---- finding 2 ------------------------------------------------------------------

@ROOT_ONLY
def test_another_process_of_the_fronts_user_gets_nothing_from_custody(make_server):
    s = make_server(extra_toml=TOML).start()
    r = s.api("POST", "/api/v1/keys", {"name": "k-sock", "type": "AES",
                                       "rules": {"ekm": {"client_cns": ["x"]},
                                                 "xks": {"key_stores": ["default"]}}})
    assert r.status_code == 201, r.text
    front = s.front_pid()
    st = os.stat("/proc/%d" % front)
    sock_path = os.path.join(s.dir, "run", "custody.sock")
    p = proto()
    # what a version-1 front sent: a wrap on behalf of an EKM caller, and an
    # admin token mint, with no proof at all
    reqs = [frame(p, p["KW_OP_WRAP"], [(p["KW_T_NAME"], b"k-sock"),
                                       (p["KW_T_ALG"], struct.pack(">I", 1)),
                                       (p["KW_T_DATA"], bytes(32))])]
    if "KW_T_ACTOR" in p:
        reqs.append(frame(p, p["KW_OP_TOKEN_CREATE"], [(p["KW_T_TOKEN_NAME"], b"minted"),
                                                       (p["KW_T_ROLE"], b"admin"),
                                                       (p["KW_T_ACTOR"], b"token:forged")]))
    result_path = os.path.join(s.dir, "probe.out")

    def probe():
        answers = [custody_answer(sock_path, req) for req in reqs]
        with open(result_path, "w") as f:
            f.write(json.dumps(answers))
        return 0

    os.chmod(s.dir, os.stat(s.dir).st_mode | 0o033)   # let the probe write its answer
    assert as_user(st.st_uid, st.st_gid, probe) == 0
    answers = json.load(open(result_path))
    # refused before any request is read: no answer, no success
    assert all(a in ("closed", "error 104", "error 13") for a in answers), answers
    assert "custody_peer_refused" in s.logs()
    tokens = s.api("GET", "/api/v1/tokens").json()["tokens"]
    assert not any(t["name"] == "minted" for t in tokens), tokens


# ---- finding 3 ------------------------------------------------------------------

@ROOT_ONLY
def test_front_and_custody_run_as_their_users_without_privileges(make_server):
    s = make_server().start()
    front, custody = s.front_pid(), s.custody_pid()
    f, c = status_of(front), status_of(custody)
    fu, cu = pwd.getpwnam("keyward-front"), pwd.getpwnam("keyward-custody")
    assert f["Uid"].split() == [str(fu.pw_uid)] * 4, f["Uid"]
    assert c["Uid"].split() == [str(cu.pw_uid)] * 4, c["Uid"]
    for st in (f, c):
        assert st["NoNewPrivs"] == "1"
        assert st["Seccomp"] == "2"
        assert int(st["CapEff"], 16) == 0 and int(st["CapPrm"], 16) == 0
        assert int(st["CapBnd"], 16) == 0
    # not dumpable: /proc/PID belongs to root, core limit 0 hard
    for pid in (front, custody):
        assert os.stat("/proc/%d/status" % pid).st_uid == 0
        core = [l for l in open("/proc/%d/limits" % pid) if l.startswith("Max core file size")][0]
        assert core.split()[4:6] == ["0", "0"], core
    # the front's user cannot read what is the custody's
    secrets = [os.path.join(s.dir, "softhsm", "pin"), os.path.join(s.dir, "keyward.db"),
               os.path.join(s.dir, "keyward.db.key")]

    def try_read():
        bad = 0
        for p in secrets:
            try:
                open(p, "rb").close()
                bad += 1
            except PermissionError:
                pass
        return bad

    assert as_user(fu.pw_uid, fu.pw_gid, try_read) == 0
    # and the parent refuses to start when one of them is readable by it
    s.stop()
    os.chmod(secrets[0], 0o644)
    code, out = s.run_to_exit()
    assert code == 2 and "readable by the front's user" in out and "pin_file" in out, out


# ---- finding 4 ------------------------------------------------------------------

def test_last_admin_token_cannot_be_revoked_and_recovery(make_server):
    s = make_server().start()
    me = [t for t in s.api("GET", "/api/v1/tokens").json()["tokens"] if t["revoked"] is None]
    assert len(me) == 1
    r = s.api("DELETE", "/api/v1/tokens/" + me[0]["id"])
    assert r.status_code == 409, r.text
    assert r.json()["error"] == "bad_state" and "last active admin token" in r.json()["message"]
    assert s.api("GET", "/api/v1/status").status_code == 200
    # another admin token: now the first one may go
    r = s.api("POST", "/api/v1/tokens", {"name": "second", "role": "admin"})
    assert r.status_code == 201, r.text
    second = r.json()["token"]
    assert s.api("DELETE", "/api/v1/tokens/" + me[0]["id"]).status_code == 200
    # restart: the server starts, initial-admin is not made again, the
    # token file is not overwritten
    before = open(os.path.join(s.dir, "admin.token")).read()
    s.stop()
    s.start()
    assert open(os.path.join(s.dir, "admin.token")).read() == before
    assert s.api("GET", "/api/v1/status", token=second).status_code == 200
    # console recovery: a new admin token in the token file, audited
    p = subprocess.run([KEYWARDD, "--config", s.conf, "--recover-admin"], env=s.env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "new admin token" in p.stderr
    recovered = open(os.path.join(s.dir, "admin.token")).read().strip()
    assert recovered != before.strip()
    assert s.api("GET", "/api/v1/status", token=recovered).status_code == 200
    ev = s.api("GET", "/api/v1/audit?action=token.recover", token=recovered).json()["events"]
    assert len(ev) == 1 and ev[0]["actor"].startswith("console:uid=%d(" % os.getuid()), ev
    # the running server writes on after the record another process appended
    # (it reads the chain head again), and the chain holds
    for i, body in enumerate(({"name": "after-recover", "type": "AES"}, {"name": "after-2", "type": "AES"})):
        r = s.api("POST", "/api/v1/keys", body, token=recovered)
        assert r.status_code == 201, (i, r.text)
    v = s.api("POST", "/api/v1/audit/verify", token=recovered).json()
    assert v["ok"] is True and "first_bad_seq" not in v, v


# ---- finding 6 ------------------------------------------------------------------

def _post_from(addr, s, path, body):
    ctx = ssl.create_default_context(cafile=s.cacert)
    c = http.client.HTTPSConnection("127.0.0.1", s.port, context=ctx, timeout=10,
                                    source_address=(addr, 0))
    try:
        c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        return c.getresponse().status
    finally:
        c.close()


def test_unsigned_flood_does_not_use_up_a_stores_rate(make_server):
    s = make_server(extra_toml=TOML.replace("aws_xks_rate_limit = 0", "aws_xks_rate_limit = 20")
                    ).start()
    x = Xks(s)
    assert x.health("/a").status_code == 200
    time.sleep(1.1)                       # a full bucket
    body = json.dumps({"requestMetadata": {"kmsRequestId": "f", "kmsOperation": "KmsHealthCheck"}})
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        flood = list(pool.map(lambda _: _post_from("127.0.0.2", s, "/a/kms/xks/v1/health", body),
                              range(200)))
    assert 401 in flood and 429 in flood, flood   # the flood is throttled on its own budget
    signed = [x.health("/a").status_code for _ in range(20)]
    assert signed.count(200) == 20, signed


# ---- finding 9 (custody) ---------------------------------------------------------

def test_sigv4_secrets_only_in_the_custody_secure_heap(make_server):
    s = make_server(extra_toml=TOML).start()
    x = Xks(s)
    r = s.api("POST", "/api/v1/xks/stores", {"name": "mem", "uri_prefix": "/mem", "region": "eu-west-3"})
    assert r.status_code == 201, r.text
    api_secret = r.json()["import_file"]["XksProxyAuthenticationCredential"]["RawSecretAccessKey"]
    api_akid = r.json()["import_file"]["XksProxyAuthenticationCredential"]["AccessKeyId"]
    assert x.health("/a").status_code == 200
    assert x.health("/mem", akid=api_akid, secret=api_secret).status_code == 200
    # after a restart too (the secrets come back from the database, sealed)
    s.stop()
    s.start()
    assert x.health("/mem", akid=api_akid, secret=api_secret).status_code == 200
    custody = s.custody_pid()
    hits = [(region.split()[0], region.split()[-1]) for region, m in
            readable_memory(custody, skip_dontdump=True)
            for secret in (SECRET, api_secret) if secret.encode() in m]
    assert not hits, "a SigV4 secret outside the secure heap: %s" % hits
    # and none in the front at all
    front_hits = [line for line, m in readable_memory(s.front_pid())
                  for secret in (SECRET, api_secret) if secret.encode() in m]
    assert not front_hits, front_hits
    assert AKID  # the access key id is not a secret
