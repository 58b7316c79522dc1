"""Start-up mistakes a new user makes when setting the server up from the docs
(issue 10): each must stop keywardd with one line that says what is wrong and
what to do, and a distinct exit status."""
import json
import os
import subprocess

from conftest import KEYWARDD

AKID = "AKIAXKSEXAMPLEKEY234"
SECRET = "S3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3tS3cr3t+/="


def check_config(s, env=None):
    p = subprocess.run([KEYWARDD, "--config", s.conf, "--check-config"], env=env or s.env,
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def line_of(path, text):
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.startswith(text):
                return n
    raise AssertionError("%s not in %s" % (text, path))


def test_xks_settings_without_enable_are_refused(make_server):
    # Cosmian's template has the switch line; the credentials get filled in below it
    s = make_server(extra_toml='[aws_xks_config]\naws_xks_enable = false\n'
                               'aws_xks_sigv4_access_key_id = "%s"\n'
                               'aws_xks_sigv4_secret_access_key = "%s"\n'
                               'aws_xks_uri_prefix = "/tenant-a"\n' % (AKID, SECRET))
    n = line_of(s.conf, "aws_xks_sigv4_access_key_id")
    rc, out = check_config(s)
    assert rc == 2, out
    assert ("%s:%d: [aws_xks_config] aws_xks_sigv4_access_key_id is set but aws_xks_enable is "
            "false" % (s.conf, n)) in out, out
    assert "set aws_xks_enable = true, or remove the [aws_xks_config] settings" in out, out
    assert len(out.strip().splitlines()) == 1, out
    assert SECRET not in out
    # a real start stops at the same line, before anything is created
    rc, out2 = s.run_to_exit()
    assert rc == 2 and out2 == out, out2
    assert not os.path.exists(os.path.join(s.dir, "keyward.db"))
    # turned on (here from the environment): the same file is accepted
    rc, out = check_config(s, dict(s.env, KEYWARD_AWS_XKS_CONFIG_AWS_XKS_ENABLE="true"))
    assert rc == 0, out


def test_ekm_settings_without_enable_are_refused(make_server):
    s = make_server(env={"KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS": "mhsm.example"})
    rc, out = check_config(s)
    assert rc == 2, out
    assert ("env KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS: [azure_ekm_config] "
            "azure_ekm_client_cns is set but azure_ekm_enable is false") in out, out
    assert "set azure_ekm_enable = true, or remove the [azure_ekm_config] settings" in out, out


def startup_failure(out):
    """The custody's one JSON start-up line, parsed."""
    lines = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    failed = [l for l in lines if l.get("event") == "startup_failed"]
    assert len(failed) == 1, out
    return failed[0]


def test_softhsm_conf_missing_file_says_what_to_check(make_server):
    s = make_server()
    missing = os.path.join(s.dir, "softhsm", "nope.conf")
    s.env["SOFTHSM2_CONF"] = missing
    rc, out = s.run_to_exit()
    assert rc == 4, out
    f = startup_failure(out)
    assert f["step"] == "hsm" and f["error"] == "hsm_module", f
    msg = f["message"]
    assert "C_Initialize of /usr/lib/softhsm/libsofthsm2.so returned CKR_GENERAL_ERROR" in msg, msg
    assert "SOFTHSM2_CONF=%s: No such file or directory" % missing in msg, msg
    assert "set SOFTHSM2_CONF to the softhsm2.conf of the token" in msg, msg


def test_softhsm_tokendir_missing_says_what_to_check(make_server):
    s = make_server()
    conf = os.path.join(s.dir, "softhsm", "other.conf")
    with open(conf, "w") as f:
        f.write("# no such directory\ndirectories.tokendir = %s/gone\nobjectstore.backend = file\n"
                % s.dir)
    s.env["SOFTHSM2_CONF"] = conf
    rc, out = s.run_to_exit()
    assert rc == 4, out
    msg = startup_failure(out)["message"]
    assert "returned CKR_GENERAL_ERROR" in msg, msg
    assert ("cannot use its tokendir %s/gone (No such file or directory; SOFTHSM2_CONF=%s)"
            % (s.dir, conf)) in msg, msg


def test_softhsm_conf_unset_says_so(make_server):
    s = make_server()
    del s.env["SOFTHSM2_CONF"]
    rc, out = s.run_to_exit()
    assert rc == 4, out
    msg = startup_failure(out)["message"]
    # with Debian's default file present the module starts without our token;
    # without it, C_Initialize fails: either way the hint says where it looked
    assert "SOFTHSM2_CONF is not set, default /etc/softhsm/softhsm2.conf" in msg, msg
    assert "keyward-dev" in msg or "C_Initialize" in msg, msg


def test_database_directory_that_does_not_exist_is_refused(make_server, tmp_path):
    """[db] path in a directory that does not exist (a typo, an unmounted data
    volume) stops keywardd; it is not created, so a fresh empty key store and
    a new first admin token never appear on the wrong file system."""
    missing = tmp_path / "missing"
    s = make_server(env={"KEYWARD_DB_PATH": str(missing / "keyward.db")})
    for rc, out in (check_config(s), s.run_to_exit()):
        assert rc == 2, out
        assert ("[db] path: the directory %s does not exist (is the data volume mounted?)"
                % missing) in out, out
        assert "create it, owned by the custody user, mode 0700" in out, out
    assert not missing.exists()
