#!/usr/bin/python3
"""Soak (issue 6; `make soak`, never part of `make test`): one keywardd with
EKM and XKS enabled under mixed load for SOAK_SECONDS (480 by default):
admin reads, lists and creates, EKM wrap/unwrap, XKS encrypt/decrypt/
metadata/health, and a trickle of malformed requests.  RSS and open file
descriptors of both processes (front and custody) are sampled every
SOAK_SAMPLE_SECONDS; after a warm-up (a fifth of the run) each must stay
flat: growth below SOAK_RSS_SLACK_KB (and 10 % of the warm RSS) and
SOAK_FD_SLACK descriptors.  Every request must succeed (or, for the
malformed ones, fail as documented).

Audit retention (issue 11): beside the mixed load, kw-loadgen (C, keep-alive
TLS, SigV4) sends XKS encrypts on SOAK_LOADGEN_CONNS connections as fast as
the server answers, for the whole run, with [audit] max_bytes =
SOAK_AUDIT_MAX_BYTES and check_interval_seconds = 1: the key-use audit
passes the bound many times, so retention exports and prunes behind
checkpoints throughout.  At every sample the database's bytes in use and
its file must be under max_bytes (the -wal file is reported beside it); at
the end retention must have run (exports, a checkpoint), no storage warning
but the ones allowed may be raised, the chain must verify from the
checkpoint, and every export file must verify offline and chain to the next
(keywardctl audit verify-export --prev-hash), the last one ending at the
checkpoint.  Exit status 0 only when all held."""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "blackbox"))

import requests  # noqa: E402

from conftest import Server  # noqa: E402
from ekm_certs import make_pki  # noqa: E402
from test_ekm import ALLOWED_CN, API, CTX, OTHER_CN, PREFIX, ekm_env  # noqa: E402
from test_xks import AKID, META, REGION, SECRET, TOML, Xks  # noqa: E402

