"""kill -9 durability: a key whose create was acknowledged (201) survives a
power-cut-like SIGKILL of both processes at a random moment of a write
workload, the database opens cleanly after each kill and the audit chain
stays intact.  KEYWARD_KILL_TRIALS trials (200 by default; `make soak` runs
more), each killing 50-400 ms into the writes."""
import os
import random
import signal
import threading
import time

import requests

TRIALS = int(os.environ.get("KEYWARD_KILL_TRIALS", "200"))
FULL_CHECK_EVERY = 25     # the whole key list and the audit chain, every N trials


def all_names(s):
    out, cursor = set(), None
    while True:
        path = "/api/v1/keys?limit=1000" + ("&cursor=" + cursor if cursor else "")
        r = s.api("GET", path)
        assert r.status_code == 200, r.text
        doc = r.json()
        out |= {k["name"] for k in doc["keys"]}
        cursor = doc["next"]
        if not cursor:
            return out


def start_fast(s, timeout=30):
    """Starts keywardd and polls /healthz every 10 ms (start-up is ~70 ms)."""
    s.start(wait=False)
    sess = requests.Session()
    deadline = time.time() + timeout
    while time.time() < deadline:
        if s.proc.poll() is not None:
            raise AssertionError("keywardd exited with %s:\n%s" % (s.proc.returncode, s.logs()))
        try:
            if sess.get(s.url + "/healthz", verify=s.cacert, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.01)
    raise AssertionError("keywardd not ready in %ss:\n%s" % (timeout, s.logs()))


def custody_state(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return [l for l in f if l.startswith("State:")][0].split()[1]
    except (OSError, IndexError):
        return None


def kill9_both(s):
    """SIGKILL of the three processes at once, as a power cut would.  Done
    when the parent is reaped and its children are gone or zombies (a zombie
    holds no file, lock, port or memory any more; init reaps orphans only
    every few seconds in some containers, which conftest's kill9_all waits
    for)."""
    pids = [p for p in (s.custody_pid(), s.front_pid()) if p]
    os.kill(s.proc.pid, signal.SIGKILL)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    s.proc.wait(timeout=10)
    s.proc = None
    s.log.close()
    deadline = time.time() + 10
    for pid in pids:
        while custody_state(pid) not in (None, "Z"):
            assert time.time() < deadline, "process %d survived SIGKILL" % pid
            time.sleep(0.002)


def test_kill9_keeps_acknowledged_keys(make_server):
    s = make_server()
    seed = int(os.environ.get("KEYWARD_KILL_SEED", "20240601"))
    rnd = random.Random(seed)
    acked = []          # every name whose create got 201, over all trials
    last = []           # those of the previous trial
    t_start = time.time()
    for trial in range(TRIALS):
        start_fast(s)
        # after the restart: what the previous trial acknowledged is there (all
        # of it every FULL_CHECK_EVERY trials), each readable, and the chain holds
        if trial % FULL_CHECK_EVERY == 0:
            present = all_names(s)
            missing = [n for n in acked if n not in present]
            v = s.api("POST", "/api/v1/audit/verify").json()
            assert v["ok"] is True, (trial, v)
        else:
            sess = requests.Session()     # keep-alive: one handshake for the reads
            h = {"Authorization": "Bearer " + s.token}
            missing = [n for n in last if sess.get(s.url + "/api/v1/keys/" + n, headers=h,
                                                   verify=s.cacert, timeout=10).status_code != 200]
            sess.close()
        assert not missing, "trial %d (seed %d): lost acknowledged keys %s\n%s" % (
            trial, seed, missing[:10], s.logs())

        stop = threading.Event()
        mine = []
        failure = []    # (time, exception) of the request that ended the writer
        started = threading.Event()

        def writer():
            sess = requests.Session()
            h = {"Authorization": "Bearer " + s.token}
            i = 0
            started.set()
            while not stop.is_set():
                name = "t%03d-k%04d" % (trial, i)
                i += 1
                try:
                    # verify per request: a session's verify loses to REQUESTS_CA_BUNDLE
                    r = sess.post(s.url + "/api/v1/keys", json={"name": name, "type": "AES"},
                                  headers=h, verify=s.cacert, timeout=10)
                except requests.RequestException as e:
                    failure.append((time.time(), e))
                    return
                if r.status_code == 201:
                    mine.append(name)
                elif r.status_code >= 500 or r.status_code == 409:
                    continue
                else:
                    failure.append((time.time(), AssertionError("%s %s" % (r.status_code, r.text))))
                    return

        th = threading.Thread(target=writer, daemon=True)
        th.start()
        started.wait(5)
        time.sleep(rnd.uniform(0.05, 0.4))
        kill_at = time.time()
        kill9_both(s)
        stop.set()
        th.join(15)
        assert not th.is_alive()
        # the writer may only have stopped because of the kill
        early = [e for t, e in failure if t < kill_at]
        assert not early, "trial %d: the writer failed before the kill: %r" % (trial, early)
        acked += mine
        last = mine

    start_fast(s)
    present = all_names(s)
    missing = [n for n in acked if n not in present]
    assert not missing, "lost acknowledged keys %s" % missing[:10]
    # GET each of the last trial's keys (the list and the single read agree)
    for n in last:
        g = s.api("GET", "/api/v1/keys/" + n)
        assert g.status_code == 200 and g.json()["state"] == "enabled", g.text
    v = s.api("POST", "/api/v1/audit/verify").json()
    assert v["ok"] is True, v
    assert len(acked) > TRIALS, "the writer hardly wrote anything: %d keys" % len(acked)
    print("%d trials, %d acknowledged keys, %.1f s" % (TRIALS, len(acked), time.time() - t_start))
