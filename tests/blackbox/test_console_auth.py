"""Console sign-in: sessions (cookie + CSRF), console users, lockout, the
last-admin rule, and what reaches the logs and the audit (docs/api.md
"Sessions", "Users")."""
import json
import os
import re
import shutil
import tempfile
import time

import pytest
import requests

from conftest import Server

COOKIE = "__Host-keyward_session"
SET_COOKIE_RE = re.compile(
    r"^__Host-keyward_session=([A-Za-z0-9_-]{43}); Path=/; Secure; HttpOnly; SameSite=Strict$")
CLEAR_COOKIE = "__Host-keyward_session=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0"
PW = {"alice": "alice-password-1", "olga": "olga-password-22", "audrey": "audrey-password-333"}
SECRETS = []   # every password, session id and CSRF token the tests saw


def console_env(**kw):
    env = {"KEYWARD_CONSOLE_LOGIN_MAX_FAILURES": "3",
           "KEYWARD_CONSOLE_LOCKOUT_SECONDS": "60",
           "KEYWARD_CONSOLE_LOCKOUT_MAX_SECONDS": "600"}
    env.update({"KEYWARD_CONSOLE_" + k.upper(): str(v) for k, v in kw.items()})
    return env


@pytest.fixture(scope="module")
def srv():
    d = tempfile.mkdtemp(prefix="kw-bb-console-")
    s = Server(d, env=console_env()).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def req(s, method, path, body=None, sid=None, csrf=None, headers=None, bearer=None):
    h = {}
    if sid is not None:
        h["Cookie"] = "theme=dark; %s=%s; other=1" % (COOKIE, sid)
    if csrf is not None:
        h["X-CSRF-Token"] = csrf
    if bearer is not None:
        h["Authorization"] = "Bearer " + bearer
    data = None
    if body is not None:
        data = json.dumps(body)
        h["Content-Type"] = "application/json"
    if headers:
        h.update(headers)
    return requests.request(method, s.url + path, data=data, headers=h, verify=s.cacert,
                            timeout=30)


def sign_in(s, body, status=201):
    r = req(s, "POST", "/api/v1/session", body)
    assert r.status_code == status, (r.status_code, r.text)
    if status != 201:
        return r
    m = SET_COOKIE_RE.match(r.headers["Set-Cookie"])
    assert m, r.headers["Set-Cookie"]
    doc = r.json()
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", doc["csrf"])
    SECRETS.extend([m.group(1), doc["csrf"]])
    return m.group(1), doc


def err(r, status, name):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"] == name, r.text
    return r.json()


def make_user(s, name, role, password=None):
    password = password or PW[name]
    SECRETS.append(password)
    r = s.api("POST", "/api/v1/users", {"name": name, "role": role, "password": password})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d == {"name": name, "role": role, "created": d["created"], "last_login": None,
                 "failed_logins": 0, "locked_until": None}
    return d


def audit(s, action):
    r = s.api("GET", "/api/v1/audit?action=%s&limit=1000" % action)
    assert r.status_code == 200, r.text
    return r.json()["events"]


def key_exists(s, name):
    return s.api("GET", "/api/v1/keys/" + name).status_code == 200


# ---------------------------------------------------------------- sign-in


def test_sign_in_with_token(srv):
    sid, doc = sign_in(srv, {"token": srv.token})
    assert doc["kind"] == "token" and doc["role"] == "admin" and doc["name"] == "initial-admin"
    assert doc["principal"].startswith("token:") and doc["principal"].endswith("(initial-admin)")
    assert doc["idle_timeout_seconds"] == 900
    assert doc["created"].endswith("Z") and doc["expires"] > doc["created"]
    r = req(srv, "GET", "/api/v1/session", sid=sid)
    assert r.status_code == 200, r.text
    assert r.json() == doc   # a reloaded page gets its CSRF token back
    assert req(srv, "GET", "/api/v1/keys", sid=sid).status_code == 200
    err(sign_in(srv, {"token": "kw_not-a-token"}, 401), 401, "unauthenticated")


