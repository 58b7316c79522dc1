"""The fleet harness (issue 16): three keywardd nodes on loopback sharing one
PostgreSQL (TLS, verify-full) and one SoftHSM2 token.

The PostgreSQL comes from tests/fleet/pg.sh, which runs pytest (make
fleet-test: `PG_TLS=1 tests/fleet/pg.sh python3 -m pytest tests/fleet`) and
exports KW_TEST_PG, KW_TEST_PG_PASSWORD_FILE, KW_TEST_PG_SUPER,
KW_TEST_PG_CTL, KW_TEST_PG_BIN.  Each test module gets a database of its own
in that cluster and a fleet of its own (fleet_fixture()), so modules are
independent; tests of a module share its fleet and leave it as they found
it (rows they tamper with are put back, a node they kill is restarted).

The black-box harness (tests/blackbox: conftest.Server, the XKS and EKM
clients, the EKM test PKI) is reused as is: tests/blackbox is put on
sys.path and its modules imported.  Nothing here is a mock: the nodes are
the built keywardd, the clients sign with botocore and speak mutual TLS.
"""
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import pytest
import requests

HERE = os.path.dirname(os.path.abspath(__file__))
BLACKBOX = os.path.join(HERE, "..", "blackbox")
if BLACKBOX not in sys.path:
    sys.path.insert(0, BLACKBOX)

import conftest as bb  # noqa: E402  (tests/blackbox/conftest.py)
from conftest import KEYWARDCTL, KEYWARDD, ROOT, SOFTHSM, Server  # noqa: E402,F401
from ekm_certs import make_pki  # noqa: E402
import test_ekm  # noqa: E402
import test_xks  # noqa: E402
from test_ekm import ALLOWED_CN, OTHER_CN, Ekm, ekm_env  # noqa: E402,F401
from test_init import run_init, summary  # noqa: E402
from test_xks import AKID, META, REGION, SECRET, Xks, b64, bound_aad, unb64  # noqa: E402,F401

NODE_NAMES = ("node-a", "node-b", "node-c")
EKM_RULES = test_ekm.EKM_RULES
XKS_TOML = test_xks.TOML
HSM_LABEL = "keyward-fleet"
# A cached key's row is re-read every cache_revalidate_seconds (30 by
# default): 2 s here, so that a node holding a row cached from before a
# tamper drops it within the tests' bounded waits (docs/fleet.md).
DB_EXTRA = "cache_revalidate_seconds = 2\n"
CUSTODY_USER = "keyward-custody"


# ------------------------------------------------------------ PostgreSQL

def pg_env():
    """The cluster pg.sh started, or a failure saying how to get one (never a
    skip: these tests are the issue's proof)."""
    need = ("KW_TEST_PG", "KW_TEST_PG_PASSWORD_FILE", "KW_TEST_PG_SUPER", "KW_TEST_PG_CTL",
            "KW_TEST_PG_BIN")
    missing = [n for n in need if not os.environ.get(n)]
    if missing:
        pytest.fail("no PostgreSQL: %s unset; run the fleet tests under tests/fleet/pg.sh "
                    "(make fleet-test does: PG_TLS=1 tests/fleet/pg.sh ...)" % ", ".join(missing))
    ci = parse_conninfo(os.environ["KW_TEST_PG"])
    if ci.get("sslmode") != "verify-full":
        pytest.fail("KW_TEST_PG has sslmode=%s: the fleet tests run against PostgreSQL over TLS "
                    "with certificate verification (PG_TLS=1 tests/fleet/pg.sh ...)"
                    % ci.get("sslmode"))
    return os.environ


def parse_conninfo(s):
    """key=value pairs (pg.sh's strings have no quoting)."""
    return dict(kv.split("=", 1) for kv in s.split())


def conninfo(base, **kw):
    d = parse_conninfo(base)
    d.update({k: str(v) for k, v in kw.items()})
    return " ".join("%s=%s" % kv for kv in d.items())


