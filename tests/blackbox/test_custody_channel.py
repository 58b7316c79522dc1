"""The front<->custody channel (issue 11): many requests in flight on a few
connections, answered in any order and matched by request id; requests on
cached keys answered at once by custody, the rest (the HSM, the database)
by its workers, so a slow HSM call does not stall cached-key traffic.

Every server here runs with [custody] connections = 1, where the old
one-request-per-connection channel would serialise everything."""
import base64
import json
import os
import signal
import threading
import time

import promtext
from test_xks import TOML, Xks

ONE = {"KEYWARD_CUSTODY_CONNECTIONS": "1"}


def mk_key(s, name):
    r = s.api("POST", "/api/v1/keys", {"name": name, "type": "AES", "size": 256,
                                       "rules": {"xks": {"key_stores": ["default"]}}})
    assert r.status_code == 201, r.text


def metric(s, name):
    r = s.api("GET", "/metrics")
    assert r.status_code == 200, r.text
    return promtext.value(r.text, name)


def test_cold_key_behind_a_slow_hsm_does_not_stall_cached_keys(make_server):
    env = dict(ONE, KEYWARD_HSM_TIMEOUT_MS="8000", KEYWARD_CUSTODY_TIMEOUT_MS="15000")
    s = make_server(extra_toml=TOML, faulthsm=True, env=env).start()
    mk_key(s, "hot")
    mk_key(s, "cold")
    s.stop()
    s.start()                                   # nothing cached
    x = Xks(s)
    assert x.enc("/a", "hot", b"warm").status_code == 200   # hot: unsealed, cached
    s.hsm("delay_ms=2000")
    time.sleep(0.2)                             # faulthsm re-reads its file every 50 ms
    done = {}

    def cold():
        r = x.enc("/a", "cold", b"needs the HSM")
        done["cold"] = (time.monotonic(), r.status_code, r.text)

    t = threading.Thread(target=cold)
    t.start()
    time.sleep(0.3)                             # the cold request is waiting on the HSM
    hot_done = []
    for i in range(10):
        r = x.enc("/a", "hot", b"cached %d" % i)
        assert r.status_code == 200, r.text
        hot_done.append(time.monotonic())
    t.join(timeout=30)
    s.hsm("mode=up")
    assert "cold" in done
    at, status, text = done["cold"]
    assert status == 200, text
    # all ten cached-key requests were answered while the cold one waited
    assert max(hot_done) < at, (hot_done, at)


def test_many_requests_in_flight_each_get_their_own_answer(make_server):
    s = make_server(extra_toml=TOML, env=ONE).start()
    for k in ("p1", "p2"):
        mk_key(s, k)
    x = Xks(s)
    # warm both keys first: a key's first use loads it through a worker
    # (queued), and every request counted below must find it in the cache
    for k in ("p1", "p2"):
        r = x.enc("/a", k, b"warm")
        assert r.status_code == 200, r.text
    inline0 = metric(s, "keyward_custody_requests_inline_total")
    queued0 = metric(s, "keyward_custody_requests_queued_total")
    errors = []

    def worker(n):
        try:
            for i in range(15):
                key = "p1" if (n + i) % 2 else "p2"
                pt = ("thread %d request %d" % (n, i)).encode()
                r = x.enc("/a", key, pt)
                assert r.status_code == 200, r.text
                d = x.dec("/a", key, r.json())
                assert d.status_code == 200, d.text
                assert base64.b64decode(d.json()["plaintext"]) == pt
                if i % 5 == 0:                  # the database, through a worker
                    g = s.api("GET", "/api/v1/keys/" + key)
                    assert g.status_code == 200 and g.json()["name"] == key, g.text
        except Exception as e:                  # noqa: BLE001 - reported below
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120)
    assert not errors, errors[:3]
    assert metric(s, "keyward_custody_requests_inline_total") >= inline0 + 16 * 30
    assert metric(s, "keyward_custody_requests_queued_total") >= queued0 + 16 * 3


def test_custody_killed_with_requests_in_flight(make_server):
    """Calls in flight when custody dies fail with a clear 503 at once (not
    after the call timeout), none is answered with another's reply, and the
    front reconnects to the restarted custody."""
    s = make_server(extra_toml=TOML, env=dict(ONE, KEYWARD_CUSTODY_TIMEOUT_MS="20000")).start()
    mk_key(s, "k")
    x = Xks(s)
    stop = threading.Event()
    seen = []
    bad = []

    def worker(n):
        i = 0
        while not stop.is_set():
            pt = ("w%d-%d" % (n, i)).encode()
            i += 1
            t0 = time.monotonic()
            r = x.enc("/a", "k", pt)
            took = time.monotonic() - t0
            seen.append(r.status_code)
            if r.status_code == 200:
                d = x.dec("/a", "k", r.json())
                if d.status_code == 200 and base64.b64decode(d.json()["plaintext"]) != pt:
                    bad.append("wrong answer")
            elif r.status_code == 503:
                if took > 10:
                    bad.append("503 after %.1f s" % took)
                if r.json().get("errorName") != "DependencyTimeoutException":
                    bad.append("503 body %s" % json.dumps(r.json()))
            else:
                bad.append("%d %s" % (r.status_code, r.text[:100]))

    ts = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in ts:
        t.start()
    time.sleep(1.0)
    os.kill(s.custody_pid(), signal.SIGKILL)
    time.sleep(3.0)
    stop.set()
    for t in ts:
        t.join(timeout=60)
    assert not bad, bad[:5]
    assert 200 in seen
    r = x.enc("/a", "k", b"after")
    assert r.status_code == 200, r.text
