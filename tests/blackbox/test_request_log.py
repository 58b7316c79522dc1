"""Request log lines are always valid JSON (issue 10, finding 10): requests
whose path carries bytes that are not UTF-8 (sent raw over TLS, on every
route family), and an XKS request whose kmsRequestId the log line cuts (at
128 bytes) in the middle of a multi-byte character; afterwards every line of
the server log decodes as strict UTF-8 and parses as a JSON object, and the
cut identifier ends in U+FFFD."""
import json
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest
import requests

import promtext
from conftest import KEYWARDD
from test_xks import META, TOML, Xks

BAD_PATHS = [
    b"/\xff\xfe",                                        # no route
    b"/healthz/\x80",                                    # lone continuation byte
    b"/api/v1/keys/\xc0\x80",                            # overlong NUL
    b"/api/v1/keys/a\xed\xa0\x80",                       # UTF-16 surrogate
    b"/azureekm/\xf4\x90\x80\x80/info",                  # above U+10FFFF
    b"/a/kms/xks/v1/keys/k\xe2\x82/encrypt",             # truncated sequence
    b"/metrics\xc3",                                     # truncated at the end
]


def send_raw(s, payload, timeout=10):
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    ctx = ssl.create_default_context(cafile=s.cacert)
    ctx.check_hostname = False
    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    data = b""
    deadline = time.time() + timeout
    try:
        sock.sendall(payload)
        while time.time() < deadline:
            try:
                chunk = sock.recv(65536)
            except (ssl.SSLError, OSError):
                break
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    return data


def strict_lines(path):
    with open(path, "rb") as f:
        raw = f.read()
    out = []
    for i, line in enumerate(raw.split(b"\n")[:-1]):
        try:
            text = line.decode("utf-8", errors="strict")
        except UnicodeDecodeError as e:
            pytest.fail("log line %d is not UTF-8 (%s): %r" % (i, e, line[:300]))
        try:
            j = json.loads(text)
        except ValueError as e:
            pytest.fail("log line %d is not JSON (%s): %r" % (i, e, line[:300]))
        assert isinstance(j, dict), line
        out.append(j)
    return out


def test_request_log_lines_are_json_whatever_the_peer_sends(make_server):
    s = make_server(extra_toml=TOML).start()
    for path in BAD_PATHS:
        for method in (b"GET", b"POST"):
            resp = send_raw(s, method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Authorization: Bearer " + s.token.encode() + b"\r\n"
                            b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                            b"Connection: close\r\n\r\n{}")
            assert resp.startswith(b"HTTP/1.1 "), (path, resp[:200])
            # the answer itself is JSON in valid UTF-8 too
            body = resp.partition(b"\r\n\r\n")[2]
            assert isinstance(json.loads(body.decode("utf-8")), dict), (path, body)
    # a kmsRequestId that the log line cuts (at 128 bytes) inside a 2-byte character
    rid = "r" * 127 + "\u00e9" + "x" * 20
    r = Xks(s).call("/a/kms/xks/v1/health", {"requestMetadata": dict(META, kmsRequestId=rid,
                                                                       kmsOperation="CreateKey")})
    assert r.status_code == 200, r.text
    time.sleep(0.3)     # the log write of the last request
    lines = strict_lines(s.log_path)
    reqs = [l for l in lines if l.get("event") == "request"]
    # CivetWeb refuses a request line with such bytes itself (400, logged
    # by http.c without the path, which is never echoed)
    bad = [l for l in reqs if l["route"] == "none" and l["status"] == 400]
    assert len(bad) >= 2 * len(BAD_PATHS), reqs[-20:]
    xks = [l for l in reqs if l.get("route") == "xks.health"]
    assert xks and xks[-1]["kmsRequestId"] == "r" * 127 + "\ufffd", xks[-1:]


# ---- the log writer (issue 11): lines formatted per thread, written in
# batches by one thread; nothing lost at a SIGTERM, a stderr nobody reads
# never holds up a request

LOAD_THREADS = 8


def load(s, per_thread, paths, stop_after=None):
    """LOAD_THREADS keep-alive clients, each sending per_thread GETs, cycling
    through paths.  Returns (attempted, answered) per path.  With
    stop_after=n, SIGTERM goes to keywardd as soon as n answers have come,
    while the clients are still sending."""
    lock = threading.Lock()
    attempted = {p: 0 for p in paths}
    answered = {p: 0 for p in paths}
    signalled = threading.Event()
    hdr = {"Authorization": "Bearer " + s.token}

    def client(i):
        sess = requests.Session()
        for k in range(per_thread):
            path = paths[(i + k) % len(paths)]
            with lock:
                attempted[path] += 1
            try:
                r = sess.get(s.url + path, headers=hdr, verify=s.cacert, timeout=20)
            except requests.RequestException:
                if signalled.is_set():
                    return      # the server is stopping
                raise
            if r.status_code not in (200, 404):
                assert signalled.is_set(), (path, r.status_code, r.text)
                continue        # answered otherwise while stopping: not counted
            with lock:
                answered[path] += 1
                total = sum(answered.values())
            if stop_after is not None and total >= stop_after and not signalled.is_set():
                signalled.set()
                s.proc.send_signal(signal.SIGTERM)

    errors = []

    def run(i):
        try:
            client(i)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    th = [threading.Thread(target=run, args=(i,)) for i in range(LOAD_THREADS)]
    for t in th:
        t.start()
    for t in th:
        t.join(timeout=180)
    assert not any(t.is_alive() for t in th), "clients still running after 180 s"
    assert not errors, errors[:3]
    return attempted, answered


