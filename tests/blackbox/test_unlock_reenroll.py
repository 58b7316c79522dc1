"""keyward-unlock recover re-enrolls the measured bindings (issue 12): after
an intended change (new PCR values, another TPM, a new image measurement, a
new TCB to pin) the recovery key opens the volume, and each TPM2 or SEV-SNP
binding that no longer opens is sealed again, in a new keyslot written and
tried before the old one is removed.  Nothing changes when a step fails or
when every binding still opens.  On plain files, against swtpm and the fake
/dev/sev-guest (test_unlock_snp.py).
"""
import hashlib
import json
import os
import shutil
import subprocess

import pytest

from conftest import BUILD
from swtpm import Swtpm, swtpm  # noqa: F401 (the fixture)

UNLOCK = os.path.join(BUILD, "keyward-unlock")
SHIM = os.path.join(BUILD, "libfakesevguest.so")
TCB = "0300000000000008"

pytestmark = pytest.mark.skipif(shutil.which("cryptsetup") is None, reason="cryptsetup-bin is missing (make deps)")


def unlock(*args, input=None, env=None):
    return subprocess.run([UNLOCK, *args], input=input, capture_output=True, text=True, timeout=180, env=env)


def blank(tmp_path, name="data.img"):
    p = str(tmp_path / name)
    with open(p, "wb") as f:
        f.truncate(40 << 20)
    return p


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def status(path, env=None):
    r = unlock("status", "--json", path, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def luks_meta(path):
    return json.loads(subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata", path], capture_output=True,
                                     text=True, check=True, timeout=60).stdout)


