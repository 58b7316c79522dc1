"""Standalone processes (issue 12, appliance units): `keywardd --custody` and
`keywardd --front` started on their own, as the systemd units of
appliance/systemd/ start them (no parent, no --ready-fd/--control-fd).

Each says READY=1 to $NOTIFY_SOCKET (a datagram socket this test opens, by
path and by abstract address); requests work end to end through the front;
the custody process admits the front's uid only, and refuses to start when
the two users are one.  The socket-activated start (what the .socket unit
does: a listening socket as descriptor 3, LISTEN_PID/LISTEN_FDS) is run
too, since systemd cannot run here.

Started as root, each process becomes its configured user (as under the
unit's User=, where it is that user from the start).
"""
import os
import grp
import pwd
import resource
import socket
import stat
import subprocess
import time

import pytest
import requests

from conftest import KEYWARDD
from test_privsep import as_user, custody_answer, frame, proto, status_of
from test_xks import TOML, Xks

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="separate users need root")


def notify_socket(addr):
    """A datagram socket bound to addr ('@': abstract) that the two
    unprivileged users may send to."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + addr[1:] if addr.startswith("@") else addr)
    if not addr.startswith("@"):
        os.chmod(addr, 0o666)
    return s


def wait_ready(sock, proc, log_path, timeout=30):
    sock.settimeout(0.2)
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            msg = sock.recv(4096)
            assert msg == b"READY=1", msg
            return
        except socket.timeout:
            if proc.poll() is not None:
                raise AssertionError("exited with %s:\n%s" % (proc.returncode, read(log_path)))
    raise AssertionError("no READY=1 in %ss:\n%s" % (timeout, read(log_path)))


def read(path):
    with open(path, "rb") as f:
        return f.read().decode(errors="replace")[-6000:]


class Standalone:
    """The two processes of one state directory (a Server's, never started
    as a parent), each with its own log and notify socket."""

    def __init__(self, server):
        self.s = server
        self.procs = {}
        self.logs = {}
        self.socks = []
        # what the unit's socket (or RuntimeDirectory=) provides: the
        # socket's directory, reachable by the front
        run = os.path.join(server.dir, "run")
        os.chown(run, pwd.getpwnam("keyward-custody").pw_uid, grp.getgrnam("keyward-front").gr_gid)
        os.chmod(run, 0o750)
        self.sock_path = os.path.join(run, "custody.sock")

    def start(self, role, notify, env=None, argv_prefix=None, pass_fds=(), preexec_fn=None):
        log_path = os.path.join(self.s.dir, role + ".log")
        self.logs[role] = log_path
        e = dict(self.s.env, NOTIFY_SOCKET=notify)
        e.update(env or {})
        sock = notify_socket(notify)
        self.socks.append(sock)
        argv = (argv_prefix or []) + [KEYWARDD, "--" + role, "--config", self.s.conf]
        with open(log_path, "ab") as log:
            p = subprocess.Popen(argv, env=e, stdout=log, stderr=log, pass_fds=pass_fds,
                                 preexec_fn=preexec_fn)
        self.procs[role] = p
        wait_ready(sock, p, log_path)
        return p

    def stop(self):
        for role in ("front", "custody"):
            p = self.procs.get(role)
            if p is not None and p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=5)
        for s in self.socks:
            s.close()


@pytest.fixture
def standalone(make_server):
    made = []

    def make(**kw):
        sa = Standalone(make_server(**kw))
        made.append(sa)
        return sa

    yield make
    for sa in made:
        sa.stop()


def uid_of(pid):
    return [int(x) for x in status_of(pid)["Uid"].split()]


def probe_custody(sock_path, result_path):
    """A probe (for as_user) that sends custody an unauthenticated key-use
    request and writes what it got to result_path."""
    p = proto()
    req = frame(p, p["KW_OP_WRAP"], [(p["KW_T_NAME"], b"k1"),
                                     (p["KW_T_ALG"], (1).to_bytes(4, "big")),
                                     (p["KW_T_DATA"], bytes(32))])

    def probe():
        with open(result_path, "w") as f:
            f.write(custody_answer(sock_path, req))
        return 0
    return probe


def check_serving(sa):
    s = sa.s
    custody, front = sa.procs["custody"], sa.procs["front"]
    cu, fu = pwd.getpwnam("keyward-custody"), pwd.getpwnam("keyward-front")
    assert uid_of(custody.pid) == [cu.pw_uid] * 4
    assert uid_of(front.pid) == [fu.pw_uid] * 4
    st = os.stat(sa.sock_path)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (
        cu.pw_uid, grp.getgrnam("keyward-front").gr_gid, 0o660)
    # end to end through the front: health, an admin call and a signed XKS
    # health check (both answered by custody)
    assert requests.get(s.url + "/healthz", verify=s.cacert, timeout=5).status_code == 200
    r = s.api("POST", "/api/v1/keys", {"name": "k1", "type": "AES",
                                       "rules": {"xks": {"key_stores": ["default"]}}})
    assert r.status_code == 201, r.text
    assert Xks(s).health("/a").status_code == 200
    # a third uid (root: the socket's mode lets it connect) is refused by
    # the custody process itself, before any request is read
    result = os.path.join(s.dir, "probe.out")
    assert probe_custody(sa.sock_path, result)() == 0
    assert open(result).read() in ("closed", "error 104"), open(result).read()
    assert "custody_peer_refused" in read(sa.logs["custody"])
    assert '"peer":"pid %d uid 0"' % os.getpid() in read(sa.logs["custody"])
    # and the custody user's own uid is not the front either
    os.chmod(s.dir, os.stat(s.dir).st_mode | 0o033)
    os.remove(result)
    assert as_user(cu.pw_uid, cu.pw_gid, probe_custody(sa.sock_path, result)) == 0
    assert open(result).read() in ("closed", "error 104"), open(result).read()
    # the front still works after the refusals
    assert s.api("GET", "/api/v1/keys/k1").status_code == 200


def test_standalone_custody_and_front_serve_and_notify(standalone):
    sa = standalone(extra_toml=TOML)
    sa.start("custody", "@kw-notify-custody-%d" % os.getpid())
    # custody bound the socket itself (root, then keyward-custody)
    sa.start("front", os.path.join(sa.s.dir, "notify-front.sock"))
    check_serving(sa)
    # stopped by SIGTERM, each exits 0, and custody removes its own socket
    sa.stop()
    assert sa.procs["front"].returncode == 0 and sa.procs["custody"].returncode == 0
    assert not os.path.exists(sa.sock_path)


def passed_socket(path):
    """What keyward-custody.socket does: a listening socket on path owned by
    keyward-custody, group keyward-front, mode 0660; and the argv prefix
    that passes it as descriptor 3 with LISTEN_PID/LISTEN_FDS, as PID 1 does.
    Returns (socket, prefix, its descriptor for pass_fds)."""
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    os.chown(path, pwd.getpwnam("keyward-custody").pw_uid, grp.getgrnam("keyward-front").gr_gid)
    os.chmod(path, 0o660)
    lsock.listen(16)
    n = lsock.fileno()
    shell = ["/bin/bash", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$@" 3<&%d %d<&-' % (n, n), "sh"]
    return lsock, shell, n


def unit_user(name, memlock=None):
    """A preexec_fn that makes the child what User= makes a unit's process:
    that user from the start, with its groups, and LimitMEMLOCK= when given."""
    pw = pwd.getpwnam(name)

    def pre():
        if memlock:
            resource.setrlimit(resource.RLIMIT_MEMLOCK, (memlock, memlock))
        os.initgroups(name, pw.pw_gid)
        os.setgid(pw.pw_gid)
        os.setuid(pw.pw_uid)
    return pre


def test_standalone_custody_takes_the_socket_systemd_passes(standalone):
    sa = standalone(extra_toml=TOML)
    lsock, shell, n = passed_socket(sa.sock_path)
    try:
        sa.start("custody", "@kw-notify-custody-sa-%d" % os.getpid(), argv_prefix=shell,
                 pass_fds=(n,))
        sa.start("front", "@kw-notify-front-sa-%d" % os.getpid())
        check_serving(sa)
        # the passed socket is systemd's: left in place at exit, still
        # listening (the next start finds the connections queued there)
        sa.stop()
        assert sa.procs["custody"].returncode == 0
        assert os.path.exists(sa.sock_path)
        c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        c.connect(sa.sock_path)
        c.close()
    finally:
        lsock.close()


def test_standalone_as_the_units_run_them(standalone):
    """Each process its unit's user from the start (never root), custody's
    memory lock limit set as LimitMEMLOCK= sets it, the socket from the
    .socket unit, the TLS key readable by the front's group (as
    docs/appliance-units.md says to install it).  Root here may not raise
    a hard limit (no CAP_SYS_RESOURCE in this container): the secure heap
    is made small enough for 8 MiB, as the unit's 64M is for 16 MiB."""
    sa = standalone(extra_toml=TOML, env={"KEYWARD_DB_SECURE_HEAP_BYTES": str(2 << 20)})
    tls = os.path.join(sa.s.dir, "tls")
    front_gid = grp.getgrnam("keyward-front").gr_gid
    for path, mode in ((tls, 0o750), (os.path.join(tls, "key.pem"), 0o640)):
        os.chown(path, 0, front_gid)
        os.chmod(path, mode)
    lsock, shell, n = passed_socket(sa.sock_path)
    try:
        sa.start("custody", "@kw-notify-custody-u-%d" % os.getpid(), argv_prefix=shell,
                 pass_fds=(n,), preexec_fn=unit_user("keyward-custody", memlock=8 << 20))
        sa.start("front", os.path.join(sa.s.dir, "notify-front.sock"),
                 preexec_fn=unit_user("keyward-front"))
        check_serving(sa)
        # its secure heap is locked although it never was root
        assert "secure_heap_not_locked" not in read(sa.logs["custody"])
        sa.stop()
        assert sa.procs["front"].returncode == 0 and sa.procs["custody"].returncode == 0
    finally:
        lsock.close()


