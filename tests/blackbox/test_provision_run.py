"""keyward-provision run (issue 13): from a blank data disk to a serving
appliance, on this machine's real parts: the disk is a loop device (listed
in a /sys/block tree of the test's own, as a virtio disk), the TPM is
swtpm, the HSM a SoftHSM2 token (evaluation mode), keywardd the real
server.  No device-mapper here, so the volume is formatted and enrolled
on the disk but not opened (--no-activate): a directory stands for its
file system (the image boot test opens and mounts it).  systemd is not
PID 1 here either, so --systemctl names a script that starts keywardd
(both processes, their users) as the units would.

A run killed at each step and run again ends where an uninterrupted run
ends."""
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import tempfile
import time

import pytest

from conftest import BUILD, SOFTHSM, free_port
from swtpm import swtpm  # noqa: F401 - the fixture
from test_provision_disk import machine  # noqa: F401 - the fixture
from test_xks import Xks

PROV = os.path.join(BUILD, "keyward-provision")
FAULTS = os.path.join(BUILD, "test", "keyward-provision-faults")
UNLOCK = os.path.join(BUILD, "keyward-unlock")
ATTEST = os.path.join(BUILD, "keyward-attest")
KEYWARDD = os.path.join(BUILD, "keywardd")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="loop devices, users and a TPM need root")

DOC = """\
# a customer's user data
[provision]
version = 1

[provision.unlock]
tpm2 = "pcrs"
tpm2_pcrs = "7"

[provision.hsm]
evaluation = true

[provision.tls]
names = ["127.0.0.1", "kw.example.test"]

[http]
listen = "127.0.0.1:{port}"

[aws_xks_store.kms-a]
uri_prefix = "/kms-a"

[key.payments]
type = "aes"
ops = ["encrypt", "decrypt"]
xks_stores = ["kms-a"]
"""

STEPS = ["disk", "volume", "filesystem", "hsm", "tls", "config", "store", "services", "keys",
         "selftest", "output"]


class Appliance:
    def __init__(self, base, disk, sysb, devdir, tcti):
        self.base, self.disk, self.sysb, self.devdir, self.tcti = base, disk, sysb, devdir, tcti
        self.data = os.path.join(base, "data")
        self.state = os.path.join(base, "state")
        self.console = os.path.join(base, "console")      # stands for the serial console
        open(self.console, "w").close()
        self.port = free_port()
        self.doc = os.path.join(base, "user-data")
        with open(self.doc, "w") as f:
            f.write(DOC.format(port=self.port))
        self.systemctl = os.path.join(base, "systemctl")
        self.pidfile = os.path.join(base, "keywardd.pid")
        with open(self.systemctl, "w") as f:
            f.write("#!/bin/sh\n"
                    "# systemctl's stand-in: systemd is not PID 1 here; starts both processes\n"
                    "# of keywardd as keyward-custody.socket + keyward-front.service would\n"
                    "[ \"$1\" = \"--no-block\" ] || exit 3\n"
                    "# the jobs must not wait for the provisioning unit (docs/provisioning.md)\n"
                    "[ \"$3\" = \"--job-mode=ignore-dependencies\" ] || exit 3\n"
                    "if [ \"$2\" = restart ] && [ -f %s ]; then\n"
                    "  pid=$(cat %s); kill -TERM -$pid 2>/dev/null\n"
                    "  for i in $(seq 100); do kill -0 -$pid 2>/dev/null || break; sleep 0.1; done\n"
                    "  rm -f %s\n"
                    "elif [ \"$2\" != start ]; then exit 3; fi\n"
                    "# started already: nothing to do (as systemctl start)\n"
                    "[ -f %s ] && kill -0 \"$(cat %s)\" 2>/dev/null && exit 0\n"
                    "SOFTHSM2_CONF=%s/etc/softhsm2.conf setsid %s --config %s/etc/keyward.toml "
                    ">>%s/keywardd.log 2>&1 </dev/null &\n"
                    "echo $! >%s\n" % ((self.pidfile,) * 5 + (self.data, KEYWARDD, self.data, base,
                                                             self.pidfile)))
        os.chmod(self.systemctl, 0o755)

    def run(self, fault=None, binary=PROV, *extra):
        env = dict(os.environ)
        env.pop("KEYWARD_PROVISION_FAULT", None)
        if fault:
            env["KEYWARD_PROVISION_FAULT"] = fault
        return subprocess.run([binary, "run", "--doc", self.doc, "--data-dir", self.data,
                               "--state-dir", self.state, "--no-activate", "--console", self.console,
                               "--tpm2-device", self.tcti, "--unlock", UNLOCK, "--keywardd", KEYWARDD,
                               "--systemctl", self.systemctl, "--softhsm-module", SOFTHSM,
                               "--sys-block", self.sysb, "--dev-dir", self.devdir, *extra],
                              capture_output=True, text=True, timeout=600, env=env)

    def stop_services(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read())
        except (OSError, ValueError):
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(100):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            os.killpg(pid, signal.SIGKILL)
        os.unlink(self.pidfile)

    def journal(self):
        with open(os.path.join(self.data, "provision", "journal")) as f:
            return [json.loads(line) for line in f]

    def output(self):
        with open(os.path.join(self.data, "provision", "first-boot.txt")) as f:
            return f.read()

    def config(self):
        with open(os.path.join(self.data, "etc", "keyward.toml")) as f:
            return f.read()

    def shape(self):
        """What must be the same however the run went: every file and
        directory with its mode and owner, the journal's steps, the
        configuration with its generated credentials masked, the volume's
        keyslots and tokens."""
        files = []
        for root, dirs, names in os.walk(self.data):
            for n in sorted(dirs) + sorted(names):
                p = os.path.join(root, n)
                st = os.lstat(p)
                rel = os.path.relpath(p, self.data)
                if "/softhsm/tokens/" in rel:      # SoftHSM's own names (UUIDs)
                    rel = re.sub(r"tokens/.*", "tokens/*", rel)
                if rel.endswith(("-wal", "-shm", "-journal")):   # SQLite's, while it runs
                    continue
                files.append((rel, stat.filemode(st.st_mode), st.st_uid, st.st_gid))
        conf = self.config()
        steps = [(j["step"], j["state"]) for j in self.journal() if j["state"] == "done"]
        st = subprocess.run([UNLOCK, "status", "--json", self.disk], capture_output=True, text=True,
                            timeout=60)
        assert st.returncode == 0, st.stderr
        vol = json.loads(st.stdout)
        return sorted(set(files)), conf, sorted(set(steps)), \
            sorted(t["type"] for t in vol.get("tokens", [])), len(vol.get("keyslots", []))


