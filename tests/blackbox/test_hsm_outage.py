"""HSM outages through the fault-injecting PKCS#11 module: fail fast with a
clear error, keep serving what does not need the HSM, recover by itself."""
import threading
import time

import requests

import promtext


def assert_err(r, status, name):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.json()["error"] == name, r.text


def names(s):
    r = s.api("GET", "/api/v1/keys?limit=1000")
    assert r.status_code == 200, r.text
    return sorted(k["name"] for k in r.json()["keys"])


def hsm_state(s):
    r = s.api("GET", "/api/v1/status")
    assert r.status_code == 200, r.text
    return r.json()["custody"]["hsm"]["state"]


def wait_create(s, name, within):
    """Retries a key create until it succeeds; returns the seconds it took."""
    t0 = time.time()
    last = None
    while time.time() - t0 < within:
        last = s.api("POST", "/api/v1/keys", {"name": name, "type": "AES"}, timeout=10)
        if last.status_code == 201:
            return time.time() - t0
        time.sleep(0.2)
    raise AssertionError("no recovery in %ss: %s %s\n%s" % (within, last.status_code, last.text,
                                                           s.logs()))


def test_hsm_down_fails_fast_and_recovers(make_server):
    s = make_server(faulthsm=True).start()
    r = s.api("POST", "/api/v1/keys", {"name": "before", "type": "AES"})
    assert r.status_code == 201, r.text
    assert s.api("POST", "/api/v1/keys/before/rotate").status_code == 200
    assert hsm_state(s) == "up"
    before = names(s)

    s.hsm("mode=down")
    time.sleep(0.2)   # the module re-reads its control file every 50 ms
    for i in range(3):
        t0 = time.time()
        r = s.api("POST", "/api/v1/keys", {"name": "during-%d" % i, "type": "AES"})
        took = time.time() - t0
        assert_err(r, 502, "hsm_unavailable")
        assert took < 3, took
    t0 = time.time()
    assert_err(s.api("POST", "/api/v1/keys/before/rotate"), 502, "hsm_unavailable")
    assert time.time() - t0 < 3
    # what needs only the database still works
    h = requests.get(s.url + "/healthz", verify=s.cacert, timeout=5)
    assert h.status_code == 200 and h.json()["status"] == "ok"
    assert names(s) == before
    g = s.api("GET", "/api/v1/keys/before")
    assert g.status_code == 200 and g.json()["current_version"] == 2
    assert hsm_state(s) == "down"
    assert s.api("POST", "/api/v1/audit/verify").json()["ok"] is True
    m = requests.get(s.url + "/metrics", verify=s.cacert, timeout=5).text
    assert promtext.value(m, "keyward_custody_hsm_up") == 0

    s.hsm("mode=up")
    took = wait_create(s, "after", 10)
    assert took < 10
    assert hsm_state(s) == "up"
    assert s.api("POST", "/api/v1/keys/before/rotate").json()["current_version"] == 3
    assert names(s) == sorted(before + ["after"])
    assert s.proc.poll() is None   # no restart happened