def test_sign_in_with_password_and_wrong_ones(srv):
    make_user(srv, "olga", "operator")
    sid, doc = sign_in(srv, {"user": "olga", "password": PW["olga"]})
    assert doc["principal"] == "user:olga" and doc["kind"] == "user" and doc["role"] == "operator"
    r = req(srv, "POST", "/api/v1/keys", {"name": "olga-key", "type": "AES"}, sid=sid,
            csrf=doc["csrf"])
    assert r.status_code == 201, r.text
    ev = [e for e in audit(srv, "key.create") if e["key"] == "olga-key"]
    assert ev and ev[0]["actor"] == "user:olga"
    m1 = err(sign_in(srv, {"user": "olga", "password": "wrong-password-1"}, 401), 401,
             "unauthenticated")["message"]
    m2 = err(sign_in(srv, {"user": "nobody", "password": "wrong-password-1"}, 401), 401,
             "unauthenticated")["message"]
    assert m1 == m2 and "wrong user name or password" in m1
    users = {u["name"]: u for u in srv.api("GET", "/api/v1/users").json()["users"]}
    assert users["olga"]["last_login"] is not None
    assert users["olga"]["failed_logins"] == 1
    # bad bodies
    err(sign_in(srv, {"user": "olga"}, 400), 400, "missing_field")
    err(sign_in(srv, {"token": srv.token, "user": "olga", "password": "x" * 12}, 400), 400,
        "bad_field")
    err(sign_in(srv, {"user": "olga", "password": "p" * 12, "role": "admin"}, 400), 400,
        "bad_field")


def test_sign_in_flood_is_refused_not_queued(srv):
    """At most 2 argon2id checks run and 2 wait; the others are refused at
    once (429 overload, Retry-After) and counted against nobody, and key
    operations go on meanwhile."""
    from concurrent.futures import ThreadPoolExecutor
    make_user(srv, "flood", "auditor", "flood-password-44")
    n = 12
    with ThreadPoolExecutor(max_workers=n + 1) as ex:
        futs = [ex.submit(req, srv, "POST", "/api/v1/session",
                          {"user": "flood" if i % 2 else "ghost-%d" % i,
                           "password": "wrong-password-%d" % i}) for i in range(n)]
        side = ex.submit(srv.api, "POST", "/api/v1/keys", {"name": "flood-side", "type": "AES"})
        got = [f.result() for f in futs]
        assert side.result().status_code == 201, side.result().text
    codes = sorted(r.status_code for r in got)
    assert set(codes) <= {401, 429}, codes
    over = [r for r in got if r.status_code == 429]
    assert over, "a flood of %d sign-ins was all queued: %s" % (n, codes)
    for r in over:
        assert r.json()["error"] in ("overload", "locked"), r.text
        assert r.headers.get("Retry-After"), r.headers
    denied = [r for i, r in enumerate(got) if i % 2 and r.status_code == 401]
    locked = [r for i, r in enumerate(got) if i % 2 and r.status_code == 429 and
              r.json()["error"] == "locked"]
    users = {u["name"]: u for u in srv.api("GET", "/api/v1/users").json()["users"]}
    # only checks that ran count as failures (an overload is not a wrong password;
    # a refusal of an account already locked is no check either)
    assert len(denied) <= users["flood"]["failed_logins"] <= len(denied) + len(locked)


def test_user_create_refuses_bad_input(srv):
    for body in ({"name": "bad name", "role": "admin", "password": "long-enough-pw"},
                 {"name": "u1", "role": "root", "password": "long-enough-pw"},
                 {"name": "u1", "role": "admin", "password": "short"},
                 {"name": "u1", "role": "admin", "password": "tab\there-and-more"},
                 {"name": "u1", "role": "admin", "password": "x" * 129}):
        r = srv.api("POST", "/api/v1/users", body)
        assert r.status_code == 400, (body, r.text)
    assert srv.api("POST", "/api/v1/users", {"name": "olga", "role": "admin",
                                             "password": "long-enough-pw"}).status_code in (409,)


def test_lockout_back_off_and_restart(make_server):
    s = make_server(env=console_env()).start()
    make_user(s, "alice", "admin")
    for _ in range(2):
        err(sign_in(s, {"user": "alice", "password": "wrong-password-x"}, 401), 401,
            "unauthenticated")
    r = sign_in(s, {"user": "alice", "password": "wrong-password-x"}, 429)
    err(r, 429, "locked")
    assert int(r.headers["Retry-After"]) in range(55, 61)
    assert "seconds" in r.json()["message"]
    # the right password while locked: refused, and no reset
    r = sign_in(s, {"user": "alice", "password": PW["alice"]}, 429)
    assert 0 < int(r.headers["Retry-After"]) <= 60
    u = [u for u in s.api("GET", "/api/v1/users").json()["users"] if u["name"] == "alice"][0]
    assert u["failed_logins"] == 3 and u["locked_until"] is not None
    # kept in the database: a restart does not lift it
    s.stop()
    s.start()
    r = sign_in(s, {"user": "alice", "password": PW["alice"]}, 429)
    assert 0 < int(r.headers["Retry-After"]) <= 60
    results = [e["result"] for e in audit(s, "session.login") if e["actor"] == "user:alice"]
    assert results == ["denied", "denied", "denied", "locked", "locked"]
    # an admin's new password lifts the lock; success resets the count
    new = "alice-new-password"
    SECRETS.append(new)
    r = s.api("POST", "/api/v1/users/alice/password", {"password": new})
    assert r.status_code == 200 and r.json()["failed_logins"] == 0, r.text
    sign_in(s, {"user": "alice", "password": new})


