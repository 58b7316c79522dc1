#!/usr/bin/python3
"""fleet_bench.py - `make bench`'s fleet scenario (issue 16): three keywardd
nodes on this machine against one PostgreSQL, XKS encrypt through all three
with the same load generator as the single-node figures (kw-loadgen, its
connections spread round robin over the three ports, as behind a load
balancer: one TLS certificate, the first node's Host header).

Run by bench.py under tests/fleet/pg.sh (PG_TLS=1: the nodes reach
PostgreSQL over TLS with certificate verification, as the fleet tests do):

    PG_TLS=1 tests/fleet/pg.sh /usr/bin/python3 tests/bench/fleet_bench.py \
        --seconds 4 --warmup 1 --secret-file F --conns 16,64

Prints one JSON object on stdout: {"runs":[{"label","nodes","conns",
"result"}], "pg_cpu":..., "error":...}; a benchmark, it never fails on a
number, and exits non-zero only when it cannot run at all.  Everything it
starts is on 127.0.0.1, under a temp dir, stopped at the end."""
import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (tests/bench/bench.py: Server, loadgen, the XKS constants)

CUSTODY_USER = "keyward-custody"

NODE_TOML = """# written by tests/bench/fleet_bench.py
[http]
listen = "127.0.0.1:{port}"

[tls]
tls_cert_file = "{dir}/tls/cert.pem"
tls_key_file = "{dir}/tls/key.pem"

[db]
engine = "postgresql"
conninfo = "{conninfo}"
password_file = "{dir}/db.password"
node_name = "{name}"

[hsm]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "keyward-bench-fleet"
pin_file = "{hsm}/pin"
master_key_label = "keyward-master"

[custody]
socket_path = "{dir}/run/custody.sock"

[admin]
token_file = "{dir}/admin.token"

[log]
level = "info"
"""


def say(*a):
    print("fleet-bench: " + " ".join(str(x) for x in a), file=sys.stderr, flush=True)


def as_custody(path):
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", "%s:" % CUSTODY_USER, path], check=True, timeout=60)


def postgres_pids():
    """The cluster's processes: the postmaster (postmaster.pid's first line)
    and its children."""
    try:
        with open(os.path.join(os.environ["KW_TEST_PG_DATA"], "postmaster.pid")) as f:
            pm = int(f.readline())
    except (OSError, ValueError, KeyError):
        return []
    return bench.child_pids(pm)


def ticks(pids):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total


