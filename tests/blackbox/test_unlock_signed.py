"""keyward-unlock's signed PCR policy (issue 12), against swtpm, with real
signatures from systemd 252's systemd-measure: the keyslot opens on any
boot whose PCR 11 the image key signed, so an updated image signed by the
same key keeps unlocking and nothing else does.

A "boot" here: swtpm restarted on the same state (same seeds, PCRs at
zero), then PCR 11 extended as systemd-stub measures a UKI's .linux
section and the enter-initrd phase -- the value `systemd-measure calculate`
predicts, which the test checks before relying on it.
"""
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import BUILD
from swtpm import swtpm  # noqa: F401 (the fixture)

UNLOCK = os.path.join(BUILD, "keyward-unlock")
MEASURE = "/lib/systemd/systemd-measure"

pytestmark = pytest.mark.skipif(shutil.which("cryptsetup") is None or not os.access(MEASURE, os.X_OK),
                                reason="cryptsetup-bin or systemd-measure missing (make deps)")


def unlock(*args, input=None):
    return subprocess.run([UNLOCK, *args], input=input, capture_output=True, text=True, timeout=120)


def run(*args):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, (args, r.stderr)
    return r.stdout


def keypair(d, name):
    priv, pub = os.path.join(d, name + ".key"), os.path.join(d, name + ".pub")
    run("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", priv)
    run("openssl", "pkey", "-in", priv, "-pubout", "-out", pub)
    return priv, pub


def boot(tpm, kernel):
    """A new boot of the same TPM into a UKI whose .linux is kernel (bytes)."""
    tpm.reboot()
    for data in (b".linux\0", kernel, b"enter-initrd"):
        r = tpm.tool("tpm2_pcrextend", "11:sha256=" + hashlib.sha256(data).hexdigest())
        assert r.returncode == 0, r.stderr


def sign(d, tpm, kernel_file, priv, pub, name):
    """systemd-measure's signature file for that UKI's enter-initrd phase."""
    out = run(MEASURE, "sign", "--linux=" + kernel_file, "--phase=enter-initrd", "--bank=sha256",
              "--private-key=" + priv, "--public-key=" + pub, "--tpm2-device=" + tpm.tcti, "--json=short")
    path = os.path.join(d, name)
    with open(path, "w") as f:
        f.write(out)
    return path


@pytest.fixture
def image(tmp_path, swtpm):
    d = str(tmp_path)
    priv, pub = keypair(d, "image")
    k1 = os.path.join(d, "vmlinuz-1")
    with open(k1, "wb") as f:
        f.write(b"kernel one")
    boot(swtpm, b"kernel one")
    # the boot matches what systemd-measure predicts for that UKI
    calc = json.loads(run(MEASURE, "calculate", "--linux=" + k1, "--phase=enter-initrd", "--bank=sha256",
                          "--json=short"))
    now = run("tpm2_pcrread", "sha256:11", "-T", swtpm.tcti)
    assert calc["sha256"][0]["hash"].upper() in now, (calc, now)
    vol = os.path.join(d, "data.img")
    with open(vol, "wb") as f:
        f.truncate(40 << 20)
    r = unlock("enroll", "--format", "--tpm2-public-key", pub, "--tpm2-device", swtpm.tcti, vol)
    assert r.returncode == 0, r.stderr
    return {"dir": d, "priv": priv, "pub": pub, "k1": k1, "vol": vol, "recovery": r.stdout.strip()}


def open_(tpm, vol, sig, *extra):
    return unlock("open", "--tpm2-device", tpm.tcti, "--tpm2-signature", sig, *extra, vol)


def test_token_records_the_key_and_pcr_11(image):
    j = json.loads(unlock("status", "--json", image["vol"]).stdout)
    t = [t for t in j["tokens"] if t["type"] == "systemd-tpm2"][0]
    assert t["signed_policy_pcrs"] == [11] and t["pcrs"] == []
    meta = json.loads(run("cryptsetup", "luksDump", "--dump-json-metadata", image["vol"]))
    tok = [t for t in meta["tokens"].values() if t["type"] == "systemd-tpm2"][0]
    assert base64.b64decode(tok["tpm2_pubkey"]) == open(image["pub"], "rb").read()
    assert tok["tpm2_pubkey_pcrs"] == [11]


