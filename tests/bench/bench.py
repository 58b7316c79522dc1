#!/usr/bin/python3
"""bench.py - `make bench`: Keyward's throughput, latency, crypto and scale
figures against their ceilings, written to BENCHMARKS.md.

A benchmark, not a test: it never fails on a number.  It exits non-zero only
when it cannot run at all (tools missing).  Everything it starts is on
127.0.0.1, under a temp dir, stopped at the end; every wait is bounded.

    KEYWARD_BUILD=build /usr/bin/python3 tests/bench/bench.py --out BENCHMARKS.md

What it measures (details in the generated file):
  * tests/bench/kw-loadgen (C, epoll, keep-alive TLS, SigV4 per request,
    client certificates) against keywardd for each scenario at 1/16/64
    connections, plus a new-TLS-handshake-per-request run;
  * the HTTP ceiling: nginx (same certificate, TLS version and suite, fixed
    JSON answers of the same size) under the same load generator;
  * the crypto ceiling: tests/bench/kw-cryptocost on one core;
  * the floor of one process hop (the custody call): tests/bench/kw-hopcost;
  * start-up time and RSS with 0 / 10k / 100k keys (kw-bench-populate),
    and latency with a key cache smaller than the working set;
  * a perf profile of the server under load;
  * the fleet (issue 16): XKS encrypt through three nodes on one PostgreSQL
    (tests/bench/fleet_bench.py under tests/fleet/pg.sh), next to the
    single node's figures of the same run.
Scenarios whose route is not available in this build are reported as
"not measured" with the reason.
"""
import argparse
import base64
import datetime
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.environ.get("KEYWARD_BUILD", os.path.join(ROOT, "build")))
KEYWARDD = os.path.join(BUILD, "keywardd")
FAULTHSM = os.path.join(BUILD, "libfaulthsm.so")   # tests/faulthsm: the slow-HSM run
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"
LOADGEN = os.path.join(BUILD, "bench", "kw-loadgen")
CRYPTOCOST = os.path.join(BUILD, "bench", "kw-cryptocost")
POPULATE = os.path.join(BUILD, "bench", "kw-bench-populate")
HOPCOST = os.path.join(BUILD, "bench", "kw-hopcost")
DEVSTATE = os.path.join(ROOT, "tests", "devstate.sh")
PGSH = os.path.join(ROOT, "tests", "fleet", "pg.sh")              # a throw-away PostgreSQL
FLEET_BENCH = os.path.join(ROOT, "tests", "bench", "fleet_bench.py")
FLEET_CONNS = (16, 64)

XKS_AKID = "BENCHAKIDAAAAAAAAAAAAAA2"            # 24 chars of A-Z2-7
XKS_SECRET = base64.b64encode(b"keyward-bench-xks-secret-0123456789").decode()
XKS_PREFIX = "/bench"
# EKM keys are opted into EKM by their rules (issue 10): the bench has no EKM path prefix
EKM_RULES = {"ekm": {"path_prefixes": ["/azureekm"]}}
XKS_REGION = "us-east-1"
EKM_CN = "bench.managedhsmclient.azure.net"
TLS13_SUITE = "TLS_AES_256_GCM_SHA384"
CONNS = (1, 16, 64)

LOG = []


def say(*a):
    msg = " ".join(str(x) for x in a)
    print("bench: " + msg, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, **kw)


# --------------------------------------------------------------- machine

def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = "%.1f GiB" % (int(line.split()[1]) / 1048576)
    except OSError:
        pass
    ossl = run(["openssl", "version"]).stdout.strip()
    ngx = run(["nginx", "-v"]).stderr.strip() if shutil.which("nginx") else "not installed"
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem": mem, "kernel": platform.release(),
            "openssl": ossl, "nginx": ngx}


# ------------------------------------------------------------ SigV4 check

def sigv4_check(tmp):
    """The loadgen's signer against botocore for a fixed date."""
    try:
        from unittest import mock
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials
    except ImportError as e:
        return False, "botocore not importable: %s" % e
    body = b'{"requestMetadata":{"kmsOperation":"Encrypt"},"plaintext":"AAAA"}'
    bf = os.path.join(tmp, "sigv4-body.json")
    sf = os.path.join(tmp, "sigv4-secret")
    with open(bf, "wb") as f:
        f.write(body)
    with open(sf, "w") as f:
        f.write(XKS_SECRET)
    path = XKS_PREFIX + "/kms/xks/v1/keys/k-1/encrypt"
    mine = run([LOADGEN, "--sign-only", "20240229T235959Z", "--port", "8443", "--method", "POST",
                "--path", path, "--body-file", bf, "--sigv4", XKS_AKID, "--sigv4-secret-file", sf])
    req = AWSRequest(method="POST", url="https://127.0.0.1:8443" + path, data=body)
    fixed = datetime.datetime(2024, 2, 29, 23, 59, 59)
    with mock.patch("botocore.auth.datetime") as dt:
        dt.datetime.utcnow.return_value = fixed
        dt.datetime.now.return_value = fixed
        SigV4Auth(Credentials(XKS_AKID, XKS_SECRET), "kms-xks-proxy", XKS_REGION).add_auth(req)
    theirs = req.headers["Authorization"]
    ok = mine.returncode == 0 and mine.stdout.strip() == theirs
    return ok, "identical Authorization header" if ok else "MISMATCH: %r vs %r" % (mine.stdout.strip(), theirs)


def sign_xks(url, body):
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials
    req = AWSRequest(method="POST", url=url, data=body, headers={})
    SigV4Auth(Credentials(XKS_AKID, XKS_SECRET), "kms-xks-proxy", XKS_REGION).add_auth(req)
    h = dict(req.headers)
    h["Content-Type"] = "application/json"
    return h


# ------------------------------------------------------------------ state

def openssl(*args):
    r = run(["openssl"] + list(args))
    if r.returncode != 0:
        raise RuntimeError("openssl %s: %s" % (args[0], r.stderr))


def make_client_pki(d):
    """A CA and an EKM client certificate (ECDSA P-256), as Azure would present."""
    os.makedirs(d, exist_ok=True)
    ca_key, ca = os.path.join(d, "ca.key"), os.path.join(d, "ca.pem")
    key, csr, crt = os.path.join(d, "client.key"), os.path.join(d, "client.csr"), os.path.join(d, "client.pem")
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "30", "-subj", "/CN=keyward-bench-ca", "-keyout", ca_key, "-out", ca)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-subj", "/CN=" + EKM_CN, "-keyout", key, "-out", csr)
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-days", "30", "-out", crt)
    return ca, crt, key


