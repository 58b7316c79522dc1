"""First-boot provisioning's server side: `keywardd --init` creates the key
store without serving (and creates nothing on an existing one), the first
admin token can be given by its SHA-256 alone ([admin] initial_token_sha256),
and [hsm] evaluation = true is said in /healthz, /metrics and the log.

Run as provisioning runs it: as the custody user (runuser, when the tests run
as root), against a SoftHSM2 token of its own.
"""
import base64
import hashlib
import json
import os
import pwd
import signal
import stat
import subprocess
import time

import pytest
import requests

import promtext
from conftest import KEYWARDD
from test_standalone import Standalone


def run_init(s, env=None, timeout=60):
    """keywardd --init as the custody user; (exit status, stdout, stderr)."""
    argv = [KEYWARDD, "--config", s.conf, "--init"]
    if os.geteuid() == 0:
        argv = ["runuser", "-u", "keyward-custody", "--"] + argv
    p = subprocess.run(argv, env=dict(s.env, **(env or {})), capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def summary(out):
    lines = out.splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


def records(text):
    return [json.loads(l) for l in text.splitlines() if l.startswith("{")]


def new_token():
    """A bearer token as a customer makes one, and its SHA-256 (hex)."""
    tok = "kw_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    return tok, hashlib.sha256(tok.encode()).hexdigest()


def set_key(path, section, line):
    """Adds line at the top of [section] of the configuration file; returns
    its line number."""
    with open(path) as f:
        lines = f.read().splitlines()
    i = lines.index("[%s]" % section) + 1
    lines.insert(i, line)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return i + 1


def custody_uid():
    return pwd.getpwnam("keyward-custody").pw_uid if os.geteuid() == 0 else os.geteuid()


def snapshot(s):
    """Contents of what the key store is: database, its key file, the
    token's objects (SoftHSM2 rewrites token.object, the token's own state,
    at each login: left out)."""
    paths = [os.path.join(s.dir, "keyward.db"), os.path.join(s.dir, "keyward.db.key")]
    for root, _, files in os.walk(os.path.join(s.dir, "softhsm", "tokens")):
        paths += [os.path.join(root, f) for f in sorted(files) if f != "token.object"]
    out = {}
    for p in paths:
        with open(p, "rb") as f:
            out[p] = hashlib.sha256(f.read()).hexdigest()
    return out


def test_init_creates_then_finds_and_the_given_token_works(make_server):
    s = make_server()
    tok, digest = new_token()
    set_key(s.conf, "admin", 'initial_token_sha256 = "%s"' % digest)
    db, key_file = os.path.join(s.dir, "keyward.db"), os.path.join(s.dir, "keyward.db.key")
    token_file = os.path.join(s.dir, "admin.token")

    rc, out, err = run_init(s)
    assert rc == 0, out + err
    assert summary(out) == {"master_key": "created", "database": "created",
                            "admin": "initial_token_sha256"}
    for p in (db, key_file):
        st = os.stat(p)
        assert st.st_uid == custody_uid() and stat.S_IMODE(st.st_mode) == 0o600, (p, st)
    assert not os.path.exists(token_file)
    events = [r["event"] for r in records(err)]
    for e in ("master_key_created", "db_key_created", "admin_token_created", "init_done"):
        assert e in events, err
    made = [r for r in records(err) if r["event"] == "admin_token_created"][0]
    assert made["source"] == "initial_token_sha256" and "token_file" not in made, made
    # neither the token nor its hash anywhere it printed
    for secret in (tok, digest):
        assert secret not in out + err
    assert not os.path.exists(os.path.join(s.dir, "run", "custody.sock"))   # never served

    # again: nothing created, nothing changed
    before = snapshot(s)
    rc, out, err = run_init(s)
    assert rc == 0, out + err
    assert summary(out) == {"master_key": "found", "database": "found", "admin": "exists"}
    assert "_created" not in err, err
    assert snapshot(s) == before
    assert not os.path.exists(token_file)

    # keywardd serves that store: the customer's token is the admin, no file was written
    s.start()
    r = s.api("GET", "/api/v1/status", token=tok)
    assert r.status_code == 200, r.text
    assert r.json()["custody"]["state"] == "open"
    assert s.api("GET", "/api/v1/status", token=tok + "x").status_code == 401
    assert s.api("GET", "/api/v1/status", token=digest).status_code == 401
    toks = s.api("GET", "/api/v1/tokens", token=tok).json()["tokens"]
    assert [(t["name"], t["role"]) for t in toks] == [("initial-admin", "admin")], toks
    audit = s.api("GET", "/api/v1/audit?action=token.create", token=tok).json()["events"]
    assert [(a["actor"], a["detail"]) for a in audit] == [
        ("custody", "initial admin token ([admin] initial_token_sha256)")], audit
    assert not os.path.exists(token_file)
    log = s.logs()
    assert "master_key_created" not in log and "admin_token_created" not in log, log
    assert tok not in log and digest not in log


def test_init_without_hash_writes_the_token_file(make_server):
    s = make_server()
    rc, out, err = run_init(s)
    assert rc == 0, out + err
    assert summary(out) == {"master_key": "created", "database": "created", "admin": "token_file"}
    st = os.stat(os.path.join(s.dir, "admin.token"))
    assert st.st_uid == custody_uid() and stat.S_IMODE(st.st_mode) == 0o600
    assert s.token not in out + err
    s.start()
    assert s.api("GET", "/api/v1/status").status_code == 200
    # a hash given once tokens exist is ignored: the store has its admin
    s.stop()
    tok, digest = new_token()
    rc, out, err = run_init(s, env={"KEYWARD_ADMIN_INITIAL_TOKEN_SHA256": digest})
    assert rc == 0 and summary(out)["admin"] == "exists", out + err


def test_first_start_takes_the_hash_too(make_server):
    """Without --init: keywardd's first start makes the same first token."""
    tok, digest = new_token()
    s = make_server(env={"KEYWARD_ADMIN_INITIAL_TOKEN_SHA256": digest.upper()})
    s.start()
    assert s.api("GET", "/api/v1/status", token=tok).status_code == 200
    assert not os.path.exists(os.path.join(s.dir, "admin.token"))
    made = [r for r in records(s.logs()) if r.get("event") == "admin_token_created"]
    assert len(made) == 1 and made[0]["source"] == "initial_token_sha256", made
    assert digest not in s.logs() and digest.upper() not in s.logs()


def test_malformed_hash_is_refused_at_its_line(make_server):
    s = make_server()
    bad = "0123456789abcdef" * 3 + "0123456789abcdeX"          # 64 characters, one not hex
    n = set_key(s.conf, "admin", 'initial_token_sha256 = "%s"' % bad)
    want = ("%s:%d: [admin] initial_token_sha256: must be \"\" or the SHA-256 of the first admin "
            "token, 64 hex digits" % (s.conf, n))
    rc, out, err = run_init(s)
    assert rc == 2 and want in err, out + err
    assert out == "" and len(err.strip().splitlines()) == 1, err
    assert bad not in err
    rc, both = s.run_to_exit()
    assert rc == 2 and want in both, both
    p = subprocess.run([KEYWARDD, "--config", s.conf, "--check-config"], env=s.env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and want in p.stderr, p.stderr
    assert not os.path.exists(os.path.join(s.dir, "keyward.db"))
    # 63 digits, from the environment: the variable is named
    rc, out, err = run_init(s, env={"KEYWARD_ADMIN_INITIAL_TOKEN_SHA256": "a" * 63})
    assert rc == 2, err
    assert "env KEYWARD_ADMIN_INITIAL_TOKEN_SHA256: [admin] initial_token_sha256: must be" in err


def failure(err):
    failed = [r for r in records(err) if r["event"] == "startup_failed"]
    assert len(failed) == 1, err
    return failed[0]


def test_init_with_a_wrong_pin_or_token_creates_nothing(make_server):
    s = make_server()
    db, key_file = os.path.join(s.dir, "keyward.db"), os.path.join(s.dir, "keyward.db.key")
    wrong_pin = os.path.join(s.dir, "wrong.pin")
    with open(wrong_pin, "w") as f:
        f.write("000000\n")
    os.chmod(wrong_pin, 0o600)
    os.chown(wrong_pin, custody_uid(), -1)
    for env, error in (({"KEYWARD_HSM_PIN_FILE": wrong_pin}, "hsm_pin"),
                       ({"KEYWARD_HSM_TOKEN_LABEL": "no-such-token"}, "hsm_token")):
        rc, out, err = run_init(s, env=env)
        assert rc == 4, out + err
        assert out == ""
        f = failure(err)
        assert f["step"] == "hsm" and f["error"] == error, f
        assert "000000" not in err
        assert not os.path.exists(db) and not os.path.exists(key_file)
        assert not os.path.exists(os.path.join(s.dir, "admin.token"))
    # nothing was made on the token either: the first good run makes the master key
    rc, out, err = run_init(s)
    assert rc == 0 and summary(out)["master_key"] == "created", out + err


def test_init_never_makes_a_master_key_for_an_existing_store(make_server):
    s = make_server()
    rc, out, err = run_init(s)
    assert rc == 0, out + err
    before = snapshot(s)
    # another label: the key the database needs is not there, and is not made
    rc, out, err = run_init(s, env={"KEYWARD_HSM_MASTER_KEY_LABEL": "another-master"})
    assert rc == 4, out + err
    f = failure(err)
    assert f["error"] == "hsm_no_master_key", f
    assert ("master key 'another-master' is missing from token 'keyward-dev' but the database %s "
            "exists" % os.path.join(s.dir, "keyward.db")) in f["message"], f
    assert snapshot(s) == before
    # the key file alone (a run that stopped before the database) counts too
    os.remove(os.path.join(s.dir, "keyward.db"))
    rc, out, err = run_init(s, env={"KEYWARD_HSM_MASTER_KEY_LABEL": "another-master"})
    assert rc == 4, out + err
    assert "but the database key file %s exists" % os.path.join(s.dir, "keyward.db.key") in \
        failure(err)["message"], err
    assert not os.path.exists(os.path.join(s.dir, "keyward.db"))
    # with the right label the store is made again under the same master key
    rc, out, err = run_init(s)
    assert rc == 0, out + err
    assert summary(out) == {"master_key": "found", "database": "created", "admin": "token_file"}


def test_init_without_any_first_token_setting_says_so(make_server):
    """[admin] enable = false allows token_file = "": a new store still
    needs its first admin token from somewhere."""
    s = make_server(env={"KEYWARD_ADMIN_ENABLE": "false", "KEYWARD_ADMIN_TOKEN_FILE": ""})
    rc, out, err = run_init(s)
    assert rc == 2 and out == "", out + err
    f = failure(err)
    assert f["step"] == "admin token" and "neither [admin] initial_token_sha256 nor token_file " \
        "is set" in f["message"], f
    assert os.listdir(s.dir).count("admin.token") == 0
    assert not [n for n in os.listdir(s.dir) if ".tmp." in n], os.listdir(s.dir)
    # given one, the same store gets its token
    tok, digest = new_token()
    rc, out, err = run_init(s, env={"KEYWARD_ADMIN_INITIAL_TOKEN_SHA256": digest})
    assert rc == 0, out + err
    assert summary(out) == {"master_key": "found", "database": "found",
                            "admin": "initial_token_sha256"}


def test_init_needs_the_database_directory(make_server, tmp_path):
    missing = tmp_path / "not-mounted"
    s = make_server(env={"KEYWARD_DB_PATH": str(missing / "keyward.db")})
    rc, out, err = run_init(s)
    assert rc == 2, out + err
    assert "[db] path: the directory %s does not exist (is the data volume mounted?)" % missing \
        in err, err
    assert not missing.exists()


def test_init_is_one_mode(make_server):
    s = make_server()
    for other in ("--check-config", "--recover-admin", "--custody", "--front"):
        p = subprocess.run([KEYWARDD, "--config", s.conf, "--init", other], env=s.env,
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 2 and "usage:" in p.stderr, (other, p.stderr)
    p = subprocess.run([KEYWARDD, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "--init" in p.stdout
    assert not os.path.exists(os.path.join(s.dir, "keyward.db"))


# ---- [hsm] evaluation -------------------------------------------------------

def metric(text, name):
    return "%g" % promtext.value(text, name)


def start_records(s, timeout=10):
    """The log's records once the three start records are in (the front's
    goes through its log writer, a few ms after it serves)."""
    deadline = time.time() + timeout
    while True:
        with open(s.log_path, "rb") as f:
            recs = records(f.read().decode())
        if {"started", "custody_ready", "ready"} <= {r["event"] for r in recs} or \
                time.time() > deadline:
            return recs
        time.sleep(0.05)


def test_evaluation_is_said_in_healthz_metrics_and_the_first_record(make_server):
    s = make_server(env={"KEYWARD_CUSTODY_TIMEOUT_MS": "1000"})
    set_key(s.conf, "hsm", "evaluation = true")
    s.start()
    h = requests.get(s.url + "/healthz", verify=s.cacert, timeout=10)
    assert h.status_code == 200 and h.json() == {"status": "ok", "evaluation": True}, h.text
    m = requests.get(s.url + "/metrics", verify=s.cacert, timeout=10)
    assert m.status_code == 200
    assert "# TYPE keyward_evaluation_mode gauge" in m.text
    assert metric(m.text, "keyward_evaluation_mode") == "1"
    recs = start_records(s)
    # the parent's warning is the first line of all, before its children's
    first = recs[0]
    assert (first["proc"], first["level"], first["event"]) == ("parent", "warn", "evaluation_mode")
    assert first["evaluation"] is True and "evaluation only" in first["message"], first
    starts = {r["event"]: r for r in recs if r["event"] in ("started", "custody_ready", "ready")}
    assert set(starts) == {"started", "custody_ready", "ready"}, recs
    for r in starts.values():
        assert r["evaluation"] is True, r
    # the children of a parent do not repeat the warning
    assert [r["proc"] for r in recs if r["event"] == "evaluation_mode"] == ["parent"]
    # also when the custody process does not answer: 503, still said
    os.kill(s.custody_pid(), signal.SIGSTOP)
    try:
        h = requests.get(s.url + "/healthz", verify=s.cacert, timeout=30)
        assert h.status_code == 503 and h.json()["evaluation"] is True, h.text
        assert h.json()["status"] == "unavailable"
    finally:
        os.kill(s.custody_pid(), signal.SIGCONT)


def test_no_evaluation_by_default(make_server):
    s = make_server()
    s.start()
    h = requests.get(s.url + "/healthz", verify=s.cacert, timeout=10)
    assert h.json() == {"status": "ok"}, h.text
    m = requests.get(s.url + "/metrics", verify=s.cacert, timeout=10)
    assert metric(m.text, "keyward_evaluation_mode") == "0"
    recs = start_records(s)
    assert len([r for r in recs if r["event"] in ("started", "custody_ready", "ready")]) == 3
    for r in recs:
        assert "evaluation" not in r and r["event"] != "evaluation_mode", r


def test_evaluation_standalone_custody_and_front(make_server):
    """Under systemd each process starts on its own: each says it first."""
    if os.geteuid() != 0:
        pytest.skip("separate users need root")
    sa = Standalone(make_server(env={"KEYWARD_HSM_EVALUATION": "true"}))
    try:
        sa.start("custody", "@kw-notify-eval-custody-%d" % os.getpid())
        sa.start("front", os.path.join(sa.s.dir, "notify-front.sock"))
        h = requests.get(sa.s.url + "/healthz", verify=sa.s.cacert, timeout=10)
        assert h.json() == {"status": "ok", "evaluation": True}, h.text
    finally:
        sa.stop()
    for role, ready in (("custody", "custody_ready"), ("front", "ready")):
        with open(sa.logs[role]) as f:
            recs = records(f.read())
        assert recs[0]["event"] == "evaluation_mode" and recs[0]["proc"] == role, recs[0]
        assert recs[0]["evaluation"] is True and recs[0]["level"] == "warn"
        assert [r for r in recs if r["event"] == ready][0]["evaluation"] is True