def psql(sql, db="keyward", check=True, timeout=30):
    """Runs SQL as the cluster's superuser (over its Unix socket: the DBA
    of the issue, who can change any row); returns the unaligned output."""
    env = pg_env()
    argv = [os.path.join(env["KW_TEST_PG_BIN"], "psql"), "-X", "-q", "-A", "-t",
            "-v", "ON_ERROR_STOP=1", conninfo(env["KW_TEST_PG_SUPER"], dbname=db), "-c", sql]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError("psql %r -> %d: %s" % (sql, p.returncode, p.stderr))
    return p.stdout.strip()


def pg_ctl(*args, timeout=60):
    argv = shlex.split(pg_env()["KW_TEST_PG_CTL"]) + list(args)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, "pg_ctl %s -> %d: %s%s" % (args, p.returncode, p.stdout, p.stderr)


def pg_running():
    argv = shlex.split(pg_env()["KW_TEST_PG_CTL"]) + ["status"]
    return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0


def create_database(name):
    """A fresh database owned by keyward (dropped first when a previous run
    left it)."""
    psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % name, db="postgres")
    psql("CREATE DATABASE %s OWNER keyward" % name, db="postgres")
    return conninfo(pg_env()["KW_TEST_PG"], dbname=name)


# ----------------------------------------------------------------- files

def custody_owned(path):
    """Started as root, keywardd's custody process runs as keyward-custody:
    what it reads (token, PIN, database password) must be its own."""
    if os.geteuid() != 0:
        return
    subprocess.run(["chown", "-R", "%s:" % CUSTODY_USER, path], check=True, timeout=30)


def shared_token(directory):
    """One SoftHSM2 token for the whole fleet (as N appliances reach one HSM
    partition): DIR/softhsm2.conf, DIR/pin."""
    os.makedirs(directory, exist_ok=True)
    bb.traversable(os.path.join(directory, "x"))
    pin = os.urandom(8).hex()
    subprocess.run([os.path.join(ROOT, "tests", "softhsm-init.sh"), directory, HSM_LABEL, pin],
                   check=True, timeout=60)
    custody_owned(directory)
    os.chmod(directory, 0o711)
    return directory


NODE_TOML = """# written by tests/fleet/fleetlib.py
[http]
listen = "127.0.0.1:{port}"

[tls]
tls_cert_file = "{dir}/tls/cert.pem"
tls_key_file = "{dir}/tls/key.pem"

[db]
{db}

[hsm]
module = "{softhsm}"
token_label = "{label}"
pin_file = "{hsm}/pin"
master_key_label = "keyward-master"

[custody]
socket_path = "{dir}/run/custody.sock"

[admin]
token_file = "{dir}/admin.token"

[log]
level = "info"
{extra}
"""


def fleet_db_toml(ci, password_file, node, extra=""):
    return ('engine = "postgresql"\nconninfo = "%s"\npassword_file = "%s"\nnode_name = "%s"\n%s'
            % (ci, password_file, node, extra))


class Node(Server):
    """One keywardd of the fleet: its own port, TLS certificate, state
    directory and configuration; the fleet's token and database."""

    def __init__(self, fleet, name, directory, db_toml=None, env=None, extra_toml=""):
        os.makedirs(directory, exist_ok=True)
        port = bb.free_port()
        pw = os.path.join(directory, "db.password")
        shutil.copyfile(pg_env()["KW_TEST_PG_PASSWORD_FILE"], pw)
        os.chmod(pw, 0o600)
        if db_toml is None:
            db_toml = fleet_db_toml(fleet.conninfo, pw, name, fleet.db_extra)
        with open(os.path.join(directory, "keyward.toml"), "w") as f:
            f.write(NODE_TOML.format(port=port, dir=directory, db=db_toml, softhsm=SOFTHSM,
                                     label=fleet.hsm_label, hsm=fleet.hsm, extra=extra_toml))
        e = {"SOFTHSM2_CONF": os.path.join(fleet.hsm, "softhsm2.conf")}
        e.update(env or {})
        # devstate.sh keeps our keyward.toml, adds the TLS certificate and
        # gives the directory to the custody user (it also makes a token of
        # the node's own that nothing uses: SOFTHSM2_CONF names the fleet's)
        super().__init__(directory, port=port, env=e)
        self.name = name
        self.fleet = fleet

    @property
    def token(self):
        return self.fleet.admin_token

    def ctl(self, *args, token_file=None, **kw):
        return super().ctl(*args, token_file=token_file or self.fleet.token_file, **kw)

    def xks(self):
        """An XKS client (botocore's SigV4) on a keep-alive session."""
        return xks_client(self)

    def ekm(self):
        """An EKM client with the allowed client certificate (mutual TLS)."""
        return Ekm(self, self.fleet.pki["allowed"])


