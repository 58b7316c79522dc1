"""Admin API authentication and roles: bearer tokens, admin/operator/auditor."""
import os
import shutil
import stat
import tempfile

import pytest
import requests

from conftest import Server


@pytest.fixture(scope="module")
def srv():
    d = tempfile.mkdtemp(prefix="kw-bb-auth-")
    s = Server(d).start()
    r = s.api("POST", "/api/v1/keys", {"name": "auth-key", "type": "AES"})
    assert r.status_code == 201, r.text
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def assert_err(r, status, name):
    assert r.status_code == status, (r.status_code, r.text)
    doc = r.json()
    assert doc["error"] == name, doc
    assert doc.get("message"), doc
    return doc


def key_names(s):
    r = s.api("GET", "/api/v1/keys?limit=1000")
    assert r.status_code == 200, r.text
    return sorted(k["name"] for k in r.json()["keys"])


def tokens(s):
    r = s.api("GET", "/api/v1/tokens")
    assert r.status_code == 200, r.text
    return r.json()["tokens"]


_n = [0]


def new_token(s, role):
    _n[0] += 1
    name = "%s-%d" % (role, _n[0])
    r = s.api("POST", "/api/v1/tokens", {"name": name, "role": role})
    assert r.status_code == 201, r.text
    d = r.json()
    assert d["name"] == name and d["role"] == role
    assert d["token"].startswith("kw_") and len(d["token"]) >= 40
    assert d["id"] and d.get("revoked") is None
    return d


