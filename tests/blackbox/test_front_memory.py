"""The front process keeps no copy of a bearer token (issue 10, finding 9):
after thousands of admin API requests that carry it - in every shape a
client sends: kept-alive sessions, bodies, pipelined requests, HEAD,
chunked bodies, refused heads (CivetWeb's own 400/505, ours), an oversized
or cut body, a head that never ends - every readable mapping of the front
process is read through /proc/PID/maps and /proc/PID/mem (MADV_DONTDUMP
regions included, which a core file would skip) and searched for the token.
The same for key material imported in a request body.  The custody process
(a child) is out of scope: it never sees the token.

A worker learns where its request buffer is from the first head it parses
(server/front/http.c); the test first has every worker serve one request,
so that what follows is wiped wherever it lands."""
import base64
import json
import os
import socket
import ssl
import threading
import time

import requests

MAX_CONNECTIONS = 8
WORKERS = MAX_CONNECTIONS + 8          # http.c THREAD_RESERVE


def read_front_memory(pid):
    """Every readable mapping of pid, as (name, bytes) pairs."""
    out = []
    with open("/proc/%d/maps" % pid) as maps, open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            f = line.split()
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            name = f[5] if len(f) > 5 else "[anon]"
            if f[1][0] != "r" or name in ("[vvar]", "[vsyscall]", "[vvar_vclock]"):
                continue
            try:
                mem.seek(lo)
                out.append((name, mem.read(hi - lo)))
            except (OSError, ValueError, OverflowError):
                pass          # a mapping that went away, or a guard page
    return out


def count(pid, needle):
    hits = {}
    for name, data in read_front_memory(pid):
        n = data.count(needle)
        if n:
            hits[name] = hits.get(name, 0) + n
    return sum(hits.values()), hits


def tls(s, timeout=10):
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    ctx = ssl.create_default_context(cafile=s.cacert)
    ctx.check_hostname = False
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def drain(sock, seconds):
    sock.settimeout(seconds)
    end, data = time.time() + seconds, b""
    while time.time() < end:
        try:
            chunk = sock.recv(65536)
        except (socket.timeout, ssl.SSLError, OSError):
            break
        if not chunk:
            break
        data += chunk
    return data


def every_worker_serves_once(s):
    socks = []
    try:
        for _ in range(WORKERS):
            c = tls(s)
            c.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            socks.append(c)
        for c in socks:          # all held at once: one worker each
            assert drain(c, 0.5).startswith(b"HTTP/1.1 "), "no answer"
    finally:
        for c in socks:
            c.close()


