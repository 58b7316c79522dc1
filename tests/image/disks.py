"""The VM's disks, all files in the test's directory: a qcow2 overlay over
the built image (which is never written), a blank data disk, and the NoCloud
config disk (ext4 labelled CIDATA holding user-data).  Also the image's ESP:
where it starts, as mtools addresses it (file@@offset)."""
import json
import os
import shutil
import subprocess

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def run(argv, timeout=120, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        raise AssertionError("%s: exit %d\n%s%s" % (" ".join(argv), p.returncode, p.stdout, p.stderr))
    return p.stdout


def overlay(base, path):
    """A qcow2 file whose reads fall through to `base` (raw) and whose writes
    stay in it."""
    run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", os.path.abspath(base), path])
    return path


def blank(path, mib):
    with open(path, "wb") as f:
        f.truncate(mib * 1024 * 1024)
    return path


def config_disk(path, user_data, mib=16):
    """ext4, label CIDATA, holding user-data (0600, root) and nothing else
    (mkfs.ext4 -d copies a directory in, no mount needed)."""
    src = path + ".d"
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    with open(os.path.join(src, "user-data"), "w") as f:
        f.write(user_data)
    os.chmod(os.path.join(src, "user-data"), 0o600)
    blank(path, mib)
    run(["mkfs.ext4", "-q", "-F", "-L", "CIDATA", "-d", src, path])
    shutil.rmtree(src)
    return path


def esp_offset(disk):
    """The byte offset of the ESP in a GPT disk image (raw)."""
    table = json.loads(run(["sfdisk", "--json", disk]))["partitiontable"]
    ssz = table.get("sectorsize", 512)
    esps = [p for p in table["partitions"] if p["type"].upper() == ESP_TYPE]
    assert len(esps) == 1, "expected one ESP in %s, found %d" % (disk, len(esps))
    return esps[0]["start"] * ssz


# mtools refuses a FAT whose size is not a whole number of its idea of tracks
MTOOLS_ENV = dict(os.environ, MTOOLS_SKIP_CHECK="1")


def esp_get(disk, offset, path, out):
    run(["mcopy", "-n", "-i", "%s@@%d" % (disk, offset), "::" + path, out], env=MTOOLS_ENV)
    return out


def esp_put(disk, offset, src, path):
    run(["mcopy", "-o", "-i", "%s@@%d" % (disk, offset), src, "::" + path], env=MTOOLS_ENV)


def sparse_copy(src, dst):
    run(["cp", "--sparse=always", src, dst], timeout=600)
    return dst