@pytest.fixture
def appliance(machine, swtpm, tmp_path):  # noqa: F811 - fixtures
    base = tempfile.mkdtemp(prefix="kwprov.", dir="/tmp")
    os.chmod(base, 0o755)
    disk = machine.disk("vdb", mib=64)
    a = Appliance(base, disk, str(tmp_path / "sys" / "block"), str(tmp_path / "dev"), swtpm.tcti)
    a.swtpm = swtpm
    yield a
    a.stop_services()
    shutil.rmtree(base, ignore_errors=True)


def import_file(out):
    return json.loads(re.search(r"import file: (\{.*\})\n", out).group(1))


def xks_creds(out):
    """The credential the customer was shown (the store made in the key store)."""
    c = import_file(out)["XksProxyAuthenticationCredential"]
    return c["AccessKeyId"], c["RawSecretAccessKey"]


class Server:
    def __init__(self, a):
        self.url = "https://127.0.0.1:%d" % a.port
        self.cacert = os.path.join(a.data, "etc", "tls", "cert.pem")


def test_a_blank_disk_becomes_a_serving_appliance(appliance):
    a = appliance
    r = a.run()
    assert r.returncode == 0, r.stderr
    # every step done, in order, on the journal the volume holds
    done = [j["step"] for j in a.journal() if j["state"] == "done"]
    assert done == ["document"] + STEPS + ["provisioned"]
    out = a.output()
    with open(a.console) as f:
        assert f.read() == out                        # once on the console, the same in the file
    st = os.stat(os.path.join(a.data, "provision", "first-boot.txt"))
    assert (st.st_mode & 0o777, st.st_uid) == (0o400, 0)
    assert not os.path.exists(os.path.join(a.data, "provision", "recovery-key"))
    assert not os.path.exists(os.path.join(a.state, "recovery-key"))
    recovery = re.search(r"Recovery key of the data volume.*\n  (\S+)\n", out).group(1)
    token = re.search(r"First admin API token.*\n  (\S+)\n", out).group(1)
    fp = re.search(r"TLS certificate SHA-256 fingerprint: (\S+)", out).group(1)
    cert = os.path.join(a.data, "etc", "tls", "cert.pem")
    x = subprocess.run(["openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", cert],
                       capture_output=True, text=True, timeout=30).stdout
    assert x.strip().split("=", 1)[1] == fp
    # the instance's AK pin (the swtpm's AK, read from the server's own evidence), in the command
    pin = re.search(r"Attestation key \(AK\) of this instance, SHA-256 of its TPMT_PUBLIC.*\n  ([0-9a-f]{64})\n",
                    out).group(1)
    assert ("keyward-attest verify https://127.0.0.1:%d --policy policy.json --policy-key image-key.pem "
            "--ak-sha256 %s\n" % (a.port, pin)) in out
    url = "https://127.0.0.1:%d" % a.port
    tofu = subprocess.run([ATTEST, "policy-from", url, "--ca", cert], capture_output=True, text=True, timeout=60)
    assert tofu.returncode == 0, tofu.stderr
    assert json.loads(tofu.stdout)["tpm"]["ak_sha256"] == pin     # as the verifier computes it
    pol = os.path.join(a.base, "tofu-policy.json")
    with open(pol, "w") as f:
        p = json.loads(tofu.stdout)
        del p["tpm"]["ak_sha256"]           # pinned by the printed value only
        json.dump(p, f)
    v = subprocess.run([ATTEST, "verify", url, "--policy", pol, "--ca", cert, "--ak-sha256", pin],
                       capture_output=True, text=True, timeout=60)
    assert v.returncode == 0, v.stdout + v.stderr
    akid, secret = xks_creds(out)
    imp = import_file(out)
    assert imp == {"XksProxyUriEndpoint": "https://127.0.0.1:%d" % a.port, "XksProxyUriPath": "/kms-a/kms/xks/v1",
                   "XksProxyAuthenticationCredential": {"AccessKeyId": akid, "RawSecretAccessKey": secret}}
    # nothing secret in what was logged
    for s in (recovery, token, secret):
        assert s not in r.stderr and s not in r.stdout
    # the volume: the TPM opens it now, and so does the recovery key
    c = subprocess.run([UNLOCK, "check", "--tpm2-device", a.tcti, a.disk], capture_output=True, text=True,
                       timeout=120)
    assert c.returncode == 0, c.stdout + c.stderr
    rc = subprocess.run([UNLOCK, "recover", "--no-reenroll", "--tpm2-device", a.tcti, a.disk],
                        input=recovery + "\n", capture_output=True, text=True, timeout=120)
    assert rc.returncode == 0, rc.stdout + rc.stderr
    # the appliance serves: the initial key through XKS with the generated credential
    x = Xks(Server(a))
    e = x.enc("/kms-a", "payments", b"first boot", akid=akid, secret=secret, region="us-east-1", service="kms-xks-proxy")
    assert e.status_code == 200, e.text
    d = x.dec("/kms-a", "payments", e.json(), akid=akid, secret=secret, region="us-east-1", service="kms-xks-proxy")
    assert d.status_code == 200 and base64.b64decode(d.json()["plaintext"]) == b"first boot", d.text
    # the admin token works; evaluation mode is said
    import requests
    h = requests.get(Server(a).url + "/healthz", verify=cert, timeout=30).json()
    assert h.get("evaluation") is True
    st = requests.get(Server(a).url + "/api/v1/status", headers={"Authorization": "Bearer " + token},
                      verify=cert, timeout=30)
    assert st.status_code == 200, st.text
    # files: who owns what
    def owner(p):
        s = os.stat(os.path.join(a.data, p))
        return stat.filemode(s.st_mode), s.st_uid, s.st_gid
    import pwd
    cu = pwd.getpwnam("keyward-custody")
    fu = pwd.getpwnam("keyward-front")
    assert owner("custody") == ("drwx------", cu.pw_uid, cu.pw_gid)
    assert owner("custody/hsm.pin") == ("-rw-------", cu.pw_uid, cu.pw_gid)
    assert owner("etc/tls/key.pem") == ("-rw-r-----", 0, fu.pw_gid)
    assert owner("provision") == ("drwx------", 0, 0)


