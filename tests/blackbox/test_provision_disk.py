"""keyward-provision find-disk (issue 13): which disk becomes the data disk,
and every disk that must never be formatted passed over with its reason.
The disks are loop devices named in a /sys/block tree of the test's own
(a real loop device has no "device" behind it, so the real tree would skip
it), with the attributes a virtio disk has."""
import json
import os
import subprocess

import pytest

from conftest import BUILD

PROV = os.path.join(BUILD, "keyward-provision")
MIB = 1 << 20


@pytest.fixture
def machine(tmp_path):
    """machine.disk(name, mib, ...) adds a disk; machine.run(*args) runs find-disk on them."""
    sysb, dev = tmp_path / "sys" / "block", tmp_path / "dev"
    sysb.mkdir(parents=True)
    dev.mkdir()
    loops = []

    class M:
        def disk(self, name, mib=64, removable=0, ro=0, partitions=(), holders=(), data=None, device=True):
            img = str(tmp_path / (name + ".img"))
            with open(img, "wb") as f:
                f.truncate(mib * MIB)
                for off, b in (data or {}).items():
                    f.seek(off if off >= 0 else mib * MIB + off)
                    f.write(b)
            loop = subprocess.run(["losetup", "-f", "--show"] + (["-r"] if ro else []) + [img], check=True,
                                  capture_output=True, text=True, timeout=30).stdout.strip()
            loops.append(loop)
            d = sysb / name
            d.mkdir()
            if device:
                (d / "device").mkdir()
            (d / "holders").mkdir()
            (d / "size").write_text("%d\n" % (mib * MIB // 512))
            (d / "removable").write_text("%d\n" % removable)
            (d / "ro").write_text("%d\n" % ro)
            for p in partitions:
                (d / p).mkdir()
                (d / p / "partition").write_text("1\n")
            for h in holders:
                (d / "holders" / h).mkdir()
            os.symlink(loop, str(dev / name))
            return str(dev / name)

        def run(self, *args):
            r = subprocess.run([PROV, "find-disk", "--sys-block", str(sysb), "--dev-dir", str(dev), *args],
                               capture_output=True, text=True, timeout=60)
            logs = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
            return r, {l["disk"]: l["why"] for l in logs if l["event"] == "provision_disk_passed_over"}

    yield M()
    for lo in loops:
        subprocess.run(["losetup", "-d", lo], capture_output=True, timeout=30)


def test_the_first_blank_disk_is_taken(machine):
    machine.disk("vda", partitions=["vda1", "vda2"])        # the boot disk
    vdb = machine.disk("vdb")
    machine.disk("vdc")
    r, passed = machine.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "%s %d\n" % (vdb, 64 * MIB)
    assert passed == {"vda": "has partitions"}


def test_every_disk_that_must_not_be_formatted_is_passed_over(machine):
    machine.disk("vda", partitions=["vda1"])
    machine.disk("vdb", mib=16)
    machine.disk("vdc", removable=1)
    machine.disk("vdd", ro=1)
    machine.disk("vde", holders=["dm-0"])
    machine.disk("vdf", data={1080: b"\x53\xef"})                 # an ext4 superblock
    machine.disk("vdg", data={-512: b"EFI PART"})                  # a GPT backup header at the end
    machine.disk("vdh", data={0: b"LUKS\xba\xbe"})                 # a LUKS header
    machine.disk("loop9", device=False)                            # not a disk
    r, passed = machine.run()
    assert r.returncode == 3, r.stderr
    assert passed == {
        "vda": "has partitions",
        "vdb": "smaller than 32 MiB",
        "vdc": "removable",
        "vdd": "read-only",
        "vde": "held by another device",
        "vdf": "holds data in its first MiB (a file system, a partition table, a volume?)",
        "vdg": "holds data in its last MiB (a file system, a partition table, a volume?)",
        "vdh": "holds data in its first MiB (a file system, a partition table, a volume?)",
    }
    assert "no empty data disk: vda: has partitions;" in r.stderr
    assert "(1 loop, RAM or device-mapper devices not considered)" in r.stderr
    assert r.stdout == ""


def test_a_disk_in_use_is_passed_over(machine, tmp_path):
    """Mounted: the kernel refuses the exclusive open (checked before the
    contents, so that is the reason given)."""
    path = machine.disk("vdb")
    subprocess.run(["mkfs.ext4", "-q", "-F", path], check=True, capture_output=True, timeout=60)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", path, str(mnt)], check=True, capture_output=True, timeout=30)
    try:
        r, passed = machine.run()
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=30)
    assert r.returncode == 3 and passed == {"vdb": "in use (mounted, or a volume is active on it)"}, r.stderr


def test_a_disk_given_is_checked_the_same_way(machine):
    good = machine.disk("vdb")
    data = machine.disk("vdc", data={1080: b"\x53\xef"})
    small = machine.disk("vdd", mib=16)
    r, _ = machine.run("--device", good)
    assert r.returncode == 0 and r.stdout.split() == [good, str(64 * MIB)], r.stderr
    r, _ = machine.run("--device", data)
    assert r.returncode == 6 and "holds data in its first MiB" in r.stderr
    r, _ = machine.run("--device", small)
    assert r.returncode == 7 and "smaller than 32 MiB" in r.stderr
    r, _ = machine.run("--device", "/nonexistent")
    assert r.returncode == 7 and "/nonexistent: cannot open it alone" in r.stderr
    r, _ = machine.run("--device", "/dev/null")
    assert r.returncode == 7 and "not a block device" in r.stderr
    r = subprocess.run([PROV, "find-disk", "--file", "x"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