def count_request_lines(lines):
    """Request lines by (route, status, error)."""
    by = {}
    for l in lines:
        if l.get("event") == "request":
            k = (l["route"], l["status"], l["error"])
            by[k] = by.get(k, 0) + 1
    return by


def no_route_404(by):
    return sum(n for (_, st, err), n in by.items() if st == 404 and err == "no_route")


# a route only these clients use, one that asks custody, one CivetWeb's
# handler answers without a route
LOAD_PATHS = ["/api/v1/keys", "/healthz", "/no/such/path"]


def route_counts(by):
    return {"/api/v1/keys": by.get(("admin.keys.list", 200, ""), 0),
            "/no/such/path": no_route_404(by)}


def test_request_log_sigterm_right_after_load_loses_no_line(make_server):
    s = make_server().start()
    attempted, answered = load(s, 250, LOAD_PATHS)
    assert answered == attempted
    s.stop()                           # SIGTERM at once, then wait for the exit
    lines = strict_lines(s.log_path)   # every line: UTF-8, a JSON object
    got = route_counts(count_request_lines(lines))
    for path, n in got.items():
        assert n == answered[path], (path, n, answered[path])
    assert not [l for l in lines if l.get("event") == "log_lines_dropped"]


def test_request_log_sigterm_during_load_loses_no_line(make_server):
    s = make_server().start()
    attempted, answered = load(s, 400, LOAD_PATHS, stop_after=LOAD_THREADS * 400 // 2)
    s.proc.wait(timeout=30)
    s.stop()
    lines = strict_lines(s.log_path)
    got = route_counts(count_request_lines(lines))
    for path, n in got.items():
        # every answer was logged; a request cut by the stop may be too
        assert answered[path] <= n <= attempted[path], (path, n, answered[path], attempted[path])
    assert sum(answered.values()) >= LOAD_THREADS * 400 // 2


def metric(s, name):
    r = requests.get(s.url + "/metrics", verify=s.cacert, timeout=10)
    assert r.status_code == 200, r.text
    return promtext.value(r.text, name)


def test_request_log_stalled_stderr_drops_counted_requests_not_blocked(make_server):
    """stderr a pipe nobody reads (a stopped journald, a stuck supervisor):
    requests are answered all the same; the request lines that do not fit
    are dropped, counted in /metrics and reported once the reader reads."""
    s = make_server()
    s.log = open(s.log_path, "ab")
    s.proc = subprocess.Popen([KEYWARDD, "--config", s.conf], env=s.env,
                              stdout=s.log, stderr=subprocess.PIPE)
    s.wait_ready()     # its few start-up lines fit in the pipe
    n = 5000           # ~1.3 MB of request lines: pipe 64 KiB + queue 1 MiB overflow
    t0 = time.time()
    attempted, answered = load(s, n // LOAD_THREADS, ["/no/such/path"])
    took = time.time() - t0
    assert answered == attempted == {"/no/such/path": n}, answered
    dropped_before_read = metric(s, "keyward_log_lines_dropped_total")
    assert dropped_before_read > 0
    assert metric(s, "keyward_log_lines_lost_total") == 0
    assert metric(s, "keyward_custody_log_lines_dropped_total") == 0    # custody logs no requests
    # the reader comes back: what was queued comes out, with the report
    out = bytearray()
    reader = threading.Thread(target=lambda: out.extend(s.proc.stderr.read()))
    reader.start()
    time.sleep(1.5)    # the queue drains; a report at most each second
    dropped = metric(s, "keyward_log_lines_dropped_total")
    assert dropped >= dropped_before_read
    s.stop()
    reader.join(timeout=30)
    with open(s.log_path, "ab") as f:
        f.write(bytes(out))
    lines = strict_lines(s.log_path)
    by = count_request_lines(lines)
    got = no_route_404(by)
    # the four /metrics requests' lines may have been dropped too
    metrics_missing = 4 - sum(v for (route, _, _), v in by.items() if route == "metrics")
    reports = [l for l in lines if l.get("event") == "log_lines_dropped"]
    assert reports and all(l["level"] == "warn" and l["proc"] == "front" for l in reports), reports
    assert sum(l["dropped"] for l in reports) == dropped
    assert got + dropped == n + metrics_missing, (got, dropped, n, metrics_missing)
    assert took < 120
