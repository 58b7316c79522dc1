"""The audit trail: what admins do is recorded with the actor, pages
correctly, and verifies; tampering with the database (by someone holding the
database key) is detected at the right row."""
import os
import subprocess

import pytest
import requests

import promtext
from conftest import BUILD

DBKEY = os.path.join(BUILD, "kw-test-dbkey")


def events(s, **q):
    path = "/api/v1/audit"
    if q:
        path += "?" + "&".join("%s=%s" % kv for kv in q.items())
    r = s.api("GET", path)
    assert r.status_code == 200, r.text
    return r.json()


def all_events(s):
    out, after = [], None
    while True:
        q = {"limit": 1000}
        if after is not None:
            q["after"] = after
        doc = events(s, **q)
        out += doc["events"]
        after = doc["next"]
        if after is None:
            return out


def admin_id(s):
    toks = s.api("GET", "/api/v1/tokens").json()["tokens"]
    return [t["id"] for t in toks if t["name"] == "initial-admin"][0]


def test_admin_actions_are_audited_with_actor(server):
    s = server
    tid = admin_id(s)
    assert s.api("POST", "/api/v1/keys", {"name": "au-1", "type": "AES"}).status_code == 201
    assert s.api("POST", "/api/v1/keys/au-1/disable").status_code == 200
    assert s.api("POST", "/api/v1/keys/au-1/rotate").status_code == 200
    assert s.api("PATCH", "/api/v1/keys/au-1", {"tags": {"a": "b"}}).status_code == 200
    op = s.api("POST", "/api/v1/tokens", {"name": "au-op", "role": "operator"}).json()
    assert s.api("POST", "/api/v1/keys", {"name": "au-2", "type": "AES"},
                 token=op["token"]).status_code == 201
    # a refused change is audited too, with its error
    assert s.api("POST", "/api/v1/keys", {"name": "au-1", "type": "AES"}).status_code == 409
    ev = all_events(s)
    by_action = {}
    for e in ev:
        assert set(e) >= {"seq", "time", "actor", "action", "key", "result", "detail", "hash"}
        by_action.setdefault(e["action"], []).append(e)
    mine = "token:" + tid

    def one(action, key, result="ok"):
        rows = [e for e in by_action.get(action, []) if e["key"] == key and e["result"] == result]
        assert rows, (action, key, result, ev)
        return rows[-1]

    for action in ("key.create", "key.disable", "key.rotate", "key.update"):
        assert one(action, "au-1")["actor"].startswith(mine), one(action, "au-1")
    assert one("key.create", "au-2")["actor"].startswith("token:" + op["id"])
    assert one("key.create", "au-1", "exists")["actor"].startswith(mine)
    tc = [e for e in by_action["token.create"] if e["actor"].startswith(mine)]
    assert tc and tc[-1]["detail"] == "au-op"
    seqs = [e["seq"] for e in ev]
    assert seqs == list(range(1, len(ev) + 1))
    # the token itself never reaches the audit trail
    assert op["token"] not in str(ev)