def test_opens_with_the_image_signature_and_after_a_signed_update(image, swtpm):
    d = image["dir"]
    sig1 = sign(d, swtpm, image["k1"], image["priv"], image["pub"], "sig1.json")
    r = open_(swtpm, image["vol"], sig1)
    assert r.returncode == 0, r.stderr
    # an update: another kernel, signed by the same image key
    k2 = os.path.join(d, "vmlinuz-2")
    with open(k2, "wb") as f:
        f.write(b"kernel two")
    boot(swtpm, b"kernel two")
    r = open_(swtpm, image["vol"], sig1)          # the old signature does not cover this boot
    assert r.returncode == 9 and "no signature under the enrolled key" in r.stderr, r.stderr
    sig2 = sign(d, swtpm, k2, image["priv"], image["pub"], "sig2.json")
    r = open_(swtpm, image["vol"], sig2)
    assert r.returncode == 0, r.stderr


def test_a_boot_signed_by_another_key_is_refused(image, swtpm):
    d = image["dir"]
    priv2, pub2 = keypair(d, "attacker")
    k3 = os.path.join(d, "vmlinuz-evil")
    with open(k3, "wb") as f:
        f.write(b"evil kernel")
    boot(swtpm, b"evil kernel")
    sig = sign(d, swtpm, k3, priv2, pub2, "evil.json")
    r = open_(swtpm, image["vol"], sig)
    assert r.returncode == 10 and "signed by another key" in r.stderr, r.stderr
    # the recovery key still opens it
    assert unlock("recover", "--no-reenroll", image["vol"], input=image["recovery"]).returncode == 0


def test_a_forged_signature_is_refused(image, swtpm):
    d = image["dir"]
    sig = json.loads(open(sign(d, swtpm, image["k1"], image["priv"], image["pub"], "s.json")).read())
    raw = bytearray(base64.b64decode(sig["sha256"][0]["sig"]))
    raw[10] ^= 1
    sig["sha256"][0]["sig"] = base64.b64encode(bytes(raw)).decode()
    forged = os.path.join(d, "forged.json")
    with open(forged, "w") as f:
        json.dump(sig, f)
    r = open_(swtpm, image["vol"], forged)
    assert r.returncode == 10 and "does not verify under the enrolled key" in r.stderr, r.stderr


def test_check_says_which_binding_would_open(image, swtpm):
    sig = sign(image["dir"], swtpm, image["k1"], image["priv"], image["pub"], "c.json")
    r = unlock("check", "--tpm2-device", swtpm.tcti, "--tpm2-signature", sig, image["vol"])
    assert r.returncode == 0, r.stderr
    assert "token 0 (recovery key), keyslot 0: opens only with the key (not tried)" in r.stdout
    assert "token 1 (TPM2, signed PCR 11), keyslot 1: would open now" in r.stdout
    boot(swtpm, b"another kernel")
    r = unlock("check", "--tpm2-device", swtpm.tcti, "--tpm2-signature", sig, image["vol"])
    assert r.returncode == 9, (r.stdout, r.stderr)
    assert "keyslot 1: would NOT open: not the measured boot this volume was sealed to: no signature under the " \
           "enrolled key for this boot (PCR 11 = " in r.stdout, r.stdout
    assert unlock("check", "--name", "x", image["vol"]).returncode == 2


def test_no_or_malformed_signature_file(image, swtpm):
    r = open_(swtpm, image["vol"], os.path.join(image["dir"], "missing.json"))
    assert r.returncode == 9 and "no signature file was found" in r.stderr, r.stderr
    bad = os.path.join(image["dir"], "bad.json")
    with open(bad, "w") as f:
        f.write('{"sha256": [{"pcrs": [11], "sig": 5}]}')
    r = open_(swtpm, image["vol"], bad)
    assert r.returncode != 0 and "not systemd-measure's format" in r.stderr, r.stderr


