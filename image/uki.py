#!/usr/bin/python3
"""Assembles a unified kernel image (UKI) the way ukify does, with objcopy on
systemd-stub (Debian 12 has no ukify): each section is added at the next
page-aligned address after the stub's image, in ukify's order, .linux last.
The result's timestamp and checksum are made deterministic.

  uki.py --stub linuxx64.efi.stub --linux vmlinuz --initrd initrd --cmdline F
         --osrel F --pcrpkey F [--pcrsig F] --epoch N --out uki.efi"""

import argparse
import os
import subprocess
import sys

import pefile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pe as pehelp  # noqa: E402

ORDER = ["osrel", "cmdline", "pcrpkey", "pcrsig", "initrd", "linux"]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stub", required=True)
    for s in ORDER:
        ap.add_argument("--" + s, required=s != "pcrsig")
    ap.add_argument("--epoch", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    stub = pefile.PE(a.stub, fast_load=True)
    align = max(stub.OPTIONAL_HEADER.SectionAlignment, 4096)
    end = max(s.VirtualAddress + max(s.Misc_VirtualSize, s.SizeOfRawData) for s in stub.sections)
    vma = stub.OPTIONAL_HEADER.ImageBase + ((end + align - 1) // align) * align
    cmd = ["objcopy"]
    for name in ORDER:
        path = getattr(a, name)
        if path is None:
            continue
        cmd += ["--add-section", f".{name}={path}", "--change-section-vma", f".{name}={vma:#x}"]
        size = os.path.getsize(path)
        vma += ((size + align - 1) // align) * align
    cmd += [a.stub, a.out]
    subprocess.run(cmd, check=True)
    pehelp.normalise(a.out, a.epoch)
    return 0


if __name__ == "__main__":
    sys.exit(main())