class Server:
    def __init__(self, d, pki, protocols=True):
        self.dir = d
        self.port = free_port()
        run([DEVSTATE, d, str(self.port)], check=True, timeout=120)
        self.conf = os.path.join(d, "keyward.toml")
        self.cacert = os.path.join(d, "tls", "cert.pem")
        self.pki = pki
        if protocols:
            with open(self.conf, "a") as f:
                f.write('\n# added by tests/bench/bench.py\n')
                f.write('[azure_ekm_config]\nazure_ekm_enable = true\nazure_ekm_client_cns = ["%s"]\n' % EKM_CN)
                f.write('[aws_xks_config]\naws_xks_enable = true\naws_xks_sigv4_access_key_id = "%s"\n'
                        'aws_xks_uri_prefix = "%s"\naws_xks_rate_limit = 0\n' % (XKS_AKID, XKS_PREFIX))
                # the EKM client CA: [tls] is the first table devstate.sh writes
            with open(self.conf) as f:
                text = f.read()
            text = text.replace("[tls]\n", '[tls]\nclients_ca_cert_file = "%s"\n' % pki[0], 1)
            with open(self.conf, "w") as f:
                f.write(text)
        # every connection of the load generator comes from 127.0.0.1: lift the
        # per-client cap (32 by default, issue 10) above the 64 used here
        with open(self.conf) as f:
            text = f.read()
        with open(self.conf, "w") as f:
            f.write(text.replace("[http]\n", "[http]\nmax_connections_per_client = 1000\n", 1))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        self.env["SOFTHSM2_CONF"] = os.path.join(d, "softhsm", "softhsm2.conf")
        self.env["KEYWARD_AWS_XKS_CONFIG_AWS_XKS_SIGV4_SECRET_ACCESS_KEY"] = XKS_SECRET
        # RSA-4096 generation on a busy 2-core machine can take longer than the 5 s default
        self.env["KEYWARD_CUSTODY_TIMEOUT_MS"] = "60000"
        self.proc = None
        self.url = "https://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(d, "server.log")

    def start(self, extra_env=None, timeout=60):
        env = dict(self.env)
        env.update(extra_env or {})
        self.log = open(self.log_path, "ab")
        t0 = time.monotonic()
        self.proc = subprocess.Popen([KEYWARDD, "--config", self.conf], env=env,
                                     stdout=self.log, stderr=self.log)
        ctx = ssl.create_default_context(cafile=self.cacert)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.close()
                raise RuntimeError("keywardd exited %s: %s" % (self.proc.returncode, self.tail()))
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                    with ctx.wrap_socket(s, server_hostname="127.0.0.1") as t:
                        t.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        if t.recv(64).startswith(b"HTTP/1.1 200"):
                            return time.monotonic() - t0
            except (OSError, ssl.SSLError):
                pass
            time.sleep(0.005)
        raise RuntimeError("keywardd not ready in %ss" % timeout)

    def pids(self):
        out = run(["pgrep", "-P", str(self.proc.pid)]).stdout.split()
        return [self.proc.pid] + [int(x) for x in out]

    def cpu_ticks(self):
        total = 0
        for p in self.pids():
            try:
                with open("/proc/%d/stat" % p) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
            except OSError:
                pass
        return total

    def rss_kib(self):
        out = {}
        for p in self.pids():
            try:
                with open("/proc/%d/status" % p) as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            out[p] = int(line.split()[1])
            except OSError:
                pass
        return out

    def stop(self):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        self.log.close()

    def tail(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-1500:]
        except OSError:
            return ""

    @property
    def token_file(self):
        return os.path.join(self.dir, "admin.token")

    def api(self, method, path, body=None):
        import requests
        with open(self.token_file) as f:
            tok = f.read().strip()
        return requests.request(method, self.url + path, json=body, verify=self.cacert, timeout=60,
                                headers={"Authorization": "Bearer " + tok})


# -------------------------------------------------------------- scenarios

def xks_meta(op):
    return {"awsPrincipalArn": "arn:aws:iam::123456789012:user/bench",
            "kmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/bench",
            "kmsOperation": op, "kmsRequestId": str(uuid.uuid4())}


def b64(b):
    return base64.b64encode(b).decode()


def b64url(b):
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


def ekm_ctx():
    return {"request_id": "bench-1", "correlation_id": str(uuid.uuid4()), "pool_name": "bench"}


EKM_Q = "?api-version=0.1-preview"


def prepare(srv, tmp):
    """Creates the keys, probes each route, and returns the scenario list:
    dicts with name, method, path, body (bytes), auth, expect, available, why."""
    import requests
    sc = []
    # an XKS store reaches only keys whose rules list it (docs/xks.md); "default" is [aws_xks_config]
    for name, spec in (("xks-aes", {"type": "AES", "rules": {"xks": {"key_stores": ["default"]}}}), ("ekm-aes", {"type": "AES", "rules": EKM_RULES}),
                       ("ekm-rsa2048", {"type": "RSA", "size": 2048, "rules": EKM_RULES}),
                       ("ekm-rsa3072", {"type": "RSA", "size": 3072, "rules": EKM_RULES}),
                       ("ekm-rsa4096", {"type": "RSA", "size": 4096, "rules": EKM_RULES})):
        body = dict(spec)
        body["name"] = name
        r = srv.api("POST", "/api/v1/keys", body)
        if r.status_code != 201:
            raise RuntimeError("key %s: %s %s" % (name, r.status_code, r.text))

    def add(name, method, path, body, auth, avail=True, why="", group="", crypto=None, shape="post-small"):
        sc.append({"name": name, "method": method, "path": path, "body": body, "auth": auth,
                   "available": avail, "why": why, "group": group, "crypto": crypto, "shape": shape,
                   "response": b""})

    add("healthz", "GET", "/healthz", None, "none", group="ops", shape="get")
    add("admin key list", "GET", "/api/v1/keys", None, "bearer", group="admin", shape="get")

    # XKS: probe with a botocore-signed health call
    base = srv.url + XKS_PREFIX + "/kms/xks/v1"
    xks_ok, xks_why = False, ""
    try:
        hb = json.dumps({"requestMetadata": {"kmsRequestId": "probe", "kmsOperation": "KmsHealthCheck"}}).encode()
        r = requests.post(base + "/health", data=hb, headers=sign_xks(base + "/health", hb),
                          verify=srv.cacert, timeout=30)
        xks_ok = r.status_code == 200
        xks_why = "" if xks_ok else "XKS route not available in this build (health: HTTP %d %s)" % (
            r.status_code, r.text[:80])
    except requests.RequestException as e:
        xks_why = "XKS probe failed: %s" % e
    hbody = json.dumps({"requestMetadata": {"kmsRequestId": "bench", "kmsOperation": "KmsHealthCheck"}},
                       separators=(",", ":")).encode()
    add("XKS health", "POST", XKS_PREFIX + "/kms/xks/v1/health", hbody, "sigv4", xks_ok, xks_why, "xks")
    for size, shape in ((64, "post-small"), (4096, "post-4k")):
        pt = os.urandom(size)
        eb = json.dumps({"requestMetadata": xks_meta("Encrypt"), "plaintext": b64(pt),
                         "encryptionAlgorithm": "AES_GCM"}, separators=(",", ":")).encode()
        epath = XKS_PREFIX + "/kms/xks/v1/keys/xks-aes/encrypt"
        add("XKS encrypt %d B" % size, "POST", epath, eb, "sigv4", xks_ok, xks_why, "xks",
            "aes_gcm_enc_%d" % size, shape)
        db, dwhy, dok = b"", xks_why, False
        if xks_ok:
            r = requests.post(srv.url + epath, data=eb, headers=sign_xks(srv.url + epath, eb),
                              verify=srv.cacert, timeout=30)
            if r.status_code == 200:
                e = r.json()
                d = {"requestMetadata": xks_meta("Decrypt"), "ciphertext": e["ciphertext"],
                     "initializationVector": e["initializationVector"],
                     "authenticationTag": e["authenticationTag"], "encryptionAlgorithm": "AES_GCM"}
                if "ciphertextMetadata" in e:
                    d["ciphertextMetadata"] = e["ciphertextMetadata"]
                db, dok = json.dumps(d, separators=(",", ":")).encode(), True
                sc[-1]["response"] = r.content
            else:
                dwhy = "XKS encrypt probe: HTTP %d %s" % (r.status_code, r.text[:80])
                sc[-1]["available"], sc[-1]["why"] = False, dwhy
        add("XKS decrypt %d B" % size, "POST", XKS_PREFIX + "/kms/xks/v1/keys/xks-aes/decrypt", db,
            "sigv4", dok, dwhy, "xks", "aes_gcm_dec_%d" % size, shape)

    # EKM: probe /info with the client certificate
    cert = (srv.pki[1], srv.pki[2])
    ekm_ok, ekm_why = False, ""
    try:
        r = requests.post(srv.url + "/azureekm/info" + EKM_Q, json={"request_context": ekm_ctx()},
                          cert=cert, verify=srv.cacert, timeout=30)
        ekm_ok = r.status_code == 200
        ekm_why = "" if ekm_ok else "EKM route not available in this build (info: HTTP %d %s)" % (
            r.status_code, r.text[:80])
    except requests.RequestException as e:
        ekm_why = "EKM probe failed: %s" % e

    def ekm_call(key, op, alg, value):
        return requests.post(srv.url + "/azureekm/%s/%s" % (key, op) + EKM_Q, cert=cert, verify=srv.cacert,
                             timeout=30, json={"request_context": ekm_ctx(), "alg": alg, "value": value})

    kb = os.urandom(32)
    wb = json.dumps({"request_context": ekm_ctx(), "alg": "A256KWP", "value": b64url(kb)},
                    separators=(",", ":")).encode()
    add("EKM A256KWP wrap 32 B", "POST", "/azureekm/ekm-aes/wrapkey" + EKM_Q, wb, "cert", ekm_ok, ekm_why,
        "ekm", "aes_kwp_wrap_32")
    ub, uok, uwhy = b"", False, ekm_why
    if ekm_ok:
        r = ekm_call("ekm-aes", "wrapkey", "A256KWP", b64url(kb))
        if r.status_code == 200:
            ub = json.dumps({"request_context": ekm_ctx(), "alg": "A256KWP", "value": r.json()["value"]},
                            separators=(",", ":")).encode()
            uok = True
            sc[-1]["response"] = r.content
        else:
            uwhy = "EKM wrap probe: HTTP %d %s" % (r.status_code, r.text[:80])
            sc[-1]["available"], sc[-1]["why"] = False, uwhy
    add("EKM A256KWP unwrap 32 B", "POST", "/azureekm/ekm-aes/unwrapkey" + EKM_Q, ub, "cert", uok, uwhy,
        "ekm", "aes_kwp_unwrap_32")
    for bits in (2048, 3072, 4096):
        rb, rok, rwhy = b"", False, ekm_why
        if ekm_ok:
            r = ekm_call("ekm-rsa%d" % bits, "wrapkey", "RSA-OAEP-256", b64url(kb))
            if r.status_code == 200:
                rb = json.dumps({"request_context": ekm_ctx(), "alg": "RSA-OAEP-256", "value": r.json()["value"]},
                                separators=(",", ":")).encode()
                rok = True
            else:
                rwhy = "EKM RSA wrap probe: HTTP %d %s" % (r.status_code, r.text[:80])
        add("EKM RSA-OAEP-256 unwrap %d" % bits, "POST", "/azureekm/ekm-rsa%d/unwrapkey" % bits + EKM_Q, rb,
            "cert", rok, rwhy, "ekm", "rsa_oaep256_dec_%d" % bits)
    for s in sc:
        if s["body"]:
            s["body_file"] = os.path.join(tmp, "body-%d.json" % sc.index(s))
            with open(s["body_file"], "wb") as f:
                f.write(s["body"])
    return sc


