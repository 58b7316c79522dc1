#!/usr/bin/python3
"""Writes the image's policy.json: what a genuine instance of this image
measures, for `keyward-attest verify --policy` (docs/attestation.md) and for
anyone who rebuilds the image to compare with.

  policy.py --uki UKI --parts DIR --pcrsig F --roothash HEX --version V
            --epoch N --manifest F --pubkey PEM --out policy.json

PCR 11 comes from systemd-measure calculate over the UKI's sections (the
values systemd-stub 252 and systemd-pcrphase produce), for the phases the
appliance passes: "" (the stub's measurements), "sysinit" (where
keyward-unlock opens the data volume) and "sysinit:ready" (the running
system, which answers attestation).  PCR 4 is the UKI's Authenticode digest
and then the kernel's, extended after the UEFI boot manager's two events
(pe.expected_pcr4)."""

import argparse
import datetime
import hashlib
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pe as pehelp  # noqa: E402
from imgfile import sha256_file, write_json  # noqa: E402

MEASURE = "/lib/systemd/systemd-measure"
PHASES = ["", "sysinit", "sysinit:ready"]
SECTIONS = ["linux", "osrel", "cmdline", "initrd", "pcrpkey"]


def pcr11(parts: str, phase: str) -> str:
    cmd = [MEASURE, "calculate", "--bank=sha256", "--json=short", f"--phase={phase}"]
    cmd += [f"--{s}={os.path.join(parts, s)}" for s in SECTIONS]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    entries = out["sha256"]
    if len(entries) != 1 or entries[0]["pcr"] != 11:
        sys.exit(f"policy.py: systemd-measure calculate gave {out!r} for phase {phase!r}")
    return entries[0]["hash"]


def spki_sha256(pem_path: str) -> str:
    der = subprocess.run(["openssl", "pkey", "-pubin", "-in", pem_path, "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return hashlib.sha256(der).hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser()
    for opt in ["uki", "parts", "pcrsig", "roothash", "version", "manifest", "pubkey", "out"]:
        ap.add_argument("--" + opt, required=True)
    ap.add_argument("--epoch", type=int, required=True)
    a = ap.parse_args()
    with open(a.uki, "rb") as f:
        uki = f.read()
    auth = pehelp.authenticode_sha256(uki)
    with open(os.path.join(a.parts, "linux"), "rb") as f:
        kernel_auth = pehelp.authenticode_sha256(f.read())
    with open(os.path.join(a.parts, "cmdline"), encoding="ascii") as f:
        cmdline = f.read()
    with open(a.pcrsig, encoding="ascii") as f:
        pcrsig = json.load(f)
    p11 = {ph: pcr11(a.parts, ph) for ph in PHASES}
    created = datetime.datetime.fromtimestamp(a.epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    policy = {
        "keyward_policy": 1,
        "tofu": False,
        "comment": f"expected values of the Keyward {a.version} image, computed by its build (make image)",
        "source": "image build",
        "created": created,
        # the event log is root's on the appliance (custody does not read it), and
        # every PCR the policy names has its expected value here
        "require": {"snp": False, "tpm": True, "azure": False, "event_log": False},
        # PCR 12: nothing measured (all zeros).  systemd-stub measures into it a
        # command line the boot option passes, which replaces the UKI's when
        # Secure Boot is off, and credentials from the ESP: neither belongs here.
        "tpm": {"pcrs": {"4": pehelp.expected_pcr4(auth, kernel_auth), "11": p11["sysinit:ready"], "12": "00" * 32}},
        "image": {
            "version": a.version,
            "verity_root_hash": a.roothash,
            "cmdline": cmdline,
            "uki_sha256": hashlib.sha256(uki).hexdigest(),
            "uki_authenticode_sha256": auth,
            "kernel_authenticode_sha256": kernel_auth,
            "pcr11": p11,
            "pcr_public_key_sha256": spki_sha256(a.pubkey),
            "pcr_signature": pcrsig,
            "manifest_sha256": sha256_file(a.manifest),
        },
    }
    write_json(a.out, policy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