def test_hsm_slow_times_out(make_server):
    s = make_server(faulthsm=True).start()
    assert s.api("POST", "/api/v1/keys", {"name": "before", "type": "AES"}).status_code == 201
    before = names(s)
    s.hsm("delay_ms=3000")
    time.sleep(0.2)

    # A first call occupies the HSM for seconds; whatever it answers, the
    # calls made while it hangs must fail fast with hsm_timeout.
    first = {}

    def slow():
        t0 = time.time()
        try:
            r = s.api("POST", "/api/v1/keys", {"name": "slow-first", "type": "AES"}, timeout=30)
            first["status"] = r.status_code
        except requests.RequestException as e:
            first["status"] = repr(e)
        first["took"] = time.time() - t0

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(1.5)   # past the 1 s HSM timeout of the harness
    t0 = time.time()
    r = s.api("POST", "/api/v1/keys", {"name": "slow-second", "type": "AES"})
    took = time.time() - t0
    assert_err(r, 504, "hsm_timeout")
    assert took < 5, took
    t0 = time.time()
    assert_err(s.api("POST", "/api/v1/keys/before/rotate"), 504, "hsm_timeout")
    assert time.time() - t0 < 5
    # the database side is unaffected
    h = requests.get(s.url + "/healthz", verify=s.cacert, timeout=5)
    assert h.status_code == 200
    assert "slow-second" not in names(s)

    s.hsm("mode=up")
    th.join(30)
    assert not th.is_alive()
    assert first["status"] in (201, 500, 502, 503, 504), first
    wait_create(s, "after-slow", 15)
    now = names(s)
    if first["status"] == 201:
        assert "slow-first" in now
    # a create whose answer was lost may still have completed in custody
    assert [n for n in now if n != "slow-first"] == sorted(before + ["after-slow"])
    assert s.api("GET", "/api/v1/keys/before").json()["current_version"] == 1
    assert s.proc.poll() is None


# ---- the protocol data paths (issue 6): a key that is not in the custody's
# cache needs the HSM to unseal it; an outage there answers each protocol's
# documented error fast, and the same custody serves again once the HSM is back.

def _fresh_custody_with_keys(make_server, tmp_path, **kw):
    from ekm_certs import make_pki
    from test_ekm import ALLOWED_CN, OTHER_CN, PREFIX, ekm_env
    from test_xks import TOML
    pki = make_pki(str(tmp_path / "pki"), ALLOWED_CN, OTHER_CN)
    s = make_server(env=ekm_env(pki, **kw), extra_toml=TOML, faulthsm=True).start()
    r = s.api("POST", "/api/v1/keys", {"name": "dp-1", "type": "AES",
                                       "rules": {"xks": {"key_stores": ["default"]}, "ekm": {"path_prefixes": ["/azureekm/" + PREFIX]}}})
    assert r.status_code == 201, r.text
    s.stop()          # a fresh custody: nothing unsealed in its cache
    s.start()
    return s, pki


def _ekm_wrap(s, pki):
    import base64
    import os
    from test_ekm import API, CTX, PREFIX
    body = {"request_context": CTX, "alg": "A256KW",
            "value": base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()}
    return requests.post(s.url + "/azureekm/%s/dp-1/wrapkey%s" % (PREFIX, API), json=body,
                         cert=pki["allowed"], verify=s.cacert, timeout=30)


def _xks_enc(s):
    from test_xks import Xks
    return Xks(s).enc("/a", "dp-1", b"data path plaintext")


def _recovers(s, call, within=10):
    deadline = time.time() + within
    while time.time() < deadline:
        r = call()
        if r.status_code == 200:
            return r
        time.sleep(0.2)
    raise AssertionError("no recovery: %s %s\n%s" % (r.status_code, r.text, s.logs()))


def test_hsm_down_on_protocol_data_paths(make_server, tmp_path):
    from test_xks import err as xks_err
    s, pki = _fresh_custody_with_keys(make_server, tmp_path)
    before = names(s)
    s.hsm("mode=down")
    time.sleep(0.2)
    for _ in range(2):
        t0 = time.time()
        r = _ekm_wrap(s, pki)
        assert time.time() - t0 < 3
        assert r.status_code == 502 and r.json() == {"code": "BadGateway", "message": r.json()["message"]}, r.text
        t0 = time.time()
        r = _xks_enc(s)
        assert time.time() - t0 < 3
        xks_err(r, 503, "DependencyTimeoutException")
    assert names(s) == before
    s.hsm("mode=up")
    _recovers(s, lambda: _ekm_wrap(s, pki))
    _recovers(s, lambda: _xks_enc(s))
    assert s.proc.poll() is None       # no restart happened
    assert s.api("POST", "/api/v1/audit/verify").json()["ok"] is True

