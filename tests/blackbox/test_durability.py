"""kill -9 durability: a key whose create was acknowledged (201) survives a
power-cut-like SIGKILL of both processes, and the audit chain stays intact."""
import random
import threading
import time

import requests

TRIALS = 15
BUDGET_S = 90


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


def test_kill9_keeps_acknowledged_keys(make_server):
    s = make_server()
    rnd = random.Random(20240601)
    acked = []          # every name whose create got 201, over all trials
    t_start = time.time()
    trials = 0
    for trial in range(TRIALS):
        s.start()
        # after the restart: everything acknowledged so far is there
        present = all_names(s)
        missing = [n for n in acked if n not in present]
        assert not missing, "trial %d: lost acknowledged keys %s\n%s" % (trial, missing[:10],
                                                                         s.logs())
        v = s.api("POST", "/api/v1/audit/verify").json()
        assert v["ok"] is True, v

        stop = threading.Event()
        mine = []
        failure = []    # (time, exception) of the request that ended the writer
        kill_at = [float("inf")]

        def writer():
            sess = requests.Session()
            h = {"Authorization": "Bearer " + s.token}
            i = 0
            while not stop.is_set():
                name = "t%02d-k%04d" % (trial, i)
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
        time.sleep(rnd.uniform(0.2, 1.5))
        kill_at[0] = time.time()
        s.kill9_all()
        stop.set()
        th.join(15)
        assert not th.is_alive()
        # the writer may only have stopped because of the kill
        early = [e for t, e in failure if t < kill_at[0]]
        assert not early, "trial %d: the writer failed before the kill: %r" % (trial, early)
        acked += mine
        trials += 1
        if time.time() - t_start > BUDGET_S - 10:
            break

    s.start()
    present = all_names(s)
    missing = [n for n in acked if n not in present]
    assert not missing, "lost acknowledged keys %s" % missing[:10]
    # GET each of the last trial's keys (the list and the single read agree)
    for n in [n for n in acked if n.startswith("t%02d-" % (trials - 1))]:
        g = s.api("GET", "/api/v1/keys/" + n)
        assert g.status_code == 200 and g.json()["state"] == "enabled", g.text
    v = s.api("POST", "/api/v1/audit/verify").json()
    assert v["ok"] is True, v
    assert trials >= 10, "only %d trials in the time budget" % trials
    assert len(acked) > trials, "the writer hardly wrote anything: %d keys" % len(acked)
