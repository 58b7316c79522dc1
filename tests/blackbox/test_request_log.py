"""Request log lines are always valid JSON (issue 10, finding 10): requests
whose path carries bytes that are not UTF-8 (sent raw over TLS, on every
route family), and an XKS request whose kmsRequestId the log line cuts (at
128 bytes) in the middle of a multi-byte character; afterwards every line of
the server log decodes as strict UTF-8 and parses as a JSON object, and the
cut identifier ends in U+FFFD."""
import json
import socket
import ssl
import time

import pytest

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