def test_token_file_mode_0600(srv):
    st = os.stat(os.path.join(srv.dir, "admin.token"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert srv.token.startswith("kw_")


def test_no_token_401(srv):
    before = key_names(srv)
    r = requests.get(srv.url + "/api/v1/keys", verify=srv.cacert, timeout=30)
    assert_err(r, 401, "unauthenticated")
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    r = srv.api("POST", "/api/v1/keys", {"name": "noauth", "type": "AES"}, token="")
    assert_err(r, 401, "unauthenticated")
    assert key_names(srv) == before


@pytest.mark.parametrize("header", [
    "Bearer kw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "Bearer ",
    "Bearer",
    "Basic YWRtaW46YWRtaW4=",
    "bearer kw_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "Bearer kw_x y",
    "Bearer " + "A" * 600,
])
def test_bad_token_401(srv, header):
    before = key_names(srv)
    for method, path, body in [("GET", "/api/v1/keys", None),
                               ("POST", "/api/v1/keys", {"name": "badtok", "type": "AES"}),
                               ("GET", "/api/v1/tokens", None)]:
        r = srv.api(method, path, body, headers={"Authorization": header})
        assert_err(r, 401, "unauthenticated")
        assert r.headers.get("WWW-Authenticate", "").startswith("Bearer"), r.headers
    assert key_names(srv) == before


def test_admin_token_case_insensitive_scheme(srv):
    r = srv.api("GET", "/api/v1/keys", headers={"Authorization": "bearer " + srv.token})
    assert r.status_code == 200, r.text


def test_wrong_token_says_invalid_token(srv):
    r = srv.api("GET", "/api/v1/keys", token="kw_" + "B" * 43)
    assert_err(r, 401, "unauthenticated")
    assert 'error="invalid_token"' in r.headers.get("WWW-Authenticate", "")


@pytest.mark.parametrize("role", ["admin", "operator", "auditor"])
def test_token_create_each_role(srv, role):
    d = new_token(srv, role)
    r = srv.api("GET", "/api/v1/keys", token=d["token"])
    assert r.status_code == 200, r.text
    listed = {t["id"]: t for t in tokens(srv)}
    assert listed[d["id"]]["role"] == role
    assert listed[d["id"]]["name"] == d["name"]


def test_tokens_shown_once(srv):
    d = new_token(srv, "operator")
    r = srv.api("GET", "/api/v1/tokens")
    assert r.status_code == 200
    assert d["token"] not in r.text
    assert srv.token not in r.text
    for t in r.json()["tokens"]:
        assert "token" not in t and "hash" not in t and "secret" not in t, t
        assert set(t) >= {"id", "name", "role", "created", "revoked"}
    assert "initial-admin" in [t["name"] for t in r.json()["tokens"]]


def test_revoked_token_401(srv):
    d = new_token(srv, "operator")
    assert srv.api("GET", "/api/v1/keys", token=d["token"]).status_code == 200
    r = srv.api("DELETE", "/api/v1/tokens/" + d["id"])
    assert r.status_code == 200, r.text
    assert r.json()["revoked"] is True
    before = key_names(srv)
    r = srv.api("GET", "/api/v1/keys", token=d["token"])
    assert_err(r, 401, "unauthenticated")
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer")
    r = srv.api("POST", "/api/v1/keys", {"name": "revoked", "type": "AES"}, token=d["token"])
    assert_err(r, 401, "unauthenticated")
    assert key_names(srv) == before
    listed = {t["id"]: t for t in tokens(srv)}
    assert listed[d["id"]]["revoked"] is not None


def test_revoke_unknown_token_404(srv):
    before = tokens(srv)
    assert_err(srv.api("DELETE", "/api/v1/tokens/0123456789abcdef"), 404, "not_found")
    assert tokens(srv) == before


@pytest.mark.parametrize("body,status,err", [
    ({"name": "x", "role": "root"}, 400, "bad_field"),
    ({"name": "x"}, 400, "missing_field"),
    ({"role": "admin"}, 400, "missing_field"),
    ({"name": "a b", "role": "admin"}, 400, "bad_name"),
    ({"name": "x", "role": "admin", "expires": 5}, 400, "bad_field"),
    ({"name": "initial-admin", "role": "admin"}, 409, "exists"),
])
def test_token_create_errors(srv, body, status, err):
    before = tokens(srv)
    assert_err(srv.api("POST", "/api/v1/tokens", body), status, err)
    assert tokens(srv) == before


def test_auditor_reads_but_cannot_change(srv):
    aud = new_token(srv, "auditor")["token"]
    before = key_names(srv)
    get = srv.api("GET", "/api/v1/keys/auth-key").json()
    # reads
    assert srv.api("GET", "/api/v1/keys", token=aud).status_code == 200
    r = srv.api("GET", "/api/v1/keys/auth-key", token=aud)
    assert r.status_code == 200 and r.json()["name"] == "auth-key"
    r = srv.api("GET", "/api/v1/audit", token=aud)
    assert r.status_code == 200 and isinstance(r.json()["events"], list)
    r = srv.api("POST", "/api/v1/audit/verify", token=aud)
    assert r.status_code == 200 and r.json()["ok"] is True
    assert srv.api("GET", "/api/v1/status", token=aud).status_code == 200
    # writes
    assert_err(srv.api("POST", "/api/v1/keys", {"name": "aud-k", "type": "AES"}, token=aud),
               403, "forbidden")
    for op in ("disable", "rotate", "schedule-deletion"):
        assert_err(srv.api("POST", "/api/v1/keys/auth-key/" + op, token=aud), 403, "forbidden")
    assert_err(srv.api("PATCH", "/api/v1/keys/auth-key", {"tags": {"x": "y"}}, token=aud), 403,
               "forbidden")
    assert_err(srv.api("GET", "/api/v1/tokens", token=aud), 403, "forbidden")
    assert_err(srv.api("POST", "/api/v1/tokens", {"name": "aud-made", "role": "admin"}, token=aud),
               403, "forbidden")
    assert key_names(srv) == before
    assert srv.api("GET", "/api/v1/keys/auth-key").json() == get


def test_operator_manages_keys_not_tokens(srv):
    op = new_token(srv, "operator")["token"]
    r = srv.api("POST", "/api/v1/keys", {"name": "op-key", "type": "AES"}, token=op)
    assert r.status_code == 201, r.text
    assert srv.api("POST", "/api/v1/keys/op-key/rotate", token=op).json()["current_version"] == 2
    before = tokens(srv)
    assert_err(srv.api("GET", "/api/v1/tokens", token=op), 403, "forbidden")
    assert_err(srv.api("POST", "/api/v1/tokens", {"name": "op-made", "role": "admin"}, token=op),
               403, "forbidden")
    assert_err(srv.api("DELETE", "/api/v1/tokens/" + before[0]["id"], token=op), 403, "forbidden")
    assert tokens(srv) == before


def test_admin_token_created_by_admin_can_manage_tokens(srv):
    adm = new_token(srv, "admin")
    other = new_token(srv, "auditor")
    r = srv.api("DELETE", "/api/v1/tokens/" + other["id"], token=adm["token"])
    assert r.status_code == 200, r.text
    assert srv.api("GET", "/api/v1/keys", token=other["token"]).status_code == 401


def test_tokens_never_logged(srv):
    d = new_token(srv, "admin")
    srv.api("GET", "/api/v1/keys", token=d["token"])
    srv.api("GET", "/api/v1/keys", token=d["token"] + "x")
    with open(srv.log_path, "rb") as f:
        log = f.read().decode(errors="replace")
    assert "admin.tokens.create" in log or "token" in log   # the requests were logged
    for secret in (d["token"], srv.token, d["token"] + "x"):
        assert secret not in log