def test_back_off_doubles(make_server):
    s = make_server(env=console_env(lockout_seconds=1, login_max_failures=1)).start()
    make_user(s, "alice", "admin")
    r = sign_in(s, {"user": "alice", "password": "wrong-password-x"}, 429)
    assert r.headers["Retry-After"] == "1"
    time.sleep(1.2)
    r = sign_in(s, {"user": "alice", "password": "wrong-password-x"}, 429)
    assert r.headers["Retry-After"] == "2"
    time.sleep(2.2)
    sign_in(s, {"user": "alice", "password": PW["alice"]})


def test_idle_and_absolute_timeout(make_server):
    s = make_server(env=console_env(session_idle_seconds=2, session_max_seconds=5)).start()
    sid, doc = sign_in(s, {"token": s.token})
    assert doc["idle_timeout_seconds"] == 2
    for _ in range(4):        # used every 1.2 s: the idle time starts again each time
        time.sleep(1.2)
        assert req(s, "GET", "/api/v1/keys", sid=sid).status_code == 200
    time.sleep(1.2)           # 6 s after sign-in: past the absolute lifetime
    err(req(s, "GET", "/api/v1/keys", sid=sid), 401, "unauthenticated")
    sid, _ = sign_in(s, {"token": s.token})
    time.sleep(2.5)
    err(req(s, "GET", "/api/v1/session", sid=sid), 401, "unauthenticated")


# ------------------------------------------------------------------ CSRF


