"""Bad-input catalogue (issue 6): hundreds of malformed or hostile requests
across the EKM, XKS and admin APIs, generated from tables.  Each case sends
exact bytes over a real TLS connection (python's ssl; client certificates
for EKM, botocore SigV4 for XKS) and asserts the documented status and the
protocol's error body: EKM {"code"}, XKS {"errorName"}, admin and the HTTP
layer {"error"}.  After every group: /healthz and one valid request per API
still answer, and neither the key documents nor the audit trail changed
(none of these requests reaches a key operation in the custody process, so
no audit row is expected either)."""
import base64
import json
import os
import shutil
import socket
import ssl
import tempfile
import threading
import time

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import Server
from ekm_certs import make_pki
from test_ekm import ALLOWED_CN, API, CTX, OTHER_CN, PREFIX, ekm_env
from test_xks import AKID, META, REGION, SECRET, SVC, TOML

REQUEST_TIMEOUT_MS = 2000
AES_RAW = bytes(range(32))   # imported; only the snapshot cares about it
EKM_BASE = "/azureekm/" + PREFIX
XKS_BASE = "/a/kms/xks/v1"


# ------------------------------------------------------------ transport

class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body.decode("utf-8"))


def tls_ctx(s, cert=None):
    ctx = ssl.create_default_context(cafile=s.cacert)
    ctx.check_hostname = False
    if cert:
        ctx.load_cert_chain(cert[0], cert[1])
    return ctx


def connect(s, cert=None, timeout=10):
    raw = socket.create_connection(("127.0.0.1", s.port), timeout=timeout)
    return tls_ctx(s, cert).wrap_socket(raw, server_hostname="127.0.0.1")