def test_run_again_when_provisioned_changes_nothing(appliance):
    a = appliance
    assert a.run().returncode == 0
    before = a.shape()
    out = a.output()
    r = a.run()
    assert r.returncode == 11, r.stderr
    assert "was provisioned on" in r.stderr
    assert a.shape() == before and a.output() == out


def test_a_run_under_way_with_another_document_is_refused(appliance):
    a = appliance
    r = a.run("config:end", FAULTS)
    assert r.returncode == -signal.SIGKILL, r.stderr
    with open(a.doc, "a") as f:
        f.write("\n[log]\nlevel = \"debug\"\n")
    r = a.run()
    assert r.returncode == 12, r.stderr
    assert "another document" in r.stderr


def test_a_disk_that_holds_data_is_never_formatted(appliance):
    a = appliance
    subprocess.run(["mkfs.ext4", "-q", a.disk], check=True, capture_output=True, timeout=60)
    before = hashlib.sha256(open(a.disk, "rb").read()).hexdigest()
    r = a.run()
    assert r.returncode == 10, r.stderr
    assert "step disk failed" in r.stderr
    assert hashlib.sha256(open(a.disk, "rb").read()).hexdigest() == before
    # named in the document: refused the same way
    with open(a.doc, "a") as f:
        f.write("\n[provision.disk]\ndevice = \"%s\"\n" % a.disk)
    shutil.rmtree(a.state)
    r = a.run()
    assert r.returncode == 10 and "holds data" in r.stderr, r.stderr
    assert hashlib.sha256(open(a.disk, "rb").read()).hexdigest() == before


