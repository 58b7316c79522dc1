"""keyward-provision selftest (docs/provisioning.md, "Self-test") against real
keywardd processes: /healthz, the XKS health call signed by the program's own
SigV4 signer and verified by the appliance, and the EKM info call without a
client certificate, all through the real TLS listener.  Each failure names its
check and why in one line, exits 8, and the secret access key never reaches
the output."""
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from conftest import BUILD, Server, free_port
from ekm_certs import make_pki

PROV = os.path.join(BUILD, "keyward-provision")
AKID = "AKIAKEYWARDSELFTESTAA"
SECRET = "SelfTestSecretAccessKey0123456789abcdefghijk"
WRONG = "SelfTestSecretAccessKey0123456789abcdefghijX"
XKS_PREFIX = "/tenant-a/xks"
EKM_PREFIX = "tenant0/pool-1"
XKS_TOML = """
[aws_xks_config]
aws_xks_enable = true
aws_xks_region = "us-east-1"
aws_xks_service = "kms-xks-proxy"
aws_xks_sigv4_access_key_id = "%s"
aws_xks_sigv4_secret_access_key = "%s"
aws_xks_uri_prefix = "%s"
""" % (AKID, SECRET, XKS_PREFIX)
FAILED = 8


def ekm_on(pki=None, prefix=EKM_PREFIX):
    """EKM enabled: with mutual TLS against pki's CA, or (pki None) without."""
    env = {"KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_ENABLE": "true",
           "KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_PATH_PREFIX": prefix}
    if pki is None:
        env["KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_DISABLE_CLIENT_AUTH"] = "true"
    else:
        env["KEYWARD_TLS_CLIENTS_CA_CERT_FILE"] = pki["ca"]
        env["KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_CLIENT_CNS"] = "contoso.managedhsmclient.azure.net"
    return env


@pytest.fixture(scope="module")
def workdir():
    d = tempfile.mkdtemp(prefix="kw-bb-selftest-")
    for name, value in (("secret", SECRET), ("wrong", WRONG)):
        with open(os.path.join(d, name), "w") as f:
            f.write(value + "\n")
        os.chmod(os.path.join(d, name), 0o600)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def appliance(workdir):
    """XKS and EKM (mutual TLS, a path prefix) on one listener."""
    pki = make_pki(os.path.join(workdir, "pki"), "contoso.managedhsmclient.azure.net", "other.example")
    s = Server(os.path.join(workdir, "mtls"), extra_toml=XKS_TOML, env=ekm_on(pki)).start()
    s.pki = pki
    yield s
    s.stop()


@pytest.fixture(scope="module")
def open_ekm(workdir):
    """XKS, and EKM without client authentication and without a path prefix."""
    s = Server(os.path.join(workdir, "open"), extra_toml=XKS_TOML, env=ekm_on(None, "")).start()
    yield s
    s.stop()


def pin_of(server):
    with open(server.cacert, "rb") as f:
        der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def selftest(*args, timeout=120):
    """One run: (process, JSON log lines, seconds).  Whatever happens, no
    secret access key is in the output."""
    t0 = time.monotonic()
    p = subprocess.run([PROV, "selftest", *args], capture_output=True, text=True, timeout=timeout)
    took = time.monotonic() - t0
    for secret in (SECRET, WRONG):
        assert secret not in p.stderr and secret not in p.stdout
    logs = [json.loads(line) for line in p.stderr.splitlines() if line.startswith("{")]
    assert all(line["proc"] == "provision" for line in logs)
    return p, logs, took


