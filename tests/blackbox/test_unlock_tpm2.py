"""keyward-unlock's TPM2 binding against a real software TPM (swtpm), on
plain files (issue 12): enroll --format --tpm2-pcrs seals the keyslot's
passphrase to the current PCR values in systemd 252's format, open unseals
it after the header checks.

Interoperability: keyward-unlock opens what systemd-cryptenroll enrolled;
and what keyward-unlock sealed is unsealed by tpm2-tools with systemd's
primary key template and policy, an implementation independent of ours
(systemd's own token plugin only finds /dev/tpmrm*, which this machine has
not: the image boot test covers it), its policy digest matching the one
tpm2_createpolicy computes.
"""
import base64
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD
from luks import rewrite_header
from swtpm import Swtpm, swtpm  # noqa: F401 (the fixture)

UNLOCK = os.path.join(BUILD, "keyward-unlock")

pytestmark = pytest.mark.skipif(shutil.which("cryptsetup") is None, reason="cryptsetup-bin is missing (make deps)")


def unlock(*args, input=None):
    return subprocess.run([UNLOCK, *args], input=input, capture_output=True, text=True, timeout=120)


def blank(tmp_path, name="data.img"):
    p = str(tmp_path / name)
    with open(p, "wb") as f:
        f.truncate(40 << 20)
    return p


def pcr_value(tpm, n):
    r = tpm.tool("tpm2_pcrread", "sha256:%d" % n)
    assert r.returncode == 0, r.stderr
    m = re.search(r"%d\s*:\s*0x([0-9A-Fa-f]{64})" % n, r.stdout)
    assert m, r.stdout
    return m.group(1).lower()


@pytest.fixture
def sealed(tmp_path, swtpm):
    path = blank(tmp_path)
    r = unlock("enroll", "--format", "--tpm2-pcrs", "7+11", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 0, r.stderr
    assert "keyslot 1 through this TPM" in r.stderr
    return path, r.stdout.strip()


def token_of(path, kind):
    meta = json.loads(subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata", path], capture_output=True,
                                     text=True, check=True).stdout)
    return [t for t in meta["tokens"].values() if t["type"] == kind][0]


def test_enrolled_token_is_systemds_format(sealed, swtpm):
    path, _ = sealed
    j = json.loads(unlock("status", "--json", path).stdout)
    assert j["header_check"] == "passed"
    assert [t["type"] for t in j["tokens"]] == ["systemd-recovery", "systemd-tpm2"]
    t = j["tokens"][1]
    assert t["keyslots"] == [1] and t["pcrs"] == [7, 11] and t["bank"] == "sha256" and t["primary_alg"] == "ecc"
    tok = token_of(path, "systemd-tpm2")
    assert sorted(tok) == sorted(["type", "keyslots", "tpm2-blob", "tpm2-pcrs", "tpm2-pcr-bank", "tpm2-primary-alg",
                                  "tpm2-policy-hash", "tpm2-pin"])
    assert tok["tpm2-pin"] is False and tok["keyslots"] == ["1"]


