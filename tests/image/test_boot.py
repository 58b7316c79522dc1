"""The sealed image booted (issue 15): qemu TCG + OVMF + swtpm, a blank data
disk and a NoCloud config disk.  One machine, three boots, in order:

1. first boot: provisioning from the config disk; through the forwarded
   port a signed XKS encrypt/decrypt, an EKM wrap/unwrap over mutual TLS, a
   key made through the admin API, keyward-attest against policy.json; then
   the ACPI power button powers it off;
2. the same disks and TPM: the data volume opens through the TPM (the
   status says so), provisioning does not run again, what was made before
   still works;
3. a UKI whose command line differs by one byte, re-signed with another key:
   keyward-unlock refuses, the console says why, the VM powers itself off;
   the data volume is untouched and the recovery key shown at the first
   boot still opens it.

Each test needs the ones before it: a failure makes the later ones fail at
once with the reason (no skips).  Every wait is bounded (conftest.py)."""
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from urllib.parse import urlparse

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import clients
import disks
import document
import firstboot
import serial
import uki
from conftest import ARTEFACTS, BOOT_S, BUILD, FIRST_BOOT_S, POWEROFF_S, REFUSAL_S
from vm import Vm, free_port

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "blackbox"))
from swtpm import Swtpm  # noqa: E402  (a host TPM for systemd-measure sign)

PROVISION = os.path.join(BUILD, "keyward-provision")
ATTEST = os.environ.get("KEYWARD_ATTEST", os.path.join(BUILD, "keyward-attest"))
UNLOCK = os.path.join(BUILD, "keyward-unlock")
UKI_PATH = "/EFI/BOOT/BOOTX64.EFI"
MADE_KEY = "made-before-reboot"
# keyward-unlock's refusals of a boot its signed policy does not cover (docs/unlock.md)
REFUSAL = (r"keyward-unlock: .*(the PCR policy is signed by another key than the enrolled one"
           r"|no signature under the enrolled key|no signature in it for this boot)[^\n]*")


class Machine:
    """The machine and what each boot left for the next."""

    def __init__(self, image, record, base):
        self.image, self.record, self.base = image, record, base
        self.port = free_port()
        self.done = set()
        self.fb = None
        self.secrets = []

    def need(self, *steps):
        missing = [s for s in steps if s not in self.done]
        if missing:
            pytest.fail("cannot run: %s did not succeed (see the earlier failure)" % ", ".join(missing),
                        pytrace=False)

    def serial(self, n):
        return serial.SerialLog(os.path.join(self.base, "serial-%d.log" % n))

    def save_logs(self):
        """The consoles and qemu's output into the artefacts, secrets masked."""
        for name in sorted(os.listdir(self.base)):
            if re.match(r"(serial|qemu|swtpm)-\d+\.log$", name):
                with open(os.path.join(self.base, name), "rb") as f:
                    text = f.read().decode("utf-8", errors="replace")
                for s in self.secrets:
                    text = text.replace(s, "<secret>")
                with open(os.path.join(ARTEFACTS, name), "w") as f:
                    f.write(text)


@pytest.fixture(scope="module")
def m(image, record, tmp_path_factory):
    base = str(tmp_path_factory.mktemp("image-boot"))
    mach = Machine(image, record, base)
    with record.phase("setup: document, disks"):
        doc, pki = document.make(base)
        mach.pki = pki
        doc_path = os.path.join(base, "user-data")
        with open(doc_path, "w") as f:
            f.write(doc)
        document.check(PROVISION, doc_path)
        mach.boot_disk = disks.overlay(image.raw, os.path.join(base, "os.qcow2"))
        mach.data_disk = disks.blank(os.path.join(base, "data.raw"), 512)
        mach.config_disk = disks.config_disk(os.path.join(base, "cidata.img"), doc)
        mach.vm = Vm(base, mach.boot_disk, mach.data_disk, mach.config_disk, {mach.port: 443})
        record.facts.update({"image": image.raw, "version": image.version, "port": mach.port,
                             "bounds_s": {"first_boot": FIRST_BOOT_S, "boot": BOOT_S, "poweroff": POWEROFF_S,
                                          "refusal": REFUSAL_S}})
    yield mach
    mach.vm.kill()
    mach.save_logs()
    if os.environ.get("KEYWARD_IMAGE_KEEP"):
        print("image-boot: kept %s" % base)
    else:
        shutil.rmtree(base, ignore_errors=True)