def logged(server, *texts, timeout=10):
    """1 when the server's log has each of texts (its log writer may take a moment)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = server.logs()
        if all(t in log for t in texts):
            return True
        time.sleep(0.1)
    return False


def xks_args(workdir, secret="secret", prefix=XKS_PREFIX):
    return ["--xks-prefix", prefix, "--access-key-id", AKID, "--secret-file", os.path.join(workdir, secret)]


def last_line(p):
    return p.stderr.strip().splitlines()[-1]


def events(logs, name):
    return [line for line in logs if line["event"] == name]


def test_every_check_passes_through_the_listeners(appliance, workdir):
    p, logs, _ = selftest("--url", appliance.url, "--cacert", appliance.cacert, *xks_args(workdir),
                          "--ekm-prefix", EKM_PREFIX)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "selftest passed: healthz, XKS health, EKM info\n"
    passed = {line["check"]: line for line in events(logs, "selftest_passed")}
    assert set(passed) == {"healthz", "XKS health", "EKM info"}
    assert passed["healthz"]["answer"] == "200 ok"
    assert passed["XKS health"]["answer"].startswith("200 ACTIVE")
    assert passed["EKM info"]["answer"].startswith("401 Unauthorized without a client certificate")
    assert not events(logs, "selftest_attempt_failed") and not events(logs, "selftest_failed")
    # the requests reached the real routes: the appliance logged them with our correlation ids
    assert logged(appliance, passed["XKS health"]["kmsRequestId"], '"route":"xks.health"', '"route":"ekm"')


def test_client_auth_disabled_info_document_and_a_pinned_certificate(open_ekm, workdir):
    p, logs, _ = selftest("--url", open_ekm.url + "/", "--pin-sha256", pin_of(open_ekm).upper(),
                          *xks_args(workdir), "--ekm-prefix", "")
    assert p.returncode == 0, p.stderr
    ekm = [line for line in events(logs, "selftest_passed") if line["check"] == "EKM info"][0]
    assert ekm["answer"].startswith("200 api_version 0.1-preview")
    assert logged(open_ekm, ekm["correlation_id"])


def test_a_wrong_secret_fails_naming_xks_and_the_reason(appliance, workdir):
    p, logs, _ = selftest("--url", appliance.url, "--cacert", appliance.cacert, *xks_args(workdir, "wrong"),
                          "--ekm-prefix", EKM_PREFIX)
    assert p.returncode == FAILED, p.stderr
    assert last_line(p) == ("keyward-provision: selftest: XKS health: 401 AuthenticationFailedException: "
                            "the request could not be authenticated")
    failed = events(logs, "selftest_failed")
    assert [f["check"] for f in failed] == ["XKS health"] and failed[0]["kmsRequestId"]
    # a refusal is not retried, and the EKM check is not reached
    assert not events(logs, "selftest_attempt_failed")
    assert [line["check"] for line in events(logs, "selftest_passed")] == ["healthz"]
    # a region the store does not have is refused the same way
    p, _, _ = selftest("--url", appliance.url, "--cacert", appliance.cacert, *xks_args(workdir),
                       "--region", "eu-west-3")
    assert p.returncode == FAILED and "XKS health: 401 AuthenticationFailedException" in last_line(p)


def test_a_wrong_xks_prefix_fails(appliance, workdir):
    p, logs, _ = selftest("--url", appliance.url, "--cacert", appliance.cacert,
                          *xks_args(workdir, prefix="/tenant-b/xks"))
    assert p.returncode == FAILED, p.stderr
    assert last_line(p) == ("keyward-provision: selftest: XKS health: 404 InvalidUriPathException: "
                            "the URI path is not valid")


def test_ekm_disabled_fails_the_ekm_check(make_server, workdir):
    s = make_server(extra_toml=XKS_TOML).start()
    p, logs, _ = selftest("--url", s.url, "--cacert", s.cacert, *xks_args(workdir), "--ekm-prefix", "")
    assert p.returncode == FAILED, p.stderr
    assert last_line(p).startswith("keyward-provision: selftest: EKM info: 404, not the EKM API "
                                   "(is [azure_ekm_config] azure_ekm_enable set")
    assert [line["check"] for line in events(logs, "selftest_passed")] == ["healthz", "XKS health"]


def test_a_wrong_ekm_prefix_fails_with_the_ekm_error(open_ekm):
    p, _, _ = selftest("--url", open_ekm.url, "--cacert", open_ekm.cacert, "--ekm-prefix", "elsewhere")
    assert p.returncode == FAILED, p.stderr
    assert last_line(p).startswith("keyward-provision: selftest: EKM info: 400 InvalidRequest: no such EKM endpoint")


def test_a_wrong_pin_or_ca_fails_the_tls_verification(appliance):
    p, logs, _ = selftest("--url", appliance.url, "--pin-sha256", "00" * 32)
    assert p.returncode == FAILED, p.stderr
    assert last_line(p) == ("keyward-provision: selftest: healthz: TLS: the server's certificate is not the "
                            "pinned one (its SHA-256: %s)" % pin_of(appliance))
    assert not events(logs, "selftest_attempt_failed")   # not retried
    # a CA file that did not issue the server's certificate (the EKM clients' CA)
    p, logs, _ = selftest("--url", appliance.url, "--cacert", appliance.pki["ca"])
    assert p.returncode == FAILED
    assert last_line(p).startswith("keyward-provision: selftest: healthz: TLS: SSL certificate problem")
    assert not events(logs, "selftest_attempt_failed")


def test_no_server_fails_after_the_bounded_attempts(appliance):
    port = free_port()
    p, logs, took = selftest("--url", "https://127.0.0.1:%d" % port, "--cacert", appliance.cacert,
                             "--attempts", "3", "--timeout-ms", "500")
    assert p.returncode == FAILED, p.stderr
    assert took < 10   # 250 + 500 ms of back-off, the connections refused at once
    attempts = events(logs, "selftest_attempt_failed")
    assert [a["attempt"] for a in attempts] == ["1", "2", "3"]
    assert all(a["check"] == "healthz" and "onnect" in a["why"] for a in attempts)
    assert last_line(p).startswith("keyward-provision: selftest: healthz: ")
    assert last_line(p).endswith("(after 3 attempts)")
    assert "%d" % port in last_line(p)


def test_waits_for_an_appliance_that_is_starting(make_server, workdir):
    s = make_server(extra_toml=XKS_TOML)
    t = subprocess.Popen([PROV, "selftest", "--url", s.url, "--cacert", s.cacert, *xks_args(workdir),
                          "--attempts", "12"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.6)
        s.start(wait=False)
        out, err = t.communicate(timeout=120)
    finally:
        if t.poll() is None:
            t.kill()
            t.wait()
    assert t.returncode == 0, err
    assert SECRET not in err
    logs = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert events(logs, "selftest_attempt_failed")   # it was not up at first
    assert [line["check"] for line in events(logs, "selftest_passed")] == ["healthz", "XKS health"]


def test_usage_errors_send_nothing(appliance, workdir):
    # a listener that no run may connect to
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    url = "https://127.0.0.1:%d" % listener.getsockname()[1]
    base = ["--url", url]
    two_lines = os.path.join(workdir, "two-lines")
    with open(two_lines, "w") as f:
        f.write(SECRET + "\n" + SECRET + "\n")
    os.chmod(two_lines, 0o600)
    cases = [
        (base, "give --cacert FILE or --pin-sha256 HEX"),
        (base + ["--cacert", appliance.cacert, "--pin-sha256", "00" * 32], "give --cacert FILE or --pin-sha256"),
        (base + ["--pin-sha256", "abc"], "--pin-sha256 is the SHA-256"),
        (["--url", url.replace("https", "http"), "--cacert", appliance.cacert], "--url must be https://"),
        (["--url", url + "/healthz", "--cacert", appliance.cacert], "with nothing after the port"),
        (base + ["--cacert", appliance.cacert, "--xks-prefix", XKS_PREFIX, "--access-key-id", AKID],
         "--xks-prefix needs --secret-file"),
        (base + ["--cacert", appliance.cacert, "--access-key-id", AKID], "go with --xks-prefix"),
        (base + ["--cacert", appliance.cacert, "--xks-prefix", "tenant-a"] + xks_args(workdir)[2:],
         "--xks-prefix is"),
        (base + ["--cacert", appliance.cacert, "--ekm-prefix", "/x"], "--ekm-prefix is"),
        (base + ["--cacert", appliance.cacert] + xks_args(workdir, "missing"), "missing: No such file"),
        (base + ["--cacert", appliance.cacert] + xks_args(workdir, "two-lines"), "not one line of"),
        (base + ["--cacert", os.path.join(workdir, "missing.pem")], "--cacert"),
    ]
    for args, words in cases:
        p, _, _ = selftest(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert words in last_line(p), (args, p.stderr)
        assert last_line(p).startswith("keyward-provision: selftest: options: ")
    # the secret is never an argument, not even through an abbreviation of --secret-file
    for opt in ("--secret", "--secret-f", "--sec"):
        p, _, _ = selftest(*base, "--cacert", appliance.cacert, *xks_args(workdir)[:4], opt, SECRET)
        assert p.returncode == 2 and "unknown option " + opt in p.stderr, p.stderr
    with pytest.raises(BlockingIOError):   # nothing was sent
        listener.accept()
    listener.close()