def test_standalone_custody_needs_its_memory_locked(standalone):
    """Never root and a memory lock limit too small for the secure heap (a
    unit without LimitMEMLOCK=): refused, not run with swappable keys."""
    sa = standalone(env={"KEYWARD_DB_SECURE_HEAP_BYTES": str(2 << 20)})
    lsock, shell, n = passed_socket(sa.sock_path)
    try:
        p = subprocess.run(shell + [KEYWARDD, "--custody", "--config", sa.s.conf], env=sa.s.env,
                           capture_output=True, text=True, timeout=60, pass_fds=(n,),
                           preexec_fn=unit_user("keyward-custody", memlock=1 << 20))
    finally:
        lsock.close()
    assert p.returncode == 3, p.stdout + p.stderr
    assert "LimitMEMLOCK" in p.stderr, p.stderr


def test_standalone_custody_refuses_a_socket_on_another_path(standalone):
    sa = standalone()
    lsock, shell, n = passed_socket(os.path.join(sa.s.dir, "run", "other.sock"))
    try:
        p = subprocess.run(shell + [KEYWARDD, "--custody", "--config", sa.s.conf], env=sa.s.env,
                           capture_output=True, text=True, timeout=60, pass_fds=(n,))
    finally:
        lsock.close()
    assert p.returncode == 3, p.stdout + p.stderr
    assert "ListenStream=" in p.stderr and sa.sock_path in p.stderr, p.stderr