def power_off(m, name):
    with m.record.phase(name):
        clean = m.vm.powerdown(POWEROFF_S)
        assert clean, ("the guest did not power off within %d s of the ACPI power button (stopped hard); "
                       "last console lines:\n%s" % (POWEROFF_S, m.serial(m.vm.boots).tail()))


def serving(m, log, timeout, fatal):
    """Waits until keywardd answers /healthz through the forward, while
    watching the console for a failure and the VM for an exit."""
    app = clients.Appliance(m.port, m.cacert, m.fb.admin_token)
    deadline = time.monotonic() + timeout
    while True:
        log.check(m.vm, fatal, "keywardd to answer")
        try:
            if app.get("/healthz").status_code == 200:
                return app
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise AssertionError("keywardd did not answer /healthz within %d s; last console lines:\n%s"
                                 % (timeout, log.tail()))
        time.sleep(3)


# ------------------------------------------------------------------ boot 1

def test_first_boot_provisions(m):
    log = m.serial(1)
    with m.record.phase("boot 1: start to provisioning output"):
        m.vm.start(log.path)
        got = log.wait_for(firstboot.BLOCK, FIRST_BOOT_S, vm=m.vm, what="provisioning output (==== Keyward: "
                           "provisioned ... ==== end ====)")
    m.fb = fb = firstboot.parse(got.group(0))
    m.secrets = fb.secrets()
    assert fb.evaluation, "evaluation mode is not said in the output"
    m.record.facts["first_boot"] = {"fingerprint": fb.fingerprint, "attest_line": fb.attest_line,
                                    "ak_sha256": fb.ak_sha256, "xks_path": fb.xks_path, "ekm_urls": fb.ekm_urls}
    rest = log.text().replace("\r", "").replace(got.group(0), "")
    for s in fb.secrets():
        assert s not in rest, "a secret of the provisioning output is on the console outside it"
    with m.record.phase("boot 1: TLS certificate pinned"):
        m.cacert = clients.pinned_cacert(m.port, fb.fingerprint, os.path.join(m.base, "served.pem"), timeout=120)
        m.app = clients.Appliance(m.port, m.cacert, fb.admin_token)
        h = m.app.wait_healthy(120)
        assert h.get("evaluation") is True, h
    m.done.add("boot1")


def test_xks_encrypt_decrypt(m):
    m.need("boot1")
    with m.record.phase("boot 1: XKS encrypt, decrypt (SigV4)"):
        x = clients.Xks(m.app, m.fb.xks_path, m.fb.access_key_id, m.fb.secret_access_key, document.XKS_REGION)
        m.aad = b"image boot test"
        m.plain = os.urandom(48)
        m.ct = x.encrypt(document.KEY, m.plain, m.aad)
        assert x.decrypt(document.KEY, m.ct, m.aad) == m.plain
    with m.record.phase("boot 1: admin API key, XKS encrypt with it"):
        r = m.app.api("POST", "/api/v1/keys", {"name": MADE_KEY, "type": "AES", "operations": ["encrypt", "decrypt"],
                                               "rules": {"xks": {"key_stores": [document.XKS_STORE]}}})
        assert r.status_code in (200, 201), r.text
        m.ct_made = x.encrypt(MADE_KEY, b"made before the reboot", m.aad)
    m.xks = x
    m.done.add("xks")


def test_ekm_wrap_unwrap_over_mtls(m):
    m.need("boot1")
    with m.record.phase("boot 1: EKM wrap, unwrap (mutual TLS)"):
        url = m.app.url + urlparse(m.fb.ekm_urls[document.KEY]).path
        e = clients.Ekm(url, m.cacert, m.pki["allowed"])
        m.dek = os.urandom(32)
        m.wrapped = e.wrap(m.dek)
        assert e.unwrap(m.wrapped) == m.dek
        r = e.wrap_without_certificate()
        assert r.status_code == 401, "EKM without a client certificate: %d %s" % (r.status_code, r.text)
    m.ekm = e
    m.done.add("ekm")