# each step, killed where it has done its work but not recorded it (and a
# few points inside the longer ones)
KILLS = ["%s:end" % s for s in STEPS] + ["volume:begin", "volume:formatted", "filesystem:mounted",
                                         "hsm:pin", "config:written"]


@pytest.mark.parametrize("kill", KILLS)
def test_killed_at_each_step_and_run_again_ends_the_same(appliance, kill):
    a = appliance
    r = a.run(kill, FAULTS)
    assert r.returncode == -signal.SIGKILL, (kill, r.returncode, r.stderr)
    r = a.run()
    assert r.returncode == 0, (kill, r.stderr)
    shape = a.shape()
    assert shape[0] == expected_files(), kill
    done = [j["step"] for j in a.journal() if j["state"] == "done"]
    assert set(done) == set(["document"] + STEPS + ["provisioned"]), (kill, done)
    assert shape[3] == ["systemd-recovery", "systemd-tpm2"], shape[3]
    assert shape[4] == 2, shape
    # still serving, with what the customer was given
    akid, secret = xks_creds(a.output())
    e = Xks(Server(a)).enc("/kms-a", "payments", b"x", akid=akid, secret=secret, region="us-east-1", service="kms-xks-proxy")
    assert e.status_code == 200, e.text
    out = a.output()
    recovery = re.search(r"Recovery key of the data volume.*\n  (\S+)\n", out).group(1)
    rc = subprocess.run([UNLOCK, "recover", "--no-reenroll", "--tpm2-device", a.tcti, a.disk],
                        input=recovery + "\n", capture_output=True, text=True, timeout=120)
    assert rc.returncode == 0, (kill, rc.stdout + rc.stderr)


def expected_files():
    """The files of an uninterrupted run (mode and owner)."""
    import pwd
    cu = pwd.getpwnam("keyward-custody")
    fu = pwd.getpwnam("keyward-front")
    c, f = (cu.pw_uid, cu.pw_gid), (0, fu.pw_gid)
    rows = [
        ("custody", "drwx------") + c,
        ("custody/admin.token", "-rw-------") + c,
        ("custody/hsm.pin", "-rw-------") + c,
        ("custody/keyward.db", "-rw-------") + c,
        ("custody/keyward.db.key", "-rw-------") + c,
        ("custody/softhsm", "drwx------") + c,
        ("custody/softhsm/tokens", "drwx------") + c,
        ("custody/softhsm/tokens/*", "drwx------") + c,
        ("custody/softhsm/tokens/*", "-rw-------") + c,
        ("etc", "drwxr-xr-x", 0, 0),
        ("etc/keyward.toml", "-rw-r--r--", 0, 0),
        ("etc/softhsm2.conf", "-rw-r--r--", 0, 0),
        ("etc/tls", "drwxr-xr-x") + f,   # custody reads cert.pem (attestation)
        ("etc/tls/cert.pem", "-rw-r--r--", 0, 0),
        ("etc/tls/key.pem", "-rw-r-----") + f,
        ("provision", "drwx------", 0, 0),
        ("provision/first-boot.txt", "-r--------", 0, 0),
        ("provision/journal", "-rw-------", 0, 0),
    ]
    return sorted(set(rows))


