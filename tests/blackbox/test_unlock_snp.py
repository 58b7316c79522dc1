"""keyward-unlock's SEV-SNP binding (issue 12) against a fake /dev/sev-guest:
no SEV-SNP guest can be launched here (Debian 12's qemu predates it), so an
LD_PRELOAD shim (tests/tools/fake_sev_guest.c) answers SNP_GET_DERIVED_KEY
as the secure processor would: a key that depends on the chip and exactly
the fields the request selects, refused when the pinned TCB is above the
platform's.  The shim logs each request, so the test sees what was asked.
"""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BUILD
from luks import rewrite_header

UNLOCK = os.path.join(BUILD, "keyward-unlock")
SHIM = os.path.join(BUILD, "libfakesevguest.so")
TCB = "0300000000000008"

pytestmark = pytest.mark.skipif(shutil.which("cryptsetup") is None, reason="cryptsetup-bin is missing (make deps)")


@pytest.fixture
def vm(tmp_path):
    """The guest as the shim presents it; vm["env"] is changed by the tests."""
    dev = tmp_path / "sev-guest"
    dev.write_bytes(b"")
    log = tmp_path / "requests.log"
    env = dict(os.environ, LD_PRELOAD=SHIM, KWU_FAKE_SNP_PATH=str(dev), KWU_FAKE_SNP_LOG=str(log),
               KWU_FAKE_SNP_TCB=TCB, KWU_FAKE_SNP_CHIP="milan-chip-1", KWU_FAKE_SNP_MEASUREMENT="image-v1",
               KWU_FAKE_SNP_POLICY="0x30000")
    return {"dev": str(dev), "log": log, "env": env, "dir": tmp_path}


def unlock(vm, *args, input=None, **env):
    e = dict(vm["env"], **env)
    return subprocess.run([UNLOCK, *args], input=input, capture_output=True, text=True, timeout=120, env=e)


@pytest.fixture
def enrolled(vm):
    vol = str(vm["dir"] / "data.img")
    with open(vol, "wb") as f:
        f.truncate(40 << 20)
    r = unlock(vm, "enroll", "--format", "--snp", "--snp-device", vm["dev"], "--snp-tcb", TCB, vol)
    assert r.returncode == 0, r.stderr
    assert "keyslot 1 through SEV-SNP" in r.stderr
    return vol, r.stdout.strip()


def test_enroll_asks_for_the_right_fields_and_records_them(vm, enrolled):
    vol, _ = enrolled
    req = vm["log"].read_text().splitlines()
    # VCEK root; policy (bit 0) + measurement (bit 3) + TCB version (bit 5); VMPL 0; the pinned TCB
    # the report first (the VMPL is not given), then the key
    assert req == ["report", "root=0 fields=0x29 vmpl=0 svn=0 tcb=%s" % TCB], req
    j = json.loads(unlock(vm, "status", "--json", vol).stdout)
    snp = [t for t in j["tokens"] if t["type"] == "keyward-snp"][0]
    assert snp == {"id": 1, "type": "keyward-snp", "keyslots": [1], "root_key": "vcek",
                   "fields": "policy+measurement+tcb_version", "tcb_version": TCB, "vmpl": 0}


def test_open_on_the_same_vm(vm, enrolled):
    vol, _ = enrolled
    r = unlock(vm, "open", "--snp-device", vm["dev"], vol)
    assert r.returncode == 0, r.stderr
    assert "token 1 (SEV-SNP) opens keyslot 1 (checked: nothing activated)" in r.stdout