def test_audit_paging_and_filters(server):
    s = server
    for i in range(7):
        assert s.api("POST", "/api/v1/keys", {"name": "pg-%d" % i, "type": "AES"}).status_code == 201
    whole = all_events(s)
    got, after, pages = [], None, 0
    while True:
        q = {"limit": 3}
        if after is not None:
            q["after"] = after
        doc = events(s, **q)
        pages += 1
        assert len(doc["events"]) <= 3
        got += doc["events"]
        after = doc["next"]
        if after is None:
            break
        assert after == doc["events"][-1]["seq"]
    assert [e["seq"] for e in got] == [e["seq"] for e in whole]
    assert pages >= len(whole) // 3
    ev = events(s, key="pg-3")["events"]
    assert [e["action"] for e in ev] == ["key.create"] and ev[0]["key"] == "pg-3"
    ev = events(s, action="key.create", limit=1000)["events"]
    assert len(ev) >= 7 and all(e["action"] == "key.create" for e in ev)
    mid = whole[len(whole) // 2]["seq"]
    ev = events(s, after=mid, limit=1000)["events"]
    assert ev and all(e["seq"] > mid for e in ev)


@pytest.mark.parametrize("q", ["limit=0", "limit=1001", "after=-1", "after=x", "key=a%2Fb",
                               "bogus=1"])
def test_audit_bad_query(server, q):
    r = server.api("GET", "/api/v1/audit?" + q)
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("bad_field", "bad_name")


def test_audit_verify_ok(server):
    s = server
    for i in range(3):
        assert s.api("POST", "/api/v1/keys", {"name": "v-%d" % i, "type": "AES"}).status_code == 201
    r = s.api("POST", "/api/v1/audit/verify")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["ok"] is True and d["rows"] >= 4 and "first_bad_seq" not in d
    p = s.ctl("audit", "verify")
    assert p.returncode == 0, p.stdout + p.stderr


# ---------------------------------------------------------------- tampering

def db_key_hex(s):
    p = subprocess.run([DBKEY, s.conf], env=s.env, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    k = p.stdout.strip()
    assert len(k) == 64 and all(c in "0123456789abcdef" for c in k), "bad key output"
    return k


def sqlcipher(s, key, sql):
    script = "PRAGMA key = \"x'%s'\";\n%s\n" % (key, sql)
    p = subprocess.run(["sqlcipher", os.path.join(s.dir, "keyward.db")], input=script,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "Error" not in p.stderr, p.stdout + p.stderr
    return p.stdout


def tamper_case(s, sql_for_seq):
    for i in range(6):
        assert s.api("POST", "/api/v1/keys", {"name": "tk-%d" % i, "type": "AES"}).status_code == 201
    ev = all_events(s)
    target = ev[len(ev) // 2]["seq"]
    assert target < ev[-1]["seq"]
    rows = s.api("POST", "/api/v1/audit/verify").json()["rows"]
    s.stop()
    key = db_key_hex(s)
    # the key really opens the database (the tool is right)
    assert sqlcipher(s, key, "SELECT count(*) FROM audit;").strip().splitlines()[-1] == str(rows)
    sqlcipher(s, key, sql_for_seq(target))
    s.start()
    return target


def test_tamper_update_detected(server):
    s = server
    target = tamper_case(s, lambda q: "UPDATE audit SET detail = 'nothing to see' WHERE seq = %d;" % q)
    r = s.api("POST", "/api/v1/audit/verify")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["ok"] is False and d["first_bad_seq"] == target, d
    p = s.ctl("audit", "verify")
    assert p.returncode == 6, (p.returncode, p.stdout, p.stderr)


def test_tamper_delete_detected(server):
    s = server
    target = tamper_case(s, lambda q: "DELETE FROM audit WHERE seq = %d;" % q)
    d = s.api("POST", "/api/v1/audit/verify").json()
    # the chain breaks at the row after the missing one
    assert d["ok"] is False and d["first_bad_seq"] == target + 1, d
    p = s.ctl("audit", "verify")
    assert p.returncode == 6, (p.returncode, p.stdout, p.stderr)


def test_dbkey_tool_usage():
    p = subprocess.run([DBKEY], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "usage" in p.stderr


# ------------------------------------------------------- key-use audit in batches
# (issue 11: one append per group commit, bounded by retention, never silent)

import gzip
import json
import re
import shutil
import threading
import time
import uuid

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from test_xks import AKID, META, REGION, SECRET, SVC, TOML as XKS_TOML

EXPORT = "audit-export"


def xks_server(make_server, audit_toml="", flush_ms=None):
    env = {"KEYWARD_DB_AUDIT_FLUSH_MS": str(flush_ms)} if flush_ms is not None else None
    return make_server(extra_toml=XKS_TOML + "\n" + audit_toml, env=env)


def make_xks_key(s, name="bk"):
    r = s.api("POST", "/api/v1/keys", {"name": name, "type": "AES",
                                       "operations": ["encrypt", "decrypt"],
                                       "rules": {"xks": {"key_stores": ["default"]}}})
    assert r.status_code == 201, r.text


def presign(s, key, n, corr=None):
    """n signed XKS encrypts, each with its own random kmsRequestId (as AWS
    KMS sends): signing costs ~0.5 ms of Python, so it is done before the
    load, which then runs at the rate the server takes."""
    url = s.url + "/a/kms/xks/v1/keys/%s/encrypt" % key
    creds = Credentials(AKID, SECRET)
    out = []
    for i in range(n):
        rid = str(uuid.uuid4()) if corr is None else corr(i)
        body = json.dumps({"requestMetadata": dict(META, kmsRequestId=rid),
                           "plaintext": "a2V5d2FyZCBhdWRpdCB0ZXN0IHBsYWludGV4dA==",
                           "encryptionAlgorithm": "AES_GCM"}, separators=(",", ":")).encode()
        req = AWSRequest(method="POST", url=url, data=body,
                         headers={"Content-Type": "application/json"})
        SigV4Auth(creds, SVC, REGION).add_auth(req)
        out.append((url, body, dict(req.headers.items())))
    return out


def blast(s, reqs, rate=None, threads=8):
    """Sends the presigned requests on keep-alive sessions, paced to `rate`
    requests/s when given; returns (sent, seconds).  Every one must be 200."""
    lock = threading.Lock()
    state = {"next": 0, "fail": None}
    t0 = time.time()

    def worker():
        sess = requests.Session()
        while True:
            with lock:
                i = state["next"]
                if i >= len(reqs) or state["fail"]:
                    return
                state["next"] = i + 1
            if rate:
                due = t0 + i / rate
                d = due - time.time()
                if d > 0:
                    time.sleep(d)
            url, body, h = reqs[i]
            try:
                r = sess.post(url, data=body, headers=h, verify=s.cacert, timeout=30)
            except Exception as e:  # noqa: BLE001 - reported below, in the test's thread
                state["fail"] = repr(e)
                return
            if r.status_code != 200:
                state["fail"] = "%d %s" % (r.status_code, r.text[:200])
                return

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    assert state["fail"] is None, state["fail"]
    return len(reqs), time.time() - t0


def last_seq(s):
    r = s.api("POST", "/api/v1/audit/verify")
    assert r.status_code == 200 and r.json()["ok"] is True, r.text
    return r.json()["head"]["seq"]


def db_size(s, key=None):
    """The database file's size with its WAL folded in (the server stopped:
    the custody process leaves its WAL to the next start)."""
    if key is not None:
        sqlcipher(s, key, "PRAGMA wal_checkpoint(TRUNCATE);")
        wal = os.path.join(s.dir, "keyward.db-wal")
        assert not os.path.exists(wal) or os.path.getsize(wal) == 0
    return os.path.getsize(os.path.join(s.dir, "keyward.db"))


def test_key_use_audit_costs_under_40_bytes_a_record(make_server):
    """Bytes on disk per key-use record at AWS's default 1,800 requests/s per
    key store: the group commit of [db] audit_flush_ms = 50 ms then holds 90
    records.  A Python client reaches a few hundred a second, so the load is
    paced at 600/s with audit_flush_ms = 150: the same 90 records a commit.
    Measured as the growth of the database file (the WAL checkpointed into it:
    a stopped server leaves no -wal) over the records added."""
    s = xks_server(make_server, flush_ms=150).start()
    make_xks_key(s)
    reqs = presign(s, "bk", 12000)
    blast(s, reqs[:200])                 # warm: the tables have their first pages
    seq0 = last_seq(s)
    s.stop()
    key = db_key_hex(s)
    size0 = db_size(s, key)
    s.start()
    n, secs = blast(s, reqs[200:], rate=600)
    seq1 = last_seq(s)
    s.stop()
    size1 = db_size(s, key)
    records = seq1 - seq0
    assert records == n, (records, n)
    out = sqlcipher(s, key, "SELECT count(*) FROM audit_batch WHERE first_seq > %d;" % seq0)
    batches = int(out.strip().splitlines()[-1])
    per = (size1 - size0) / records
    print("key-use audit: %d records at %.0f/s in %d batches (%.1f a batch): %.1f bytes a record"
          % (records, n / secs, batches, records / batches, per))
    assert per <= 40, per
    # and one row per group commit, not per record
    assert batches < records / 20, (batches, records)


def test_batch_tamper_is_named_by_verify(make_server):
    """One byte of a stored batch changed by someone holding the database
    key: verify names the batch (its first seq and range), keywardctl says
    so and exits 6."""
    s = xks_server(make_server, flush_ms=20).start()
    make_xks_key(s)
    for part in range(3):
        blast(s, presign(s, "bk", 30), threads=1)
        time.sleep(0.1)          # separate group commits
    v = s.api("POST", "/api/v1/audit/verify").json()
    assert v["ok"] is True, v
    s.stop()
    key = db_key_hex(s)
    rows = sqlcipher(s, key, "SELECT first_seq, last_seq, hex(data) FROM audit_batch ORDER BY first_seq;")
    batches = [l.split("|") for l in rows.strip().splitlines() if re.match(r"^\d+\|", l)]
    assert len(batches) >= 3, rows
    first, last, data = batches[len(batches) // 2]
    raw = bytearray(bytes.fromhex(data))
    raw[len(raw) // 2] ^= 0x20
    sqlcipher(s, key, "UPDATE audit_batch SET data = X'%s' WHERE first_seq = %s;" % (raw.hex(), first))
    s.start()
    d = s.api("POST", "/api/v1/audit/verify").json()
    assert d["ok"] is False, d
    assert d["first_bad_seq"] == int(first), (d, first)
    assert d["first_bad_batch"] == {"first_seq": int(first), "last_seq": int(last)}, d
    p = s.ctl("audit", "verify")
    assert p.returncode == 6, (p.returncode, p.stdout, p.stderr)
    assert "batch of sequences %s-%s" % (first, last) in p.stdout, p.stdout


def all_events_between(s, after, until):
    out = []
    while True:
        doc = events(s, after=after, limit=1000)
        out += [e for e in doc["events"] if e["seq"] <= until]
        if doc["next"] is None or doc["next"] >= until:
            return out
        after = doc["next"]


def read_export(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        lines = [json.loads(l) for l in f.read().splitlines()]
    return lines[0], lines[1:-1], lines[-1]


def exports(s):
    d = os.path.join(s.dir, EXPORT)
    return sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".jsonl.gz"))


def status(s):
    r = s.api("GET", "/api/v1/status")
    assert r.status_code == 200, r.text
    return r.json()["custody"]["audit"]


RETAIN_ON_DEMAND = """
[audit]
max_bytes = 65536
export_dir = "%s"
check_interval_seconds = 3600
"""


def test_prune_exports_what_the_api_showed_and_verify_still_passes(make_server):
    """On demand (POST /api/v1/audit/prune): the oldest records go to a gzip
    JSON-lines file in export_dir whose records are exactly what GET
    /api/v1/audit showed, the file verifies offline (keywardctl audit
    verify-export) and a changed line in it does not; what remains verifies
    from the checkpoint, which is the file's last hash; the prune is itself
    audited; the newest 1,024 records stay."""
    s = make_server()
    export_dir = os.path.join(s.dir, EXPORT)
    with open(s.conf, "a") as f:
        f.write(XKS_TOML + RETAIN_ON_DEMAND % export_dir)
    s.start()
    make_xks_key(s)
    blast(s, presign(s, "bk", 2500))
    head = last_seq(s)
    shown = all_events_between(s, 0, head)
    assert [e["seq"] for e in shown] == list(range(1, head + 1))
    r = s.api("POST", "/api/v1/audit/prune")
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["pruned_records"] > 0 and doc["exported"], doc
    files = exports(s)
    assert [os.path.basename(f) for f in files] == [e["file"] for e in doc["exported"]]
    got = []
    prev_hash = "0" * 64
    for path in files:
        header, recs, end = read_export(path)
        assert header["keyward_audit_export"] == 1 and header["prev_hash"] == prev_hash, header
        assert end["keyward_audit_export_end"] == 1 and end["records"] == len(recs), end
        assert end["last_hash"] == recs[-1]["hash"] and end["last_seq"] == recs[-1]["seq"]
        assert os.path.basename(path).startswith("keyward-audit-%020d-%020d-%s" % (
            header["first_seq"], end["last_seq"], end["last_hash"][:16]))
        prev_hash = end["last_hash"]
        got += recs
        p = s.ctl("audit", "verify-export", path)
        assert p.returncode == 0, (p.stdout, p.stderr)
    pruned = doc["pruned_records"]
    assert [e["seq"] for e in got] == list(range(1, pruned + 1))
    for e, x in zip(shown, got):
        assert {k: x[k] for k in e} == e, (e, x)
    # what remains: from the checkpoint on
    st = status(s)
    assert st["checkpoint"] == {"seq": pruned, "hash": prev_hash}, st
    v = s.api("POST", "/api/v1/audit/verify").json()
    assert v["ok"] is True and v["checkpoint"] == {"seq": pruned, "hash": prev_hash}, v
    left = all_events_between(s, 0, 10 ** 12)
    assert left[0]["seq"] == pruned + 1
    assert left[-1]["action"] == "audit.prune" and left[-1]["actor"].startswith("token:"), left[-1]
    # the newest 1,024 records of the store as the prune found it stay: that
    # may end after head, with key uses whose records were queued after the
    # verify that read head (seen: 1,022 of head kept, 2 later ones)
    at_prune = max(e["seq"] for e in left if e["action"] != "audit.prune")
    assert at_prune >= head and at_prune - pruned >= 1024, (head, at_prune, pruned)
    assert os.path.basename(files[-1]) in left[-1]["detail"]
    assert s.ctl("audit", "verify").returncode == 0
    # pinned to the chain around it, and a tampered copy
    p = s.ctl("audit", "verify-export", files[-1], "--last-hash", prev_hash)
    assert p.returncode == 0, p.stdout + p.stderr
    p = s.ctl("audit", "verify-export", files[-1], "--last-hash", "1" * 64)
    assert p.returncode == 6, p.stdout
    header, recs, end = max((read_export(f) for f in files), key=lambda x: len(x[1]))
    assert len(recs) > 2, [len(read_export(f)[1]) for f in files]
    forged = len(recs) // 2
    recs[forged]["detail"] = "forged"
    bad = os.path.join(s.dir, "forged.jsonl.gz")
    with gzip.open(bad, "wt") as f:
        for o in [header] + recs + [end]:
            f.write(json.dumps(o, separators=(",", ":")) + "\n")
    p = s.ctl("audit", "verify-export", bad)
    assert p.returncode == 6 and "sequence %d" % recs[forged]["seq"] in p.stdout, p.stdout
    # an auditor may not prune
    tok = s.api("POST", "/api/v1/tokens", {"name": "aud", "role": "auditor"}).json()["token"]
    assert s.api("POST", "/api/v1/audit/prune", token=tok).status_code == 403


def metric(text, name):
    return promtext.value(text, name)


def health(s):
    r = requests.get(s.url + "/healthz", verify=s.cacert, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def full_log(s):
    """The whole log (Server.logs() keeps only its end)."""
    with open(s.log_path, "rb") as f:
        return f.read().decode(errors="replace")


def degraded(s):
    """The /healthz document when it lists warnings, else None."""
    h = health(s)
    return h if h.get("warnings") else None


def wait_for(pred, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError("timed out waiting for " + what)


def test_retention_bounds_the_database_by_itself(make_server):
    """The periodic cycle (check_interval_seconds = 1) keeps the database
    under max_bytes while key uses go on: files chain one to the next, the
    last one ends at the checkpoint, verify passes, /metrics counts it."""
    s = make_server()
    export_dir = os.path.join(s.dir, EXPORT)
    max_bytes = 400 * 1024
    with open(s.conf, "a") as f:
        f.write(XKS_TOML + "\n[audit]\nmax_bytes = %d\nexport_dir = \"%s\"\n"
                "check_interval_seconds = 1\n" % (max_bytes, export_dir))
    s.start()
    make_xks_key(s)
    reqs = presign(s, "bk", 16000)
    for i in range(0, len(reqs), 4000):
        blast(s, reqs[i:i + 4000], rate=800)
        assert status(s)["db_bytes"] <= max_bytes * 1.2, status(s)
    wait_for(lambda: exports(s), what="an export")
    wait_for(lambda: status(s)["db_bytes"] <= max_bytes * 0.9, what="the bound")

    def settled():
        # a cycle that began before the bound was met may still be between
        # its export's rename and its prune's commit: wait for the two to agree
        files = exports(s)
        prev = "0" * 64
        for path in files:
            header, recs, end = read_export(path)
            assert header["prev_hash"] == prev, path
            prev = end["last_hash"]
        st = status(s)
        if st["checkpoint"]["hash"] == prev and st["retention"]["exports"] == len(files):
            return files, st
        return None
    files, st = wait_for(settled, what="the last export's hash at the checkpoint")
    assert s.api("POST", "/api/v1/audit/verify").json()["ok"] is True
    text = requests.get(s.url + "/metrics", verify=s.cacert, timeout=10).text
    assert metric(text, "keyward_custody_audit_exports_total") == len(files)
    # every record up to the checkpoint was pruned, and a good part of the load
    pruned = metric(text, "keyward_custody_audit_pruned_records_total")
    assert pruned == st["checkpoint"]["seq"] and pruned > len(reqs) / 4, (pruned, st)
    assert metric(text, "keyward_custody_db_bytes") <= max_bytes
    assert metric(text, "keyward_custody_disk_free_bytes") > 0
    assert metric(text, "keyward_custody_audit_records") >= 1024
    assert health(s) == {"status": "ok"}
    s.stop()
    # the file stays under the bound too (free pages are reused)
    size = db_size(s, db_key_hex(s))
    assert size <= max_bytes * 1.25, size


def test_export_failure_is_loud_and_key_uses_go_on(make_server):
    """export_dir missing: nothing is pruned, key uses are still served and
    audited, /healthz says degraded (still 200), /metrics counts the
    failures, the log says it once; when the directory appears the next
    cycle exports and the warning clears, with one line."""
    s = make_server()
    missing = os.path.join(s.dir, "not-yet")
    with open(s.conf, "a") as f:
        f.write(XKS_TOML + "\n[audit]\nmax_bytes = 65536\nexport_dir = \"%s\"\n"
                "check_interval_seconds = 1\n" % missing)
    s.start()
    make_xks_key(s)
    blast(s, presign(s, "bk", 1500))
    h = wait_for(lambda: "audit_export_failing" in (degraded(s) or {}).get("warnings", []) and health(s),
                 what="the export failure warning")
    assert h["status"] == "degraded" and "audit_export_failing" in h["warnings"], h
    text = requests.get(s.url + "/metrics", verify=s.cacert, timeout=10).text
    assert metric(text, "keyward_custody_audit_export_failures_total") >= 1
    assert metric(text, "keyward_custody_audit_warning_audit_export_failing") == 1
    st = status(s)
    assert any(w["code"] == "audit_export_failing" and "not-yet" in w["message"]
               for w in st["warnings"]), st
    blast(s, presign(s, "bk", 200))          # still served, still audited
    v = s.api("POST", "/api/v1/audit/verify").json()
    assert v["ok"] is True and "checkpoint" not in v, v
    assert s.api("POST", "/api/v1/audit/prune").status_code >= 500
    time.sleep(2.5)                           # more failing cycles: still one line
    log = full_log(s)
    assert log.count('"audit_export_failed"') == 1, log
    assert log.count('"event":"audit_warning","warning":"audit_export_failing"') == 1, log
    os.mkdir(missing, 0o700)
    if os.geteuid() == 0:
        shutil.chown(missing, "keyward-custody", "keyward-custody")
    # (max_bytes is below what the newest 1,024 records take: audit_over_bound
    # may stay, which is not what this test is about)
    wait_for(lambda: "audit_export_failing" not in health(s).get("warnings", []),
             what="the warning to clear")
    assert exports(s) == [] and os.listdir(missing)
    # the line follows the state /healthz reads, through the log writer's
    # queue (log.h): it may come a moment after the warning cleared
    wait_for(lambda: '"event":"audit_warning_cleared","warning":"audit_export_failing"'
             in full_log(s), timeout=10, what="the cleared line")


def test_low_disk_and_unfitting_bound_are_warned(make_server):
    """Warnings long before the volume fills: warn_free_percent above what
    is free, a max_bytes the file system cannot hold."""
    s = make_server()
    with open(s.conf, "a") as f:
        f.write("\n[audit]\nmax_bytes = %d\nexport_dir = \"%s\"\nwarn_free_percent = 99\n"
                "check_interval_seconds = 1\n" % (1 << 49, os.path.join(s.dir, EXPORT)))
    s.start()
    h = wait_for(lambda: degraded(s), what="warnings")
    assert h["status"] == "degraded"
    assert set(h["warnings"]) == {"disk_space_low", "audit_bound_exceeds_disk"}, h
    text = requests.get(s.url + "/metrics", verify=s.cacert, timeout=10).text
    assert metric(text, "keyward_custody_audit_warning_disk_space_low") == 1
    assert metric(text, "keyward_custody_audit_warning_audit_bound_exceeds_disk") == 1
    assert metric(text, "keyward_custody_audit_warning_audit_export_failing") == 0
    assert 0 < metric(text, "keyward_custody_disk_free_bytes") < metric(text, "keyward_custody_disk_size_bytes")
    time.sleep(2)
    assert full_log(s).count('"disk_space_low"') == 1, full_log(s)