def test_the_boot_units_mode_does_nothing_once_provisioned(appliance):
    """--if-needed (keyward-provision.service): done at once when the journal
    says provisioned, or, on a later boot before the volume is open (no
    run-time journal, the volume's not reachable), when a disk holds the
    keyward-data volume."""
    a = appliance
    assert a.run().returncode == 0
    out = a.output()
    r = a.run(None, PROV, "--if-needed")
    assert r.returncode == 0, r.stderr
    assert '"why":"provisioned"' in r.stderr
    # a later boot: /run is empty and the volume is not mounted yet
    shutil.rmtree(a.state)
    r = subprocess.run([PROV, "run", "--if-needed", "--data-dir", os.path.join(a.base, "not-mounted"),
                        "--state-dir", a.state, "--no-activate", "--sys-block", a.sysb, "--dev-dir", a.devdir,
                        "--no-nocloud", "--no-ovf", "--no-aws", "--no-azure", "--no-gcp"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert '"why":"data volume present"' in r.stderr and a.disk in r.stderr
    assert not os.path.exists(os.path.join(a.base, "not-mounted"))
    assert a.output() == out


def test_with_the_admin_tokens_hash_only_the_customer_holds_the_token(appliance):
    """[provision.admin] token_sha256: no token travels or is shown; the
    stores and keys are made with a token of provisioning's own (keywardd
    --recover-admin, audited), revoked when they are made."""
    import requests
    a = appliance
    token = "kw_" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
    with open(a.doc, "a") as f:
        f.write("\n[provision.admin]\ntoken_sha256 = \"%s\"\n" % hashlib.sha256(token.encode()).hexdigest())
    r = a.run()
    assert r.returncode == 0, r.stderr
    out = a.output()
    assert "First admin API token" not in out and "token_sha256" in out
    assert token not in out
    assert not os.path.exists(os.path.join(a.data, "custody", "admin.token"))
    cert = os.path.join(a.data, "etc", "tls", "cert.pem")
    url = "https://127.0.0.1:%d" % a.port
    h = {"Authorization": "Bearer " + token}
    toks = requests.get(url + "/api/v1/tokens", headers=h, verify=cert, timeout=30).json()["tokens"]
    live = [t["name"] for t in toks if t["revoked"] is None]
    assert live == ["initial-admin"], toks
    assert any(t["name"].startswith("recovered-admin-") and t["revoked"] for t in toks), toks
    keys = requests.get(url + "/api/v1/keys", headers=h, verify=cert, timeout=30).json()
    assert [k["name"] for k in keys["keys"]] == ["payments"], keys
    akid, secret = xks_creds(out)
    e = Xks(Server(a)).enc("/kms-a", "payments", b"x", akid=akid, secret=secret, region="us-east-1",
                           service="kms-xks-proxy")
    assert e.status_code == 200, e.text


def test_reprovision_applies_a_new_document_and_keeps_the_volume(appliance):
    """--reprovision: the new document's TLS names, server tables, key stores
    and keys; the disk, its bindings, the HSM and the keys made before stay,
    and the services start again on the new configuration.  A document that
    changes what stays is refused, and without --reprovision nothing runs."""
    import requests
    a = appliance
    assert a.run().returncode == 0
    first = a.output()
    akid, secret = xks_creds(first)
    header = subprocess.run(["sha256sum", a.disk], capture_output=True, text=True).stdout.split()[0]
    with open(a.doc) as f:
        doc = f.read()
    new = doc.replace('names = ["127.0.0.1", "kw.example.test"]', 'names = ["127.0.0.1", "kms.example.test"]')
    new += '\n[aws_xks_store.kms-b]\nuri_prefix = "/kms-b"\n\n[key.ledger]\ntype = "aes"\nxks_stores = ["kms-b"]\n'
    with open(a.doc, "w") as f:
        f.write(new)
    r = a.run()
    assert r.returncode == 11 and "--reprovision" in r.stderr, r.stderr
    # what stays may not change
    with open(a.doc, "w") as f:
        f.write(new.replace('tpm2_pcrs = "7"', 'tpm2_pcrs = "7+11"'))
    r = a.run(None, PROV, "--reprovision")
    assert r.returncode == 4 and "keeps the data disk" in r.stderr, r.stderr
    with open(a.doc, "w") as f:
        f.write(new)
    r = a.run(None, PROV, "--reprovision")
    assert r.returncode == 0, r.stderr
    out = a.output()
    assert "Recovery key of the data volume: unchanged" in out
    stores = {m.group(1): json.loads(m.group(2)) for m in
              re.finditer(r"key store (\S+): .*\n    import file: (\{.*\})\n", out)}
    assert set(stores) == {"kms-a", "kms-b"}, out
    # the certificate names the new name; the old key and credential still work
    cert = os.path.join(a.data, "etc", "tls", "cert.pem")
    text = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", cert],
                          capture_output=True, text=True).stdout
    assert "kms.example.test" in text and "kw.example.test" not in text
    x = Xks(Server(a))
    e = x.enc("/kms-a", "payments", b"old", akid=akid, secret=secret, region="us-east-1", service="kms-xks-proxy")
    assert e.status_code == 200, e.text
    b = stores["kms-b"]["XksProxyAuthenticationCredential"]
    e = x.enc("/kms-b", "ledger", b"new", akid=b["AccessKeyId"], secret=b["RawSecretAccessKey"],
              region="us-east-1", service="kms-xks-proxy")
    assert e.status_code == 200, e.text
    done = [j["step"] for j in a.journal() if j["state"] == "done"]
    assert done.count("volume") == 1 and done.count("tls") == 2 and done[-1] == "provisioned"
    assert subprocess.run(["sha256sum", a.disk], capture_output=True, text=True).stdout.split()[0] == header


def test_azure_ekm_with_the_clients_ca_from_the_document(appliance):
    """[provision.tls] client_ca: the CA of Azure Managed HSM's client
    certificates, so that EKM's mutual TLS works from the first boot; the
    self-test sees EKM answer (401 to a caller without a certificate), a
    client of that CA gets the info and the key's metadata."""
    import requests
    from ekm_certs import make_pki
    a = appliance
    pki = make_pki(os.path.join(a.base, "pki"), "contoso.managedhsmclient.azure.net", "other.example")
    with open(pki["ca"]) as f:
        ca = f.read()
    with open(a.doc) as f:
        doc = f.read()
    doc = doc.replace('names = ["127.0.0.1", "kw.example.test"]',
                      "names = [\"127.0.0.1\", \"kw.example.test\"]\nclient_ca = '''\n%s'''" % ca)
    doc += ('\n[azure_ekm_config]\nazure_ekm_enable = true\nazure_ekm_path_prefix = "tenant0"\n'
            'azure_ekm_client_cns = ["contoso.managedhsmclient.azure.net"]\n\n'
            '[key.ekm-kek]\ntype = "rsa"\nops = ["wrap", "unwrap"]\n'
            'ekm_clients = ["contoso.managedhsmclient.azure.net"]\n')
    with open(a.doc, "w") as f:
        f.write(doc)
    r = a.run()
    assert r.returncode == 0, r.stderr
    out = a.output()
    url = "https://127.0.0.1:%d/azureekm/tenant0" % a.port
    assert "  ekm-kek: %s/ekm-kek" % url in out, out
    cert = os.path.join(a.data, "etc", "tls", "cert.pem")
    body = json.dumps({"request_context": {"request_id": "1", "correlation_id": "2", "pool_name": "p"}})
    h = {"Content-Type": "application/json"}
    r = requests.post(url + "/info?api-version=0.1-preview", data=body, headers=h, cert=pki["allowed"],
                      verify=cert, timeout=30)
    assert r.status_code == 200 and r.json()["api_version"] == "0.1-preview", r.text
    r = requests.post(url + "/ekm-kek/metadata?api-version=0.1-preview", data=body, headers=h,
                      cert=pki["allowed"], verify=cert, timeout=30)
    assert r.status_code == 200 and r.json()["key_type"] == "RSA" and r.json()["key_size"] == 3072, r.text
    r = requests.post(url + "/info?api-version=0.1-preview", data=body, headers=h, cert=pki["foreign"],
                      verify=cert, timeout=30)
    assert r.status_code == 401, r.text


def test_without_a_tpm_the_output_has_no_ak_pin(appliance):
    """A machine whose TPM does not answer when the output is made (a
    development machine has none): no pin, and a verify command without
    --ak-sha256; the output is written all the same."""
    a = appliance
    r = a.run("selftest:end", FAULTS)
    assert r.returncode == -signal.SIGKILL, r.stderr
    a.swtpm.stop()                      # the server's attestation TPM is gone
    r = a.run()
    assert r.returncode == 0, r.stderr
    out = a.output()
    assert re.search(r"Attestation key \(AK\) of this instance: none \(no TPM: [^\n]+\)\n", out), out
    assert ("keyward-attest verify https://127.0.0.1:%d --policy policy.json --policy-key image-key.pem\n"
            % a.port) in out
    assert "--ak-sha256" not in out