class Fleet:
    """Up to three nodes (NODE_NAMES) on one database and one token.

    Fleet(tag) makes the directory and the database; setup() the token (or
    takes hsm=DIR, a token another test made, e.g. a single appliance's),
    the EKM client PKI and the nodes' state; init() runs keywardd --init on
    the first node; start() starts them all."""

    def __init__(self, tag, n=3, db_extra=DB_EXTRA, env=None, extra_toml=XKS_TOML, hsm=None,
                 hsm_label=HSM_LABEL):
        pg_env()
        self.tag = tag
        self.n = n
        self.dir = tempfile.mkdtemp(prefix="kw-fleet-%s-" % tag)
        bb.traversable(os.path.join(self.dir, "x"))
        os.chmod(self.dir, 0o711)
        self.db = "kw_%s" % tag.replace("-", "_")
        self.db_extra = db_extra
        self.env_extra = env or {}
        self.extra_toml = extra_toml
        self.hsm = hsm
        self.hsm_label = hsm_label
        self.nodes = []
        self.extra = []            # nodes made by tests (node-d ...), stopped with the fleet
        self.token_file = None
        self.admin_token = None
        self.conninfo = create_database(self.db)

    def setup(self):
        if self.hsm is None:
            self.hsm = shared_token(os.path.join(self.dir, "hsm"))
        self.pki = make_pki(os.path.join(self.dir, "pki"), ALLOWED_CN, OTHER_CN)
        os.chmod(os.path.join(self.dir, "pki"), 0o755)
        self.env = ekm_env(self.pki)
        self.env.update(self.env_extra)
        with concurrent.futures.ThreadPoolExecutor(max(self.n, 1)) as ex:
            self.nodes = list(ex.map(self.make_node, NODE_NAMES[:self.n]))
        if self.nodes:
            self.token_file = os.path.join(self.nodes[0].dir, "admin.token")
        return self

    def make_node(self, name, extra=False, **kw):
        kw.setdefault("env", self.env)
        kw.setdefault("extra_toml", self.extra_toml)
        node = Node(self, name, os.path.join(self.dir, name), **kw)
        if extra:
            self.extra.append(node)
        return node

    def __getitem__(self, i):
        return self.nodes[i]

    def init(self):
        """keywardd --init on the first node (fleet mode: master key if absent,
        migrations, the first admin token into its token_file)."""
        a = self.nodes[0]
        rc, out, err = run_init(a)
        assert rc == 0, "keywardd --init (%s) -> %d\n%s%s" % (a.name, rc, out, err)
        doc = summary(out)
        assert doc.get("admin") == "token_file", doc
        with open(self.token_file) as f:
            self.admin_token = f.read().strip()
        assert self.admin_token, "keywardd --init wrote an empty admin token"
        return doc

    def start(self, nodes=None):
        """Starts the nodes one after the other, each waited for (bounded).
        Not at once: SoftHSM2's file store is not safe across processes that
        start together (a node logging in rewrites token.object while another
        lists the slots, which then finds no token: "tokens: none"); a real
        HSM partition has no such race."""
        for n in nodes or self.nodes:
            n.start(wait=False)
            n.wait_ready(timeout=60)
        return self

    def stop(self):
        for n in self.nodes + self.extra:
            try:
                n.stop()
            except Exception:       # a finalizer stops everything it can
                pass

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
        if pg_running():
            psql("DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.db, db="postgres", check=False)

    def sql(self, stmt):
        """SQL as the database's superuser on this fleet's database."""
        return psql(stmt, db=self.db)

    def logs(self):
        return "\n".join("--- %s\n%s" % (n.name, n.logs()) for n in self.nodes + self.extra)


def fleet_fixture(tag, **kw):
    """A module-scoped fixture: a started, initialised fleet of its own."""
    @pytest.fixture(scope="module")
    def fleet():
        f = Fleet(tag, **kw)
        try:
            f.setup()
            f.init()
            f.start()
            yield f
        finally:
            f.cleanup()
    return fleet


# --------------------------------------------------------------- helpers

def xks_client(server):
    """An XKS client (botocore's SigV4) on a keep-alive session, for any
    Server (a fleet node or a single appliance)."""
    return Xks(server, requests.Session())


def api_ok(node, method, path, body=None, status=(200, 201)):
    r = node.api(method, path, body)
    assert r.status_code in status, "%s %s %s on %s -> %d %s" % (
        method, path, body, node.name, r.status_code, r.text)
    return r.json()


def err_name(r):
    try:
        return r.json().get("error") or r.json().get("errorName") or r.json().get("code")
    except ValueError:
        return None


def xks_key(node, name, raw=None, stores=("default",), **extra):
    """An AES key reachable over XKS (store `default` of XKS_TOML) and EKM;
    imported from raw when given, so that python can check its ciphertexts."""
    body = {"name": name, "type": "AES",
            "rules": dict({"xks": {"key_stores": list(stores)}}, **EKM_RULES),
            "operations": ["encrypt", "decrypt", "wrap", "unwrap"]}
    body.update(extra)
    if raw is not None:
        body["material"] = b64(raw)
        return api_ok(node, "POST", "/api/v1/keys/import", body)
    body["size"] = 256
    return api_ok(node, "POST", "/api/v1/keys", body)


def poll_until(pred, timeout, interval=0.02, what="condition"):
    """Calls pred() every interval until it returns neither None nor False; returns
    (value, seconds).  Fails after timeout."""
    t0 = time.monotonic()
    last = None
    while True:
        last = pred()
        if last is not None and last is not False:   # (a 503 Response is falsy)
            return last, time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            raise AssertionError("%s: not within %.1f s (last: %r)" % (what, timeout, last))
        time.sleep(interval)


def refused_within(nodes, probe, refused, t0, timeout=5.0, interval=0.02):
    """Polls each node with probe(node) every interval until refused(resp) is
    true for it; returns {node name: seconds since t0 (time.monotonic())}.
    Every probe's answer before that must be the accepted one (probe
    returns it); a node never refused within timeout gets None."""
    out = {n.name: None for n in nodes}
    pending = list(nodes)
    while pending and time.monotonic() - t0 < timeout:
        for n in list(pending):
            r = probe(n)
            if refused(r):
                out[n.name] = time.monotonic() - t0
                pending.remove(n)
        time.sleep(interval)
    return out


def node_log_has(nodes, needle):
    return [n.name for n in nodes if needle in n.logs_all()]


def _logs_all(self):
    try:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return ""


Server.logs_all = _logs_all


class Load:
    """Background request load: one thread per callable, each calling it in
    a loop until stop(); answers are tallied as (thread, status)."""

    def __init__(self, fns):
        self.fns = fns
        self.halt = threading.Event()
        self.results = [[] for _ in fns]
        self.threads = [threading.Thread(target=self._run, args=(i,), daemon=True)
                        for i in range(len(fns))]

    def _run(self, i):
        while not self.halt.is_set():
            t = time.monotonic()
            try:
                r = self.fns[i]()
            except requests.RequestException as e:
                r = e
            self.results[i].append((t, r))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.halt.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive(), "a load thread did not stop"

    def __exit__(self, *a):
        self.stop()


def json_of(r):
    try:
        return r.json()
    except ValueError:
        return None


def health_entries(r):
    """XKS health: {id: healthStatus} of ekmFleetDetails."""
    j = json.loads(r.text)
    return {e.get("id"): e.get("healthStatus") for e in j.get("ekmFleetDetails", [])}