def loadgen_cmd(port, cacert, s, conns, seconds, warmup, pki=None, token_file=None, secret_file=None,
                extra=(), label=""):
    cmd = [LOADGEN, "--port", str(port), "--method", s["method"], "--path", s["path"],
           "--conns", str(conns), "--duration", str(seconds), "--warmup", str(warmup),
           "--cacert", cacert, "--tls13", "--ciphersuites", TLS13_SUITE, "--label", label or s["name"]]
    if s.get("body_file"):
        cmd += ["--body-file", s["body_file"]]
    if s["auth"] == "bearer":
        cmd += ["--token-file", token_file]
    elif s["auth"] == "sigv4":
        cmd += ["--sigv4", XKS_AKID, "--sigv4-secret-file", secret_file, "--region", XKS_REGION]
    elif s["auth"] == "cert":
        cmd += ["--cert", pki[1], "--key", pki[2]]
    return cmd + list(extra)


def loadgen(port, cacert, s, conns, seconds, warmup, pki=None, token_file=None, secret_file=None,
            extra=(), label=""):
    cmd = loadgen_cmd(port, cacert, s, conns, seconds, warmup, pki, token_file, secret_file, extra, label)
    r = run(cmd, timeout=seconds + warmup + 60)
    if r.returncode != 0:
        return {"error": "loadgen exit %d: %s" % (r.returncode, r.stderr.strip()[:200])}
    return json.loads(r.stdout)


def measure(srv, s, conns, a, extra=(), label=""):
    t0, c0 = time.monotonic(), srv.cpu_ticks()
    res = loadgen(srv.port, srv.cacert, s, conns, a.seconds, a.warmup, srv.pki, srv.token_file,
                  a.secret_file, extra, label)
    dt, dc = time.monotonic() - t0, srv.cpu_ticks() - c0
    res["server_cpu"] = dc / os.sysconf("SC_CLK_TCK") / dt if dt > 0 else 0
    say("%-32s c=%-3d %s" % (label or s["name"], conns,
                             "%.0f req/s p99 %.2f ms" % (res["rps"], res["p99_us"] / 1000) if "rps" in res else res))
    return res


# ------------------------------------------------------------------ nginx

NGINX_CONF = """# written by tests/bench/bench.py: the HTTP ceiling (fixed answers)
{user}worker_processes {workers};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 60s;
    client_body_buffer_size 64k;
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_cache off;
        ssl_session_tickets off;
        ssl_client_certificate {ca};
        ssl_verify_client optional;
{locations}
    }}
}}
"""


