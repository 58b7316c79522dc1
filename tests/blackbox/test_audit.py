"""The audit trail: what admins do is recorded with the actor, pages
correctly, and verifies; tampering with the database (by someone holding the
database key) is detected at the right row."""
import os
import subprocess

import pytest

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
