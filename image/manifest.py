#!/usr/bin/python3
"""The image's manifest.json: what the build used (every package and version,
the mirror, SOURCE_DATE_EPOCH, the source commit and the hashes of the
Keyward files it installed) and what it made (the hash of each output).
`make image REPRODUCE=manifest.json` rebuilds from it and compares:

  manifest.py --packages TSV --version V --suite S --mirror URL --epoch N
              --src DIR --kernel KVER --out manifest.json
  manifest.py --compare OLD.json --out NEW.json     (exit 1 on any difference)"""

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from imgfile import sha256_file, write_json  # noqa: E402

OUTPUTS = ["keyward-{v}.raw", "keyward-{v}.vhd", "keyward-{v}-gcp.tar.gz", "keyward-{v}.efi",
           "image-key.pem", "parts/root.sqfs", "parts/root.verity", "parts/uki-unsigned.efi",
           "parts/linux", "parts/initrd", "parts/cmdline", "parts/esp.img"]
INPUTS = ["build/keywardd", "build/keywardctl", "build/keyward-unlock", "build/keyward-provision",
          "image/packages.list", "image/build.sh", "image/uki.py", "image/pe.py", "image/policy.py",
          "image/vhd.py", "image/manifest.py", "image/imgfile.py"]


# the build host's toolchain and the -dev packages our binaries are built
# against: the same binaries come only from the same ones
BUILD_HOST_PACKAGES = ["gcc-12", "binutils", "libc6-dev", "libssl-dev", "libcjson-dev", "libsqlcipher-dev",
                       "libp11-kit-dev", "libtss2-dev", "libseccomp-dev", "zlib1g-dev", "libargon2-dev", "libpq-dev",
                       "libcryptsetup-dev", "libcurl4-openssl-dev", "make", "squashfs-tools",
                       "cryptsetup-bin", "systemd", "systemd-boot-efi", "sbsigntool", "gdisk",
                       "dosfstools", "mtools", "python3-pefile", "debootstrap"]


def host_packages() -> dict:
    out = subprocess.run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\n"] + BUILD_HOST_PACKAGES,
                         capture_output=True, text=True).stdout
    have = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
    return {p: have.get(p, "") for p in BUILD_HOST_PACKAGES}


def tree_files(top: str):
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for n in sorted(filenames):
            yield os.path.join(dirpath, n)


def make(a) -> dict:
    pkgs = []
    with open(a.packages, encoding="utf-8") as f:
        for line in f.read().splitlines():
            name, version, arch = line.split("\t")
            pkgs.append({"name": name, "version": version, "arch": arch})
    commit = subprocess.run(["git", "-C", a.src, "rev-parse", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", a.src, "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip() != ""
    inputs = {p: sha256_file(os.path.join(a.src, p)) for p in INPUTS}
    for p in tree_files(os.path.join(a.src, "image", "rootfs")):
        inputs[os.path.relpath(p, a.src)] = sha256_file(p)
    outdir = os.path.dirname(os.path.abspath(a.out))
    outputs = {}
    for o in OUTPUTS:
        p = os.path.join(outdir, o.format(v=a.version))
        outputs[o.format(v=a.version)] = sha256_file(p)
    return {
        "keyward_image_manifest": 1,
        "version": a.version,
        "suite": a.suite,
        "mirror": a.mirror,
        "source_date_epoch": a.epoch,
        "source_commit": commit,
        "source_modified": dirty,
        "kernel": a.kernel,
        "build_host": host_packages(),
        "packages": pkgs,
        "inputs": inputs,
        "outputs": outputs,
    }


def compare(old_path: str, new_path: str) -> int:
    with open(old_path, encoding="utf-8") as f:
        old = json.load(f)
    with open(new_path, encoding="utf-8") as f:
        new = json.load(f)
    bad = 0
    for k in sorted(set(old.get("build_host", {})) | set(new.get("build_host", {}))):
        if old.get("build_host", {}).get(k) != new.get("build_host", {}).get(k):
            print(f"image: build host {k}: manifest {old['build_host'].get(k)}, here {new['build_host'].get(k)}"
                  " (our binaries may differ)", file=sys.stderr)
    for section in ["packages", "inputs", "outputs"]:
        o, n = old.get(section), new.get(section)
        if section == "packages":
            o = {p["name"]: p["version"] for p in o}
            n = {p["name"]: p["version"] for p in n}
        for k in sorted(set(o) | set(n)):
            if o.get(k) != n.get(k):
                print(f"image: {section} {k}: manifest {o.get(k)}, rebuild {n.get(k)}", file=sys.stderr)
                bad = 1
    for k in ["version", "suite", "source_date_epoch", "kernel"]:
        if old.get(k) != new.get(k):
            print(f"image: {k}: manifest {old.get(k)}, rebuild {new.get(k)}", file=sys.stderr)
            bad = 1
    old_policy = os.path.join(os.path.dirname(os.path.abspath(old_path)), "policy.json")
    new_policy = os.path.join(os.path.dirname(os.path.abspath(new_path)), "policy.json")
    if os.path.exists(old_policy) and os.path.abspath(old_policy) != os.path.abspath(new_policy):
        if sha256_file(old_policy) != sha256_file(new_policy):
            print(f"image: policy.json differs from {old_policy}", file=sys.stderr)
            bad = 1
    return bad


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--compare")
    ap.add_argument("--out", required=True)
    for opt in ["packages", "version", "suite", "mirror", "src", "kernel"]:
        ap.add_argument("--" + opt)
    ap.add_argument("--epoch", type=int)
    a = ap.parse_args()
    if a.compare:
        return compare(a.compare, a.out)
    m = make(a)
    write_json(a.out, m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