class Nginx:
    def __init__(self, d, srv, scenarios):
        self.dir = d
        os.makedirs(d, exist_ok=True)
        self.port = free_port()
        locs = []
        seen = set()
        for s in scenarios:
            path = s["path"].split("?")[0]
            if path in seen:
                continue
            seen.add(path)
            body = (s["response"] or b'{"status":"ok"}').decode().replace("'", "")
            locs.append("        location = %s { return 200 '%s'; }" % (path, body))
        user = ""
        if os.geteuid() == 0:
            import pwd
            user = "user %s;\n" % pwd.getpwuid(os.geteuid()).pw_name
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_CONF.format(user=user, workers=os.cpu_count(), d=d, port=self.port,
                                      cert=srv.cacert, key=os.path.join(srv.dir, "tls", "key.pem"),
                                      ca=srv.pki[0], locations="\n".join(locs)))
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(["nginx", "-c", self.conf, "-p", self.dir], stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(self.dir, "stderr.log"), "wb"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nginx exited: %s" % open(os.path.join(self.dir, "stderr.log")).read()[-500:])
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None


# ---------------------------------------------------------------- profile

def profile(srv, s, conns, a, out_dir):
    if not shutil.which("perf"):
        return "perf not installed"
    data = os.path.join(out_dir, "perf.data")
    pids = ",".join(str(p) for p in srv.pids())
    lg = subprocess.Popen([LOADGEN, "--port", str(srv.port), "--method", s["method"], "--path", s["path"],
                           "--conns", str(conns), "--duration", "6", "--warmup", "0.5", "--cacert", srv.cacert,
                           "--tls13", "--ciphersuites", TLS13_SUITE]
                          + (["--body-file", s["body_file"]] if s.get("body_file") else [])
                          + (["--token-file", srv.token_file] if s["auth"] == "bearer" else [])
                          + (["--sigv4", XKS_AKID, "--sigv4-secret-file", a.secret_file] if s["auth"] == "sigv4" else [])
                          + (["--cert", srv.pki[1], "--key", srv.pki[2]] if s["auth"] == "cert" else []),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    # hardware counters are not available in most VMs: cpu-clock always is
    r = run(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-p", pids, "-o", data, "--", "sleep", "4"],
            timeout=60)
    lg.wait(timeout=60)
    if r.returncode != 0:
        return "perf record failed: %s" % r.stderr.strip()[-300:]
    rep = run(["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", "dso,symbol",
               "--percent-limit", "1.2", "-g", "none"], timeout=120)
    lines = [ln for ln in rep.stdout.splitlines() if ln.strip() and not ln.startswith("#")]
    return "\n".join(lines[:30])


# ------------------------------------------------------- where the time goes

def proc_sample(pid):
    """CPU ticks, context switches (every thread: /proc/PID/status counts the
    main thread only) and read/write-class syscalls (/proc/PID/io) of pid."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    cs = 0
    for t in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        cs += int(line.split()[1])
        except OSError:
            pass   # a thread that ended meanwhile
    io = {}
    try:
        with open("/proc/%d/io" % pid) as f:
            io = {ln.split(":")[0]: int(ln.split(":")[1]) for ln in f}
    except OSError:
        pass
    return {"ticks": int(fields[11]) + int(fields[12]), "cs": cs,
            "rw": io.get("syscr", 0) + io.get("syscw", 0)}


def proc_role(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    if b"--custody" in argv:
        return "custody"
    if b"--front" in argv:
        return "front"
    if argv and argv[0].split(b" ")[0].split(b"/")[-1].startswith(b"nginx"):
        return "nginx"
    return "parent"


def where(pids, cmd, seconds, warmup):
    """Runs the load generator cmd and, over the measured window only, what
    each server process spent per request: CPU µs (/proc/PID/stat), context
    switches (/proc/PID/task/*/status) and syscalls (perf stat
    raw_syscalls:sys_enter when perf can attach, else /proc/PID/io's
    read+write count, which leaves out poll/futex/...)."""
    lg = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(warmup + 0.3)
    window = max(1.0, seconds - 0.6)
    roles = {}
    for p in pids:
        r = proc_role(p)
        if r is not None:
            roles.setdefault(r, []).append(p)
    perf = {}
    if shutil.which("perf"):
        for r, ps in roles.items():
            perf[r] = subprocess.Popen(["perf", "stat", "-x", ",", "-e", "raw_syscalls:sys_enter",
                                        "-p", ",".join(map(str, ps)), "--", "sleep", "%.2f" % window],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    s0 = {r: [proc_sample(p) for p in ps] for r, ps in roles.items()}
    t0 = time.monotonic()
    time.sleep(window)
    s1 = {r: [proc_sample(p) for p in ps] for r, ps in roles.items()}
    t1 = time.monotonic()
    out, err = lg.communicate(timeout=seconds + warmup + 60)
    if lg.returncode != 0:
        return {"error": "loadgen exit %d: %s" % (lg.returncode, err.strip()[:200])}
    res = json.loads(out)
    reqs = res["rps"] * (t1 - t0)
    tck = os.sysconf("SC_CLK_TCK")
    rows = {}
    for r in roles:
        d = {k: sum(x[k] for x in s1[r]) - sum(x[k] for x in s0[r]) for k in ("ticks", "cs", "rw")}
        row = {"cpu_us": d["ticks"] * 1e6 / tck / reqs, "cs": d["cs"] / reqs, "sys": None,
               "rw": d["rw"] / reqs}
        if r in perf:
            _, perr = perf[r].communicate(timeout=30)
            for ln in perr.splitlines():
                f = ln.split(",")
                if len(f) > 2 and "raw_syscalls" in f[2] and f[0].strip().isdigit():
                    row["sys"] = int(f[0]) / reqs
        rows[r] = row
    res["where"] = rows
    return res


def child_pids(pid):
    out = run(["pgrep", "-P", str(pid)]).stdout.split()
    return [pid] + [int(x) for x in out]


def where_total(res, key="cpu_us"):
    w = res.get("where", {})
    return sum(v[key] or 0 for r, v in w.items() if r in ("front", "custody", "parent", "nginx"))


def status_note(r):
    """The status counts of a load generator result, e.g. "200: 9100, 429: 8800"."""
    st = r.get("status", {})
    s = ", ".join("%s: %d" % (k, v) for k, v in sorted(st.items()))
    if r.get("conn_errors"):
        s += ", connection errors: %d" % r["conn_errors"]
    return s or "no answers"


def where_rows(label, res):
    if "where" not in res:
        return ["| %s | not measured: %s | | | | |" % (label, res.get("error", "?"))]
    L = []
    tot = {"cpu_us": 0.0, "cs": 0.0, "sys": 0.0}
    for role in ("front", "custody", "parent", "nginx"):
        w = res["where"].get(role)
        if w is None or (role == "parent" and w["cpu_us"] < 0.05):
            continue
        sysc = "%.1f" % w["sys"] if w["sys"] is not None else "%.1f (read/write only)" % w["rw"]
        L.append("| %s | %s | %.0f | %.1f | %s | %.2f |" % (label, role, res["rps"], w["cpu_us"], sysc, w["cs"]))
        tot["cpu_us"] += w["cpu_us"]
        tot["cs"] += w["cs"]
        tot["sys"] += w["sys"] if w["sys"] is not None else w["rw"]
    L.append("| %s | **total** | %.0f | **%.1f** | %.1f | %.2f |" % (label, res["rps"], tot["cpu_us"], tot["sys"], tot["cs"]))
    return L


# ------------------------------------------------------ slow HSM isolation

def isolation(s2, spread, rate, a):
    """Cached-key p99 alone and beside cache misses that unseal through an
    HSM slowed to 50 ms a call (faulthsm).  s2 is stopped on return."""
    ctl = os.path.join(s2.dir, "faulthsm.ctl")
    with open(ctl, "w") as f:
        f.write("delay_ms=50\n")
    os.chmod(ctl, 0o644)
    env = {"KEYWARD_DB_KEY_CACHE_SIZE": "64", "KEYWARD_HSM_MODULE": FAULTHSM,
           "KEYWARD_FAULTHSM_MODULE": s2.env.get("KEYWARD_HSM_MODULE", SOFTHSM), "KEYWARD_FAULTHSM_CTL": ctl}
    hot = dict(spread, path=spread["path"].replace("{key}", "pop-000999"))
    rows, out = [], {}
    s2.start(env)
    try:
        warm = loadgen(s2.port, s2.cacert, hot, 1, 1, 0, s2.pki, s2.token_file, a.secret_file, label="warm")
        say("isolation: hot key warm-up", warm.get("rps"))
        alone = measure(s2, hot, 64, a, ["--rate", "%.0f" % rate], "cached key alone")
        rows.append(variant_row_iso("cached key alone, %.0f req/s offered" % rate, 64, alone, ""))
        cmd = loadgen_cmd(s2.port, s2.cacert, spread, 8, a.seconds + a.warmup + 2, 0, s2.pki, s2.token_file,
                          a.secret_file, extra=["--keys", "pop-%06d:999"], label="cold keys")
        cold_p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        beside = measure(s2, hot, 64, a, ["--rate", "%.0f" % rate], "cached key beside misses")
        cout, cerr = cold_p.communicate(timeout=a.seconds + a.warmup + 120)
        cold = json.loads(cout) if cold_p.returncode == 0 else {"error": cerr.strip()[:200]}
        rows.append(variant_row_iso("cached key beside the misses, %.0f req/s offered" % rate, 64, beside, ""))
        rows.append(variant_row_iso("the misses (999 keys round robin, unseal through the 50 ms HSM)", 8, cold,
                                    "closed loop"))
        out = {"alone": alone, "beside": beside, "cold": cold}
    finally:
        s2.stop()
    out["rows"] = rows
    return out


def variant_row_iso(name, conns, r, note):
    if "rps" not in r:
        return "| %s | %d | not measured: %s | | | | | %s |" % (name, conns, r.get("error", "?"), note)
    return "| %s | %d | %.0f | %s | %s | %s | %d | %s |" % (
        name, conns, r["rps"], ms(r["p50_us"]), ms(r["p99_us"]), ms(r["p999_us"]),
        r["errors"] + r["conn_errors"], note)


# ------------------------------------------------------------------ fleet

def fleet_scenario(a):
    """Three nodes against one PostgreSQL (issue 16): tests/bench/fleet_bench.py
    under tests/fleet/pg.sh (PG_TLS=1; PG_FSYNC=1: durable like SQLCipher,
    not the tests' fsync=off); its JSON, or {"error": why}."""
    if not os.access("/usr/lib/postgresql/15/bin/initdb", os.X_OK):
        return {"error": "PostgreSQL 15 is not installed (`make deps`: Debian's postgresql)"}
    r = run([PGSH, "/usr/bin/python3", FLEET_BENCH, "--seconds", str(a.seconds), "--warmup",
             str(a.warmup), "--secret-file", a.secret_file, "--conns", ",".join(map(str, FLEET_CONNS))],
            env=dict(os.environ, PG_TLS="1", PG_FSYNC="1"), timeout=1200)
    for line in r.stderr.splitlines():
        say(line)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": "fleet_bench.py exit %d: %s" % (r.returncode, r.stderr.strip()[-300:])}


def fleet_rows(fr, single):
    """The fleet's rows, each conns level next to the single node's (same run)."""
    rows = []
    for c in FLEET_CONNS:
        one = single.get(("XKS encrypt 64 B", c), {})
        if "rps" in one:
            rows.append("| single node (SQLCipher), the main table's row | %d | %.0f | %s | %s | %s | %.2f | - | %d | - | - |" % (
                c, one["rps"], ms(one["p50_us"]), ms(one["p99_us"]), ms(one["p999_us"]), one.get("server_cpu", 0),
                one["errors"] + one["conn_errors"]))
        for run_ in fr.get("runs", []):
            if run_["conns"] != c:
                continue
            r = run_["result"]
            what = ("fleet, 3 nodes (round robin), one PostgreSQL" if run_["nodes"] == 3
                    else "fleet, node-a alone (same PostgreSQL)")
            if "rps" not in r:
                rows.append("| %s | %d | not measured: %s | | | | | | | | |" % (what, c, r.get("error", "?")))
                continue
            vs = "%.0f%%" % (100 * r["rps"] / one["rps"]) if one.get("rps") else "-"
            per = r.get("per_node") or []
            share = " / ".join("%.0f%%" % (100.0 * x / sum(per)) for x in per) if sum(per) else "-"
            rows.append("| %s | %d | %.0f | %s | %s | %s | %.2f | %.2f | %d | %s | %s |" % (
                what, c, r["rps"], ms(r["p50_us"]), ms(r["p99_us"]), ms(r["p999_us"]), r.get("server_cpu", 0),
                r.get("pg_cpu", 0), r["errors"] + r["conn_errors"], vs, share))
    return rows


# ---------------------------------------------------------------- report

def fmt_rate(x):
    return "%.0f" % x if x is not None else "-"


def ms(us):
    return "%.2f" % (us / 1000.0)


def table(L, cols, rows):
    L.append("| " + " | ".join(cols) + " |")
    L.append("|" + "---|" * len(cols))
    L.extend(rows)
    L.append("")


def write_report(path, ctx):
    m = ctx["machine"]
    L = []
    L.append("# Keyward benchmarks\n")
    L.append("Generated by `make bench` (`tests/bench/bench.py`): do not edit by hand, re-run it.\n")
    L.append("- date: %s" % ctx["date"])
    L.append("- command: `%s`" % ctx["command"])
    L.append("- machine: %s CPUs (%s), %s RAM, kernel %s" % (m["nproc"], m["cpu"], m["mem"], m["kernel"]))
    L.append("- %s; %s" % (m["openssl"], m["nginx"]))
    L.append("- TLS: %s on every connection (same server certificate, ECDSA P-256, for Keyward and nginx); "
             "closed loop, each connection keep-alive with one request in flight; %.0f s warm-up (not measured) "
             "then %.0f s measured per point; load generator on the same 2 cores" % (TLS13_SUITE, ctx["warmup"], ctx["seconds"]))
    L.append("- SigV4 signer of the load generator vs botocore (fixed date): %s" % ctx["sigv4"])
    L.append("- the machine is not idle-checked: anything else running on it (e.g. a parallel build) "
             "lowers every figure, ceilings included")
    L.append("")
    L.append("## Targets\n")
    L.append("| target | result | status |")
    L.append("|---|---|---|")
    for t in ctx["targets"]:
        L.append("| %s | %s | %s |" % t)
    L.append("")
    L.append("## Throughput and latency (keep-alive, log lines on)\n")
    L.append("Ceiling: nginx answering a fixed JSON body of the same size to the same request shape "
             "(%s). `server CPU` = front + custody CPU seconds per second (2.0 = both cores); "
             "`server CPU µs / req` = that over req/s (the whole window, warm-up included, so a little above "
             "the per-process figures of \"Where the time goes\"); `gen CPU` = the load generator's.\n" % ctx.get("nginx_note", ""))
    L.append("| scenario | conns | req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | ceiling req/s | % of ceiling | server CPU | server CPU µs / req | gen CPU | errors |")
    L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in ctx["rows"]:
        L.append(row)
    L.append("")
    if ctx.get("extra_rows"):
        L.append("## Variants\n")
        L.append("| variant | conns | req/s | p50 ms | p99 ms | p99.9 ms | server CPU | errors | note |")
        L.append("|---|---|---|---|---|---|---|---|---|")
        for row in ctx["extra_rows"]:
            L.append(row)
        L.append("")
    if ctx.get("fleet_rows"):
        L.append("## Fleet: three nodes, one PostgreSQL (issue 16)\n")
        L.append("`XKS encrypt 64 B` through three keywardd nodes in fleet mode (`[db] engine = \"postgresql\"`, "
                 "PostgreSQL 15 on this machine over TLS with `sslmode=verify-full`, one SoftHSM2 token), the same "
                 "load generator with its connections spread round robin over the three ports (one TLS certificate "
                 "and Host header, as behind a load balancer); then one node of that fleet alone; next to the "
                 "single node's row of the main table, measured in this run. PostgreSQL runs with its durable "
                 "defaults (fsync, synchronous_commit on), as SQLCipher syncs. Everything shares the same cores "
                 "with the load generator, so these are per-request costs of fleet mode on one machine (a cached "
                 "key needs no database round trip; key-use audit records reach PostgreSQL in batches), not a "
                 "fleet's capacity on three machines. `server CPU` = all the nodes' processes; `PostgreSQL CPU` = "
                 "the cluster's; `XKS answers per node` from each node's `/metrics` over the run (warm-up included).\n")
        table(L, ("run", "conns", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "server CPU", "PostgreSQL CPU",
                  "errors", "vs single node", "XKS answers per node"), ctx["fleet_rows"])
    if ctx.get("where_rows"):
        L.append("## Where the time goes\n")
        L.append("Measured by the bench itself over the measured window of one closed-loop run each: CPU "
                 "(utime+stime from `/proc/PID/stat`), context switches (voluntary + involuntary, summed over "
                 "`/proc/PID/task/*/status`) and system calls (`perf stat -e raw_syscalls:sys_enter -p PID`), "
                 "each divided by the requests answered in that window. Front = TLS, HTTP, routing, log line; "
                 "custody = SigV4/EKM checks, key cache, AES-GCM, audit. The load generator is not counted.\n")
        table(L, ("run", "process", "req/s", "CPU µs / req", "syscalls / req", "context switches / req"),
              ctx["where_rows"])
        hop = ctx.get("hop") or {}
        if "cpu_us" in hop:
            L.append("")
            L.append("The floor of the custody call on this machine (`kw-hopcost`): two bare processes echoing a "
                     "256-byte frame over an AF_UNIX socket pair, each blocking in `recv()`, no framing, threads or "
                     "locks, %d round trips: **%.1f µs CPU** (both processes) and %.2f context switches per round "
                     "trip, %.1f µs wall. Every request with a custody call pays at least this on top of what a "
                     "single process answering it would spend." % (hop["round_trips"], hop["cpu_us"],
                                                                   hop["context_switches"], hop["wall_us"]))
    if ctx.get("isolation_rows"):
        L.append("## A slow HSM beside cached keys\n")
        L.append("The 10,000-key store with a key cache of 64 and the HSM behind the fault-injecting module "
                 "(`build/libfaulthsm.so`, `delay_ms=50` on every crypto call). One key, cached, at a fixed open-loop "
                 "rate (latency from the scheduled send time); beside it, a closed loop over 999 other keys, each "
                 "request a cache miss that unseals through the slowed HSM.\n")
        table(L, ("run", "conns", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "errors", "note"), ctx["isolation_rows"])
    L.append("## Crypto ceiling (kw-cryptocost, OpenSSL in-process, 1 core)\n")
    L.append("| operation | ops/s (1 core) |")
    L.append("|---|---|")
    for k, v in ctx["crypto"].items():
        L.append("| %s | %.0f |" % (k, v))
    L.append("")
    if ctx.get("rsa_rows"):
        L.append("RSA unwrap vs the raw OpenSSL rate on the cores left (nproc minus the load generator's CPU). "
                 "The raw per-core rate is measured right after the Keyward runs with one `kw-cryptocost 2 rsa` "
                 "pinned to each core, all at once (their average per core), not taken from the 1-core table above, "
                 "whose short sample at the start of the run is noisier:\n")
        table(L, ("key", "conns", "Keyward req/s", "raw ops/s per core", "cores left", "ceiling", "%"), ctx["rsa_rows"])
    L.append("## Scale\n")
    L.append("Keys written with `kw-bench-populate` (custody's own sealing through SoftHSM2 and key-store insert; "
             "run under eatmydata). Start-up = process start to the first `/healthz` 200; RSS = VmRSS of front + custody "
             "right after start-up.\n")
    L.append("| keys in store | populate | start-up s | RSS front MiB | RSS custody MiB | RSS total MiB |")
    L.append("|---|---|---|---|---|---|")
    L.extend(ctx["scale_rows"])
    L.append("")
    if ctx.get("cache_rows"):
        L.append("Key cache smaller than the working set (`KEYWARD_DB_KEY_CACHE_SIZE=64`, requests spread "
                 "round-robin over 1000 keys, every miss unseals through SoftHSM2):\n")
        L.append("| scenario | conns | req/s | p50 ms | p99 ms | p99.9 ms | errors |")
        L.append("|---|---|---|---|---|---|---|")
        L.extend(ctx["cache_rows"])
        L.append("")
    L.append("## Profile\n")
    L.append(ctx["profile_note"] + "\n")
    L.append("```\n" + (ctx["profile"] or "(none)") + "\n```\n")
    if ctx.get("not_measured"):
        L.append("## Not measured\n")
        for n in ctx["not_measured"]:
            L.append("- %s" % n)
        L.append("")
    with open(path, "w") as f:
        f.write("\n".join(L))


def result_row(name, conns, r, ceil=None):
    if "rps" not in r:
        return "| %s | %d | not measured: %s | | | | | | | | | | |" % (name, conns, r.get("error", "?"))
    pc = "%.0f%%" % (100.0 * r["rps"] / ceil) if ceil else "-"
    err = r["errors"] + r["conn_errors"]
    errs = "%d%s" % (err, (" (%s)" % r["first_error"][:60]) if err else "")
    cpu = r.get("server_cpu", 0)
    return "| %s | %d | %.0f | %s | %s | %s | %s | %s | %s | %.2f | %.0f | %.2f | %s |" % (
        name, conns, r["rps"], ms(r["p50_us"]), ms(r["p90_us"]), ms(r["p99_us"]), ms(r["p999_us"]),
        fmt_rate(ceil), pc, cpu, cpu * 1e6 / r["rps"] if r["rps"] else 0, r["loadgen_cpu"], errs)


def variant_row(name, conns, r, note=""):
    if "rps" not in r:
        return "| %s | %d | not measured: %s | | | | | | %s |" % (name, conns, r.get("error", "?"), note)
    err = r["errors"] + r["conn_errors"]
    return "| %s | %d | %.0f | %s | %s | %s | %.2f | %d | %s |" % (
        name, conns, r["rps"], ms(r["p50_us"]), ms(r["p99_us"]), ms(r["p999_us"]), r.get("server_cpu", 0), err, note)


# ------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", "4")))
    ap.add_argument("--warmup", type=float, default=float(os.environ.get("BENCH_WARMUP", "1")))
    ap.add_argument("--scale", default=os.environ.get("BENCH_SCALE", "0,10000,100000"))
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    a = ap.parse_args()
    for tool in (KEYWARDD, LOADGEN, CRYPTOCOST, POPULATE, HOPCOST):
        if not os.access(tool, os.X_OK):
            sys.exit("bench: %s is missing: run `make bench`" % tool)
    tmp = tempfile.mkdtemp(prefix="kw-bench-")
    a.secret_file = os.path.join(tmp, "xks.secret")
    with open(a.secret_file, "w") as f:
        f.write(XKS_SECRET)
    os.chmod(a.secret_file, 0o600)
    ctx = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": "make bench" if os.environ.get("MAKELEVEL") else " ".join(sys.argv),
           "machine": machine(), "seconds": a.seconds, "warmup": a.warmup, "not_measured": [],
           "rows": [], "extra_rows": [], "where_rows": [], "isolation_rows": [], "scale_rows": [], "cache_rows": [], "rsa_rows": [], "targets": [],
           "crypto": {}, "sigv4": "not checked", "profile": "", "profile_note": "Not profiled."}
    started = time.monotonic()
    srv = ngx = None
    try:
        ok, note = sigv4_check(tmp)
        ctx["sigv4"] = ("OK, " if ok else "FAILED, ") + note
        say("sigv4 vs botocore:", ctx["sigv4"])
        r = run(["taskset", "-c", "0", CRYPTOCOST, "0.5"], timeout=300)
        ctx["crypto"] = json.loads(r.stdout) if r.returncode == 0 else {}
        say("crypto:", ctx["crypto"])
        r = run([HOPCOST, "200000"], timeout=300)
        ctx["hop"] = json.loads(r.stdout) if r.returncode == 0 else {}
        say("process hop:", ctx["hop"])
        pki = make_client_pki(os.path.join(tmp, "pki"))

        # ---- the main run
        srv = Server(os.path.join(tmp, "main"), pki)
        srv.start()
        scen = prepare(srv, tmp)
        results = {}
        for s in scen:
            if not s["available"]:
                ctx["not_measured"].append("%s: %s" % (s["name"], s["why"]))
                continue
            for c in CONNS:
                results[(s["name"], c)] = measure(srv, s, c, a)
        by = {s["name"]: s for s in scen}
        enc = by["XKS encrypt 64 B"]
        head = enc if enc["available"] else by["admin key list"]
        # new TLS handshake per request
        newconn = {}
        if enc["available"]:
            for c in (1, 16):
                newconn[c] = measure(srv, enc, c, a, ["--new-conn"], "XKS encrypt 64 B, new TLS each")
                ctx["extra_rows"].append(variant_row("XKS encrypt 64 B, new TLS handshake per request", c, newconn[c],
                                                     "full handshake, no resumption"))
        else:
            ctx["not_measured"].append("XKS encrypt with a new TLS handshake per request: XKS route not available")
            for c in (1, 16):
                newconn[c] = measure(srv, head, c, a, ["--new-conn"], head["name"] + ", new TLS each")
                ctx["extra_rows"].append(variant_row(head["name"] + ", new TLS handshake per request", c, newconn[c],
                                                     "stand-in for XKS encrypt; full handshake"))
        # p99 at half the maximum rate
        best = max((results.get((head["name"], c), {}).get("rps", 0), c) for c in CONNS)
        half = None
        if best[0] > 0:
            half = measure(srv, head, 64, a, ["--rate", "%.0f" % (best[0] / 2)], head["name"] + " @ half max")
            ctx["extra_rows"].append(variant_row("%s at half the max rate (%.0f req/s, open loop)" % (head["name"], best[0] / 2),
                                                 64, half, "latency from the scheduled send time"))
        # where the time goes, per process and per request
        wh = {}
        for c in (16, 1):
            cmd = loadgen_cmd(srv.port, srv.cacert, head, c, a.seconds, a.warmup, pki, srv.token_file,
                              a.secret_file, label=head["name"] + " (where)")
            wh[c] = where(srv.pids(), cmd, a.seconds, a.warmup)
            ctx["where_rows"].extend(where_rows("Keyward %s, %d conns" % (head["name"], c), wh[c]))
            say("where %s c=%d: %s" % (head["name"], c, wh[c].get("where", wh[c].get("error"))))
        # profile under load
        ctx["profile"] = profile(srv, head, 64, a, tmp)
        ctx["profile_note"] = ("`perf record -e cpu-clock -g` on front + custody for 4 s while the load generator "
                               "runs `%s` at 64 connections (hardware counters are not available in this VM; "
                               "`perf report --no-children --sort dso,symbol`, entries >= 1.2%%):" % head["name"])
        srv.stop()
        # logging off, and the custody pool at 64
        for env, label in (({"KEYWARD_LOG_REQUESTS": "false"}, "[log] requests=false"),
                           ({"KEYWARD_CUSTODY_CONNECTIONS": "64"}, "[custody] connections=64")):
            srv.start(env)
            for c in (16, 64):
                rr = measure(srv, head, c, a, label="%s, %s" % (head["name"], label))
                ctx["extra_rows"].append(variant_row("%s, %s" % (head["name"], label), c, rr,
                                                     "compare with the main table"))
            srv.stop()
        # twice the maximum rate against a store throttled at half of it (a
        # throttle with headroom, as a deployment sets it): the excess must
        # be 429 ThrottlingException, answered in time, not timeouts
        over = None
        if enc["available"] and best[0] > 0:
            limit = int(best[0] / 2)
            srv.start({"KEYWARD_AWS_XKS_CONFIG_AWS_XKS_RATE_LIMIT": str(limit)})
            over = measure(srv, enc, 64, a, ["--rate", "%.0f" % (2 * best[0])], enc["name"] + " @ 2x max")
            ctx["extra_rows"].append(variant_row("%s at twice the max rate (%.0f req/s offered, open loop), "
                                                 "aws_xks_rate_limit = %d" % (enc["name"], 2 * best[0], limit),
                                                 64, over, status_note(over)))
            srv.stop()

        # ---- the fleet (issue 16): three nodes on one PostgreSQL, same load generator
        if enc["available"]:
            fr = fleet_scenario(a)
            ctx["fleet_rows"] = fleet_rows(fr, results)
            if fr.get("error"):
                ctx["not_measured"].append("fleet scenario (partly): %s" % fr["error"][:400])
        else:
            ctx["not_measured"].append("fleet scenario: the XKS route is not available")

        # ---- nginx ceiling
        ceil = {}
        if shutil.which("nginx"):
            srv.start()
            ngx = Nginx(os.path.join(tmp, "nginx"), srv, scen)
            ngx.start()
            shapes = {}
            for s in scen:
                if s["available"] or s["shape"] == "get":
                    shapes.setdefault(s["shape"], s)
            # a POST shape even when no protocol route is up: the XKS request as AWS sends it
            shapes.setdefault("post-small", dict(enc, available=True))
            if enc.get("body_file") is None:
                enc_body = os.path.join(tmp, "enc-ceiling.json")
                with open(enc_body, "wb") as f:
                    f.write(enc["body"])
                shapes["post-small"]["body_file"] = enc_body
            for shape, s in shapes.items():
                for c in CONNS:
                    rr = loadgen(ngx.port, srv.cacert, s, c, a.seconds, a.warmup, pki, srv.token_file,
                                 a.secret_file, label="nginx " + shape)
                    ceil[(shape, c)] = rr.get("rps")
                    say("nginx %-10s c=%-3d %s" % (shape, c, rr.get("rps")))
            cmd = loadgen_cmd(ngx.port, srv.cacert, shapes["post-small"], 16, a.seconds, a.warmup, pki,
                              srv.token_file, a.secret_file, label="nginx post-small (where)")
            wn = where(child_pids(ngx.proc.pid), cmd, a.seconds, a.warmup)
            ctx["where_rows"].extend(where_rows("nginx, fixed answer to the same POST, 16 conns", wn))
            nc = loadgen(ngx.port, srv.cacert, shapes[head["shape"]], 16, a.seconds, a.warmup, pki,
                         srv.token_file, a.secret_file, ["--new-conn"], "nginx new TLS")
            ceil[("new-conn", 16)] = nc.get("rps")
            ngx.stop()
            srv.stop()
            ctx["nginx_note"] = "%d workers, `return 200 '<fixed JSON>'`, keepalive_requests 1e8, access_log off" % os.cpu_count()
        else:
            ctx["not_measured"].append("HTTP ceiling: nginx is not installed (`make bench-deps`)")
        for s in scen:
            for c in CONNS:
                if (s["name"], c) in results:
                    ctx["rows"].append(result_row(s["name"], c, results[(s["name"], c)], ceil.get((s["shape"], c))))
                elif c == CONNS[0]:
                    ctx["rows"].append("| %s | - | not measured: %s | | | | | | | | | | |" % (s["name"], s["why"]))
        if ceil.get(("new-conn", 16)) and "rps" in newconn.get(16, {}):
            ctx["extra_rows"].append(variant_row("nginx, new TLS handshake per request (ceiling)", 16,
                                                 {"rps": ceil[("new-conn", 16)], "p50_us": 0, "p99_us": 0, "p999_us": 0,
                                                  "errors": 0, "conn_errors": 0},
                                                 "%.0f%% reached by Keyward" % (100 * newconn[16]["rps"] / ceil[("new-conn", 16)])))

        # RSA vs raw OpenSSL on the cores left.  The raw rate is measured now,
        # next to the RSA scenarios (a short sample at the start of the run
        # swung by 10 %), with one kw-cryptocost per core running at once, so
        # the ceiling is what all the cores do together; per core it is that
        # sum / nproc, times the cores the load generator leaves.
        ncpu = os.cpu_count()
        par = [subprocess.Popen(["taskset", "-c", str(i), CRYPTOCOST, "2", "rsa"], stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True) for i in range(ncpu)]
        rsa_par, rsa_ok = {}, 0
        for pp in par:
            out, _ = pp.communicate(timeout=300)
            if pp.returncode == 0:
                rsa_ok += 1
                for k, v in json.loads(out).items():
                    rsa_par[k] = rsa_par.get(k, 0) + v
        ctx["rsa_parallel"] = {k: v / ncpu for k, v in rsa_par.items()} if rsa_ok == ncpu else {}
        say("RSA, one kw-cryptocost per core at once (per-core average):", ctx["rsa_parallel"])
        for bits in (2048, 3072, 4096):
            raw = ctx["rsa_parallel"].get("rsa_oaep256_dec_%d" % bits) or ctx["crypto"].get("rsa_oaep256_dec_%d" % bits)
            for c in CONNS:
                rr = results.get(("EKM RSA-OAEP-256 unwrap %d" % bits, c))
                if raw and rr and "rps" in rr:
                    left = max(0.1, ncpu - rr["loadgen_cpu"])
                    ctx["rsa_rows"].append("| RSA-%d | %d | %.0f | %.0f | %.2f | %.0f | %.0f%% |" % (
                        bits, c, rr["rps"], raw, left, raw * left, 100 * rr["rps"] / (raw * left)))

        # ---- scale
        scale_rss, scale_start = {}, {}
        for n in [int(x) for x in a.scale.split(",") if x.strip()]:
            d = os.path.join(tmp, "scale-%d" % n)
            s2 = Server(d, pki)
            s2.start()
            s2.stop()
            pop = "-"
            if n:
                cmd = ([shutil.which("eatmydata")] if shutil.which("eatmydata") else []) + [POPULATE, s2.conf, "pop-", str(n)]
                pr = run(cmd, env=s2.env, timeout=1800)
                if pr.returncode != 0:
                    ctx["scale_rows"].append("| %d | failed: %s | | | | |" % (n, pr.stderr.strip()[:120]))
                    continue
                pj = json.loads(pr.stdout)
                pop = "%.1f s (seal %.0f us, insert %.0f us per key)" % (pj["seconds"], pj["seal_us"], pj["insert_us"])
            t = s2.start()
            rss = s2.rss_kib()
            pids = s2.pids()
            front = rss.get(pids[0], 0) / 1024
            cust = sum(v for p, v in rss.items() if p != pids[0]) / 1024
            scale_rss[n], scale_start[n] = front + cust, t
            ctx["scale_rows"].append("| %d | %s | %.3f | %.1f | %.1f | %.1f |" % (n, pop, t, front, cust, front + cust))
            say("scale %d keys: start %.3f s, RSS %.1f MiB" % (n, t, front + cust))
            s2.stop()
            if n >= 1000 and not ctx["cache_rows"]:
                s2.start({"KEYWARD_DB_KEY_CACHE_SIZE": "64"})
                spread = None
                if enc["available"]:
                    spread = dict(enc, path=XKS_PREFIX + "/kms/xks/v1/keys/{key}/encrypt")
                elif by["EKM A256KWP wrap 32 B"]["available"]:
                    spread = dict(by["EKM A256KWP wrap 32 B"], path="/azureekm/{key}/wrapkey" + EKM_Q)
                if spread is None:
                    ctx["not_measured"].append("key-cache misses: needs the XKS or EKM route (neither available)")
                else:
                    for c in (1, 16):
                        rr = measure(s2, spread, c, a, ["--keys", "pop-%06d:1000"], spread["name"] + " over 1000 keys")
                        ctx["cache_rows"].append("| %s, 1000 keys, cache 64 | %d | %s | %s | %s | %s | %d |" % (
                            spread["name"], c, fmt_rate(rr.get("rps")), ms(rr.get("p50_us", 0)), ms(rr.get("p99_us", 0)),
                            ms(rr.get("p999_us", 0)), rr.get("errors", 0) + rr.get("conn_errors", 0)))
                s2.stop()
                if spread is not None and best[0] > 0:
                    iso = isolation(s2, spread, best[0] / 2, a)
                    ctx["isolation_rows"].extend(iso["rows"])
                    ctx["isolation"] = iso

        # ---- targets
        T = ctx["targets"]
        if enc["available"]:
            e = max(((results[(enc["name"], c)].get("rps", 0), c) for c in CONNS))
            cl = ceil.get(("post-small", e[1]))
            T.append(("XKS encrypt >= 10,000 req/s", "%.0f req/s (%d conns)" % e, "met" if e[0] >= 10000 else "not met"))
            if cl:
                T.append(("XKS encrypt >= 60% of nginx", "%.0f%% of %.0f" % (100 * e[0] / cl, cl),
                          "met" if e[0] >= 0.6 * cl else "not met"))
            if half and "p99_us" in half:
                T.append(("XKS encrypt p99 <= 2 ms at half max rate", "%s ms at %.0f req/s" % (ms(half["p99_us"]), e[0] / 2),
                          "met" if half["p99_us"] <= 2000 else "not met"))
            for nm in ("XKS decrypt 64 B", "EKM A256KWP wrap 32 B", "EKM A256KWP unwrap 32 B"):
                r16, c16 = results.get((nm, 16), {}), ceil.get(("post-small", 16))
                if "rps" in r16 and c16:
                    T.append(("%s >= 60%% of nginx (16 conns)" % nm, "%.0f%% (%.0f of %.0f)" % (100 * r16["rps"] / c16, r16["rps"], c16),
                              "met" if r16["rps"] >= 0.6 * c16 else "not met"))
            w16 = wh.get(16, {})
            if "where" in w16:
                fr, cu = w16["where"].get("front", {}), w16["where"].get("custody", {})
                tot = where_total(w16)
                T.append(("server CPU per XKS encrypt <= 45 µs (16 conns)",
                          "%.1f µs (front %.1f, custody %.1f)%s" % (
                              tot, fr.get("cpu_us", 0), cu.get("cpu_us", 0),
                              "; one bare process hop alone costs %.1f µs here" % ctx["hop"]["cpu_us"]
                              if "cpu_us" in ctx.get("hop", {}) else ""),
                          "met" if tot <= 45 else "not met"))
            if over and "status" in over:
                ok_in_time = over["p99_us"] <= 250000 and over.get("conn_errors", 0) == 0 and \
                    set(over["status"]) <= {"200", "429"}
                T.append(("XKS encrypt p99 <= 250 ms at 2x max rate, excess answered 429",
                          "p99 %s ms; %s" % (ms(over["p99_us"]), status_note(over)), "met" if ok_in_time else "not met"))
            iso = ctx.get("isolation")
            if iso and "p99_us" in iso.get("alone", {}) and "p99_us" in iso.get("beside", {}):
                d = (iso["beside"]["p99_us"] - iso["alone"]["p99_us"]) / 1000.0
                T.append(("cached-key p99 beside 50 ms HSM unseals: + <= 1 ms",
                          "%+.2f ms (%s -> %s ms)" % (d, ms(iso["alone"]["p99_us"]), ms(iso["beside"]["p99_us"])),
                          "met" if d <= 1.0 else "not met"))
        else:
            for t in ("XKS encrypt >= 10,000 req/s", "XKS encrypt >= 60% of nginx", "XKS encrypt p99 <= 2 ms at half max rate"):
                T.append((t, "-", "not measured (XKS route not available)"))
        raw = ctx.get("rsa_parallel", {}).get("rsa_oaep256_dec_3072") or ctx["crypto"].get("rsa_oaep256_dec_3072")
        rr3 = [results.get(("EKM RSA-OAEP-256 unwrap 3072", c)) for c in CONNS]
        rr3 = [x for x in rr3 if x and "rps" in x]
        if raw and rr3:
            bestr = max(rr3, key=lambda x: x["rps"])
            left = max(0.1, ncpu - bestr["loadgen_cpu"])
            pct = 100 * bestr["rps"] / (raw * left)
            T.append(("RSA-3072 unwrap >= 90% of raw OpenSSL on the cores left", "%.0f%% (%.0f of %.0f req/s)" % (pct, bestr["rps"], raw * left),
                      "met" if pct >= 90 else "not met"))
        else:
            T.append(("RSA-3072 unwrap >= 90% of raw OpenSSL on the cores left", "-", "not measured (EKM route not available)"))
        big = max(scale_rss) if scale_rss else None
        if big:
            T.append(("RSS <= 64 MiB with %d keys" % big, "%.1f MiB" % scale_rss[big], "met" if scale_rss[big] <= 64 else "not met"))
            T.append(("start-up <= 1 s with %d keys" % big, "%.3f s" % scale_start[big], "met" if scale_start[big] <= 1 else "not met"))
    except Exception as e:   # report what was measured, and why the rest was not
        ctx["not_measured"].append("the run stopped early: %s: %s" % (type(e).__name__, str(e)[:300]))
        say("run stopped early:", e)
        failed = True
    else:
        failed = False
    finally:
        if ngx:
            ngx.stop()
        if srv:
            srv.stop()
        ctx["elapsed"] = time.monotonic() - started
    ctx["date"] += " (run took %.0f s)" % ctx["elapsed"]
    write_report(a.out, ctx)
    say("wrote %s in %.0f s" % (a.out, ctx["elapsed"]))
    if not a.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
