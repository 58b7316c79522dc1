"""State across restarts, and start-up failures that must be clear: wrong
PIN, missing module, wrong or missing database key, missing master key,
bad configuration."""
import os
import shutil
import subprocess

import pytest

from conftest import KEYWARDD


def create(s, name, type_="AES", size=None):
    body = {"name": name, "type": type_}
    if size:
        body["size"] = size
    r = s.api("POST", "/api/v1/keys", body)
    assert r.status_code == 201, r.text
    return r.json()


def lines_with(out, *words):
    """The output lines that contain every word (case-insensitive)."""
    return [l for l in out.splitlines() if all(w.lower() in l.lower() for w in words)]


def test_keys_survive_restart(make_server):
    s = make_server().start()
    aes = create(s, "keep-aes")
    rsa = create(s, "keep-rsa", "RSA", 2048)
    assert s.api("POST", "/api/v1/keys/keep-aes/rotate").status_code == 200
    assert s.api("POST", "/api/v1/keys/keep-rsa/disable").status_code == 200
    tok = s.api("POST", "/api/v1/tokens", {"name": "keep-op", "role": "operator"}).json()["token"]
    token_before = s.token
    before = s.api("GET", "/api/v1/keys").json()["keys"]
    s.stop()
    s.start()
    assert s.token == token_before   # the first token is written once
    after = s.api("GET", "/api/v1/keys").json()["keys"]
    assert after == before
    g = s.api("GET", "/api/v1/keys/keep-aes").json()
    assert g["id"] == aes["id"] and g["current_version"] == 2
    g = s.api("GET", "/api/v1/keys/keep-rsa").json()
    assert g["state"] == "disabled" and g["public_key"] == rsa["public_key"]
    assert s.api("GET", "/api/v1/keys", token=tok).status_code == 200
    v = s.api("POST", "/api/v1/audit/verify").json()
    assert v["ok"] is True and v["rows"] >= 5
    # and the same state still works for writes
    create(s, "after-restart")


def test_wrong_pin_fails_clearly(make_server):
    s = make_server().start()
    s.stop()
    with open(os.path.join(s.dir, "softhsm", "pin"), "w") as f:
        f.write("00000000deadbeef")
    rc, out = s.run_to_exit()
    assert rc == 4, out     # keywardd --help: 4 = HSM
    assert lines_with(out, "pin"), out
    assert "00000000deadbeef" not in out   # the PIN itself is never printed


def test_missing_module_named(make_server):
    s = make_server(env={"KEYWARD_HSM_MODULE": "/nonexistent/libpkcs11-missing.so"})
    rc, out = s.run_to_exit()
    assert rc != 0, out
    assert lines_with(out, "/nonexistent/libpkcs11-missing.so"), out


def test_module_not_a_library_named(make_server, tmp_path):
    bogus = tmp_path / "libnot-pkcs11.so"
    bogus.write_bytes(b"this is not an ELF file\n")
    s = make_server(env={"KEYWARD_HSM_MODULE": str(bogus)})
    rc, out = s.run_to_exit()
    assert rc == 4, out
    assert lines_with(out, str(bogus)), out


def test_unknown_token_label_named(make_server):
    s = make_server(env={"KEYWARD_HSM_TOKEN_LABEL": "no-such-token"})
    rc, out = s.run_to_exit()
    assert rc == 4, out
    assert lines_with(out, "no-such-token"), out
    assert not os.path.exists(os.path.join(s.dir, "keyward.db"))


def test_missing_db_key_file(make_server):
    s = make_server().start()
    create(s, "k1")
    s.stop()
    os.unlink(os.path.join(s.dir, "keyward.db.key"))
    rc, out = s.run_to_exit()
    assert rc == 5, out     # 5 = database
    assert lines_with(out, "key file", "missing"), out
    assert os.path.exists(os.path.join(s.dir, "keyward.db"))   # nothing was re-created
    assert not os.path.exists(os.path.join(s.dir, "keyward.db.key"))


def test_database_of_another_state(make_server):
    a = make_server().start()
    create(a, "in-a")
    a.stop()
    b = make_server().start()
    create(b, "in-b")
    b.stop()
    for ext in ("-wal", "-shm"):
        p = os.path.join(a.dir, "keyward.db" + ext)
        if os.path.exists(p):
            os.unlink(p)
    shutil.copyfile(os.path.join(b.dir, "keyward.db"), os.path.join(a.dir, "keyward.db"))
    rc, out = a.run_to_exit()
    assert rc == 5, out
    assert lines_with(out, "database key does not match"), out


def test_missing_master_key(make_server):
    s = make_server().start()
    create(s, "k1")
    s.stop()
    s.env["KEYWARD_HSM_MASTER_KEY_LABEL"] = "keyward-master-other"
    rc, out = s.run_to_exit()
    assert rc == 4, out
    assert lines_with(out, "master key", "missing"), out
    assert "keyward-master-other" in out
    # the old label still works: nothing was created or changed
    del s.env["KEYWARD_HSM_MASTER_KEY_LABEL"]
    s.start()
    assert s.api("GET", "/api/v1/keys/k1").status_code == 200


def test_bad_config_file_line(make_server):
    s = make_server()
    with open(s.conf) as f:
        lines = f.read().splitlines()
    i = lines.index("[http]")
    lines.insert(i + 1, "bogus_setting = 1")
    bad = os.path.join(s.dir, "bad.toml")
    with open(bad, "w") as f:
        f.write("\n".join(lines) + "\n")
    for args in (["--config", bad], ["--config", bad, "--check-config"]):
        p = subprocess.run([KEYWARDD] + args, env=s.env, capture_output=True, text=True, timeout=30)
        out = p.stdout + p.stderr
        assert p.returncode == 2, (p.returncode, out)
        assert "%s:%d:" % (bad, i + 2) in out or "bad.toml:%d:" % (i + 2) in out, out
        assert "bogus_setting" in out, out


def test_check_config(make_server):
    s = make_server()
    p = subprocess.run([KEYWARDD, "--config", s.conf, "--check-config"], env=s.env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "OK" in p.stdout
    # nothing was started or created
    assert not os.path.exists(os.path.join(s.dir, "keyward.db"))
    assert not os.path.exists(os.path.join(s.dir, "admin.token"))
    # a file the configuration names is missing
    env = dict(s.env, KEYWARD_TLS_TLS_CERT_FILE=os.path.join(s.dir, "nope.pem"))
    p = subprocess.run([KEYWARDD, "--config", s.conf, "--check-config"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "nope.pem" in p.stdout + p.stderr
    # a bad value from the environment is refused
    env = dict(s.env, KEYWARD_HTTP_LISTEN="not-an-address")
    p = subprocess.run([KEYWARDD, "--config", s.conf, "--check-config"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "not-an-address" in p.stdout + p.stderr


def test_check_config_env_error_names_variable(make_server):
    s = make_server()
    env = dict(s.env, KEYWARD_HTTP_LISTEN="not-an-address")
    p = subprocess.run([KEYWARDD, "--config", s.conf, "--check-config"], env=env,
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "KEYWARD_HTTP_LISTEN" in p.stdout + p.stderr


def test_usage_errors(make_server):
    p = subprocess.run([KEYWARDD, "--no-such-option"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "usage" in p.stderr
    p = subprocess.run([KEYWARDD, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "--check-config" in p.stdout
    p = subprocess.run([KEYWARDD, "--version"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("keywardd ")
