#!/usr/bin/python3
"""Soak (issue 6; `make soak`, never part of `make test`): one keywardd with
EKM and XKS enabled under mixed load for SOAK_SECONDS (600 by default):
admin reads, lists and creates, EKM wrap/unwrap, XKS encrypt/decrypt/
metadata/health, and a trickle of malformed requests.  RSS and open file
descriptors of both processes (front and custody) are sampled every
SOAK_SAMPLE_SECONDS; after a warm-up (a fifth of the run) each must stay
flat: growth below SOAK_RSS_SLACK_KB (and 10 % of the warm RSS) and
SOAK_FD_SLACK descriptors.  Every request must succeed (or, for the
malformed ones, fail as documented).  Exit status 0 only when all held."""
import base64
import json
import os
import shutil
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
from test_xks import TOML, Xks  # noqa: E402

SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
SAMPLE = float(os.environ.get("SOAK_SAMPLE_SECONDS", "5"))
RSS_SLACK_KB = int(os.environ.get("SOAK_RSS_SLACK_KB", "8192"))
FD_SLACK = int(os.environ.get("SOAK_FD_SLACK", "8"))
CLIENTS = int(os.environ.get("SOAK_CLIENTS", "4"))


def proc_sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss = [int(l.split()[1]) for l in f if l.startswith("VmRSS:")][0]
    return rss, len(os.listdir("/proc/%d/fd" % pid))


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def main():
    d = tempfile.mkdtemp(prefix="kw-soak-")
    pki = make_pki(os.path.join(d, "pki"), ALLOWED_CN, OTHER_CN)
    s = Server(os.path.join(d, "srv"), env=ekm_env(pki), extra_toml=TOML).start()
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
        samples = []     # (t, front_rss, front_fds, custody_rss, custody_fds)
        while time.time() - t0 < SECONDS:
            time.sleep(SAMPLE)
            cpid = s.custody_pid()
            fr, ff = proc_sample(s.front_pid())
            cr, cf = proc_sample(cpid)
            samples.append((time.time() - t0, fr, ff, cr, cf))
            print("t=%6.0fs front rss=%6d kB fds=%3d  custody rss=%6d kB fds=%3d  requests=%d"
                  % (samples[-1][0], fr, ff, cr, cf, sum(counts.values())), flush=True)
            if s.proc.poll() is not None:
                failures.append("keywardd exited")
                break
        stop.set()
        for t in threads:
            t.join(60)
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
    finally:
        s.stop()
        shutil.rmtree(d, ignore_errors=True)
    if failures:
        print("SOAK FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("soak: ok (%.0f s)" % SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
