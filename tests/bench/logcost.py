#!/usr/bin/python3
"""logcost.py - what the request log line costs the front, in CPU µs per request.

A measurement, not a test (issue 11).  Two keywardd servers run side by side,
one with `[log] requests = true`, one with `false`; kw-loadgen (build/bench,
`make bench-tools`) drives each in turn, alternating, for --rounds rounds.
For every run it reads, from /proc, the CPU time of the front and of the
custody process (all threads, the logger thread included) and their context
switches, and with perf (when present) the front's system calls; it divides
by the requests answered.  The median of the rounds is reported, and the
difference on - off is the log line's cost.  CPU time per request holds under
the noise of a shared machine far better than a request rate does.  The
front's system calls are counted (perf, when present) in one more run per
mode, apart: tracing them slows every call down.

    KEYWARD_BUILD=build /usr/bin/python3 tests/bench/logcost.py [--rounds 5]
        [--seconds 4] [--conns 16] [--scenarios healthz,xks] [--stderr file|pipe]
        [--profile] [--builds before=DIR,after=build]

--builds runs the servers of several builds side by side (each with log on
and off), alternating, so that a before/after comparison shares the noise.
--profile adds, per build, a perf record (DWARF call graphs) of the front
with the log on: the share of its samples in the log functions (inlined ones
included) and in the writer thread, times its CPU per request.

--stderr pipe gives the servers a pipe drained by this script (as journald's
stream socket would be) instead of a file.
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (same directory; reads KEYWARD_BUILD)


def tasks_sum(pid):
    """CPU ticks (utime + stime) and context switches of every thread of pid."""
    ticks = ctx = 0
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])     # whole process, exited threads included
    except OSError:
        pass
    try:
        for t in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/status" % (pid, t)) as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            ctx += int(line.split()[1])
            except OSError:
                pass
    except OSError:
        pass
    return ticks, ctx


def child(srv, role):
    out = bench.run(["pgrep", "-P", str(srv.proc.pid)]).stdout.split()
    for p in (int(x) for x in out):
        try:
            with open("/proc/%d/cmdline" % p, "rb") as f:
                if ("--" + role).encode() in f.read().split(b"\0"):
                    return p
        except OSError:
            pass
    raise RuntimeError("no %s process" % role)


class Drain:
    """Reads a server's stderr pipe into a file, as journald would read it."""

    def __init__(self, pipe, path):
        self.pipe, self.out = pipe, open(path, "ab")
        self.t = threading.Thread(target=self.run, daemon=True)
        self.t.start()

    def run(self):
        while True:
            b = os.read(self.pipe.fileno(), 1 << 16)
            if not b:
                break
            self.out.write(b)
        self.out.close()


def start(srv, env, how):
    if how == "file":
        srv.start(env)
        return
    e = dict(srv.env)
    e.update(env)
    srv.log = open(os.devnull, "ab")        # Server.stop closes it
    srv.proc = subprocess.Popen([bench.KEYWARDD, "--config", srv.conf], env=e,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    Drain(srv.proc.stderr, srv.log_path)
    deadline = time.monotonic() + 60
    import requests
    while time.monotonic() < deadline:
        try:
            if requests.get(srv.url + "/healthz", verify=srv.cacert, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.05)
    raise RuntimeError("keywardd not ready")


def one_run(srv, s, a, pki, count_syscalls=False):
    front, custody = child(srv, "front"), child(srv, "custody")
    f0, c0 = tasks_sum(front), tasks_sum(custody)
    perf = None
    if count_syscalls:
        perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "raw_syscalls:sys_enter", "-p", str(front)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.3)
    res = bench.loadgen(srv.port, srv.cacert, s, a.conns, a.seconds, 0, pki, srv.token_file,
                        a.secret_file, label=s["name"])
    f1, c1 = tasks_sum(front), tasks_sum(custody)
    sysc = None
    if perf is not None:
        perf.send_signal(2)
        err = perf.communicate(timeout=30)[1]
        for line in err.splitlines():
            parts = line.split(",")
            if len(parts) > 2 and "raw_syscalls" in line and parts[0].strip().isdigit():
                sysc = int(parts[0])
    if "error" in res:
        raise RuntimeError(res["error"])
    n = res["ok"] + res["errors"]
    tck = os.sysconf("SC_CLK_TCK")
    return {"front_us": (f1[0] - f0[0]) / tck * 1e6 / n, "custody_us": (c1[0] - c0[0]) / tck * 1e6 / n,
            "front_cs": (f1[1] - f0[1]) / n, "front_sys": (sysc / n) if sysc is not None else 0,
            "rps": res["rps"], "n": n}


# Functions whose time is the log line's: on the request thread (inlined
# ones included, perf script resolves them) and the writer thread ("kw-log").
LOG_FUNCS = {"log_request", "log_fields", "put_json_field", "kw_log_raw", "kw_log", "log_emit"}