class Fleet:
    def __init__(self, tmp, pki, n=3):
        self.tmp = tmp
        self.hsm = os.path.join(tmp, "hsm")
        os.makedirs(self.hsm)
        subprocess.run([os.path.join(bench.ROOT, "tests", "softhsm-init.sh"), self.hsm,
                        "keyward-bench-fleet", os.urandom(8).hex()], check=True, timeout=60)
        as_custody(self.hsm)
        os.chmod(self.hsm, 0o711)
        self.nodes = []
        tls = None
        for i in range(n):
            name = "node-%s" % "abc"[i]
            d = os.path.join(tmp, name)
            os.makedirs(os.path.join(d, "tls"))
            if tls:                            # one certificate for the fleet (one name)
                for f in ("cert.pem", "key.pem"):
                    shutil.copy(os.path.join(tls, f), os.path.join(d, "tls", f))
            port = bench.free_port()
            shutil.copyfile(os.environ["KW_TEST_PG_PASSWORD_FILE"], os.path.join(d, "db.password"))
            os.chmod(os.path.join(d, "db.password"), 0o600)
            with open(os.path.join(d, "keyward.toml"), "w") as f:
                f.write(NODE_TOML.format(port=port, dir=d, conninfo=os.environ["KW_TEST_PG"],
                                         name=name, hsm=self.hsm))
            s = bench.Server(d, pki)           # devstate.sh keeps the file, adds the XKS/EKM settings
            s.port, s.url = port, "https://127.0.0.1:%d" % port   # ours, not the one it picked
            s.env["SOFTHSM2_CONF"] = os.path.join(self.hsm, "softhsm2.conf")
            self.nodes.append(s)
            tls = tls or os.path.join(d, "tls")

    def init(self):
        a = self.nodes[0]
        argv = [bench.KEYWARDD, "--config", a.conf, "--init"]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", CUSTODY_USER, "--"] + argv
        r = subprocess.run(argv, env=a.env, capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("keywardd --init: %s%s" % (r.stdout, r.stderr.strip()[-300:]))

    def start(self, nodes=None):
        for s in nodes or self.nodes:
            s.start()

    def stop(self):
        for s in self.nodes:
            s.stop()

    def pids(self, nodes=None):
        out = []
        for s in nodes or self.nodes:
            if s.proc is not None:
                out += s.pids()
        return out


def xks_answered(node):
    """The node's XKS answers so far (its /metrics: keyward_http_requests_total
    of route "xks"), to show how the load spread; None when unreadable."""
    import requests
    try:
        r = requests.get(node.url + "/metrics", verify=node.cacert, timeout=10)
    except requests.RequestException:
        return None
    n = 0
    for line in r.text.splitlines():
        if line.startswith("keyward_http_requests_total{") and 'route="xks"' in line:
            n += float(line.rsplit(" ", 1)[1])
    return n


def measure(fl, nodes, body_file, conns, a, label):
    scen = {"name": label, "method": "POST", "auth": "sigv4", "body_file": body_file,
            "path": bench.XKS_PREFIX + "/kms/xks/v1/keys/xks-aes/encrypt"}
    ports = ",".join(str(s.port) for s in nodes)
    cmd = bench.loadgen_cmd(ports, nodes[0].cacert, scen, conns, a.seconds, a.warmup,
                            secret_file=a.secret_file, label=label)
    servers, pg = fl.pids(nodes), postgres_pids()
    before = [xks_answered(s) for s in nodes]
    t0, c0, p0 = time.monotonic(), ticks(servers), ticks(pg)
    r = bench.run(cmd, timeout=a.seconds + a.warmup + 60)
    dt = time.monotonic() - t0
    after = [xks_answered(s) for s in nodes]
    hz = os.sysconf("SC_CLK_TCK")
    if r.returncode != 0:
        return {"error": "loadgen exit %d: %s" % (r.returncode, r.stderr.strip()[:200])}
    res = json.loads(r.stdout)
    res["server_cpu"] = (ticks(servers) - c0) / hz / dt
    res["pg_cpu"] = (ticks(pg) - p0) / hz / dt
    if None not in before + after:
        res["per_node"] = [y - x for x, y in zip(before, after)]
    say("%-40s c=%-3d %s" % (label, conns, "%.0f req/s p99 %.2f ms" % (res["rps"], res["p99_us"] / 1000)
                             if "rps" in res else res))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--conns", default="16,64")
    ap.add_argument("--secret-file", required=True)
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    for v in ("KW_TEST_PG", "KW_TEST_PG_PASSWORD_FILE"):
        if not os.environ.get(v):
            sys.exit("fleet-bench: %s unset: run under tests/fleet/pg.sh" % v)
    tmp = tempfile.mkdtemp(prefix="kw-bench-fleet-")
    os.chmod(tmp, 0o711)
    out = {"runs": [], "conninfo_tls": "sslmode=verify-full" in os.environ["KW_TEST_PG"]}
    fl = None
    try:
        pki = bench.make_client_pki(os.path.join(tmp, "pki"))
        os.chmod(os.path.join(tmp, "pki"), 0o755)
        fl = Fleet(tmp, pki)
        fl.init()
        fl.start()
        r = fl.nodes[0].api("POST", "/api/v1/keys", {"name": "xks-aes", "type": "AES",
                                                     "rules": {"xks": {"key_stores": ["default"]}}})
        if r.status_code != 201:
            raise RuntimeError("key xks-aes on node-a: %s %s" % (r.status_code, r.text[:200]))
        # the request of the single-node "XKS encrypt 64 B" row
        body = json.dumps({"requestMetadata": bench.xks_meta("Encrypt"),
                           "plaintext": base64.b64encode(os.urandom(64)).decode(),
                           "encryptionAlgorithm": "AES_GCM"}, separators=(",", ":")).encode()
        bf = os.path.join(tmp, "enc-64.json")
        with open(bf, "wb") as f:
            f.write(body)
        for c in [int(x) for x in a.conns.split(",")]:
            out["runs"].append({"label": "3 nodes", "nodes": 3, "conns": c,
                                "result": measure(fl, fl.nodes, bf, c, a, "fleet: XKS encrypt 64 B, 3 nodes")})
        # one node of the fleet alone (same database): the per-node cost of PostgreSQL
        for c in [int(x) for x in a.conns.split(",")]:
            out["runs"].append({"label": "1 node", "nodes": 1, "conns": c,
                                "result": measure(fl, fl.nodes[:1], bf, c, a,
                                                  "fleet: XKS encrypt 64 B, node-a alone")})
    except Exception as e:       # report what was measured and why the rest was not
        out["error"] = "%s: %s" % (type(e).__name__, str(e)[:300])
        if fl:
            out["error"] += " | " + " | ".join(s.tail()[-300:].replace("\n", " ") for s in fl.nodes)
        say("stopped early:", out["error"])
    finally:
        if fl:
            fl.stop()
        if not a.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