def test_another_measurement_policy_or_chip_derives_another_key(vm, enrolled):
    vol, key = enrolled
    for change in ({"KWU_FAKE_SNP_MEASUREMENT": "image-v2"}, {"KWU_FAKE_SNP_POLICY": "0x70000"},   # debug allowed
                   {"KWU_FAKE_SNP_CHIP": "another-chip"}):
        r = unlock(vm, "open", "--snp-device", vm["dev"], vol, **change)
        assert r.returncode == 9, (change, r.stderr)
        assert "the key this VM derives does not open keyslot 1" in r.stderr
    # fields not selected do not matter: an image ID change keeps the key
    r = unlock(vm, "open", "--snp-device", vm["dev"], vol, KWU_FAKE_SNP_IMAGE_ID="other")
    assert r.returncode == 0, r.stderr
    assert unlock(vm, "recover", "--no-reenroll", vol, input=key).returncode == 0


def test_a_platform_below_the_pinned_tcb_is_refused(vm, enrolled):
    vol, _ = enrolled
    r = unlock(vm, "open", "--snp-device", vm["dev"], vol, KWU_FAKE_SNP_TCB="0300000000000007")
    assert r.returncode == 13 and "the platform's TCB is below the pinned one" in r.stderr, r.stderr
    # a newer platform still derives the pinned TCB's key
    r = unlock(vm, "open", "--snp-device", vm["dev"], vol, KWU_FAKE_SNP_TCB="0300000000000009")
    assert r.returncode == 0, r.stderr


def test_no_guest_device(vm, enrolled):
    vol, _ = enrolled
    r = unlock(vm, "open", "--snp-device", str(vm["dir"] / "none"), vol)
    assert r.returncode == 12 and "on Azure the paravisor hides it" in r.stderr, r.stderr
    fresh = str(vm["dir"] / "b.img")
    with open(fresh, "wb") as f:
        f.truncate(40 << 20)
    r = unlock(vm, "enroll", "--format", "--snp", "--snp-device", str(vm["dir"] / "none"), "--snp-tcb", TCB, fresh)
    assert r.returncode == 12 and r.stdout == ""
    # without --snp-tcb the TCB comes from the guest device's report: none here either
    assert unlock(vm, "enroll", "--format", "--snp", fresh).returncode == 12
    with open(fresh, "rb") as f:
        assert f.read(1 << 20) == b"\0" * (1 << 20)


def test_the_tcb_and_vmpl_come_from_the_report_when_not_given(vm):
    """enroll --snp alone pins the platform's committed TCB (not the reported
    one, which the host chooses and may lower) and binds the guest's VMPL."""
    vol = str(vm["dir"] / "r.img")
    with open(vol, "wb") as f:
        f.truncate(40 << 20)
    r = unlock(vm, "enroll", "--format", "--snp", "--snp-device", vm["dev"], vol,
               KWU_FAKE_SNP_VMPL="2", KWU_FAKE_SNP_REPORTED_TCB="0100000000000003")
    assert r.returncode == 0, r.stderr
    assert "pins TCB %s (the platform's committed TCB, from its report) and VMPL 2" % TCB in r.stderr, r.stderr
    assert vm["log"].read_text().splitlines() == ["report", "root=0 fields=0x29 vmpl=2 svn=0 tcb=%s" % TCB]
    snp = [t for t in json.loads(unlock(vm, "status", "--json", vol).stdout)["tokens"] if t["type"] == "keyward-snp"]
    assert snp[0]["tcb_version"] == TCB and snp[0]["vmpl"] == 2
    r = unlock(vm, "open", "--snp-device", vm["dev"], vol, KWU_FAKE_SNP_VMPL="2")
    assert r.returncode == 0, r.stderr


def test_a_weakened_token_is_refused(vm, enrolled):
    vol, _ = enrolled

    def edit(m):
        for t in m["tokens"].values():
            if t["type"] == "keyward-snp":
                t["fields"] = ["tcb_version", "measurement"]     # the policy dropped: a debug VM would derive it
    rewrite_header(vol, edit)
    r = unlock(vm, "open", "--snp-device", vm["dev"], vol)
    assert r.returncode == 5 and "binds less than the policy, the measurement and the TCB" in r.stderr, r.stderr