@pytest.fixture
def sealed(tmp_path, swtpm):
    path = blank(tmp_path)
    r = unlock("enroll", "--format", "--tpm2-pcrs", "7+11", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 0, r.stderr
    return path, r.stdout.strip()


def test_a_changed_pcr_is_re_enrolled_and_opens_again(sealed, swtpm):
    path, key = sealed
    assert swtpm.tool("tpm2_pcrextend", "11:sha256=" + "ab" * 32).returncode == 0
    assert unlock("open", "--tpm2-device", swtpm.tcti, path).returncode == 9
    r = unlock("recover", "--tpm2-device", swtpm.tcti, path, input=key)
    assert r.returncode == 0, r.stderr
    assert "the recovery key opens keyslot 0 (checked: nothing activated)" in r.stdout
    assert "token 1 (TPM2, PCR 7+11), keyslot 1: does not open now (not the measured boot this volume was " \
           "sealed to: the PCRs of token 1 changed since enrollment" in r.stdout, r.stdout
    assert "token 1 (TPM2, PCR 7+11), keyslot 1: re-enrolled as keyslot 2 (TPM2, sealed to this boot)" in r.stdout
    r = unlock("open", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 0, r.stderr
    assert "opens keyslot 2" in r.stdout
    # the old keyslot and its token are gone; the recovery keyslot is as it was
    j = status(path)
    assert j["header_check"] == "passed"
    assert [(t["type"], t["keyslots"]) for t in j["tokens"]] == [("systemd-recovery", [0]), ("systemd-tpm2", [2])]
    assert sorted(luks_meta(path)["keyslots"]) == ["0", "2"]
    assert unlock("recover", "--no-reenroll", path, input=key).returncode == 0
    # the two header copies agree (cryptsetup's own view) and the new token is systemd's format
    tok = [t for t in luks_meta(path)["tokens"].values() if t["type"] == "systemd-tpm2"][0]
    assert tok["keyslots"] == ["2"] and tok["tpm2-pcrs"] == [7, 11] and tok["tpm2-pin"] is False


def test_nothing_is_written_when_every_binding_opens(sealed, swtpm):
    path, key = sealed
    before = sha(path)
    r = unlock("recover", "--tpm2-device", swtpm.tcti, path, input=key)
    assert r.returncode == 0, r.stderr
    assert "token 1 (TPM2, PCR 7+11), keyslot 1: opens now, kept" in r.stdout
    assert "nothing re-enrolled" in r.stdout
    assert sha(path) == before


def test_no_reenroll_changes_nothing(sealed, swtpm):
    path, key = sealed
    assert swtpm.tool("tpm2_pcrextend", "7:sha256=" + "cd" * 32).returncode == 0
    before = sha(path)
    r = unlock("recover", "--no-reenroll", "--tpm2-device", swtpm.tcti, path, input=key)
    assert r.returncode == 0 and "re-enrolled" not in r.stdout, (r.stdout, r.stderr)
    assert sha(path) == before
    assert unlock("recover", "--no-reenroll", "--tpm2-pcrs", "7", path, input=key).returncode == 2


def test_a_failed_re_enrollment_changes_nothing_and_says_so(sealed, swtpm):
    path, key = sealed
    assert swtpm.tool("tpm2_pcrextend", "11:sha256=" + "ab" * 32).returncode == 0
    before = sha(path)
    r = unlock("recover", "--tpm2-device", "swtpm:host=127.0.0.1,port=1", path, input=key)
    # the key opened it (said on stdout), the TPM was not there to seal to (exit 8, one line)
    assert "the recovery key opens keyslot 0" in r.stdout
    assert r.returncode == 8 and "no TPM at swtpm:host=127.0.0.1,port=1" in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1 and key not in r.stderr and key not in r.stdout
    assert sha(path) == before
    # a wrong key: nothing is tried beyond it
    other = ("c" * 8 + "-") * 7 + "c" * 8
    r = unlock("recover", "--tpm2-device", swtpm.tcti, path, input=other)
    assert r.returncode == 7 and "re-enroll" not in r.stdout
    assert sha(path) == before


def test_another_tpm_takes_over(sealed, swtpm):
    """The VM moved to another host (another TPM): the binding follows it."""
    path, key = sealed
    other = Swtpm()
    try:
        assert unlock("open", "--tpm2-device", other.tcti, path).returncode == 8
        r = unlock("recover", "--tpm2-device", other.tcti, path, input=key)
        assert r.returncode == 0, r.stderr
        assert "re-enrolled as keyslot 2" in r.stdout
        assert unlock("open", "--tpm2-device", other.tcti, path).returncode == 0
    finally:
        other.stop()
    # and the first TPM no longer opens it
    assert unlock("open", "--tpm2-device", swtpm.tcti, path).returncode == 8


def test_a_new_policy_from_the_command_line_replaces_the_binding(sealed, swtpm):
    path, key = sealed
    r = unlock("recover", "--tpm2-device", swtpm.tcti, "--tpm2-pcrs", "7", path, input=key)
    assert r.returncode == 0, r.stderr
    assert "token 1 (TPM2, PCR 7+11), keyslot 1: re-enrolled as keyslot 2" in r.stdout
    j = status(path)
    assert [t.get("pcrs") for t in j["tokens"] if t["type"] == "systemd-tpm2"] == [[7]]
    # PCR 11 no longer matters
    assert swtpm.tool("tpm2_pcrextend", "11:sha256=" + "ab" * 32).returncode == 0
    assert unlock("open", "--tpm2-device", swtpm.tcti, path).returncode == 0


def test_a_binding_is_added_to_a_volume_without_one(tmp_path, swtpm):
    path = blank(tmp_path)
    r = unlock("enroll", "--format", path)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert unlock("open", "--tpm2-device", swtpm.tcti, path).returncode == 11
    r = unlock("recover", "--tpm2-device", swtpm.tcti, "--tpm2-pcrs", "7", path, input=key)
    assert r.returncode == 0, r.stderr
    assert "added: keyslot 1 (TPM2)" in r.stdout
    assert unlock("open", "--tpm2-device", swtpm.tcti, path).returncode == 0


def test_what_systemd_cryptenroll_enrolled_is_re_enrolled(tmp_path, swtpm):
    path = blank(tmp_path)
    subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--key-file", "-", path], input=b"pw", check=True,
                   capture_output=True, timeout=60)
    env = dict(os.environ, PASSWORD="pw")
    r = subprocess.run(["systemd-cryptenroll", "--recovery-key", path], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    key = [w for w in (r.stdout + " " + r.stderr).split() if w.count("-") == 7 and len(w) == 71][0]
    r = subprocess.run(["systemd-cryptenroll", "--tpm2-device=" + swtpm.tcti, "--tpm2-pcrs=7", path], env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert swtpm.tool("tpm2_pcrextend", "7:sha256=" + "cd" * 32).returncode == 0
    r = unlock("recover", "--extra-keyslot", "0", "--tpm2-device", swtpm.tcti, path, input=key)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "keyslot 2: re-enrolled as keyslot 3" in r.stdout, r.stdout
    assert unlock("open", "--extra-keyslot", "0", "--tpm2-device", swtpm.tcti, path).returncode == 0
    # cryptsetup still opens the passphrase keyslot systemd's volume started with
    assert subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file", "-", path], input=b"pw",
                          capture_output=True, timeout=60).returncode == 0


@pytest.fixture
def snp_vm(tmp_path):
    dev = tmp_path / "sev-guest"
    dev.write_bytes(b"")
    env = dict(os.environ, LD_PRELOAD=SHIM, KWU_FAKE_SNP_PATH=str(dev), KWU_FAKE_SNP_LOG=str(tmp_path / "log"),
               KWU_FAKE_SNP_TCB=TCB, KWU_FAKE_SNP_CHIP="milan-chip-1", KWU_FAKE_SNP_MEASUREMENT="image-v1",
               KWU_FAKE_SNP_POLICY="0x30000")
    vol = blank(tmp_path)
    r = unlock("enroll", "--format", "--snp", "--snp-device", str(dev), "--snp-tcb", TCB, vol, env=env)
    assert r.returncode == 0, r.stderr
    return {"vol": vol, "key": r.stdout.strip(), "dev": str(dev), "env": env}


def test_a_new_image_measurement_is_re_enrolled(snp_vm):
    vm = snp_vm
    v2 = dict(vm["env"], KWU_FAKE_SNP_MEASUREMENT="image-v2")
    assert unlock("open", "--snp-device", vm["dev"], vm["vol"], env=v2).returncode == 9
    r = unlock("recover", "--snp-device", vm["dev"], vm["vol"], input=vm["key"], env=v2)
    assert r.returncode == 0, r.stderr
    assert "keyslot 1: re-enrolled as keyslot 2 (SEV-SNP, sealed to this VM)" in r.stdout, r.stdout
    assert unlock("open", "--snp-device", vm["dev"], vm["vol"], env=v2).returncode == 0
    # the old image's key no longer opens it
    assert unlock("open", "--snp-device", vm["dev"], vm["vol"], env=vm["env"]).returncode == 9


def test_a_newer_tcb_is_pinned_on_request(snp_vm):
    vm = snp_vm
    newer = "0300000000000009"
    up = dict(vm["env"], KWU_FAKE_SNP_TCB=newer)
    r = unlock("recover", "--snp-device", vm["dev"], "--snp-tcb", newer, vm["vol"], input=vm["key"], env=up)
    assert r.returncode == 0, r.stderr
    snp = [t for t in status(vm["vol"], env=up)["tokens"] if t["type"] == "keyward-snp"]
    assert [t["tcb_version"] for t in snp] == [newer]
    # firmware rolled back below the new pin: refused
    r = unlock("open", "--snp-device", vm["dev"], vm["vol"], env=vm["env"])
    assert r.returncode == 13, r.stderr
    assert unlock("open", "--snp-device", vm["dev"], vm["vol"], env=up).returncode == 0


def hdr_size(path):
    with open(path, "rb") as f:
        return int.from_bytes(f.read(16)[8:16], "big")


def test_an_interrupted_header_write_is_refused_by_open_and_repaired_by_recover(sealed, swtpm, tmp_path):
    """Killed between writing the two header copies: the primary is the new
    header, the secondary the old one.  open refuses what it cannot tell
    from tampering; recover (the key proves the operator) takes the newest
    valid copy, and rewrites both."""
    path, key = sealed
    old = open(path, "rb").read()
    assert swtpm.tool("tpm2_pcrextend", "11:sha256=" + "ab" * 32).returncode == 0
    assert unlock("recover", "--tpm2-device", swtpm.tcti, path, input=key).returncode == 0
    new = open(path, "rb").read()
    hs = hdr_size(path)
    with open(path, "r+b") as f:
        f.seek(hs)
        f.write(old[hs:2 * hs])            # the secondary copy as it was before
    r = unlock("open", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 5 and "the two header copies differ" in r.stderr, r.stderr
    assert unlock("recover", "--no-reenroll", path, input=key).returncode == 5
    r = unlock("recover", "--tpm2-device", swtpm.tcti, path, input=key)
    assert r.returncode == 0, r.stderr
    assert "both rewritten from the newest valid one" in r.stdout
    assert "keyslot 2: opens now, kept" in r.stdout
    now = open(path, "rb").read()
    assert now[:hs] == new[:hs]                                  # the primary as the update wrote it
    assert now[hs + 4096:2 * hs] == new[hs + 4096:2 * hs]        # the secondary's JSON from it
    assert unlock("open", "--tpm2-device", swtpm.tcti, path).returncode == 0


def test_a_torn_header_copy_is_rewritten_from_the_other(sealed, swtpm):
    path, key = sealed
    hs = hdr_size(path)
    with open(path, "r+b") as f:
        f.seek(4096 + 10)                  # inside the primary's JSON text
        b = f.read(1)
        f.seek(4096 + 10)
        f.write(bytes([b[0] ^ 0x20]))
    r = unlock("open", "--tpm2-device", swtpm.tcti, path)
    assert r.returncode == 5 and "fails its checksum" in r.stderr, r.stderr
    r = unlock("recover", "--tpm2-device", swtpm.tcti, path, input=key)
    assert r.returncode == 0, r.stderr
    assert "both rewritten" in r.stdout and "keyslot 1: opens now, kept" in r.stdout
    assert status(path)["header_check"] == "passed"
    assert unlock("open", "--tpm2-device", swtpm.tcti, path).returncode == 0
    # two copies with the same seqid and different contents are not an interrupted update
    with open(path, "r+b") as f:
        f.seek(hs + 4096 + 10)
        b = f.read(1)
        f.seek(hs + 4096 + 10)
        f.write(bytes([b[0] ^ 0x20]))
        f.seek(4096 + 10)
        f.write(bytes([b[0] ^ 0x20]))
    r = unlock("recover", "--tpm2-device", swtpm.tcti, path, input=key)
    assert r.returncode == 5 and "no newer valid copy" in r.stderr, r.stderr


def test_a_disk_changed_while_recovering_is_not_written(snp_vm):
    """Another writer changes the disk between the check and the write (the
    fake device sets a keyslot-area byte when the key is derived): nothing
    is written, and recover says why."""
    vm = snp_vm
    with open(vm["vol"], "rb") as f:
        f.seek(8 << 20)
        assert f.read(1) != b"\x5a"
    v2 = dict(vm["env"], KWU_FAKE_SNP_MEASUREMENT="image-v2", KWU_FAKE_SNP_TOUCH=vm["vol"] + ":%d" % (8 << 20))
    r = unlock("recover", "--snp-device", vm["dev"], vm["vol"], input=vm["key"], env=v2)
    assert r.returncode == 5, (r.stdout, r.stderr)
    assert "its header changed on the disk since it was checked: nothing written" in r.stderr
    assert "re-enrolled" not in r.stdout
    j = status(vm["vol"])
    assert [(t["type"], t["keyslots"]) for t in j["tokens"]] == [("systemd-recovery", [0]), ("keyward-snp", [1])]
