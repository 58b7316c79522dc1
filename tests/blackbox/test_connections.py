"""Connection exhaustion (issue 10, finding 7).  CivetWeb gives every
connection a worker thread until it closes; idle TLS connections from one
client used to take them all, and health probes failed.  Now: a cap per
client address ([http] max_connections_per_client), refused as the TLS
handshake starts and counted in /metrics; idle connections closed after
[http] idle_timeout_under_load_ms when a listener's threads run short; the
admin listener on its own threads; /healthz answered over the 503 limit.

Clients bind other loopback addresses (127.0.0.x) to be other clients.
Every wait is bounded."""
import concurrent.futures
import re
import socket
import ssl
import time

import requests

import promtext
from conftest import free_port


def tls_open(s, src, port=None, timeout=3):
    """A TLS connection from src to the server, handshake done; raises when
    the server refuses it or does not complete the handshake in time."""
    raw = socket.create_connection(("127.0.0.1", port or s.port), timeout=timeout,
                                   source_address=(src, 0))
    ctx = ssl.create_default_context(cafile=s.cacert)
    ctx.check_hostname = False
    try:
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    except BaseException:
        raw.close()
        raise


def open_many(s, src, n, workers=32):
    """n connections from src, at most workers at a time: (open, refused)."""
    def one(_):
        try:
            return tls_open(s, src)
        except (OSError, ssl.SSLError):
            return None
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        got = list(ex.map(one, range(n)))
    ok = [c for c in got if c is not None]
    return ok, n - len(ok)


def probe(s, src, path="/healthz", port=None, timeout=5):
    """GET path from src on a fresh connection: the status, or None."""
    try:
        c = tls_open(s, src, port=port, timeout=timeout)
    except (OSError, ssl.SSLError):
        return None
    try:
        c.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path.encode())
        data = b""
        deadline = time.time() + timeout
        while b"\r\n" not in data and time.time() < deadline:
            chunk = c.recv(4096)
            if not chunk:
                break
            data += chunk
        m = re.match(rb"HTTP/1\.1 (\d+) ", data)
        return int(m.group(1)) if m else None
    except (OSError, ssl.SSLError):
        return None
    finally:
        c.close()


def metric(text, name):
    v = promtext.value(text, name)
    assert v == int(v), (name, v)
    return int(v)


def close_all(conns):
    for c in conns:
        try:
            c.close()
        except OSError:
            pass


def test_idle_flood_from_one_client_leaves_probes_and_admin_answering(make_server):
    admin_port = free_port()
    s = make_server(env={"KEYWARD_ADMIN_LISTEN": "127.0.0.1:%d" % admin_port}).start()
    admin = "https://127.0.0.1:%d" % admin_port
    held = []
    try:
        t0 = time.time()
        held, refused = open_many(s, "127.0.0.1", 300)
        # the default cap: 32 from one address, the rest refused at once
        assert len(held) == 32 and refused == 268, (len(held), refused)
        assert time.time() - t0 < 20
        # other clients still get answers, within the probe's timeout
        with concurrent.futures.ThreadPoolExecutor(15) as ex:
            statuses = list(ex.map(lambda _: probe(s, "127.0.0.2"), range(15)))
        assert statuses == [200] * 15, statuses
        # so does the admin listener (its own threads), from the flooding address too
        assert probe(s, "127.0.0.1", port=admin_port) == 200
        r = requests.get(admin + "/api/v1/keys", headers={"Authorization": "Bearer " + s.token},
                         verify=s.cacert, timeout=10)
        assert r.status_code == 200, r.text
        text = requests.get(admin + "/metrics", verify=s.cacert, timeout=10).text
        assert metric(text, "keyward_http_connections_refused_per_client_total") == 268
        assert promtext.parse(text).find("keyward_http_worker_connections", listener="main")
        # the held connections are still served
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert held[0].recv(64).startswith(b"HTTP/1.1 200 ")
    finally:
        close_all(held)


def test_per_client_cap_refuses_the_next_connection(make_server):
    s = make_server(env={"KEYWARD_HTTP_MAX_CONNECTIONS_PER_CLIENT": "4"}).start()
    held = []
    try:
        held = [tls_open(s, "127.0.0.3") for _ in range(4)]
        refused = 0
        try:
            tls_open(s, "127.0.0.3").close()
        except (OSError, ssl.SSLError):
            refused += 1
        assert refused == 1, "the 5th connection from one address was accepted"
        # another address is another client
        other = tls_open(s, "127.0.0.4")
        other.close()
        # one closes: the client may connect again (once the server saw the close)
        held.pop().close()
        c = None
        deadline = time.time() + 5
        while c is None and time.time() < deadline:
            try:
                c = tls_open(s, "127.0.0.3")
            except (OSError, ssl.SSLError):
                refused += 1
                time.sleep(0.05)
        assert c is not None
        held.append(c)
        text = requests.get(s.url + "/metrics", verify=s.cacert, timeout=10).text
        assert metric(text, "keyward_http_connections_refused_per_client_total") == refused
    finally:
        close_all(held)


def test_idle_connections_closed_when_workers_run_short(make_server):
    # 16 connections + 8 reserve = 24 worker threads; 4 clients x 8 idle connections
    admin_port = free_port()
    s = make_server(env={"KEYWARD_HTTP_MAX_CONNECTIONS": "16",
                         "KEYWARD_HTTP_MAX_CONNECTIONS_PER_CLIENT": "8",
                         "KEYWARD_HTTP_IDLE_TIMEOUT_UNDER_LOAD_MS": "300",
                         "KEYWARD_ADMIN_LISTEN": "127.0.0.1:%d" % admin_port}).start()
    held = []
    try:
        for i in range(4):
            ok, _ = open_many(s, "127.0.0.%d" % (10 + i), 8, workers=8)
            held += ok
        assert len(held) >= 16, len(held)
        t0 = time.time()
        statuses = [probe(s, "127.0.0.2", timeout=5) for _ in range(5)]
        assert statuses == [200] * 5, statuses
        assert time.time() - t0 < 15
        text = requests.get("https://127.0.0.1:%d/metrics" % admin_port, verify=s.cacert,
                            timeout=10).text
        assert metric(text, "keyward_http_connections_closed_idle_total") >= 1
        # the idle ones were closed by the server: they read the end of the stream
        ended = 0
        for c in held:
            c.settimeout(0.2)
            try:
                ended += c.recv(1) == b""
            except socket.timeout:
                pass
            except (OSError, ssl.SSLError):
                ended += 1
        assert ended >= 1
    finally:
        close_all(held)