def raw_requests(s, tok, material):
    """material: key bytes imported through a body that CivetWeb buffers
    with the head."""
    auth = b"Authorization: Bearer " + tok + b"\r\n"
    host = b"Host: 127.0.0.1\r\n"
    body = json.dumps({"name": "raw-key", "type": "AES"}).encode()
    imp = json.dumps({"name": "imp-" + os.urandom(4).hex(), "type": "AES",
                      "material": base64.b64encode(material).decode()}).encode()
    cases = [
        b"POST /api/v1/keys/import HTTP/1.1\r\n" + host + auth + b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(imp) + imp,
        b"GET /api/v1/keys HTTP/1.1\r\n" + host + auth + b"Connection: close\r\n\r\n",
        # pipelined: two requests in one write, the second moved to the buffer's start
        b"GET /api/v1/keys HTTP/1.1\r\n" + host + auth + b"\r\n"
        b"GET /api/v1/keys?limit=1 HTTP/1.1\r\n" + host + auth + b"Connection: close\r\n\r\n",
        b"POST /api/v1/keys HTTP/1.1\r\n" + host + auth + b"Content-Type: application/json\r\n"
        b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body,
        b"POST /api/v1/keys HTTP/1.1\r\n" + host + auth + b"Content-Type: application/json\r\n"
        b"Content-Length: 5\r\n\r\n{bad}",
        b"HEAD /api/v1/keys HTTP/1.1\r\n" + host + auth + b"Connection: close\r\n\r\n",
        b"DELETE /api/v1/nothing HTTP/1.1\r\n" + host + auth + b"\r\n",
        b"POST /api/v1/keys HTTP/1.1\r\n" + host + auth + b"Content-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        # refused by CivetWeb itself
        b"GET /api/v1/keys HTTP/1.2\r\n" + host + auth + b"\r\n",
        b"GET /api/v1/keys\xff HTTP/1.1\r\n" + host + auth + b"\r\n",
        b"GET /api/v1/keys HTTP/1.1\r\n" + host + auth + b"Bad\x01Header: x\r\n\r\n",
        # refused by the head check
        b"GET /api/v1/keys HTTP/1.1\r\n" + host + auth + b"X-Space : y\r\n\r\n",
        b"GET /api/v1/keys HTTP/1.1\r\n" + host + auth + b"".join(b"X-%d: v\r\n" % i for i in range(70))
        + b"\r\n",
        # over the body cap; a body cut short; a head that never ends
        b"POST /api/v1/keys HTTP/1.1\r\n" + host + auth + b"Content-Length: 99999999\r\n\r\n{",
        b"POST /api/v1/keys HTTP/1.1\r\n" + host + auth + b"Content-Length: 100\r\n\r\n{\"a\":",
        b"GET /api/v1/keys HTTP/1.1\r\n" + host + auth,
    ]
    for c in cases:
        sock = tls(s)
        try:
            sock.sendall(c)
            drain(sock, 0.3)
        except (ssl.SSLError, OSError):
            pass
        finally:
            sock.close()


def sessions(s, tok, total, threads=4):
    errors = []

    def run(k):
        ses = requests.Session()
        h = {"Authorization": "Bearer " + tok.decode()}
        try:
            for i in range(total // threads):
                if i % 9 == 0:
                    r = ses.post(s.url + "/api/v1/keys", headers=h, verify=s.cacert, timeout=30,
                                 json={"name": "m-%d-%d" % (k, i), "type": "AES"})
                else:
                    r = ses.get(s.url + "/api/v1/keys?limit=3", headers=h, verify=s.cacert, timeout=30)
                if r.status_code not in (200, 201):
                    errors.append((r.status_code, r.text))
                if i % 50 == 49:           # new connections now and then
                    ses.close()
                    ses = requests.Session()
        finally:
            ses.close()

    ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
        assert not t.is_alive()
    assert not errors, errors[:5]


def test_front_memory_holds_no_bearer_token(make_server):
    s = make_server(env={"KEYWARD_HTTP_MAX_CONNECTIONS": str(MAX_CONNECTIONS),
                         "KEYWARD_HTTP_REQUEST_TIMEOUT_MS": "1000",
                         "KEYWARD_HTTP_KEEP_ALIVE_TIMEOUT_MS": "1000"}).start()
    tok = s.token.encode()
    pid = s.proc.pid
    every_worker_serves_once(s)
    sessions(s, tok, 2000)
    materials = [os.urandom(32) for _ in range(3)]
    for m in materials:       # last: nothing overwrites what they leave
        raw_requests(s, tok, m)
    time.sleep(2.5)           # the timed-out head and the kept-alive sessions close
    # the scan does read the front: a string of its own is found
    assert count(pid, b"keyward-front")[0] >= 1
    full = count(pid, tok)
    tail = count(pid, tok[-24:])
    mat = [count(pid, base64.b64encode(m)[:40])[0] for m in materials]
    print("bearer token in the front's memory: %d (tail %d): %s; imported key material: %s"
          % (full[0], tail[0], tail[1], mat))
    assert (full[0], tail[0]) == (0, 0), (full, tail)
    assert mat == [0, 0, 0], mat
    assert s.proc.poll() is None
    assert requests.get(s.url + "/healthz", verify=s.cacert, timeout=10).status_code == 200