def test_open_what_systemd_cryptenroll_enrolled_with_a_public_key(image, swtpm, tmp_path):
    vol = str(tmp_path / "systemd.img")
    with open(vol, "wb") as f:
        f.truncate(40 << 20)
    subprocess.run(["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--key-file", "-", vol], input=b"pw", check=True,
                   capture_output=True, timeout=60)
    r = subprocess.run(["systemd-cryptenroll", "--tpm2-device=" + swtpm.tcti, "--tpm2-public-key=" + image["pub"],
                        "--tpm2-public-key-pcrs=11", "--tpm2-pcrs=7", vol],
                       env=dict(os.environ, PASSWORD="pw"), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    sig = sign(image["dir"], swtpm, image["k1"], image["priv"], image["pub"], "sigs.json")
    r = open_(swtpm, vol, sig, "--extra-keyslot", "0")
    assert r.returncode == 0, r.stderr
    assert re.search(r"token \d+ \(TPM2\) opens keyslot 1", r.stdout)


def test_recover_moves_the_binding_to_a_new_image_key(image, swtpm):
    """The image key is rotated (an intended change): recover seals to the new
    key; the old key's signatures no longer open, the new key's do, and a
    binding whose signature still verifies is kept as it is."""
    d = image["dir"]
    sig1 = sign(d, swtpm, image["k1"], image["priv"], image["pub"], "sig1.json")
    r = unlock("recover", "--tpm2-device", swtpm.tcti, "--tpm2-signature", sig1, image["vol"],
               input=image["recovery"])
    assert r.returncode == 0 and "signed PCR 11), keyslot 1: opens now, kept" in r.stdout, (r.stdout, r.stderr)
    priv2, pub2 = keypair(d, "image2")
    r = unlock("recover", "--tpm2-device", swtpm.tcti, "--tpm2-public-key", pub2, image["vol"],
               input=image["recovery"])
    assert r.returncode == 0, r.stderr
    assert "keyslot 1: re-enrolled as keyslot 2" in r.stdout, r.stdout
    meta = json.loads(run("cryptsetup", "luksDump", "--dump-json-metadata", image["vol"]))
    tok = [t for t in meta["tokens"].values() if t["type"] == "systemd-tpm2"]
    assert len(tok) == 1 and base64.b64decode(tok[0]["tpm2_pubkey"]) == open(pub2, "rb").read()
    r = open_(swtpm, image["vol"], sig1)
    assert r.returncode == 10 and "signed by another key" in r.stderr, r.stderr
    sig2 = sign(d, swtpm, image["k1"], priv2, pub2, "sig2.json")
    assert open_(swtpm, image["vol"], sig2).returncode == 0


def test_the_image_key_where_systemd_keeps_it_is_the_default(tmp_path, swtpm):
    """enroll with no TPM2 option seals to the image key found where
    systemd-cryptenroll looks for it (systemd-stub puts the UKI's .pcrpkey in
    /run/systemd): a signed PCR 11 policy; --no-tpm2 leaves it out."""
    dflt = "/run/systemd/tpm2-pcr-public-key.pem"
    if os.path.exists(dflt) or os.path.exists("/etc/systemd/tpm2-pcr-public-key.pem"):
        pytest.skip("this machine has an image key of its own")
    _, pub = keypair(str(tmp_path), "image")
    os.makedirs("/run/systemd", exist_ok=True)
    shutil.copy(pub, dflt)
    try:
        vol = str(tmp_path / "d.img")
        with open(vol, "wb") as f:
            f.truncate(40 << 20)
        r = unlock("enroll", "--format", "--tpm2-device", swtpm.tcti, vol)
        assert r.returncode == 0, r.stderr
        assert "sealed to PCR policies signed by the image key " + dflt in r.stderr
        meta = json.loads(run("cryptsetup", "luksDump", "--dump-json-metadata", vol))
        tok = [t for t in meta["tokens"].values() if t["type"] == "systemd-tpm2"]
        assert len(tok) == 1 and tok[0]["tpm2_pubkey_pcrs"] == [11] and tok[0]["tpm2-pcrs"] == []
        assert base64.b64decode(tok[0]["tpm2_pubkey"]) == open(pub, "rb").read()
        vol2 = str(tmp_path / "e.img")
        with open(vol2, "wb") as f:
            f.truncate(40 << 20)
        r = unlock("enroll", "--format", "--no-tpm2", vol2)
        assert r.returncode == 0, r.stderr
        assert "no measured binding enrolled" in r.stderr
        assert unlock("enroll", "--format", "--no-tpm2", "--tpm2-pcrs", "7", vol2).returncode == 2
    finally:
        os.unlink(dflt)
