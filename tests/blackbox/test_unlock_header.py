"""keyward-unlock's header checks on real LUKS2 headers (issue 12).

Volumes are plain files (no device-mapper here: nothing is activated),
formatted by Debian's cryptsetup 2.6.1 and enrolled by systemd 252's
systemd-cryptenroll (a recovery key, and a TPM2 token sealed by a real
software TPM).  Each tampered header below is one that cryptsetup itself
still loads -- the test shows it with `cryptsetup luksDump` -- and that
keyward-unlock refuses with exit status 5 before any keyslot is tried:
the null cipher in the data segment or in a keyslot area, another key size,
a keyslot or a token added after enrollment, and the two header copies
disagreeing.
"""
import json
import os
import shutil
import subprocess

import pytest

from conftest import BUILD
from luks import rewrite_header
from swtpm import swtpm  # noqa: F401 (the fixture)

UNLOCK = os.path.join(BUILD, "keyward-unlock")
PASS = b"initial passphrase"

pytestmark = pytest.mark.skipif(shutil.which("cryptsetup") is None, reason="cryptsetup-bin is missing (make deps)")


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=kw.pop("timeout", 60), **kw)


def unlock(*args):
    return run(UNLOCK, *args)


def cryptsetup(*args, input=None):
    r = subprocess.run(["cryptsetup", *args], input=input, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r


def luks_dump_json(path):
    return json.loads(cryptsetup("luksDump", "--dump-json-metadata", path).stdout)


@pytest.fixture
def volume(tmp_path):
    """A LUKS2 file as provisioning leaves one: the passphrase keyslot 0 of
    the format, a systemd recovery key (keyslot 1, token systemd-recovery)."""
    path = str(tmp_path / "data.img")
    with open(path, "wb") as f:
        f.truncate(20 << 20)
    cryptsetup("luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
               "--pbkdf-force-iterations", "1000", "--key-file", "-", path, input=PASS)
    r = run("systemd-cryptenroll", "--recovery-key", path, env=dict(os.environ, PASSWORD=PASS.decode()))
    assert r.returncode == 0, r.stderr
    return path


def refused(path, want, *extra):
    r = unlock("status", *extra, path)
    assert r.returncode == 5, (r.returncode, r.stdout, r.stderr)
    assert want in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, "one line: " + r.stderr
    assert r.stdout == ""


def test_status_of_an_enrolled_volume(volume):
    # the passphrase keyslot of the format has no token: refused unless named
    r = unlock("status", volume)
    assert r.returncode == 5 and "keyslot 0 is recorded by no token" in r.stderr, r.stderr
    r = unlock("status", "--extra-keyslot", "0", volume)
    assert r.returncode == 0, r.stderr
    assert "keyslot 1: pbkdf2-sha512" in r.stdout and "token 0: systemd-recovery, keyslot 1" in r.stdout, r.stdout
    assert "header check: passed" in r.stdout
    j = json.loads(unlock("status", "--json", "--extra-keyslot", "0", volume).stdout)
    meta = luks_dump_json(volume)
    assert j["header_check"] == "passed" and j["cipher"] == "aes-xts-plain64"
    assert [s["id"] for s in j["keyslots"]] == sorted(int(k) for k in meta["keyslots"])
    assert j["tokens"] == [{"id": 0, "type": "systemd-recovery", "keyslots": [1]}]
    assert j["uuid"] == cryptsetup("luksUUID", volume).stdout.decode().strip()


def test_status_shows_a_tpm2_token_systemd_enrolled(volume, swtpm):
    r = run("systemd-cryptenroll", "--tpm2-device=" + swtpm.tcti, "--tpm2-pcrs=7+11", volume,
            env=dict(os.environ, PASSWORD=PASS.decode()))
    assert r.returncode == 0, r.stderr
    j = json.loads(unlock("status", "--json", "--extra-keyslot", "0", volume).stdout)
    tpm = [t for t in j["tokens"] if t["type"] == "systemd-tpm2"]
    assert len(tpm) == 1 and tpm[0]["pcrs"] == [7, 11] and tpm[0]["bank"] == "sha256", j
    assert tpm[0]["primary_alg"] in ("ecc", "rsa") and tpm[0]["pin"] is False
    slot = tpm[0]["keyslots"][0]
    assert any(s["id"] == slot and s["token"] == tpm[0]["id"] for s in j["keyslots"])


def test_null_cipher_in_the_data_segment_refused(volume):
    def edit(m):
        m["segments"]["0"]["encryption"] = "cipher_null-ecb"
    rewrite_header(volume, edit)
    # Debian's cryptsetup 2.6.1 loads it: the guest would write in clear
    assert luks_dump_json(volume)["segments"]["0"]["encryption"] == "cipher_null-ecb"
    refused(volume, "null cipher at .segments.0.encryption", "--extra-keyslot", "0")


def test_null_cipher_in_a_keyslot_area_refused(volume):
    def edit(m):
        m["keyslots"]["1"]["area"]["encryption"] = "cipher_null-ecb"
    rewrite_header(volume, edit)
    assert luks_dump_json(volume)["keyslots"]["1"]["area"]["encryption"] == "cipher_null-ecb"
    refused(volume, "null cipher at .keyslots.1.area.encryption", "--extra-keyslot", "0")


def test_another_key_size_refused(volume):
    def edit(m):
        for k in m["keyslots"].values():
            k["key_size"] = 32
            k["area"]["key_size"] = 32
        m["segments"]["0"]["encryption"] = "aes-xts-plain"
    rewrite_header(volume, edit)
    luks_dump_json(volume)
    refused(volume, "segments.0.encryption is \"aes-xts-plain\"", "--extra-keyslot", "0")

    def edit_slots_only(m):
        m["segments"]["0"]["encryption"] = "aes-xts-plain64"
    rewrite_header(volume, edit_slots_only)
    refused(volume, "keyslots.0.key_size is out of range", "--extra-keyslot", "0")


def test_a_keyslot_added_after_enrollment_refused(volume):
    newkey = os.path.join(os.path.dirname(volume), "attacker.key")
    with open(newkey, "wb") as f:
        f.write(b"attacker")
    # whoever adds a keyslot must know a passphrase: the worst case, an insider
    cryptsetup("luksAddKey", "--batch-mode", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
               "--key-file", "-", volume, newkey, input=PASS)
    slots = sorted(int(k) for k in luks_dump_json(volume)["keyslots"])
    assert len(slots) == 3
    refused(volume, "keyslot %d is recorded by no token" % slots[-1], "--extra-keyslot", "0")


def test_an_unknown_token_refused(volume):
    cryptsetup("token", "import", volume, input=b'{"type":"attacker-token","keyslots":["1"]}')
    refused(volume, "of an unknown type \"attacker-token\"", "--extra-keyslot", "0")


def test_header_copies_disagreeing_refused(volume):
    # only the primary is rewritten (a valid checksum): cryptsetup would
    # take the copy with the higher seqid, or repair one from the other
    def edit(m):
        m["keyslots"]["1"]["priority"] = 2
    rewrite_header(volume, edit, copies=(0,))
    refused(volume, "the two header copies differ", "--extra-keyslot", "0")


def test_a_broken_checksum_refused(volume):
    with open(volume, "r+b") as f:
        f.seek(4096 + 10)
        b = f.read(1)
        f.seek(4096 + 10)
        f.write(bytes([b[0] ^ 0x20]))
    refused(volume, "primary header copy fails its checksum", "--extra-keyslot", "0")


def test_exit_status_for_device_usage_and_not_luks(tmp_path):
    r = unlock("status", str(tmp_path / "missing"))
    assert r.returncode == 3 and "device missing or unreadable" in r.stderr
    zeros = tmp_path / "zeros.img"
    zeros.write_bytes(b"\0" * 65536)
    r = unlock("status", str(zeros))
    assert r.returncode == 4 and "not a LUKS2 volume" in r.stderr
    assert unlock().returncode == 2
    assert unlock("frobnicate", str(zeros)).returncode == 2
    assert unlock("status").returncode == 2
    assert unlock("status", "--extra-keyslot", "32", str(zeros)).returncode == 2
    r = unlock("--help")
    assert r.returncode == 0 and "exit status" in r.stdout