def test_standalone_custody_refuses_one_user_for_both(standalone):
    """Standalone, the custody process tells the front by its uid alone: the
    same user named twice is refused by the configuration, and a custody
    process running as the front's user (a unit with the wrong User=) by the
    custody process, each with one line."""
    sa = standalone()
    env = dict(sa.s.env, KEYWARD_FRONT_USER="keyward-custody")
    p = subprocess.run([KEYWARDD, "--custody", "--config", sa.s.conf], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "must differ" in lines[0], p.stderr
    p = subprocess.run(["runuser", "-u", "keyward-front", "--", KEYWARDD, "--custody",
                        "--config", sa.s.conf], env=sa.s.env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "must be another user" in lines[0], p.stderr
    assert not os.path.exists(sa.sock_path)


def test_standalone_front_must_be_the_front_user(standalone):
    """A front unit with the wrong User= would be refused by custody on every
    request: it refuses to start instead, with one line."""
    sa = standalone()
    p = subprocess.run([KEYWARDD, "--front", "--config", sa.s.conf], env=sa.s.env,
                       capture_output=True, text=True, timeout=60,
                       preexec_fn=unit_user("keyward-custody"))
    assert p.returncode == 2, p.stdout + p.stderr
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "the only user the custody process admits" in lines[0], p.stderr


def test_parent_mode_is_unchanged_by_a_notify_socket(make_server):
    """The parent's children are not standalone: they never notify (under a
    unit the parent would be the main process, and NotifyAccess=main)."""
    s = make_server()
    addr = "@kw-notify-parent-%d" % os.getpid()
    sock = notify_socket(addr)
    s.env["NOTIFY_SOCKET"] = addr
    try:
        s.start()
        sock.settimeout(1)
        with pytest.raises(socket.timeout):
            sock.recv(64)
    finally:
        sock.close()
