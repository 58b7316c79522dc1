#!/usr/bin/python3
"""Writes a fixed VHD (what Azure takes): the raw disk followed by the
512-byte footer of Microsoft's "Virtual Hard Disk Image Format
Specification".  The footer's timestamp is the build's SOURCE_DATE_EPOCH and
its unique id is derived from the disk's content hash, so that the VHD is
reproducible (qemu-img writes the time of the run and a random id).  Azure
requires the virtual size to be a whole number of MiB.

  vhd.py RAW OUT.vhd --epoch N --uuid HEX32"""

import argparse
import shutil
import struct
import sys

VHD_EPOCH = 946684800  # 2000-01-01T00:00:00Z


def chs(size: int) -> int:
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return ((cth // heads) << 16) | (heads << 8) | spt


def footer(size: int, epoch: int, uid: bytes) -> bytes:
    f = bytearray(512)
    struct.pack_into(">8sIIQI4sI4sQQIII16sB", f, 0, b"conectix", 2, 0x00010000, 0xFFFFFFFFFFFFFFFF,
                     max(epoch - VHD_EPOCH, 0) & 0xFFFFFFFF, b"kwrd", 0x00010000, b"Wi2k",
                     size, size, chs(size), 2, 0, uid, 0)
    struct.pack_into(">I", f, 64, ~sum(f) & 0xFFFFFFFF)
    return bytes(f)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("raw")
    ap.add_argument("out")
    ap.add_argument("--epoch", type=int, required=True)
    ap.add_argument("--uuid", required=True)
    a = ap.parse_args()
    uid = bytes.fromhex(a.uuid)
    with open(a.raw, "rb") as src:
        src.seek(0, 2)
        size = src.tell()
        if size % (1 << 20):
            sys.exit(f"vhd.py: {a.raw} is {size} bytes, not a whole number of MiB (Azure refuses it)")
        src.seek(0)
        with open(a.out, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.write(footer(size, a.epoch, uid))
    return 0


if __name__ == "__main__":
    sys.exit(main())