def test_attest_verify_against_the_image_policy(m):
    """keyward-attest with a fresh nonce (it makes its own), the image's
    signed policy.json, the AK the console printed, over TLS to the
    certificate whose fingerprint the console printed (--ca: that
    certificate, checked against the fingerprint before it is trusted)."""
    m.need("boot1")
    img = m.image
    for f in (img.policy, img.policy_key, img.policy + ".sig"):
        assert os.path.isfile(f), "%s is missing: the image build writes it (image/build.sh)" % f
    helptext = subprocess.run([ATTEST, "--help"], capture_output=True, text=True, timeout=30)
    assert "--policy-key" in helptext.stdout + helptext.stderr, (
        "this keyward-attest has no --policy-key: the image-policy verifier (issue 15, branch attest-image) "
        "is not in this build")
    saved = os.path.join(m.base, "evidence.json")
    argv = [ATTEST, "verify", m.app.url, "--policy", img.policy, "--policy-key", img.policy_key,
            "--ca", m.cacert, "--json", "--save", saved]
    if m.fb.ak_sha256:
        argv += ["--ak-sha256", m.fb.ak_sha256]
    with m.record.phase("boot 1: keyward-attest verify"):
        p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    with open(os.path.join(ARTEFACTS, "attest.json"), "w") as f:
        f.write(p.stdout)
    try:
        checks = {c["name"]: c["status"] for c in json.loads(p.stdout)["checks"]}
    except (ValueError, KeyError):
        raise AssertionError("keyward-attest verify: exit %d, no JSON\n%s\n%s" % (p.returncode, p.stdout[-2000:],
                                                                                 p.stderr))
    m.record.facts["attest_checks"] = checks
    failed = sorted(n for n, st in checks.items() if st == "fail")
    # without the AK pin only tpm.ak_pinned may fail; everything else must hold
    assert failed in ([], ["tpm.ak_pinned"]), "keyward-attest verify: failed %s\n%s" % (failed, p.stderr)
    assert m.fb.ak_sha256, ("the provisioning output printed no --ak-sha256 (the instance's AK pin) on the "
                            "attestation line: %r (every other check passed)" % m.fb.attest_line)
    assert p.returncode == 0, "keyward-attest verify: exit %d\n%s" % (p.returncode, p.stderr)
    for name in ("evidence.nonce", "evidence.tls_key", "policy.signature", "tpm.ak_pinned", "tpm.signature"):
        assert checks.get(name) == "pass", "%s: %s (all: %s)" % (name, checks.get(name), checks)
    # the session's key is the certificate's whose fingerprint the console showed
    shown = subprocess.run([ATTEST, "show", saved], capture_output=True, text=True, timeout=30).stdout
    spki = re.search(r"tls_spki_sha256\s+([0-9a-f]{64})", shown).group(1)
    with open(m.cacert, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    der = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki == hashlib.sha256(der).hexdigest(), "the attested TLS key is not the served certificate's"


def test_power_off_cleanly(m):
    m.need("boot1")
    power_off(m, "boot 1: ACPI power-off")
    m.done.add("off1")


# ------------------------------------------------------------------ boot 2

def test_second_boot_unlocks_through_the_tpm(m):
    m.need("boot1")
    if m.vm.proc is not None and not m.vm.exited():
        m.vm.kill()                 # after a failed power-off: the disks must be free
    log = m.serial(2)
    fatal = serial.FATAL + [r"==== Keyward: provisioned"]
    with m.record.phase("boot 2: start to serving"):
        m.vm.start(log.path)
        app = serving(m, log, BOOT_S, fatal)
    st = app.api("GET", "/api/v1/status")
    assert st.status_code == 200, st.text
    unlock = st.json().get("unlock", {})
    m.record.facts["boot2_unlock"] = unlock
    assert unlock.get("binding") == "tpm2", "the data volume was not opened through the TPM: %s" % unlock
    assert "==== Keyward: provisioned" not in log.text(), "provisioning ran again at the second boot"
    served = clients.server_certificate(m.port, 60)
    assert clients.fingerprint(ssl.PEM_cert_to_DER_cert(served)) == m.fb.fingerprint, "another certificate"
    with m.record.phase("boot 2: what boot 1 made still works"):
        if "xks" in m.done:
            assert m.xks.decrypt(document.KEY, m.ct, m.aad) == m.plain
            assert m.xks.decrypt(MADE_KEY, m.ct_made, m.aad) == b"made before the reboot"
        if "ekm" in m.done:
            assert m.ekm.unwrap(m.wrapped) == m.dek
        m.need("xks", "ekm")
    m.done.add("boot2")
    power_off(m, "boot 2: ACPI power-off")


# ------------------------------------------------------------------ boot 3

def phases_of(policy_path):
    """The boot phases policy.json gives PCR 11 for (signed the same way)."""
    try:
        with open(policy_path) as f:
            return list(json.load(f)["image"]["pcr11"])
    except (OSError, KeyError, ValueError):
        return ["", "sysinit", "sysinit:ready"]


def test_a_modified_uki_does_not_unlock(m):
    m.need("boot1")
    if m.vm.proc is not None and not m.vm.exited():
        m.vm.kill()
    work = os.path.join(m.base, "tamper")
    os.makedirs(work)
    with m.record.phase("boot 3: tampered disk made"):
        raw = disks.sparse_copy(m.image.raw, os.path.join(work, "tampered.raw"))
        off = disks.esp_offset(raw)
        orig = disks.esp_get(raw, off, UKI_PATH, os.path.join(work, "orig.efi"))
        tpm = Swtpm()
        try:
            info = uki.tamper(orig, os.path.join(work, "tampered.efi"), os.path.join(work, "uki"),
                              phases_of(m.image.policy), tpm.tcti)
        finally:
            tpm.stop()
        disks.esp_put(raw, off, os.path.join(work, "tampered.efi"), UKI_PATH)
        overlay = disks.overlay(raw, os.path.join(work, "os.qcow2"))
    m.record.facts["tampered_uki"] = {k: info[k] for k in ("cmdline_before", "cmdline_after", "pcr11_before",
                                                           "pcr11_after")}
    try:
        with open(m.image.policy) as f:
            expected = json.load(f)["image"]["pcr11"]
        m.record.facts["tampered_uki"]["policy_pcr11_matches_recalculation"] = expected == info["pcr11_before"]
    except (OSError, KeyError, ValueError):
        pass
    with open(m.data_disk, "rb") as f:
        header_before = hashlib.sha256(f.read(16 << 20)).hexdigest()
    log = m.serial(3)
    with m.record.phase("boot 3: start to power-off"):
        m.vm.start(log.path, boot_disk=overlay)
        powered_off = m.vm.wait_exit(REFUSAL_S)
        if not powered_off:
            m.vm.kill()
    text = log.text().replace("\r", "")
    refusal = re.search(REFUSAL, text)
    m.record.facts["boot3"] = {"powered_off": powered_off, "refusal": refusal.group(0) if refusal else None,
                               "unlock_failed": bool(re.search(r"Failed to start .*unlock", text))}
    assert "==== Keyward: provisioned" not in text, "provisioning ran at the tampered boot"
    assert refusal, ("the console does not say why the volume stays locked (expected a keyward-unlock line "
                     "from docs/unlock.md's refusals); last lines:\n%s" % log.tail())
    assert powered_off, "the tampered boot did not power off within %d s; last lines:\n%s" % (REFUSAL_S, log.tail())
    with open(m.data_disk, "rb") as f:
        assert hashlib.sha256(f.read(16 << 20)).hexdigest() == header_before, "the tampered boot wrote the volume"


def test_the_recovery_key_shown_opens_the_volume(m):
    """On the host (no device-mapper: checked, not activated)."""
    m.need("boot1")
    p = subprocess.run([UNLOCK, "recover", "--no-reenroll", m.data_disk], input=m.fb.recovery_key + "\n",
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, "keyward-unlock recover: exit %d\n%s%s" % (p.returncode, p.stdout, p.stderr)