BUILD = os.environ.get("KEYWARD_BUILD", os.path.join(HERE, "..", "..", "build"))
SECONDS = float(os.environ.get("SOAK_SECONDS", "480"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE_SECONDS", "5"))
RSS_SLACK_KB = int(os.environ.get("SOAK_RSS_SLACK_KB", "8192"))
FD_SLACK = int(os.environ.get("SOAK_FD_SLACK", "8"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "4"))
# kw-loadgen repeats one body (one kmsRequestId), which its batches compress to
# ~3 bytes a record: a small bound is passed every few seconds at full rate
AUDIT_MAX_BYTES = int(os.environ.get("SOAK_AUDIT_MAX_BYTES", str(1 << 20)))
LOADGEN_CONNS = int(os.environ.get("SOAK_LOADGEN_CONNS", "16"))
AUDIT_TOML = """
[audit]
max_bytes = %d
export_dir = "%s"
check_interval_seconds = 1
"""


def start_loadgen(s, d):
    """kw-loadgen: XKS encrypt of 64 bytes on soak-xks for the whole run."""
    secret = os.path.join(d, "xks.secret")
    with open(secret, "w") as f:
        f.write(SECRET)
    os.chmod(secret, 0o600)
    body = os.path.join(d, "xks-encrypt.json")
    with open(body, "w") as f:
        json.dump({"requestMetadata": META, "plaintext": base64.b64encode(os.urandom(64)).decode(),
                   "encryptionAlgorithm": "AES_GCM"}, f, separators=(",", ":"))
    cmd = [os.path.join(BUILD, "bench", "kw-loadgen"), "--port", str(s.port), "--method", "POST",
           "--path", "/a/kms/xks/v1/keys/soak-xks/encrypt", "--body-file", body,
           "--conns", str(LOADGEN_CONNS), "--duration", str(SECONDS), "--warmup", "0",
           "--max-requests", "1000000000", "--cacert", s.cacert,
           "--sigv4", AKID, "--sigv4-secret-file", secret, "--region", REGION,
           "--label", "soak xks encrypt"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def audit_status(s):
    r = s.api("GET", "/api/v1/status")
    return r.json()["custody"]["audit"] if r.status_code == 200 else None


def check_exports(s, export_dir, checkpoint, failures):
    """Every export file verifies offline and chains to the next; the last
    ends at the checkpoint.  Returns the number of files."""
    files = sorted(f for f in os.listdir(export_dir) if f.endswith(".jsonl.gz"))
    prev = "0" * 64
    for name in files:
        p = s.ctl("--json", "audit", "verify-export", os.path.join(export_dir, name), "--prev-hash", prev)
        try:
            doc = json.loads(p.stdout)
        except ValueError:
            doc = {}
        if p.returncode != 0 or doc.get("ok") is not True:
            failures.append("export %s does not verify: %s %s" % (name, p.stdout[:300], p.stderr[:200]))
            return len(files)
        prev = doc["last_hash"]
    if files and checkpoint is not None and prev != checkpoint["hash"]:
        failures.append("the last export ends at %s, the checkpoint is %s" % (prev, checkpoint))
    return len(files)


def proc_sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS:")][0]
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main():
    d = tempfile.mkdtemp(prefix="kw-soak-")
    pki = make_pki(os.path.join(d, "pki"), ALLOWED_CN, OTHER_CN)
    srv_dir = os.path.join(d, "srv")
    export_dir = os.path.join(srv_dir, "audit-export")     # made by tests/devstate.sh
    s = Server(srv_dir, env=ekm_env(pki),
               extra_toml=TOML + AUDIT_TOML % (AUDIT_MAX_BYTES, export_dir)).start()
    lg = None
    failures = []
    counts = {}
    lock = threading.Lock()
    try:
        for name, ops in (("soak-ekm", ["wrap", "unwrap"]), ("soak-xks", ["encrypt", "decrypt"])):
            r = s.api("POST", "/api/v1/keys", {"name": name, "type": "AES", "operations": ops,
                                               "rules": {"xks": {"key_stores": ["default"]}, "ekm": {"path_prefixes": ["/azureekm/" + PREFIX]}}})
            assert r.status_code == 201, r.text
        stop = threading.Event()
        token = s.token

        def note(kind, ok, detail=""):
            with lock:
                counts[kind] = counts.get(kind, 0) + 1
                if not ok and len(failures) < 50:
                    failures.append("%s: %s" % (kind, detail))

        def client(idx):
            sess = requests.Session()      # admin (no client certificate)
            esess = requests.Session()     # EKM (mutual TLS): its own connection pool
            x = Xks(s)
            h = {"Authorization": "Bearer " + token}
            ekm_base = s.url + "/azureekm/" + PREFIX
            i = 0
            while not stop.is_set():
                i += 1
                k = i % 8
                try:
                    if k == 0:
                        r = sess.get(s.url + "/api/v1/keys?limit=50", headers=h, verify=s.cacert,
                                     timeout=30)
                        note("admin.list", r.status_code == 200, r.text[:200])
                    elif k == 1:
                        r = sess.post(s.url + "/api/v1/keys", headers=h, verify=s.cacert, timeout=30,
                                      json={"name": "soak-%d-%d" % (idx, i % 40), "type": "AES"})
                        # a bounded set of names (201 once, then 409): a growing
                        # key table would be growth by design, not a leak
                        note("admin.create", r.status_code in (201, 409), r.text[:200])
                    elif k in (2, 3):
                        cek = os.urandom(32)
                        r = esess.post(ekm_base + "/soak-ekm/wrapkey" + API, cert=pki["allowed"],
                                      verify=s.cacert, timeout=30,
                                      json={"request_context": CTX, "alg": "A256KW", "value": b64u(cek)})
                        ok = r.status_code == 200
                        if ok:
                            u = esess.post(ekm_base + "/soak-ekm/unwrapkey" + API, cert=pki["allowed"],
                                          verify=s.cacert, timeout=30,
                                          json={"request_context": CTX, "alg": "A256KW",
                                                "value": r.json()["value"]})
                            ok = u.status_code == 200 and u.json()["value"] == b64u(cek)
                        note("ekm.wrap+unwrap", ok, r.text[:200])
                    elif k in (4, 5):
                        pt = os.urandom(64)
                        e = x.enc("/a", "soak-xks", pt, aad=b"soak")
                        ok = e.status_code == 200
                        if ok:
                            dd = x.dec("/a", "soak-xks", e.json(), aad=b"soak")
                            ok = dd.status_code == 200 and base64.b64decode(dd.json()["plaintext"]) == pt
                        note("xks.encrypt+decrypt", ok, e.text[:200])
                    elif k == 6:
                        r = x.health("/a") if i % 16 == 6 else x.meta("/a", "soak-xks")
                        note("xks.health/metadata", r.status_code == 200, r.text[:200])
                    else:
                        # malformed: each must be refused as documented, and leak nothing
                        r = sess.post(s.url + "/api/v1/keys", headers=h, verify=s.cacert, timeout=30,
                                      data=b'{"name": "x", "name": "y"}')
                        ok = r.status_code in (400, 415)
                        r2 = esess.post(ekm_base + "/soak-ekm/wrapkey" + API, cert=pki["allowed"],
                                       verify=s.cacert, timeout=30, data=b"{\"request_context\": [",
                                       headers={"Content-Type": "application/json"})
                        ok = ok and r2.status_code == 400 and r2.json()["code"] == "InvalidRequest"
                        note("bad-input", ok, "%s %s" % (r.text[:100], r2.text[:100]))
                except requests.RequestException as ex:
                    note("exception", False, repr(ex))

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(CLIENTS)]
        t0 = time.time()
        for t in threads:
            t.start()
        lg = start_loadgen(s, d)
        samples = []     # (t, front_rss, front_fds, custody_rss, custody_fds)
        peak = {"db_bytes": 0, "db_file_bytes": 0, "wal_bytes": 0}
        while time.time() - t0 < SECONDS:
            time.sleep(SAMPLE)
            cpid = s.custody_pid()
            fr, ff = proc_sample(s.front_pid())
            cr, cf = proc_sample(cpid)
            samples.append((time.time() - t0, fr, ff, cr, cf))
            a = audit_status(s)
            if a is None:
                failures.append("GET /api/v1/status failed at t=%.0f" % samples[-1][0])
                a = {}
            wal = os.path.getsize(os.path.join(srv_dir, "keyward.db-wal")) \
                if os.path.exists(os.path.join(srv_dir, "keyward.db-wal")) else 0
            for k, v in (("db_bytes", a.get("db_bytes", 0)), ("db_file_bytes", a.get("db_file_bytes", 0)),
                         ("wal_bytes", wal)):
                peak[k] = max(peak[k], v)
            if a.get("db_bytes", 0) > AUDIT_MAX_BYTES or a.get("db_file_bytes", 0) > AUDIT_MAX_BYTES:
                failures.append("t=%.0fs: database over [audit] max_bytes %d: in use %d, file %d"
                                % (samples[-1][0], AUDIT_MAX_BYTES, a.get("db_bytes", 0),
                                   a.get("db_file_bytes", 0)))
            print("t=%6.0fs front rss=%6d kB fds=%3d  custody rss=%6d kB fds=%3d  requests=%d"
                  "  audit: seq %s, %s held, db %d kB in use / %d kB file / %d kB wal, %d exports"
                  % (samples[-1][0], fr, ff, cr, cf, sum(counts.values()), a.get("last_seq"),
                     a.get("records"), a.get("db_bytes", 0) // 1024, a.get("db_file_bytes", 0) // 1024,
                     wal // 1024, a.get("retention", {}).get("exports", 0)), flush=True)
            if s.proc.poll() is not None:
                failures.append("keywardd exited")
                break
        stop.set()
        for t in threads:
            t.join(60)
        try:
            out, err = lg.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            lg.kill()
            out, err = lg.communicate()
        lg_res = {}
        try:
            lg_res = json.loads(out)
        except ValueError:
            failures.append("kw-loadgen: exit %s: %s" % (lg.returncode, err.strip()[:300]))
        if lg_res:
            print("kw-loadgen XKS encrypt: %d ok, %.0f/s, %d errors, %d connection errors, status %s"
                  % (lg_res.get("ok", 0), lg_res.get("rps", 0), lg_res.get("errors", 0),
                     lg_res.get("conn_errors", 0), json.dumps(lg_res.get("status", {}))))
            if lg_res.get("errors", 0) or lg_res.get("conn_errors", 0) or \
                    set(lg_res.get("status", {})) - {"200"} or not lg_res.get("ok"):
                failures.append("kw-loadgen: %s" % lg_res)
        warm = [x for x in samples if x[0] >= SECONDS / 5]
        if len(warm) < 3:
            failures.append("too few samples after the warm-up: %d" % len(warm))
        else:
            base, last = warm[0], warm[-1]
            for name, col in (("front", 1), ("custody", 3)):
                grew = max(x[col] for x in warm[len(warm) // 2:]) - base[col]
                allowed = max(RSS_SLACK_KB, base[col] // 10)
                print("%s RSS: %d kB after warm-up, %d kB at the end, peak growth %d kB (allowed %d)"
                      % (name, base[col], last[col], grew, allowed))
                if grew > allowed:
                    failures.append("%s RSS grew by %d kB (allowed %d)" % (name, grew, allowed))
                fd_grew = max(x[col + 1] for x in warm) - base[col + 1]
                if fd_grew > FD_SLACK:
                    failures.append("%s file descriptors grew by %d" % (name, fd_grew))
        print("requests:", json.dumps(counts, sort_keys=True))
        if counts.get("ekm.wrap+unwrap", 0) == 0 or counts.get("xks.encrypt+decrypt", 0) == 0:
            failures.append("the load did not run")
        v = s.api("POST", "/api/v1/audit/verify").json()
        if v.get("ok") is not True:
            failures.append("audit chain: %s" % v)
        a = audit_status(s) or {}
        ret = a.get("retention", {})
        nfiles = check_exports(s, export_dir, a.get("checkpoint"), failures)
        print("audit: %s records written, %d held, checkpoint %s, %d exports (%d files), %d pruned, "
              "%d export failures; peak db %d kB in use, %d kB file, %d kB wal (max_bytes %d kB); "
              "warnings %s"
              % (a.get("last_seq"), a.get("records", 0), (a.get("checkpoint") or {}).get("seq"),
                 ret.get("exports", 0), nfiles, ret.get("pruned_records", 0), ret.get("export_failures", 0),
                 peak["db_bytes"] // 1024, peak["db_file_bytes"] // 1024, peak["wal_bytes"] // 1024,
                 AUDIT_MAX_BYTES // 1024, [w["code"] for w in a.get("warnings", [])]))
        if ret.get("exports", 0) < 2 or not a.get("checkpoint") or v.get("checkpoint") != a.get("checkpoint"):
            failures.append("retention did not run: %s; verify %s" % (ret, v))
        if ret.get("export_failures", 0):
            failures.append("%d exports failed: %s" % (ret["export_failures"], ret.get("last_error")))
        # disk_space_low depends on the machine's disk, not on Keyward
        bad = [w for w in a.get("warnings", []) if w["code"] != "disk_space_low"]
        if bad:
            failures.append("storage warnings at the end: %s" % bad)
    finally:
        if lg is not None and lg.poll() is None:
            lg.kill()
            lg.wait()
        s.stop()
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("soak: ok (%.0f s)" % SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
