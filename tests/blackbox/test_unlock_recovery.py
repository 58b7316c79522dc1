"""keyward-unlock enroll --format and recover (issue 12): the data volume
formatted with a recovery key in systemd's format, and opened with it,
on plain files (activation-free: no device-mapper here).

Interoperability both ways: cryptsetup and systemd-cryptenroll accept the
key keyward-unlock printed (systemd-cryptenroll then adds a TPM2 token
sealed by swtpm), and keyward-unlock opens a volume with a recovery key
that systemd-cryptenroll generated.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD
from luks import rewrite_header
from swtpm import swtpm  # noqa: F401 (the fixture)

UNLOCK = os.path.join(BUILD, "keyward-unlock")
KEY_RE = re.compile(r"^([cbdefghijklnrtuv]{8}-){7}[cbdefghijklnrtuv]{8}$")

pytestmark = pytest.mark.skipif(shutil.which("cryptsetup") is None, reason="cryptsetup-bin is missing (make deps)")


def unlock(*args, input=None):
    return subprocess.run([UNLOCK, *args], input=input, capture_output=True, text=True, timeout=120)


def blank(tmp_path, mib=40, name="data.img"):
    p = str(tmp_path / name)
    with open(p, "wb") as f:
        f.truncate(mib << 20)
    return p


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def cryptsetup_opens(path, key):
    return subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file", "-", path],
                          input=key.encode(), capture_output=True, timeout=60).returncode == 0


@pytest.fixture
def enrolled(tmp_path):
    path = blank(tmp_path)
    r = unlock("enroll", "--format", path)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert r.stdout.count("\n") == 1 and KEY_RE.match(key), r.stdout
    assert "shown once" in r.stderr and key not in r.stderr
    assert "warning: no measured binding enrolled" in r.stderr
    return path, key


def test_enroll_formats_with_the_expected_shape(enrolled):
    path, key = enrolled
    j = json.loads(unlock("status", "--json", path).stdout)
    assert j["header_check"] == "passed" and j["label"] == "keyward-data"
    assert j["cipher"] == "aes-xts-plain64" and j["sector_size"] == 4096
    assert j["tokens"] == [{"id": 0, "type": "systemd-recovery", "keyslots": [0]}]
    assert j["keyslots"] == [{"id": 0, "kdf": "pbkdf2", "kdf_hash": "sha512", "kdf_cost": 1000, "token": 0}]
    meta = json.loads(subprocess.run(["cryptsetup", "luksDump", "--dump-json-metadata", path],
                                     capture_output=True, text=True, check=True).stdout)
    assert meta["keyslots"]["0"]["key_size"] == 64
    # the key is not on the disk
    with open(path, "rb") as f:
        assert key.encode() not in f.read()


def test_recover_opens_with_the_key_however_typed(enrolled):
    path, key = enrolled
    for typed in (key + "\n", key.upper(), key.replace("-", ""), key.replace("-", " ") + "\n"):
        r = unlock("recover", path, input=typed)
        assert r.returncode == 0, r.stderr
        assert "opens keyslot 0 (checked: nothing activated)" in r.stdout
        assert "the volume has no measured binding to re-enroll" in r.stdout


def test_check_and_open_without_a_measured_binding(enrolled):
    path, _ = enrolled
    r = unlock("check", path)
    assert r.returncode == 11 and "no measured binding" in r.stderr, r.stderr
    assert "token 0 (recovery key), keyslot 0: opens only with the key (not tried)" in r.stdout
    assert unlock("open", path).returncode == 11


def test_recover_refuses_a_wrong_or_malformed_key(enrolled):
    path, key = enrolled
    other = ("c" * 8 + "-") * 7 + "c" * 8
    r = unlock("recover", path, input=other)
    assert r.returncode == 7 and "wrong key: the recovery key does not open this volume" in r.stderr, r.stderr
    r = unlock("recover", path, input="not a key")
    assert r.returncode == 2 and "64 letters" in r.stderr
    assert key not in r.stderr


def test_recover_refuses_a_tampered_header_before_trying_the_key(enrolled):
    path, key = enrolled
    def edit(m):
        m["keyslots"]["0"]["area"]["encryption"] = "cipher_null-ecb"
    rewrite_header(path, edit)
    r = unlock("recover", path, input=key)
    assert r.returncode == 5 and "null cipher" in r.stderr, r.stderr


def test_systemd_and_cryptsetup_take_our_recovery_key(enrolled, swtpm):
    path, key = enrolled
    assert cryptsetup_opens(path, key)
    assert not cryptsetup_opens(path, key[:-1] + ("c" if key[-1] != "c" else "b"))
    # systemd-cryptenroll unlocks with it to add a TPM2 keyslot (and writes its token)
    r = subprocess.run(["systemd-cryptenroll", "--tpm2-device=" + swtpm.tcti, "--tpm2-pcrs=7", path],
                       env=dict(os.environ, PASSWORD=key), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    j = json.loads(unlock("status", "--json", path).stdout)   # every keyslot recorded: no option needed
    assert [t["type"] for t in j["tokens"]] == ["systemd-recovery", "systemd-tpm2"], j


def test_recover_opens_with_a_key_systemd_generated(tmp_path):
    path = blank(tmp_path)
    subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--key-file", "-", path], input=b"pw", check=True,
                   capture_output=True, timeout=60)
    r = subprocess.run(["systemd-cryptenroll", "--recovery-key", path], env=dict(os.environ, PASSWORD="pw"),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    keys = [w for w in r.stdout.split() + r.stderr.split() if KEY_RE.match(w)]
    assert len(keys) == 1, (r.stdout, r.stderr)
    r = unlock("recover", "--extra-keyslot", "0", path, input=keys[0] + "\n")
    assert r.returncode == 0 and "opens keyslot 1" in r.stdout, (r.stdout, r.stderr)


def test_enroll_never_formats_what_is_not_blank(tmp_path, enrolled):
    path, _ = enrolled
    before = sha(path)
    r = unlock("enroll", "--format", path)
    assert r.returncode == 6 and "not blank" in r.stderr, r.stderr
    assert sha(path) == before
    data = blank(tmp_path, name="fs.img")
    with open(data, "r+b") as f:
        f.seek(1024 + 56)
        f.write(b"\x53\xef")      # an ext4 superblock magic
    before = sha(data)
    assert unlock("enroll", "--format", data).returncode == 6
    assert sha(data) == before
    small = blank(tmp_path, mib=8, name="small.img")
    r = unlock("enroll", "--format", small)
    assert r.returncode == 3 and "smaller than 32 MiB" in r.stderr, r.stderr
    assert unlock("enroll", blank(tmp_path, name="b.img")).returncode == 2
    assert unlock("recover", "--name", "a/b", path, input="x").returncode == 2