def test_open_unseals_and_opens(sealed, swtpm):
    path, _ = sealed
    r = unlock("open", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 0, r.stderr
    assert "token 1 (TPM2) opens keyslot 1 (checked: nothing activated)" in r.stdout


def test_a_pcr_extended_after_enrollment_is_refused_and_named(sealed, swtpm):
    path, key = sealed
    r = swtpm.tool("tpm2_pcrextend", "11:sha256=" + "ab" * 32)
    assert r.returncode == 0, r.stderr
    r = unlock("open", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 9, (r.returncode, r.stderr)
    # which PCR differs, its value at enrollment and now; the one that did not move named as such
    assert "the PCRs of token 1 changed since enrollment: PCR 11: expected %s, now %s; unchanged: PCR 7" % (
        "00" * 32, pcr_value(swtpm, 11)) in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    # the recovery key still opens it
    assert unlock("recover", "--no-reenroll", path, input=key).returncode == 0


def test_the_recorded_values_are_systemd_independent_and_checked(sealed, swtpm):
    """The values sealed to are in a token of our own beside systemd's (whose
    fields stay exactly systemd's), and are believed only when they give the
    token's policy digest: edited, the message falls back to the current
    values and says why."""
    path, _ = sealed
    note = token_of(path, "keyward-tpm2-pcrs")
    assert note == {"type": "keyward-tpm2-pcrs", "keyslots": ["1"], "tpm2-pcr-bank": "sha256",
                    "tpm2-pcr-values": {"7": "00" * 32, "11": "00" * 32}}
    assert swtpm.tool("tpm2_pcrextend", "7:sha256=" + "ab" * 32).returncode == 0
    r = unlock("open", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 9 and "PCR 7: expected %s, now %s; unchanged: PCR 11" % ("00" * 32, pcr_value(swtpm, 7)) \
        in r.stderr, r.stderr

    def edit(m):
        for t in m["tokens"].values():
            if t["type"] == "keyward-tpm2-pcrs":
                t["tpm2-pcr-values"]["7"] = pcr_value(swtpm, 7)
    rewrite_header(path, edit)
    r = unlock("open", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 9, r.stderr
    assert "the values recorded for them do not give its policy); now PCR 7 = " + pcr_value(swtpm, 7) in r.stderr
    assert "expected" not in r.stderr


def test_another_tpm_does_not_unseal(sealed):
    path, _ = sealed
    other = Swtpm()
    try:
        r = unlock("open", "--tpm2-device", other.tcti, path)
    finally:
        other.stop()
    assert r.returncode in (8, 9), (r.returncode, r.stderr)
    # a fresh TPM has the same (zero) PCRs 7 and 11: the load under its own seed fails
    assert r.returncode == 8 and "loading the sealed object" in r.stderr, r.stderr


def test_no_tpm(sealed):
    path, _ = sealed
    r = unlock("open", "--tpm2-device", "swtpm:host=127.0.0.1,port=1", path)
    assert r.returncode == 8 and "no TPM at swtpm:host=127.0.0.1,port=1" in r.stderr, r.stderr
    assert "ERROR:tcti" not in r.stderr       # tpm2-tss's own logging is silenced
    other = os.path.join(os.path.dirname(path), "b.img")
    with open(other, "wb") as f:
        f.truncate(40 << 20)
    r = unlock("enroll", "--format", "--tpm2-pcrs", "7", "--tpm2-device", "swtpm:host=127.0.0.1,port=1", other)
    assert r.returncode == 8 and r.stdout == ""
    with open(other, "rb") as f:
        assert f.read(1 << 20) == b"\0" * (1 << 20)     # nothing written


def test_a_tampered_blob_is_refused(sealed, swtpm):
    path, _ = sealed

    def edit(m):
        for t in m["tokens"].values():
            if t["type"] == "systemd-tpm2":
                t["tpm2-blob"] = base64.b64encode(b"\0\4abcd").decode()
    rewrite_header(path, edit)
    r = unlock("open", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 5 and "not a sealed TPM object" in r.stderr, r.stderr


def test_open_what_systemd_cryptenroll_enrolled(tmp_path, swtpm):
    path = blank(tmp_path)
    subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--key-file", "-", path], input=b"pw", check=True,
                   capture_output=True, timeout=60)
    r = subprocess.run(["systemd-cryptenroll", "--tpm2-device=" + swtpm.tcti, "--tpm2-pcrs=7+11", path],
                       env=dict(os.environ, PASSWORD="pw"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    r = unlock("open", "--extra-keyslot", "0", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 0, r.stderr
    assert "(TPM2) opens keyslot 1" in r.stdout
    swtpm.tool("tpm2_pcrextend", "7:sha256=" + "cd" * 32)
    r = unlock("open", "--extra-keyslot", "0", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 9 and "PCR 7 = " + pcr_value(swtpm, 7) in r.stderr, r.stderr
    assert "the values sealed to were not recorded" in r.stderr     # systemd does not record them


def test_tpm2_tools_unseal_our_blob_with_systemds_template(sealed, swtpm, tmp_path):
    path, _ = sealed
    tok = token_of(path, "systemd-tpm2")
    blob = base64.b64decode(tok["tpm2-blob"])
    n = int.from_bytes(blob[0:2], "big")
    priv, pub = blob[:2 + n], blob[2 + n:]
    d = str(tmp_path)
    open(os.path.join(d, "priv"), "wb").write(priv)
    open(os.path.join(d, "pub"), "wb").write(pub)

    def tool(*a):
        r = swtpm.tool(*a)
        assert r.returncode == 0, (a, r.stderr)
        return r
    # systemd's primary: ECC P-256, AES-128-CFB, restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth
    tool("tpm2_createprimary", "-C", "o", "-g", "sha256", "-G", "ecc256:null:aes128cfb",
         "-a", "restricted|decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth",
         "-c", os.path.join(d, "primary.ctx"))
    # no resource manager in front of swtpm: each tool leaves its transient
    # objects loaded, and the TPM has room for three
    tool("tpm2_flushcontext", "-t")
    tool("tpm2_load", "-C", os.path.join(d, "primary.ctx"), "-u", os.path.join(d, "pub"), "-r",
         os.path.join(d, "priv"), "-c", os.path.join(d, "obj.ctx"))
    tool("tpm2_flushcontext", "-t")
    tool("tpm2_createpolicy", "--policy-pcr", "-l", "sha256:7,11", "-L", os.path.join(d, "policy"))
    assert open(os.path.join(d, "policy"), "rb").read().hex() == tok["tpm2-policy-hash"]
    sess = os.path.join(d, "session.ctx")
    tool("tpm2_startauthsession", "--policy-session", "-S", sess)
    tool("tpm2_policypcr", "-S", sess, "-l", "sha256:7,11")
    tool("tpm2_unseal", "-c", os.path.join(d, "obj.ctx"), "-p", "session:" + sess, "-o", os.path.join(d, "secret"))
    tool("tpm2_flushcontext", sess)
    secret = open(os.path.join(d, "secret"), "rb").read()
    assert len(secret) == 32
    passphrase = base64.b64encode(secret)
    r = subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-slot", "1", "--key-file", "-", path],
                       input=passphrase, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_systemd_cryptenroll_wipes_our_values_token_with_its_keyslot(sealed):
    """Our keyward-tpm2-pcrs token records the keyslot it describes, so
    systemd-cryptenroll --wipe-slot removes it along with systemd's token:
    the header it leaves passes our checks."""
    path, key = sealed
    r = subprocess.run(["systemd-cryptenroll", "--wipe-slot=1", path], env=dict(os.environ, PASSWORD=key),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    meta = json.loads(subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata", path], capture_output=True,
                                     text=True, check=True).stdout)
    assert sorted(meta["keyslots"]) == ["0"]
    assert [t["type"] for t in meta["tokens"].values()] == ["systemd-recovery"]
    assert json.loads(unlock("status", "--json", path).stdout)["header_check"] == "passed"
