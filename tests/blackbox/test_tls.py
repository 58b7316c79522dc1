"""TLS versions and ciphers, /healthz and /metrics."""
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading

import pytest
import requests

import promtext
from conftest import Server

TLS13_SUITES = {"TLS_AES_256_GCM_SHA384", "TLS_AES_128_GCM_SHA256", "TLS_CHACHA20_POLY1305_SHA256"}


@pytest.fixture(scope="module")
def srv():
    d = tempfile.mkdtemp(prefix="kw-bb-tls-")
    s = Server(d).start()
    yield s
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def client_ctx(s, minv, maxv, seclevel0=False):
    ctx = ssl.create_default_context(cafile=s.cacert)
    if seclevel0:
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = minv
    ctx.maximum_version = maxv
    return ctx


def get_over(ctx, port, path="/healthz"):
    """One HTTP/1.1 GET over a raw TLS socket: (version, cipher, status line, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as t:
            version, cipher = t.version(), t.cipher()
            t.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" % path)
                      .encode())
            data = b""
            while True:
                chunk = t.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return version, cipher, head.split(b"\r\n"), body


def test_tls13(srv):
    ctx = client_ctx(srv, ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_3)
    version, cipher, head, body = get_over(ctx, srv.port)
    assert version == "TLSv1.3"
    assert cipher[0] in TLS13_SUITES, cipher
    assert head[0].startswith(b"HTTP/1.1 200"), head
    assert json.loads(body) == {"status": "ok"}


def test_tls12(srv):
    ctx = client_ctx(srv, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_2)
    version, cipher, head, body = get_over(ctx, srv.port)
    assert version == "TLSv1.2"
    # forward secrecy and an AEAD cipher
    assert cipher[0].startswith("ECDHE-") or cipher[0].startswith("DHE-"), cipher
    assert "GCM" in cipher[0] or "CHACHA20" in cipher[0], cipher
    assert head[0].startswith(b"HTTP/1.1 200"), head


def _local_tls11_server(s):
    """A Python TLS server that accepts TLS 1.1, to prove that our client
    really offers TLS 1.1 (so that the refusal below is the server's)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.load_cert_chain(s.cacert, os.path.join(s.dir, "tls", "key.pem"))
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)

    def serve():
        try:
            c, _ = ls.accept()
            with ctx.wrap_socket(c, server_side=True) as t:
                t.recv(1024)
                t.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        except (OSError, ssl.SSLError):
            pass
        finally:
            ls.close()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    return ls.getsockname()[1], th


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_tls11_refused(srv):
    ctx = client_ctx(srv, ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_1, seclevel0=True)
    port, th = _local_tls11_server(srv)
    try:
        version, _, head, _ = get_over(ctx, port)
    except ssl.SSLError as e:
        pytest.skip("this client cannot speak TLS 1.1 at all (%s)" % e)
    th.join(5)
    assert version == "TLSv1.1" and head[0].startswith(b"HTTP/1.1 200")
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        get_over(ctx, srv.port)
    # the server is fine afterwards
    assert requests.get(srv.url + "/healthz", verify=srv.cacert, timeout=5).status_code == 200


def test_plain_http_refused(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as c:
        c.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            data = c.recv(4096)
        except ConnectionResetError:
            data = b""
    assert b'"status":"ok"' not in data


def test_healthz_json(srv):
    r = requests.get(srv.url + "/healthz", verify=srv.cacert, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.json() == {"status": "ok"}
    r = requests.post(srv.url + "/healthz", verify=srv.cacert, timeout=5)
    assert r.status_code == 405
    assert "GET" in r.headers.get("Allow", "")


def test_unknown_path_404_json(srv):
    r = requests.get(srv.url + "/nothing-here", verify=srv.cacert, timeout=5)
    assert r.status_code == 404
    assert r.json()["error"] == "no_route"


def test_metrics(srv):
    # some traffic first, so that the counters have something to count
    assert srv.api("POST", "/api/v1/keys", {"name": "m-1", "type": "AES"}).status_code == 201
    assert srv.api("GET", "/api/v1/keys/m-404").status_code == 404
    r = requests.get(srv.url + "/metrics", verify=srv.cacert, timeout=5)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain")
    text = r.text
    m = promtext.parse(text)    # strict: every series labelled node="<id>"
    # no [db] node_name: the host name, in the node id's alphabet
    host = "".join(c for c in socket.gethostname() if c.isascii() and (c.isalnum() or c in "._-"))
    assert m.node == (host[:64] or "keyward"), (m.node, socket.gethostname())
    http_total = [v for _, _, v in m.find("keyward_http_requests_total")]
    assert http_total and sum(http_total) >= 2, text
    assert m.value("keyward_custody_up") == 1, text
    assert m.value("keyward_custody_requests_total") >= 2, text
    assert m.has("keyward_custody_hsm_calls_total"), text
    assert m.value("keyward_custody_hsm_up") == 1, text
    assert m.types["keyward_custody_requests_total"] == "counter"
    assert m.value("keyward_node_info", engine="sqlcipher", version="0.1.0") == 1, text
    # a single appliance: no fleet series
    assert not m.has("keyward_db_up") and not m.has("keyward_fleet_nodes"), text
    # no secret or token material in the metrics
    assert srv.token not in text
