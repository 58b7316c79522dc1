"""Black-box harness: real keywardd processes on loopback, each with its own
SoftHSM2 token, SQLCipher database and TLS certificate in a temp dir.

Every test talks to the server as a real client would (requests over TLS,
keywardctl as a subprocess).  Servers are stopped at the end of each test;
every wait is bounded.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest
import requests
import urllib3

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("KEYWARD_BUILD", os.path.join(ROOT, "build"))
KEYWARDD = os.path.join(BUILD, "keywardd")
KEYWARDCTL = os.path.join(BUILD, "keywardctl")
FAULTHSM = os.path.join(BUILD, "libfaulthsm.so")
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def traversable(path):
    """Started as root, keywardd's custody process runs as keyward-custody:
    the directories above a state directory (pytest's are 0700 root) must
    let it through (search permission only, no listing)."""
    if os.geteuid() != 0:
        return
    p = os.path.dirname(os.path.abspath(path))
    while p not in ("/", ""):
        st = os.stat(p)
        if not st.st_mode & 0o001:
            os.chmod(p, (st.st_mode & 0o7777) | 0o011)
        p = os.path.dirname(p)


class Server:
    """One keywardd (parent + front + custody) with its own state directory."""

    def __init__(self, tmp, port=None, extra_toml="", env=None, faulthsm=False):
        traversable(tmp)
        self.dir = tmp
        self.port = port or free_port()
        subprocess.run([os.path.join(ROOT, "tests", "devstate.sh"), tmp, str(self.port)],
                       check=True, timeout=60)
        self.conf = os.path.join(tmp, "keyward.toml")
        # the server's environment: ours, minus the harness's own KEYWARD_* variables
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("KEYWARD_")}
        self.env["SOFTHSM2_CONF"] = os.path.join(tmp, "softhsm", "softhsm2.conf")
        self.ctl_file = os.path.join(tmp, "faulthsm.ctl")
        if faulthsm:
            with open(self.ctl_file, "w") as f:
                f.write("mode=up\n")
            self.env["KEYWARD_FAULTHSM_MODULE"] = SOFTHSM
            self.env["KEYWARD_FAULTHSM_CTL"] = self.ctl_file
            self.env["KEYWARD_HSM_MODULE"] = FAULTHSM
        # short timeouts keep failure tests fast; the defaults are for production
        self.env.setdefault("KEYWARD_HSM_TIMEOUT_MS", "1000")
        self.env.setdefault("KEYWARD_HSM_RETRY_INTERVAL_MS", "200")
        self.env.setdefault("KEYWARD_DB_DELETION_MIN_WAIT_SECONDS", "1")
        if env:
            self.env.update(env)
        if extra_toml:
            with open(self.conf, "a") as f:
                f.write("\n" + extra_toml + "\n")
        self.cacert = os.path.join(tmp, "tls", "cert.pem")
        self.url = "https://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(tmp, "server.log")
        self.proc = None

    # -- process control ---------------------------------------------------
    def start(self, wait=True):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([KEYWARDD, "--config", self.conf], env=self.env,
                                     stdout=self.log, stderr=self.log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("keywardd exited with %s:\n%s" % (self.proc.returncode, self.logs()))
            try:
                r = requests.get(self.url + "/healthz", verify=self.cacert, timeout=2)
                if r.status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError("keywardd not ready in %ss:\n%s" % (timeout, self.logs()))

    def run_to_exit(self, timeout=30):
        """Starts keywardd expecting it to fail; returns (exit code, output)."""
        p = subprocess.run([KEYWARDD, "--config", self.conf], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def stop(self, sig=signal.SIGTERM, timeout=15):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
        self.log.close()

    def _child(self, role):
        """The pid of the parent's child started with --<role> (custody or
        front: keywardd is a parent and these two processes), or None."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        for pid in (int(x) for x in out.stdout.split()):
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    if ("--" + role).encode() in f.read().split(b"\0"):
                        return pid
            except OSError:
                pass
        return None

    def custody_pid(self):
        return self._child("custody")

    def front_pid(self):
        """The front's pid; in the layout of releases before issue 10 (no
        separate front), the process started, which was the front."""
        return self._child("front") or (self.proc.pid if self.custody_pid() else None)

    def kill9_all(self):
        """SIGKILL of the three processes at once, as a power cut would."""
        pids = [p for p in (self.custody_pid(), self.front_pid()) if p]
        os.kill(self.proc.pid, signal.SIGKILL)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None
        self.log.close()
        # the children die with their parent (PDEATHSIG) or by our SIGKILL
        deadline = time.time() + 10
        while pids and time.time() < deadline:
            try:
                for pid in pids:
                    os.kill(pid, 0)
                time.sleep(0.05)
            except ProcessLookupError:
                pids = [p for p in pids if os.path.exists("/proc/%d" % p)]

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-6000:]
        except OSError:
            return ""

    def hsm(self, mode):
        with open(self.ctl_file, "w") as f:
            f.write(mode + "\n")

    # -- clients -----------------------------------------------------------
    @property
    def token(self):
        with open(os.path.join(self.dir, "admin.token")) as f:
            return f.read().strip()

    def api(self, method, path, body=None, token=None, raw=None, headers=None, timeout=30):
        h = {"Authorization": "Bearer " + (token if token is not None else self.token)}
        if token == "":
            del h["Authorization"]
        if body is not None:
            raw = json.dumps(body)
        if raw is not None:
            h["Content-Type"] = "application/json"
        if headers:
            h.update(headers)
        return requests.request(method, self.url + path, data=raw, headers=h,
                                 verify=self.cacert, timeout=timeout)

    def ctl(self, *args, token_file=None, check=False, timeout=30):
        env = dict(os.environ)
        env["KEYWARD_URL"] = self.url
        env["KEYWARD_CACERT"] = self.cacert
        env["KEYWARD_TOKEN_FILE"] = token_file or os.path.join(self.dir, "admin.token")
        p = subprocess.run([KEYWARDCTL] + list(args), env=env, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("keywardctl %s -> %d\n%s%s" % (args, p.returncode, p.stdout, p.stderr))
        return p


@pytest.fixture
def make_server():
    servers = []
    dirs = []

    def make(**kw):
        tmp = kw.pop("tmp", None)
        if tmp is None:
            tmp = tempfile.mkdtemp(prefix="kw-bb-")
            dirs.append(tmp)
        s = Server(tmp, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop()
    for d in dirs:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def server(make_server):
    return make_server().start()
