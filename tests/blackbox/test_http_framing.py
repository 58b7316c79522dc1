"""Request heads that CivetWeb would misread (issue 10, finding 5): each is
sent on a raw TLS connection followed by a body that is itself a complete
request (GET /healthz).  The server must answer exactly once - 431 for more
header lines than CivetWeb keeps, 400 for the other forms - in the usual
{"error","message"} shape with Connection: close, and then close: no byte of
the body may be read as a second request.  Heads at the limits (exactly 64
lines, every token character in a name) are still served, with the body
taken as the body."""
import json
import socket
import ssl
import time

import pytest

SMUGGLED = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def exchange(s, payload, timeout=5):
    """Sends payload on a fresh connection; returns (every byte the server
    sent, whether it closed the connection) after at most timeout seconds."""
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    ctx = ssl.create_default_context(cafile=s.cacert)
    ctx.check_hostname = False
    sock = ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    data, closed = b"", False
    deadline = time.time() + timeout
    try:
        try:
            sock.sendall(payload)
        except (ssl.SSLError, OSError):
            pass
        while time.time() < deadline:
            sock.settimeout(max(0.05, deadline - time.time()))
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except (ssl.SSLError, OSError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            data += chunk
    finally:
        sock.close()
    return data, closed


def responses(data):
    """Splits a byte stream into (status, headers, body) responses."""
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, "truncated response: %r" % data[:200]
        lines = head.decode("latin-1").split("\r\n")
        hdrs = dict((k.strip().lower(), v.strip()) for k, v in (l.split(":", 1) for l in lines[1:]))
        n = int(hdrs.get("content-length", "0"))
        out.append((int(lines[0].split()[1]), hdrs, rest[:n]))
        data = rest[n:]
    return out


def head(lines, body=SMUGGLED, method=b"POST", first=b""):
    return first + method + b" /healthz HTTP/1.1\r\n" + b"".join(lines) + b"\r\n" + body


CL = b"Content-Length: %d\r\n" % len(SMUGGLED)
HOST = b"Host: 127.0.0.1\r\n"
FILL = [b"X-Fill-%02d: v\r\n" % i for i in range(64)]

# (name, request bytes, expected status, words expected in the message)
REFUSED = [
    ("65 lines, Content-Length last", head([HOST] + FILL[:63] + [CL]), 431, "64 header lines"),
    ("100 lines, Content-Length last", head([HOST] + FILL * 2 + [CL]), 431, "64 header lines"),
    ("65 lines, LF-ended", head([HOST] + [l.replace(b"\r\n", b"\n") for l in FILL[:63]] + [CL]),
     400, "bare LF"),
    ("space before colon", head([HOST, b"Content-Length : %d\r\n" % len(SMUGGLED)]), 400, "colon"),
    ("spaces before colon, empty value", head([HOST, b"X-Empty  :\r\n", CL]), 400, "colon"),
    ("name with '('", head([HOST, b"X(y): 1\r\n", CL]), 400, "token"),
    ("name with '/'", head([HOST, b"Content-Length/: 1\r\n", CL]), 400, "token"),
    ("name with '\"'", head([HOST, b"X\"y: 1\r\n", CL]), 400, "token"),
    ("obs-fold hides Content-Length", head([HOST, b"X: a\r\n", b" folded\r\n", CL]), 400, "field name"),
    ("line starting with a byte >= 0x80", head([HOST, b"\xc3\xa9X: y\r\n", CL]), 400, "field name"),
    ("line starting with ':'", head([HOST, b": y\r\n", CL]), 400, "field name"),
    ("bare CR line", head([HOST, b"\rX: y\r\n", CL]), 400, "bare CR"),
    ("LF then CR line", head([HOST.replace(b"\r\n", b"\n"), b"\r" + CL]), 400, "bare LF"),
    ("bare LF line end", head([HOST.replace(b"\r\n", b"\n"), CL]), 400, "bare LF"),
    ("empty lines before the request line", head([HOST, CL], first=b"\r\n\r\n"), 400, "empty line"),
    ("one empty line before the request line", head([HOST, CL], first=b"\r\n"), 400, "empty line"),
    ("two spaces after the method", head([HOST, CL]).replace(b"POST ", b"POST  ", 1), 400, "space"),
    ("no header field", b"POST /healthz HTTP/1.1\r\n\r\n", 400, "no Host"),
    ("no Host", head([CL]), 400, "no Host"),
    ("two Host lines", head([HOST, b"Host: 127.0.0.2\r\n", CL]), 400, "more than one Host"),
    ("two Transfer-Encoding lines", head([HOST, b"Transfer-Encoding: identity\r\n",
                                         b"Transfer-Encoding: chunked\r\n"],
                                        body=b"%x\r\n%s\r\n0\r\n\r\n" % (len(SMUGGLED), SMUGGLED)),
     400, "conflicting"),
    ("Transfer-Encoding identity", head([HOST, b"Transfer-Encoding: identity\r\n"]), 400,
     "Transfer-Encoding"),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    from conftest import Server
    s = Server(str(tmp_path_factory.mktemp("framing"))).start()
    yield s
    s.stop()


@pytest.mark.parametrize("name,payload,status,words", REFUSED, ids=[c[0] for c in REFUSED])
def test_misread_head_is_refused_once_and_closed(srv, name, payload, status, words):
    data, closed = exchange(srv, payload)
    got = responses(data)
    assert len(got) == 1, "%d responses: %r" % (len(got), data[:600])
    st, hdrs, body = got[0]
    assert st == status, (st, body)
    j = json.loads(body)
    assert set(j) == {"error", "message"}, j
    assert j["error"] == ("too_large" if status == 431 else "invalid_input"), j
    assert words in j["message"], j
    assert hdrs.get("connection") == "close" and hdrs.get("content-type") == "application/json"
    assert closed, "the connection stayed open"
    assert srv.proc.poll() is None


def test_heads_at_the_limits_are_served_with_their_body(srv):
    # exactly 64 lines, the Content-Length the 64th: the body is the body
    data, _ = exchange(srv, head([HOST] + FILL[:62] + [CL]), timeout=2)
    got = responses(data)
    assert [g[0] for g in got] == [405], data[:300]     # /healthz is GET-only; one answer
    # every token character in a name, spaces after the colon, an empty value
    names = b"!#$%&'*+-.^_`|~09azAZ"
    data, _ = exchange(srv, head([HOST, names + b": x\r\n", b"X-Ows:   v\r\n", b"X-Empty:\r\n"],
                                 body=b"", method=b"GET"), timeout=2)
    assert [g[0] for g in responses(data)] == [200], data[:300]
    # two requests kept alive on one connection, in one write
    two = head([HOST], body=b"", method=b"GET") * 2
    data, _ = exchange(srv, two, timeout=2)
    assert [g[0] for g in responses(data)] == [200, 200], data[:300]


def test_refusals_are_logged_and_nothing_smuggled_ran(srv):
    time.sleep(0.3)
    with open(srv.log_path, "rb") as f:
        lines = [json.loads(l) for l in f if b'"event":"request"' in l]
    assert sum(l["status"] == 431 and l["error"] == "too_large" for l in lines) == \
        sum(c[2] == 431 for c in REFUSED)
    assert sum(l["status"] == 400 for l in lines) == sum(c[2] == 400 for c in REFUSED)
    # GET /healthz ran for the start-up probe and the three requests above only
    assert sum(l["route"] == "healthz" and l["method"] == "GET" for l in lines) == 4, lines