def test_csrf_missing_or_wrong_changes_nothing(srv):
    sid, doc = sign_in(srv, {"token": srv.token})
    body = {"name": "csrf-key", "type": "AES"}
    err(req(srv, "POST", "/api/v1/keys", body, sid=sid), 403, "csrf")
    err(req(srv, "POST", "/api/v1/keys", body, sid=sid, csrf="A" * 43), 403, "csrf")
    err(req(srv, "POST", "/api/v1/keys", body, sid=sid, csrf=doc["csrf"][:-1]), 403, "csrf")
    assert not key_exists(srv, "csrf-key")
    err(req(srv, "DELETE", "/api/v1/session", sid=sid), 403, "csrf")
    assert req(srv, "GET", "/api/v1/session", sid=sid).status_code == 200
    # cross-site, even a GET
    err(req(srv, "GET", "/api/v1/keys", sid=sid, headers={"Sec-Fetch-Site": "cross-site"}), 403,
        "csrf")
    err(req(srv, "POST", "/api/v1/keys", body, sid=sid, csrf=doc["csrf"],
            headers={"Sec-Fetch-Site": "cross-site"}), 403, "csrf")
    assert not key_exists(srv, "csrf-key")
    r = req(srv, "POST", "/api/v1/keys", body, sid=sid, csrf=doc["csrf"],
            headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 201, r.text


def test_bearer_wins_over_cookie_and_bad_cookies(srv):
    make_user(srv, "audrey", "auditor")
    sid, _ = sign_in(srv, {"user": "audrey", "password": PW["audrey"]})
    # the auditor's cookie and the admin's token: the token decides, no CSRF needed
    r = req(srv, "POST", "/api/v1/keys", {"name": "bearer-key", "type": "AES"}, sid=sid,
            bearer=srv.token)
    assert r.status_code == 201, r.text
    for cookie in ("%s=%s" % (COOKIE, sid[:-1]), "%s=%s; %s=%s" % (COOKIE, sid, COOKIE, sid),
                   "keyward_session=%s" % sid, "%s=%s!" % (COOKIE, sid[:-1])):
        err(req(srv, "GET", "/api/v1/keys", headers={"Cookie": cookie}), 401, "unauthenticated")


def test_auditor_session_cannot_change_anything(srv):
    make_user(srv, "audrey2", "auditor", "audrey2-password")
    sid, doc = sign_in(srv, {"user": "audrey2", "password": "audrey2-password"})
    c = doc["csrf"]
    assert req(srv, "GET", "/api/v1/keys", sid=sid).status_code == 200
    err(req(srv, "POST", "/api/v1/keys", {"name": "aud-key", "type": "AES"}, sid=sid, csrf=c),
        403, "forbidden")
    err(req(srv, "GET", "/api/v1/users", sid=sid), 403, "forbidden")
    err(req(srv, "DELETE", "/api/v1/users/olga", sid=sid, csrf=c), 403, "forbidden")
    err(req(srv, "POST", "/api/v1/users/olga/password", {"password": "auditor-sets-this"},
            sid=sid, csrf=c), 403, "forbidden")
    err(req(srv, "POST", "/api/v1/tokens", {"name": "aud-t", "role": "admin"}, sid=sid, csrf=c),
        403, "forbidden")
    assert not key_exists(srv, "aud-key")
    # its own password it may change; its other sessions end, this one goes on
    sid2, _ = sign_in(srv, {"user": "audrey2", "password": "audrey2-password"})
    SECRETS.append("audrey2-new-password")
    r = req(srv, "POST", "/api/v1/users/audrey2/password", {"password": "audrey2-new-password"},
            sid=sid, csrf=c)
    assert r.status_code == 200, r.text
    assert req(srv, "GET", "/api/v1/session", sid=sid).status_code == 200
    err(req(srv, "GET", "/api/v1/session", sid=sid2), 401, "unauthenticated")


# ------------------------------------------------------------- ending sessions


def test_sign_out_ends_every_session_of_the_account(srv):
    make_user(srv, "carol", "operator", "carol-password-1")
    a, da = sign_in(srv, {"user": "carol", "password": "carol-password-1"})
    b, _ = sign_in(srv, {"user": "carol", "password": "carol-password-1"})
    other, _ = sign_in(srv, {"user": "olga", "password": PW["olga"]})
    r = req(srv, "DELETE", "/api/v1/session", sid=a, csrf=da["csrf"])
    assert r.status_code == 200, r.text
    assert r.json() == {"ended": 2}
    assert r.headers["Set-Cookie"] == CLEAR_COOKIE
    err(req(srv, "GET", "/api/v1/session", sid=b), 401, "unauthenticated")
    err(req(srv, "GET", "/api/v1/session", sid=a), 401, "unauthenticated")
    assert req(srv, "GET", "/api/v1/session", sid=other).status_code == 200
    ev = [e for e in audit(srv, "session.logout") if e["actor"] == "user:carol"]
    assert ev and ev[-1]["result"] == "ok" and "2 sessions" in ev[-1]["detail"]


def test_token_revoke_and_user_delete_end_sessions(srv):
    r = srv.api("POST", "/api/v1/tokens", {"name": "op-session", "role": "operator"})
    assert r.status_code == 201
    tok = r.json()
    SECRETS.append(tok["token"])
    sid, doc = sign_in(srv, {"token": tok["token"]})
    assert doc["principal"] == "token:%s(op-session)" % tok["id"] and doc["role"] == "operator"
    assert srv.api("DELETE", "/api/v1/tokens/" + tok["id"]).status_code == 200
    err(req(srv, "GET", "/api/v1/keys", sid=sid), 401, "unauthenticated")
    err(sign_in(srv, {"token": tok["token"]}, 401), 401, "unauthenticated")

    make_user(srv, "dave", "operator", "dave-password-1")
    sid, _ = sign_in(srv, {"user": "dave", "password": "dave-password-1"})
    r = srv.api("DELETE", "/api/v1/users/dave")
    assert r.status_code == 200 and r.json()["name"] == "dave", r.text
    err(req(srv, "GET", "/api/v1/keys", sid=sid), 401, "unauthenticated")
    err(srv.api("DELETE", "/api/v1/users/dave"), 404, "not_found")


def test_last_admin_cannot_be_removed(make_server):
    s = make_server(env=console_env()).start()
    make_user(s, "alice", "admin")
    sid, doc = sign_in(s, {"user": "alice", "password": PW["alice"]})
    c = doc["csrf"]
    first = s.api("GET", "/api/v1/tokens").json()["tokens"][0]["id"]
    # alice is an admin: the only admin token may go
    r = req(s, "DELETE", "/api/v1/tokens/" + first, sid=sid, csrf=c)
    assert r.status_code == 200, r.text
    # now alice is the last admin credential
    r = req(s, "DELETE", "/api/v1/users/alice", sid=sid, csrf=c)
    err(r, 409, "bad_state")
    assert "last admin" in r.json()["message"]
    assert req(s, "GET", "/api/v1/session", sid=sid).status_code == 200
    r = req(s, "GET", "/api/v1/users", sid=sid)
    assert [u["name"] for u in r.json()["users"]] == ["alice"]
    # with another admin, it can
    r = req(s, "POST", "/api/v1/users", {"name": "bob", "role": "admin",
                                         "password": "bob-password-12"}, sid=sid, csrf=c)
    assert r.status_code == 201, r.text
    assert req(s, "DELETE", "/api/v1/users/alice", sid=sid, csrf=c).status_code == 200
    err(req(s, "GET", "/api/v1/session", sid=sid), 401, "unauthenticated")


def test_console_disabled_answers_no_route(make_server):
    s = make_server(env={"KEYWARD_CONSOLE_ENABLE": "false"}).start()
    err(req(s, "POST", "/api/v1/session", {"token": s.token}), 404, "no_route")
    err(req(s, "GET", "/api/v1/session"), 404, "no_route")
    err(s.api("GET", "/api/v1/users"), 404, "no_route")
    err(s.api("POST", "/api/v1/users", {"name": "a", "role": "admin", "password": "x" * 12}),
        404, "no_route")
    assert s.api("GET", "/api/v1/keys").status_code == 200


def test_keywardctl_user_commands(srv):
    import subprocess
    from conftest import KEYWARDCTL
    env = dict(os.environ, KEYWARD_URL=srv.url, KEYWARD_CACERT=srv.cacert,
               KEYWARD_TOKEN_FILE=os.path.join(srv.dir, "admin.token"))

    def ctl(*args, stdin=""):
        return subprocess.run([KEYWARDCTL] + list(args), env=env, input=stdin,
                              capture_output=True, text=True, timeout=30)

    SECRETS.extend(["erin-password-stdin", "erin-password-file"])
    p = ctl("user", "create", "erin", "--role", "operator", stdin="erin-password-stdin\n")
    assert p.returncode == 0, p.stderr
    sign_in(srv, {"user": "erin", "password": "erin-password-stdin"})
    p = ctl("user", "list")
    assert p.returncode == 0 and "erin" in p.stdout and "operator" in p.stdout, p.stdout
    pwfile = os.path.join(srv.dir, "erin.pw")
    with open(pwfile, "w") as f:
        f.write("erin-password-file\n")
    p = ctl("user", "passwd", "erin", "--password-file", pwfile)
    assert p.returncode == 0, p.stderr
    sign_in(srv, {"user": "erin", "password": "erin-password-file"})
    err(sign_in(srv, {"user": "erin", "password": "erin-password-stdin"}, 401), 401,
        "unauthenticated")
    p = ctl("user", "create", "frank", "--role", "operator", stdin="short\n")
    assert p.returncode == 1 and "bad_field" in p.stderr + p.stdout or p.returncode != 0
    p = ctl("user", "delete", "erin")
    assert p.returncode == 0, p.stderr
    assert "erin" not in ctl("user", "list").stdout


# -------------------------------------------------------------- audit and logs


def test_audit_rows_and_no_secret_in_logs(srv):
    logins = audit(srv, "session.login")
    by = {(e["actor"], e["result"]) for e in logins}
    assert ("user:olga", "ok") in by and ("user:olga", "denied") in by
    assert ("user:nobody", "denied") in by
    assert ("token:unknown", "denied") in by
    assert any(e["actor"].startswith("token:") and e["actor"].endswith("(initial-admin)")
               and e["result"] == "ok" for e in logins)
    for e in logins:
        assert e["detail"].startswith(("password, from ", "token, from ")), e
        assert "127.0.0.1" in e["detail"], e
    creates = {e["detail"] for e in audit(srv, "user.create")}
    assert "olga (role operator)" in creates
    assert any(e["detail"] == "dave" for e in audit(srv, "user.delete"))
    assert any(e["actor"] == "user:audrey2" for e in audit(srv, "user.password"))
    everything = json.dumps(srv.api("GET", "/api/v1/audit?limit=1000").json())
    with open(srv.log_path, "rb") as f:
        logs = f.read().decode(errors="replace")
    assert "session.create" in logs or "admin.session.create" in logs
    for secret in SECRETS + list(PW.values()):
        assert secret not in logs, secret
        assert secret not in everything, secret

