"""A tampered UKI, as an attacker with the disk but not the image key would
make it: its kernel command line changed by one byte, its PCR signature
(.pcrsig) and public key (.pcrpkey) replaced by systemd-measure's over the new
sections under a throwaway key, Secure Boot-signed with a throwaway db key.
The stub measures the new sections into PCR 11, so the volume's signed policy
(the image key's) must refuse this boot."""
import json
import os
import re
import subprocess

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from disks import run

MEASURE = os.environ.get("KEYWARD_SYSTEMD_MEASURE", "/usr/lib/systemd/systemd-measure")
# what systemd-measure takes, by section (252: no .uname, .sbat is not measured)
MEASURED = {".linux": "linux", ".osrel": "osrel", ".cmdline": "cmdline", ".initrd": "initrd",
            ".splash": "splash", ".dtb": "dtb", ".pcrpkey": "pcrpkey"}


def sections(efi):
    """{name: (size, vma)} of a PE file, as objdump sees it."""
    out = run(["objdump", "-h", efi])
    found = {}
    for m in re.finditer(r"^\s*\d+\s+(\.\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s", out, re.MULTILINE):
        found[m.group(1)] = (int(m.group(2), 16), int(m.group(3), 16))
    return found


def one_byte_changed(cmdline):
    """The command line with one byte changed, still a bootable one: panic=30
    becomes panic=31 (or, lacking it, console=tty0 becomes console=tty1)."""
    for old, new in ((b"panic=30", b"panic=31"), (b"console=tty0", b"console=tty1")):
        if old in cmdline:
            out = cmdline.replace(old, new, 1)
            break
    else:
        raise AssertionError("no byte of the command line known to be safe to change: %r" % cmdline)
    assert len(out) == len(cmdline) and sum(a != b for a, b in zip(out, cmdline)) == 1
    return out


def throwaway_rsa(directory, name):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    priv = os.path.join(directory, name + ".key")
    pub = os.path.join(directory, name + ".pub.pem")
    with open(priv, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    with open(pub, "wb") as f:
        f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def measure_args(parts):
    return ["--%s=%s" % (MEASURED[s], p) for s, p in sorted(parts.items()) if s in MEASURED]


def phase_args(phases):
    return ["--phase=" + (p if p else ":") for p in phases]


def calculate(parts, phases):
    """systemd-measure calculate: {phase: sha256 hex} of PCR 11."""
    out = run([MEASURE, "calculate", "--bank=sha256", "--json=short"] + measure_args(parts) + phase_args(phases))
    got = {}
    for e in json.loads(out)["sha256"]:
        got[e.get("phase", "")] = e["hash"]
    return got


def tamper(efi_in, efi_out, workdir, phases, tcti):
    """Writes the tampered UKI; returns a dict saying what changed.
    systemd-measure sign (252) computes the policy in a TPM trial session:
    tcti names one (a swtpm of the host, not the VM's)."""
    os.makedirs(workdir, exist_ok=True)
    plain = os.path.join(workdir, "plain.efi")
    # the Authenticode signature, if any, off (sbattach edits in place: a copy;
    # it fails on an unsigned file, which is then what we want)
    run(["cp", efi_in, plain])
    subprocess.run(["sbattach", "--remove", plain], capture_output=True, timeout=60)
    secs = sections(plain)
    parts = {}
    for s in MEASURED:
        if s in secs:
            parts[s] = os.path.join(workdir, "orig" + s)
            run(["objcopy", "-O", "binary", "--only-section", s, plain, parts[s]])
    for needed in (".linux", ".cmdline", ".osrel"):
        assert needed in parts, "the UKI has no %s section: %s" % (needed, sorted(secs))
    with open(parts[".cmdline"], "rb") as f:
        cmdline = f.read()
    new_cmdline = one_byte_changed(cmdline)
    new = dict(parts)
    new[".cmdline"] = os.path.join(workdir, "new.cmdline")
    with open(new[".cmdline"], "wb") as f:
        f.write(new_cmdline)
    priv, pub = throwaway_rsa(workdir, "other-image-key")
    new[".pcrpkey"] = pub
    sig = run([MEASURE, "sign", "--tpm2-device=" + tcti, "--bank=sha256", "--json=short", "--private-key=" + priv, "--public-key=" + pub]
              + measure_args(new) + phase_args(phases))
    new_sig = os.path.join(workdir, "new.pcrsig")
    with open(new_sig, "w") as f:
        f.write(sig.strip())
    # the command line keeps its size: replaced in place; the signature and
    # the key are removed and added again after the last section
    step = os.path.join(workdir, "step.efi")
    run(["objcopy", "--update-section", ".cmdline=" + new[".cmdline"],
         "--remove-section", ".pcrsig", "--remove-section", ".pcrpkey", plain, step])
    end = max(v + n for n, v in sections(step).values())
    at = (end + 0xfff) & ~0xfff
    pk_size = os.path.getsize(pub)
    sig_at = (at + pk_size + 0xfff) & ~0xfff
    unsigned = os.path.join(workdir, "tampered-unsigned.efi")
    run(["objcopy", "--add-section", ".pcrpkey=" + pub, "--change-section-vma", ".pcrpkey=0x%x" % at,
         "--set-section-flags", ".pcrpkey=data,readonly",
         "--add-section", ".pcrsig=" + new_sig, "--change-section-vma", ".pcrsig=0x%x" % sig_at,
         "--set-section-flags", ".pcrsig=data,readonly", step, unsigned])
    # Secure Boot: signed too, with a db key that is not the image's
    dbkey, _ = throwaway_rsa(workdir, "other-db")
    crt = os.path.join(workdir, "other-db.crt")
    run(["openssl", "req", "-new", "-x509", "-key", dbkey, "-subj", "/CN=not the Keyward db key/", "-days", "2",
         "-out", crt])
    run(["sbsign", "--key", dbkey, "--cert", crt, "--output", efi_out, unsigned])
    # what the stub will measure now, read back from the file written
    back = {}
    for s in MEASURED:
        if s in sections(efi_out):
            back[s] = os.path.join(workdir, "back" + s)
            run(["objcopy", "-O", "binary", "--only-section", s, efi_out, back[s]])
    with open(back[".cmdline"], "rb") as f:
        assert f.read() == new_cmdline, "the tampered UKI's .cmdline is not the new one"
    return {"cmdline_before": cmdline.decode(errors="replace"), "cmdline_after": new_cmdline.decode(errors="replace"),
            "pcr11_before": calculate(parts, phases), "pcr11_after": calculate(back, phases),
            "sections_before": {k: v[0] for k, v in secs.items()},
            "sections_after": {k: v[0] for k, v in sections(efi_out).items()}}