def read_response(sock, timeout=10):
    """Reads one HTTP/1.1 response (Content-Length framed, or up to the
    close).  None when the server closed without answering."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.time() + timeout
    while b"\r\n\r\n" not in data:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, ConnectionError):
            chunk = b""
        if not chunk:
            return None if not data else _parse(data)
        data += chunk
        assert time.time() < deadline, "no response header in time"
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for l in lines[1:]:
        k, v = l.split(":", 1)
        headers[k.strip().lower()] = v.strip()
    want = int(headers.get("content-length", "0"))
    while len(body) < want:
        try:
            chunk = sock.recv(65536)
        except (ssl.SSLError, ConnectionError):
            break
        if not chunk:
            break
        body += chunk
    return Resp(status, headers, body[:want])


def _parse(data):
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    return Resp(int(lines[0].split()[1]), {}, body)


def send_raw(s, payload, cert=None, timeout=10):
    """Sends exact bytes on a fresh TLS connection; returns the response."""
    sock = connect(s, cert, timeout)
    try:
        try:
            sock.sendall(payload)
        except (ssl.SSLError, ConnectionError):
            pass    # the server may answer and close before it read everything
        return read_response(sock, timeout)
    finally:
        sock.close()


def build(method, path, headers=(), body=None, host="127.0.0.1"):
    """Request bytes; headers is a list of (name, value) kept in order (so
    duplicates can be sent); Content-Length added unless one is given."""
    hdrs = [("Host", host)] + list(headers)
    names = {h[0].lower() for h in hdrs}
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        hdrs.append(("Content-Length", str(len(body))))
    if "connection" not in names:
        hdrs.append(("Connection", "close"))
    out = ("%s %s HTTP/1.1\r\n" % (method, path)).encode("latin-1")
    for k, v in hdrs:
        out += k.encode("latin-1") + b": " + (v if isinstance(v, bytes) else v.encode("latin-1")) + b"\r\n"
    return out + b"\r\n" + (body or b"")


def as_bytes(body):
    if body is None or isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode("utf-8")
    return json.dumps(body).encode()


# --------------------------------------------------------- the catalogue

class Case:
    """One hostile request: api is admin/ekm/xks (who signs or authenticates
    it), expect = (status, shape, name) where shape says which error body:
    "admin" ({"error"}, also the HTTP layer's), "ekm", "xks"."""

    def __init__(self, group, cid, api, expect, method="POST", path=None, body=None,
                 ctype="application/json", headers=(), raw=None, sign=True, audited=False):
        self.group, self.id, self.api, self.expect = group, cid, api, expect
        # audited: refused by the custody process, which records the failed
        # admin action (an import's material is decoded there, never in the front)
        self.audited = audited
        self.method, self.path, self.body = method, path, as_bytes(body)
        self.ctype, self.headers, self.raw, self.sign = ctype, list(headers), raw, sign


def admin_h(token):
    return [("Authorization", "Bearer " + token)]


def xks_sign(method, path, body, ctype, extra=()):
    """SigV4 headers for exact bytes (botocore's signer, the independent one)."""
    h = {"Content-Type": ctype} if ctype is not None else {}
    h.update(dict(extra))
    req = AWSRequest(method=method, url="https://127.0.0.1" + path, data=body or b"", headers=h)
    SigV4Auth(Credentials(AKID, SECRET), SVC, REGION).add_auth(req)
    return [(k, v) for k, v in req.headers.items() if k.lower() not in ("content-type",)]


def payload_of(case, s):
    if case.raw is not None:
        return case.raw(s) if callable(case.raw) else case.raw
    headers = []
    if case.ctype is not None:
        headers.append(("Content-Type", case.ctype))
    if case.api == "admin":
        headers += admin_h(s.token)
    elif case.api == "xks" and case.sign:
        headers += xks_sign(case.method, case.path, case.body, case.ctype,
                            [h for h in case.headers if h[0].lower() != "content-length"])
    headers += case.headers
    return build(case.method, case.path, headers, case.body)


def cert_of(case, env):
    return env["pki"]["allowed"] if case.api == "ekm" else None


def check(case, r):
    """None when the response is the documented one, else a description."""
    status, shape, name = case.expect
    if r is None:
        return "connection closed without a response"
    if r.status != status:
        return "status %d (want %d): %r" % (r.status, status, r.body[:200])
    try:
        j = r.json()
    except ValueError:
        return "body is not JSON: %r" % r.body[:200]
    if not isinstance(j, dict):
        return "body is not an object: %r" % j
    if shape == "ok":
        ok = True
    elif shape == "admin":
        ok = set(j) == {"error", "message"} and j["error"] == name
    elif shape == "ekm":
        ok = set(j) == {"code", "message"} and j["code"] == name
    else:
        ok = set(j) == {"errorName", "errorMessage"} and j["errorName"] == name
    if not ok:
        return "body %r (want %s %s)" % (j, shape, name)
    if r.headers.get("content-type", "").split(";")[0] != "application/json":
        return "content type %r" % r.headers.get("content-type")
    return None


# EKM and XKS bodies that are valid, to derive the hostile ones from
def ekm_wrap_body():
    return {"request_context": CTX, "alg": "A256KW",
            "value": base64.urlsafe_b64encode(bytes(32)).rstrip(b"=").decode()}


def xks_enc_body():
    return {"requestMetadata": META, "plaintext": base64.b64encode(b"hello").decode(),
            "encryptionAlgorithm": "AES_GCM"}


ADMIN_CREATE = {"name": "bi-new", "type": "AES", "size": 256}
ADMIN_IMPORT = {"name": "bi-imp", "type": "AES", "material": base64.b64encode(bytes(32)).decode()}

BAD_JSON = (400, "admin", "bad_json")
EKM_400 = (400, "ekm", "InvalidRequest")
XKS_400 = (400, "xks", "ValidationException")
TOO_LARGE = (413, "admin", "too_large")

API_PATHS = {"admin": "/api/v1/keys", "admin-import": "/api/v1/keys/import",
             "ekm": EKM_BASE + "/bi-aes/wrapkey" + API, "xks": XKS_BASE + "/keys/bi-aes/encrypt"}
MALFORMED = {"admin": BAD_JSON, "ekm": EKM_400, "xks": XKS_400}


def dumps_raw(obj):
    return json.dumps(obj).encode()


def catalogue():
    cases = []

    def add(*a, **kw):
        cases.append(Case(*a, **kw))

    valid = {"admin": dumps_raw(ADMIN_CREATE), "ekm": dumps_raw(ekm_wrap_body()),
             "xks": dumps_raw(xks_enc_body())}
    for api in ("admin", "ekm", "xks"):
        path = API_PATHS[api]
        doc = valid[api]
        # -- truncated bodies: every prefix length at a spread of cut points
        cuts = sorted({1, 2, 5, 9} | {len(doc) * k // 13 for k in range(1, 13)} | {len(doc) - 1})
        for n in cuts:
            add("truncated", "%s-cut%d" % (api, n), api, MALFORMED[api], path=path, body=doc[:n])
        # a Content-Length larger than what is sent: the request times out or ends short
        # -- not JSON at all
        for i, junk in enumerate([b"", b" ", b"null", b"[]", b"[1]", b"\"str\"", b"42", b"true",
                                  b"{}{}", b"{} x", b"\x00", b"{\x00}", b"{'a':1}",
                                  b"{\"a\":1,}", b"\xef\xbb\xbf{}", b"\n" * 100]):
            exp = MALFORMED[api]
            if api == "admin" and junk == b"":
                exp = (400, "admin", "missing_field")
            add("not-json", "%s-junk%d" % (api, i), api, exp, path=path, body=junk)
        # -- invalid UTF-8 inside a string of an otherwise valid body
        for i, bad in enumerate([b"\xff", b"\xc0\x80", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                 b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80\x80", b"\xfe\xfe"]):
            field = {"admin": b"\"bi-new\"", "ekm": b"\"contoso-mhsm\"", "xks": b"\"Encrypt\""}[api]
            assert field in doc
            body = doc.replace(field, field[:-1] + bad + b"\"")
            exp = {"admin": (400, "admin", "bad_encoding"), "ekm": EKM_400, "xks": XKS_400}[api]
            add("utf8", "%s-utf8-%d" % (api, i), api, exp, path=path, body=body)
        # -- duplicate member names (top level and nested)
        top = doc[:-1] + (b", \"name\": \"x\"}" if api == "admin" else
                          b", \"alg\": \"A256KW\"}" if api == "ekm" else
                          b", \"encryptionAlgorithm\": \"AES_GCM\"}")
        dups = [top, b"{\"a\":1,\"a\":1}", doc[:-1] + b", \"z\":{\"q\":1,\"q\":2}}"]
        if api == "ekm":
            dups.append(doc.replace(b"\"pool_name\"", b"\"pool_name\": \"x\", \"pool_name\""))
        if api == "xks":
            dups.append(doc.replace(b"\"kmsOperation\"", b"\"kmsOperation\": \"x\", \"kmsOperation\""))
        for i, d in enumerate(dups):
            add("duplicate-keys", "%s-dup%d" % (api, i), api, MALFORMED[api], path=path, body=d)
        # -- deep nesting
        for depth in (17, 64, 1000, 7000):
            for i, nest in enumerate([b"[" * depth + b"]" * depth,
                                      b"{\"a\":" * depth + b"1" + b"}" * depth]):
                body = doc[:-1] + b", \"n\": " + nest + b"}"
                add("nesting", "%s-depth%d-%d" % (api, depth, i), api, MALFORMED[api], path=path,
                    body=body, )
        # -- huge and odd numbers where the protocol has a field
        nums = [b"1e400", b"-1e400", b"18446744073709551617", b"1" * 400, b"-0", b"1.5", b"0x10",
                b"NaN", b"Infinity", b"01"]
        for i, n in enumerate(nums):
            if api == "admin":
                body = doc.replace(b"256", n)
                # beyond a double's range is a JSON error; the rest a field error
                exp = (400, "admin", "bad_json") if n in (b"0x10", b"NaN", b"Infinity", b"01", b"1e400",
                                                          b"-1e400", b"1" * 400) \
                    else (400, "admin", "bad_field")
            elif api == "ekm":
                body = doc.replace(b"\"A256KW\"", n)
                exp = EKM_400
            else:
                body = doc.replace(b"\"AES_GCM\"", n)
                exp = XKS_400
            add("numbers", "%s-num%d" % (api, i), api, exp, path=path, body=body)
        # -- wrong content types (signed as sent for XKS)
        for i, ct in enumerate([] if api == "xks" else ["text/plain", "application/x-www-form-urlencoded",
                                "multipart/form-data; boundary=x", "application/jsonx",
                                "application/xml", "json", "application/json-patch+json"]):
            # (XKS: below, it does not look at Content-Type)
            exp = {"admin": (415, "admin", "unsupported_media_type"), "ekm": EKM_400}[api]
            add("content-type", "%s-ct%d" % (api, i), api, exp, path=path, body=doc, ctype=ct)
        # -- oversized bodies (over [http] max_body_bytes: the HTTP layer answers)
        for i, size in enumerate([65537, 70000, 1 << 20]):
            big = doc[:-1] + b", \"pad\": \"" + b"A" * size + b"\"}"
            # each route formats http.c's refusal in its protocol (docs/ekm.md, docs/xks.md)
            exp = {"admin": TOO_LARGE, "ekm": EKM_400,
                   "xks": (501, "xks", "UnsupportedOperationException")}[api]
            add("oversized", "%s-big%d" % (api, i), api, exp, path=path, body=big, sign=False)
        # -- wrong methods
        for m in ("GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"):
            if api == "admin":
                if m == "GET":
                    continue        # GET /api/v1/keys lists
                exp = (405, "admin", "method_not_allowed")
            elif api == "ekm":
                exp = (405, "ekm", "InvalidRequest")
            else:
                exp = (405, "xks", "ValidationException")
            if m == "HEAD":
                continue            # no body to check
            add("methods", "%s-%s" % (api, m), api, exp, method=m, path=path, body=doc)

    # XKS does not look at Content-Type (docs/xks.md lists none; AWS always sends
    # application/json and the body is parsed strictly either way): a signed
    # request with another type is served, and the signature covers the type.
    for i, ct in enumerate(["text/plain", "application/xml", "application/jsonx", "x"]):
        add("content-type", "xks-ct%d" % i, "xks", (200, "ok", None),
            path=XKS_BASE + "/keys/bi-aes/metadata", body={"requestMetadata": META}, ctype=ct)
    # -- invalid base64 variants, per protocol's field
    b64_bad = ["A", "AA", "AAA", "AAAAA", "AA=A", "A===", "====", "AAAA====", "AA==AA==",
               "AA AA", "AA\nAA", "AA\\u0000A", "-_-_", "\u00e9AAA", "AAA*", "AAAA\t"]
    for i, v in enumerate(b64_bad):
        add("base64", "admin-b64-%d" % i, "admin", (400, "admin", "bad_encoding"),
            path="/api/v1/keys/import", body=dict(ADMIN_IMPORT, material=v), audited=True)
        xb = xks_enc_body()
        xb["plaintext"] = v
        add("base64", "xks-b64-%d" % i, "xks", XKS_400, path=API_PATHS["xks"], body=xb)
    ekm_bad = ["A", "AAAAA", "AAAA=", "AA==", "AA+A", "AA/A", "AA AA", "AA\nA", "AA.A", "\u00e9AAA",
               "AAAA*", "A=AA"]
    for i, v in enumerate(ekm_bad):
        add("base64", "ekm-b64u-%d" % i, "ekm", EKM_400, path=API_PATHS["ekm"],
            body=dict(ekm_wrap_body(), value=v))

    # -- path traversal and encoded paths
    trav = ["/../api/v1/keys", "/api/v1/keys/..", "/api/v1/keys/../tokens", "/api/v1/keys/.",
            "/api/v1/keys/%2e%2e", "/api/v1/keys/%2E%2e/x", "/api/v1/./keys"]
    for i, p in enumerate(trav):
        add("paths", "trav-%d" % i, "admin", (400, "admin", "invalid_input"), method="GET", path=p,
            ctype=None)
    enc = ["/api/v1/keys/a%2Fb", "/api/v1/keys/a%00b", "/api/v1/keys/%", "/api/v1/keys/%zz",
           "/api/v1/keys/a%20b", "/api/v1/keys/" + "a" * 300, "/api/v1/keys/a%2fb/rotate",
           "/api/v1/keys/%C3%A9"]
    for i, p in enumerate(enc):
        add("paths", "admin-enc-%d" % i, "admin", (400, "admin", "bad_name"), method="GET", path=p,
            ctype=None)
    for i, p in enumerate(["/api/v1/keys/a//b", "/api/v1/keys//x", "/api/v1/keys/x/", "/api/v1/nokeys",
                           "/api/v2/keys", "/API/v1/keys"]):
        exp = (404, "admin", "no_route") if i >= 3 else (400, "admin", "bad_name")
        add("paths", "admin-shape-%d" % i, "admin", exp, method="GET", path=p, ctype=None)
    for i, p in enumerate(["/bi-aes/../info", "/%2e%2e/info", "/./bi-aes/wrapkey"]):
        add("paths", "ekm-trav-%d" % i, "ekm", (400, "admin", "invalid_input"),
            path=EKM_BASE + p + API, body=ekm_wrap_body())
    for i, p in enumerate(["/bi%2Daes/wrapkey", "/bi%2Faes/wrapkey", "/bi-aes%00/wrapkey",
                           "/bi-aes/wrapkey/", "//bi-aes/wrapkey", "/bi-aes/WRAPKEY", "/bi-aes/",
                           "/" + "a" * 65 + "/wrapkey", "/bi%20aes/wrapkey", "/bi-aes/wrapkey%3Fx"]):
        add("paths", "ekm-enc-%d" % i, "ekm", EKM_400, path=EKM_BASE + p + API, body=ekm_wrap_body())
    for i, p in enumerate(["/a/kms/xks/v1/keys/bi-aes/../encrypt", "/a/kms/xks/v1/keys/%2e%2e/encrypt"]):
        add("paths", "xks-trav-%d" % i, "xks", (400, "admin", "invalid_input"), path=p,
            body=xks_enc_body(), sign=False)
    for i, p in enumerate(["/a/kms/xks/v1/keys//encrypt", "/a/kms/xks/v1/keys/bi-aes/encrypt/",
                           "/a/kms/xks/v1/keys/bi-aes/sign", "/a/kms/xks/v1/keys/bi-aes/encrypt?x=1",
                           "/a/kms/xks/v2/health", "/A/kms/xks/v1/health", "/a/kms/xks/v1/keys/" + "k" * 129
                           + "/encrypt", "/a%2Fb/kms/xks/v1/health"]):
        add("paths", "xks-enc-%d" % i, "xks", (404, "xks", "InvalidUriPathException"), path=p,
            body=xks_enc_body(), sign=False)

    # -- api-version and query abuse (EKM), query abuse (admin)
    for i, q in enumerate(["", "?api-version=", "?api-version=0.1-preview&api-version=0.1-preview",
                           "?api-version=0.1-preview%00", "?api-version=" + "9" * 5000,
                           "?api-version=%ZZ", "?api-version=1.0"]):
        exp = (400, "ekm", "UnsupportedApiVersion")
        if len(q) > 4000:
            exp = (400, "ekm", "UnsupportedApiVersion")
        add("query", "ekm-q-%d" % i, "ekm", exp, path=EKM_BASE + "/bi-aes/wrapkey" + q,
            body=ekm_wrap_body())
    for i, q in enumerate(["?limit=-1", "?limit=99999999999999999999", "?limit=abc", "?limit=1&limit=2",
                           "?bogus=1", "?cursor=%ZZ", "?limit=", "?limit=1%00", "?cursor=" + "x" * 300,
                           "?state=%FF"]):
        exp = (400, "admin", "bad_encoding" if "%" in q[-3:] or "%ZZ" in q or "%00" in q else "bad_field")
        add("query", "admin-q-%d" % i, "admin", exp, method="GET",
            path="/api/v1/keys" + q, ctype=None)

    # -- authentication abuse (admin bearer, XKS SigV4 shapes)
    for i, auth in enumerate([None, "", "Bearer", "Bearer ", "Basic YTpi", "Bearer " + "A" * 8000,
                              "bearer x", "Bearer \x01\x02", "Bearer kwt_" + "0" * 40]):
        hdr = [] if auth is None else [("Authorization", auth)]
        exp = (401, "admin", "unauthenticated")
        if auth is not None and "\x01" in auth:
            exp = (400, "admin", "invalid_input")   # control bytes: CivetWeb refuses the header
        add("auth", "admin-auth-%d" % i, "admin", exp, method="GET", path="/api/v1/keys",
            raw=build("GET", "/api/v1/keys", hdr))
    for i, auth in enumerate(["AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 Credential=", "Bearer x",
                              "AWS4-HMAC-SHA256 Credential=%s/20240101/%s/%s/aws4_request, "
                              "SignedHeaders=host, Signature=00" % (AKID, REGION, SVC),
                              "AWS4-HMAC-SHA256 " + "A" * 6000]):
        body = dumps_raw(xks_enc_body())
        add("auth", "xks-auth-%d" % i, "xks", (401, "xks", "AuthenticationFailedException"),
            raw=build("POST", API_PATHS["xks"], [("Content-Type", "application/json"),
                                                 ("X-Amz-Date", "20240101T000000Z"),
                                                 ("Authorization", auth)], body))

    # -- malformed HTTP framing (raw)
    H = "127.0.0.1"
    framing = [
        ("two-content-length", "admin", (400, "admin", "invalid_input"),
         lambda s: build("POST", "/api/v1/keys", admin_h(s.token) + [
             ("Content-Type", "application/json"), ("Content-Length", "2"), ("Content-Length", "3")],
             b"{}")),
        ("cl-not-number", "admin", (400, "admin", "invalid_input"),
         lambda s: build("POST", "/api/v1/keys", admin_h(s.token) + [
             ("Content-Type", "application/json"), ("Content-Length", "2x")], b"{}")),
        ("cl-negative", "admin", (411, "admin", "invalid_input"),   # CivetWeb's status
         lambda s: build("POST", "/api/v1/keys", admin_h(s.token) + [
             ("Content-Type", "application/json"), ("Content-Length", "-5")], b"{}")),
        ("cl-huge", "admin", TOO_LARGE,
         lambda s: build("POST", "/api/v1/keys", admin_h(s.token) + [
             ("Content-Type", "application/json"), ("Content-Length", "99999999999")], b"{}")),
        ("bad-chunked", "admin", (400, "admin", "invalid_input"),
         lambda s: build("POST", "/api/v1/keys", admin_h(s.token) + [
             ("Content-Type", "application/json"), ("Transfer-Encoding", "chunked")],
             b"zz\r\n{}\r\n0\r\n\r\n")),
        ("cl-short-then-close", "admin", (400, "admin", "invalid_input"),
         lambda s: build("POST", "/api/v1/keys", admin_h(s.token) + [
             ("Content-Type", "application/json"), ("Content-Length", "100")], b"{}")),
        ("bad-request-line-1", "admin", (400, "admin", "invalid_input"), b"GARBAGE\r\n\r\n"),
        ("bad-request-line-2", "admin", (400, "admin", "invalid_input"),
         b"GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n"),
        ("bad-version", "admin", (505, "admin", "unsupported"),
         b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n"),
        ("no-path", "admin", (400, "admin", "invalid_input"), b"GET  HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("relative-path", "admin", (400, "admin", "invalid_input"),
         b"GET healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        ("space-in-path", "ekm", (400, "admin", "invalid_input"),
         ("POST %s/bi aes/wrapkey%s HTTP/1.1\r\nHost: x\r\n\r\n" % (EKM_BASE, API)).encode()),
        ("ctl-in-path", "admin", (400, "admin", "invalid_input"),
         b"GET /api/v1/keys/\x01 HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("header-no-colon", "admin", (400, "admin", "invalid_input"),
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"),
        ("long-uri", "admin", (400, "admin", "invalid_input"),
         ("GET /" + "a" * 20000 + " HTTP/1.1\r\nHost: x\r\n\r\n").encode()),
        ("header-flood-count", "admin", (400, "admin", "invalid_input"),
         b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
         + b"\r\n"),
        ("header-flood-size", "admin", (400, "admin", "invalid_input"),
         b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20000 + b"\r\n\r\n"),
        ("header-flood-ekm", "ekm", (400, "admin", "invalid_input"),
         ("POST %s/info%s HTTP/1.1\r\nHost: x\r\n" % (EKM_BASE, API)).encode()
         + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(300)) + b"\r\n"),
        ("header-flood-xks", "xks", (400, "admin", "invalid_input"),
         ("POST %s/health HTTP/1.1\r\nHost: x\r\n" % XKS_BASE).encode()
         + b"".join(b"X-Amz-H%d: %s\r\n" % (i, b"v" * 100) for i in range(300)) + b"\r\n"),
    ]
    for name, api, exp, raw in framing:
        add("framing", name, api, exp, raw=raw)
    del H
    return cases


CASES = catalogue()
GROUPS = sorted({c.group for c in CASES})


# ------------------------------------------------------------- the server

@pytest.fixture(scope="module")
def env():
    d = tempfile.mkdtemp(prefix="kw-bb-bad-")
    pki = make_pki(os.path.join(d, "pki"), ALLOWED_CN, OTHER_CN)
    s = Server(os.path.join(d, "srv"), extra_toml=TOML,
               env=ekm_env(pki, KEYWARD_HTTP_REQUEST_TIMEOUT_MS=str(REQUEST_TIMEOUT_MS))).start()
    r = s.api("POST", "/api/v1/keys/import", {
        "name": "bi-aes", "type": "AES", "material": base64.b64encode(AES_RAW).decode(),
        "operations": ["wrap", "unwrap", "encrypt", "decrypt"],
        "rules": {"xks": {"key_stores": ["default"]}}})
    assert r.status_code == 201, r.text
    yield {"s": s, "pki": pki}
    s.stop()
    shutil.rmtree(d, ignore_errors=True)


def snapshot(s):
    time.sleep(0.15)        # the audit group commit
    keys = s.api("GET", "/api/v1/keys?limit=1000")
    assert keys.status_code == 200, keys.text
    v = s.api("POST", "/api/v1/audit/verify").json()
    assert v["ok"] is True, v
    return {"keys": keys.json()["keys"], "audit_rows": v["rows"]}


def still_serving(env):
    """/healthz plus one valid request per API."""
    s = env["s"]
    r = send_raw(s, build("GET", "/healthz"))
    assert r is not None and r.status == 200, r and r.body
    r = send_raw(s, build("GET", "/api/v1/keys/bi-aes", admin_h(s.token)))
    assert r.status == 200 and json.loads(r.body)["name"] == "bi-aes", r.body
    body = dumps_raw({"request_context": CTX})
    r = send_raw(s, build("POST", EKM_BASE + "/info" + API, [("Content-Type", "application/json")],
                          body), cert=env["pki"]["allowed"])
    assert r.status == 200, r.body
    path = XKS_BASE + "/keys/bi-aes/metadata"
    body = dumps_raw({"requestMetadata": META})
    r = send_raw(s, build("POST", path, [("Content-Type", "application/json")]
                          + xks_sign("POST", path, body, "application/json"), body))
    assert r.status == 200, r.body


def test_catalogue_size():
    assert len(CASES) >= 300, len(CASES)
    ids = [(c.group, c.id) for c in CASES]
    assert len(set(ids)) == len(ids)
    assert {c.api for c in CASES} == {"admin", "ekm", "xks"}


@pytest.mark.parametrize("group", GROUPS)
def test_group(env, group):
    s = env["s"]
    before = snapshot(s)
    bad = []
    for c in [c for c in CASES if c.group == group]:
        r = send_raw(s, payload_of(c, s), cert=cert_of(c, env))
        why = check(c, r)
        if why:
            bad.append("%s/%s: %s" % (c.group, c.id, why))
    assert not bad, "%d of the %s cases answered wrong:\n%s" % (len(bad), group, "\n".join(bad))
    still_serving(env)
    after = snapshot(s)
    assert after["keys"] == before["keys"]
    audited = sum(1 for c in CASES if c.group == group and c.audited)
    assert after["audit_rows"] == before["audit_rows"] + audited, \
        (before["audit_rows"], audited, after["audit_rows"])
    assert s.proc.poll() is None


def test_slowloris_times_out_without_blocking_others(env):
    """Clients that send their headers (or body) one byte at a time: the
    server serves everyone else meanwhile and drops each slow request by
    [http] request_timeout_ms."""
    s = env["s"]
    before = snapshot(s)
    slow = []
    outcome = {}

    def dribble(i, payload):
        sock = connect(s, env["pki"]["allowed"] if b"azureekm" in payload else None, timeout=15)
        t0 = time.time()
        closed = None
        try:
            for b in payload:
                try:
                    sock.sendall(bytes([b]))
                except (ssl.SSLError, OSError):
                    closed = time.time() - t0
                    break
                time.sleep(0.1)
                if time.time() - t0 > 8:
                    break
            if closed is None:
                r = read_response(sock, timeout=5)
                closed = time.time() - t0
                outcome[i] = (closed, r and r.status)
            else:
                outcome[i] = (closed, None)
        finally:
            sock.close()

    payloads = [
        b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n",
        build("POST", "/api/v1/keys", [("Content-Type", "application/json")] + admin_h(s.token),
              dumps_raw(ADMIN_CREATE) + b" " * 200),
        build("POST", EKM_BASE + "/bi-aes/wrapkey" + API, [("Content-Type", "application/json")],
              dumps_raw(ekm_wrap_body()) + b" " * 200),
    ]
    for i, p in enumerate(payloads):
        t = threading.Thread(target=dribble, args=(i, p))
        t.start()
        slow.append(t)
    # others are served meanwhile, promptly
    t_end = time.time() + 2.5
    while time.time() < t_end:
        t0 = time.time()
        r = send_raw(s, build("GET", "/healthz"))
        assert r.status == 200 and time.time() - t0 < 1, time.time() - t0
        time.sleep(0.1)
    for t in slow:
        t.join(20)
        assert not t.is_alive()
    limit = REQUEST_TIMEOUT_MS / 1000.0
    for i, (took, status) in outcome.items():
        # dropped (or answered with an error) about when the request timeout ran out
        assert took < limit + 3, (i, took, status)
        assert status is None or status >= 400, (i, status)
    still_serving(env)
    after = snapshot(s)
    assert after["keys"] == before["keys"] and after["audit_rows"] == before["audit_rows"]