def profile(srv, s, a, pki):
    """Share of the front's CPU samples spent on the log line, with perf."""
    front = child(srv, "front")
    data = os.path.join(srv.dir, "perf.data")
    lg = subprocess.Popen([bench.LOADGEN, "--port", str(srv.port), "--method", s["method"], "--path", s["path"],
                           "--conns", str(a.conns), "--duration", str(a.seconds + 2), "--warmup", "0",
                           "--cacert", srv.cacert, "--tls13", "--ciphersuites", bench.TLS13_SUITE]
                          + (["--body-file", s["body_file"]] if s.get("body_file") else [])
                          + (["--sigv4", bench.XKS_AKID, "--sigv4-secret-file", a.secret_file,
                              "--region", bench.XKS_REGION] if s["auth"] == "sigv4" else []),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1)
    r = bench.run(["perf", "record", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,16384", "-p", str(front), "-o", data,
                   "--", "sleep", str(a.seconds)], timeout=120)
    lg.wait(timeout=120)
    if r.returncode != 0:
        return None
    out = bench.run(["perf", "script", "-i", data, "-F", "comm,tid,ip,sym"], timeout=1800).stdout
    total = log_req = log_writer = 0
    for block in out.split("\n\n"):
        lines = [ln for ln in block.splitlines() if ln.strip()]
        if not lines:
            continue
        total += 1
        if lines[0].startswith("kw-log"):
            log_writer += 1
            continue
        syms = {ln.split(None, 1)[1].split("+")[0].strip() for ln in lines[1:] if len(ln.split(None, 1)) > 1}
        if syms & LOG_FUNCS:
            log_req += 1
    return {"total": total, "request_threads": log_req / total if total else 0,
            "writer": log_writer / total if total else 0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--scenarios", default="healthz,xks")
    ap.add_argument("--stderr", choices=("file", "pipe"), default="file")
    ap.add_argument("--profile", action="store_true",
                    help="also attribute the front's CPU to the log line with perf record")
    ap.add_argument("--builds", default="this=" + bench.BUILD,
                    help="name=dir,... : compare builds, all servers running side by side")
    a = ap.parse_args()
    builds = [tuple(x.split("=", 1)) for x in a.builds.split(",")]
    tmp = tempfile.mkdtemp(prefix="kw-logcost-")
    a.secret_file = os.path.join(tmp, "xks.secret")
    with open(a.secret_file, "w") as f:
        f.write(bench.XKS_SECRET)
    os.chmod(a.secret_file, 0o600)
    pki = bench.make_client_pki(os.path.join(tmp, "pki"))
    servers = {}
    keys = [(b, m) for b, _ in builds for m in ("on", "off")]
    try:
        for (b, d) in builds:
            bench.KEYWARDD = os.path.join(os.path.abspath(d), "keywardd")   # read by Server.start
            for mode in ("on", "off"):
                sd = os.path.join(tmp, b + "-" + mode)
                srv = bench.Server(sd, pki)
                start(srv, {"KEYWARD_LOG_REQUESTS": "true" if mode == "on" else "false"}, a.stderr)
                servers[(b, mode)] = (srv, {x["name"]: x for x in bench.prepare(srv, sd)})
        want = {"healthz": "healthz", "xks": "XKS encrypt 64 B"}
        table = []
        for key in a.scenarios.split(","):
            runs = {k: [] for k in keys}
            for r in range(a.rounds):
                order = keys[r % len(keys):] + keys[:r % len(keys)]     # rotated each round
                for k in order:
                    srv, scen = servers[k]
                    res = one_run(srv, scen[want[key]], a, pki)
                    runs[k].append(res)
                    bench.say("%-16s %s log %-3s round %d: front %.1f µs/req, custody %.1f, %.0f req/s" %
                              (want[key], k[0], k[1], r, res["front_us"], res["custody_us"], res["rps"]))
            med = {k: {f: statistics.median([x[f] for x in runs[k]]) for f in runs[k][0]} for k in keys}
            for k in keys:
                # system calls in a run of their own: the tracepoint slows every call down
                srv, scen = servers[k]
                med[k]["front_sys"] = (one_run(srv, scen[want[key]], a, pki, True)["front_sys"]
                                       if shutil.which("perf") else None)
            prof = {}
            if a.profile and shutil.which("perf"):
                for b, _ in builds:
                    srv, scen = servers[(b, "on")]
                    prof[b] = profile(srv, scen[want[key]], a, pki)
            table.append((want[key], med, prof))
        print("\n%d rounds of %g s, medians; %d connections; stderr: %s\n" % (a.rounds, a.seconds, a.conns, a.stderr))
        print("| scenario | build | log | front µs/req | custody µs/req | front syscalls/req | front ctx sw/req | req/s |")
        print("|---|---|---|---|---|---|---|---|")
        for name, med, prof in table:
            for b, _ in builds:
                on, off = med[(b, "on")], med[(b, "off")]
                for m, x in (("on", on), ("off", off)):
                    print("| %s | %s | %s | %.1f | %.1f | %s | %.2f | %.0f |" % (
                        name, b, m, x["front_us"], x["custody_us"],
                        "%.2f" % x["front_sys"] if x["front_sys"] is not None else "-", x["front_cs"], x["rps"]))
                print("| %s | %s | on - off | **%.1f** | %.1f | %s | %.2f | |" % (
                    name, b, on["front_us"] - off["front_us"], on["custody_us"] - off["custody_us"],
                    "%.2f" % (on["front_sys"] - off["front_sys"]) if on["front_sys"] is not None else "-",
                    on["front_cs"] - off["front_cs"]))
        for name, med, prof in table:
            for b, p in prof.items():
                if p:
                    us = med[(b, "on")]["front_us"]
                    print("\n%s, %s, perf (%d samples of the front, log on): log line %.1f%% of the front's CPU"
                          " = %.1f µs/req (request threads %.1f, writer thread %.1f)" % (
                              name, b, p["total"], 100 * (p["request_threads"] + p["writer"]),
                              us * (p["request_threads"] + p["writer"]), us * p["request_threads"],
                              us * p["writer"]))
    finally:
        for srv, _ in servers.values():
            srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
