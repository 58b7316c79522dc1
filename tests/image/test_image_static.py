"""Static checks of a built appliance image (issue 15, `make image-test`).

The image directory is KEYWARD_IMAGE_DIR (default build/image), as `make image`
leaves it (docs/deploy.md lists them): keyward-<V>.raw, .vhd, -gcp.tar.gz, .efi,
policy.json(.sig), image-key.pem, manifest.json and parts/.  Nothing is
mounted and nothing needs device-mapper: the partitions are cut out of the
.raw with dd, the GPT is parsed here, the ESP is read with mtools, the root
with unsquashfs, dm-verity is checked with `veritysetup verify` on plain
files, and every expected measurement is computed again here from the UKI in
the ESP, independently of image/*.py:

- PCR 11 as systemd-stub 252 measures it (src/boot/efi/stub.c: for each
  section of unified_sections[] in src/fundamental/tpm-pcr.c, in that order,
  except .pcrsig (unified_section_measure()), when present with a non-zero
  VirtualSize: extend SHA-256 of the name with its NUL, then SHA-256 of the
  section's VirtualSize bytes as loaded), then one extend of SHA-256(word) per
  word of the phase path (systemd-pcrphase; systemd-measure's measure_phase()
  splits the path at ':'), and the same once more with
  `systemd-measure calculate` on the sections cut out of the UKI;
- PCR 4 as OVMF (edk2 Tcg2Dxe OnReadyToBoot, then DxeTpm2MeasureBootLib)
  measures a first boot option: EV_EFI_ACTION "Calling EFI Application from
  Boot Option" (SHA-256 of the string, no NUL), EV_SEPARATOR (SHA-256 of four
  zero bytes), EV_EFI_BOOT_SERVICES_APPLICATION (the Authenticode digest of
  the file started, BOOTX64.EFI), then another with the kernel's digest:
  systemd-stub 252 starts the embedded kernel with the firmware's LoadImage()
  (linux.c, load_trusted_image), which measures it (the boot test saw PCR 4
  differ without it);
- the Authenticode digest, per Microsoft's "Windows Authenticode Portable
  Executable Signature Format" (and edk2's Tcg2MeasurePeImage): the headers
  without the CheckSum field and the Certificate Table directory entry, the
  sections' raw data sorted by file offset, then the bytes after the last
  section up to the file size less the certificate table's size.

An image that is missing fails every test with one message saying how to
make one: nothing is skipped.
"""
import base64
import datetime
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile
import uuid
import zlib

import pefile
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

SRC = os.environ.get("KEYWARD_SRCDIR",
                     os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
IMAGE_DIR = os.path.abspath(os.environ.get("KEYWARD_IMAGE_DIR") or os.path.join(SRC, "build", "image"))
MIB = 1 << 20
SECTOR = 512

ESP_TYPE = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
ROOT_TYPE = "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"      # root, x86-64 (Discoverable Partitions)
VERITY_TYPE = "2c7357ed-ebd2-46d9-aec1-23d437ec2bf5"    # root-verity, x86-64
LAYOUT = [("esp", ESP_TYPE), ("root", ROOT_TYPE), ("root-verity", VERITY_TYPE)]

# systemd 252 src/fundamental/tpm-pcr.c unified_sections[], less .pcrsig
MEASURED_SECTIONS = [".linux", ".osrel", ".cmdline", ".initrd", ".splash", ".dtb", ".pcrpkey"]
UKI_SECTIONS = [".osrel", ".cmdline", ".linux", ".initrd", ".pcrsig", ".pcrpkey"]
# parts/ as image/build.sh writes it, and the names the contract gives
PART_NAMES = {".linux": ["linux", "vmlinuz"], ".initrd": ["initrd", "initrd.img"],
              ".cmdline": ["cmdline", "cmdline.txt"], ".osrel": ["osrel", "os-release"],
              ".pcrpkey": ["pcrpkey"], ".pcrsig": ["pcrsig"]}
NOLOGIN = {"/usr/sbin/nologin", "/sbin/nologin", "/bin/false", "/usr/bin/false"}
GETTY_UNIT = re.compile(r"^(getty|serial-getty|container-getty|autovt)@.*|^console-getty\.service$|^getty-static\.service$")
COMPILER = re.compile(r"^(cc|c\+\+|cpp|gcc|g\+\+|clang|clang\+\+|tcc|cc1|cc1plus|as|ld|ld\.bfd|ld\.gold)(-[0-9.]+)?$"
                      r"|^x86_64-linux-gnu-(gcc|g\+\+|cpp|as|ld)(-[0-9.]+)?$")
BIN_DIRS = ["/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin", "/usr/local/sbin"]
PEM_PRIVATE_BLOCK = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[A-Za-z-]+:[^\n]*\n|\r?\n)*"
                               rb"[A-Za-z0-9+/=\r\n]{40,}-----END [A-Z0-9 ]*PRIVATE KEY-----")
# private keys that are public knowledge: the fixed keys of GnuTLS's own
# self-tests, compiled into the library from its public source (libgnutls30
# comes with apt and librtmp1, a dependency of libcurl4)
PUBLIC_TEST_KEYS = re.compile(r"^/usr/lib/x86_64-linux-gnu/libgnutls\.so\.30(\.[0-9.]+)?$")
NOT_SHIPPED_PACKAGES = re.compile(r"^(openssh-server|openssh-sftp-server|dropbear.*|telnetd|gcc(-\d+)?|g\+\+(-\d+)?|"
                                  r"cpp(-\d+)?|clang(-\d+)?|tcc|build-essential|binutils)$")


# ---- helpers ----------------------------------------------------------------

def run(cmd, ok=True, **kw):
    p = subprocess.run(cmd, capture_output=True, **kw)
    if ok and p.returncode != 0:
        err = p.stderr.decode(errors="replace") if isinstance(p.stderr, bytes) else p.stderr
        pytest.fail(f"{' '.join(cmd)}: exit {p.returncode}: {err.strip()[-2000:]}")
    return p


def sha256_file(path, start=0, length=None):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left is None or left > 0:
            chunk = f.read(MIB if left is None else min(MIB, left))
            if not chunk:
                break
            h.update(chunk)
            if left is not None:
                left -= len(chunk)
    return h.hexdigest()


def as_uuid(hex32):
    return str(uuid.UUID(hex32))


def extend(pcr, digest):
    return hashlib.sha256(pcr + digest).digest()


def sha(data):
    return hashlib.sha256(data).digest()


def read_at(path, offset, size):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(size)


# ---- the image --------------------------------------------------------------

def makefile_version():
    with open(os.path.join(SRC, "Makefile"), encoding="utf-8") as f:
        m = re.search(r"^VERSION\s*:?=\s*(\S+)", f.read(), re.M)
    return m.group(1) if m else None


VERSION = os.environ.get("KEYWARD_VERSION") or makefile_version()


class Image:
    def __init__(self, d, v):
        self.dir = d
        self.raw = os.path.join(d, f"keyward-{v}.raw")
        self.vhd = os.path.join(d, f"keyward-{v}.vhd")
        self.gcp = os.path.join(d, f"keyward-{v}-gcp.tar.gz")
        self.efi = os.path.join(d, f"keyward-{v}.efi")
        self.policy = os.path.join(d, "policy.json")
        self.sig = os.path.join(d, "policy.json.sig")
        self.key = os.path.join(d, "image-key.pem")
        self.manifest = os.path.join(d, "manifest.json")
        self.parts = os.path.join(d, "parts")
        self.required = [self.raw, self.vhd, self.gcp, self.efi, self.policy, self.sig, self.key,
                         self.manifest] + [os.path.join(self.parts, n) for n in ("root.sqfs", "root.verity", "esp.img")]

    def part(self, section):
        """parts/ file of a UKI section, or None"""
        for n in PART_NAMES[section]:
            p = os.path.join(self.parts, n)
            if os.path.exists(p):
                return p
        return None


@pytest.fixture(scope="session")
def img():
    im = Image(IMAGE_DIR, VERSION)
    missing = [os.path.relpath(p, IMAGE_DIR) for p in im.required if not os.path.isfile(p)]
    if missing:
        pytest.fail(f"no complete image in {IMAGE_DIR} (version {VERSION}): missing {', '.join(missing)}; "
                    "build one with `sudo make image`, or point KEYWARD_IMAGE_DIR at one", pytrace=False)
    return im


@pytest.fixture(scope="session")
def policy(img):
    with open(img.policy, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def manifest(img):
    with open(img.manifest, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def roothash(policy):
    rh = policy["image"]["verity_root_hash"]
    assert re.fullmatch(r"[0-9a-f]{64}", rh), f"policy.json image.verity_root_hash {rh!r} is not 64 hex digits"
    return rh


@pytest.fixture(scope="session")
def epoch(manifest):
    e = manifest["source_date_epoch"]
    assert isinstance(e, int) and e > 0, f"manifest.json source_date_epoch {e!r}"
    return e


# ---- GPT --------------------------------------------------------------------

GPT_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
GPT_ENTRY = struct.Struct("<16s16sQQQ72s")


def gpt_header(path, lba):
    blk = read_at(path, lba * SECTOR, SECTOR)
    (sig, rev, hsize, hcrc, reserved, my_lba, alt_lba, first, last, guid, ent_lba, n_ent, ent_size,
     ent_crc) = GPT_HEADER.unpack_from(blk)
    where = f"GPT header at LBA {lba}"
    assert sig == b"EFI PART", f"{where}: signature {sig!r}"
    assert rev == 0x00010000 and hsize == 92 and reserved == 0, f"{where}: revision {rev:#x}, size {hsize}"
    zeroed = blk[:16] + b"\0\0\0\0" + blk[20:hsize]
    assert zlib.crc32(zeroed) == hcrc, f"{where}: header CRC32 mismatch"
    assert my_lba == lba, f"{where}: MyLBA {my_lba}"
    assert ent_size == 128 and n_ent * ent_size >= 16384, f"{where}: {n_ent} entries of {ent_size} bytes"
    table = read_at(path, ent_lba * SECTOR, n_ent * ent_size)
    assert zlib.crc32(table) == ent_crc, f"{where}: partition entry array CRC32 mismatch"
    entries = []
    for i in range(n_ent):
        t, g, f, l, attrs, name = GPT_ENTRY.unpack_from(table, i * ent_size)
        if t == bytes(16):
            continue
        entries.append({"index": i + 1, "type": str(uuid.UUID(bytes_le=t)), "guid": str(uuid.UUID(bytes_le=g)),
                        "first": f, "last": l, "attrs": attrs,
                        "name": name.decode("utf-16-le").split("\0", 1)[0]})
    return {"alt": alt_lba, "first_usable": first, "last_usable": last, "guid": str(uuid.UUID(bytes_le=guid)),
            "entries_lba": ent_lba, "entries_bytes": n_ent * ent_size, "table": table, "entries": entries}


@pytest.fixture(scope="session")
def gpt(img):
    size = os.path.getsize(img.raw)
    last = size // SECTOR - 1
    return {"sectors": last + 1, "primary": gpt_header(img.raw, 1), "backup": gpt_header(img.raw, last)}


@pytest.fixture(scope="session")
def scratch():
    """a directory for the large copies, removed at the end (pytest's own
    temporary directories are kept for three runs)"""
    d = tempfile.mkdtemp(prefix="keyward-image-test.")
    yield d
    subprocess.run(["chmod", "-R", "u+rwX", d], check=False)
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def extracted(img, gpt, scratch):
    """the three partitions cut out of the .raw with dd"""
    d = os.path.join(scratch, "partitions")
    os.mkdir(d)
    out = {}
    for e in gpt["primary"]["entries"]:
        start, size = e["first"] * SECTOR, (e["last"] + 1 - e["first"]) * SECTOR
        assert start % MIB == 0 and size % MIB == 0, f"partition {e['index']} is not in whole MiB"
        path = os.path.join(d, f"{e['name'] or e['index']}.img")
        run(["dd", f"if={img.raw}", f"of={path}", "bs=1M", f"skip={start // MIB}", f"count={size // MIB}",
             "status=none"])
        assert os.path.getsize(path) == size
        out[e["name"]] = path
    return out


def test_raw_size_is_whole_mib(img):
    size = os.path.getsize(img.raw)
    assert size > 0 and size % MIB == 0, f"{img.raw} is {size} bytes, not a whole number of MiB (Azure refuses it)"


def test_protective_mbr(img):
    mbr = read_at(img.raw, 0, SECTOR)
    assert mbr[510:512] == b"\x55\xaa", "no MBR signature"
    assert mbr[446 + 4] == 0xEE, f"first MBR partition type {mbr[450]:#x}, not 0xEE (protective)"
    assert struct.unpack_from("<I", mbr, 446 + 8)[0] == 1, "protective MBR partition does not start at LBA 1"
    assert mbr[462:510] == bytes(48), "MBR partition records 2-4 are not empty"


def test_gpt_primary_and_backup_agree(gpt):
    p, b, n = gpt["primary"], gpt["backup"], gpt["sectors"]
    assert p["alt"] == n - 1 and b["alt"] == 1, f"AlternateLBA: primary {p['alt']}, backup {b['alt']}, disk {n} sectors"
    assert p["entries_lba"] == 2, f"primary entries at LBA {p['entries_lba']}"
    assert b["entries_lba"] == n - 1 - b["entries_bytes"] // SECTOR, f"backup entries at LBA {b['entries_lba']}"
    for k in ("first_usable", "last_usable", "guid", "table"):
        assert p[k] == b[k], f"primary and backup GPT differ in {k}"
    assert p["first_usable"] >= 2 + p["entries_bytes"] // SECTOR
    assert p["last_usable"] < b["entries_lba"]


def test_gpt_sgdisk_verify(img):
    out = run(["sgdisk", "--verify", img.raw], text=True).stdout
    assert "No problems found" in out, out


def test_partitions_types_names_alignment(gpt):
    entries = gpt["primary"]["entries"]
    got = [(e["index"], e["name"], e["type"]) for e in entries]
    want = [(i + 1, name, t) for i, (name, t) in enumerate(LAYOUT)]
    assert got == want, f"partitions {got}, want {want}"
    prev_end = gpt["primary"]["first_usable"]
    for e in entries:
        assert (e["first"] * SECTOR) % MIB == 0, f"partition {e['name']} starts at sector {e['first']}: not 1 MiB aligned"
        assert ((e["last"] + 1) * SECTOR) % MIB == 0, f"partition {e['name']} ends at sector {e['last']}: size not whole MiB"
        assert e["first"] >= prev_end and e["last"] <= gpt["primary"]["last_usable"], f"partition {e['name']} overlaps"
        prev_end = e["last"] + 1


def test_partition_uuids_derived_from_root_hash(gpt, roothash):
    by_name = {e["name"]: e for e in gpt["primary"]["entries"]}
    # systemd's convention: root = first 128 bits of the root hash, verity = last 128 bits
    assert by_name["root"]["guid"] == as_uuid(roothash[:32])
    assert by_name["root-verity"]["guid"] == as_uuid(roothash[32:])
    # as image/build.sh derives them (the contract: sha256("keyward-disk" + roothash), with a space between)
    assert gpt["primary"]["guid"] == as_uuid(hashlib.sha256(f"keyward-disk {roothash}".encode()).hexdigest()[:32])
    assert by_name["esp"]["guid"] == as_uuid(
        hashlib.sha256(f"keyward-esp-partition {roothash}".encode()).hexdigest()[:32])


def same_prefix_then_zeros(small, big):
    """big starts with small's bytes and holds only zeros after them"""
    n = os.path.getsize(small)
    if os.path.getsize(big) < n or sha256_file(big, 0, n) != sha256_file(small):
        return False
    with open(big, "rb") as f:
        f.seek(n)
        return all(not any(chunk) for chunk in iter(lambda: f.read(MIB), b""))


def test_partitions_hold_the_parts(img, extracted):
    for name, part in (("esp", "esp.img"), ("root", "root.sqfs"), ("root-verity", "root.verity")):
        assert same_prefix_then_zeros(os.path.join(img.parts, part), extracted[name]), \
            f"partition {name} of {img.raw} is not parts/{part}"


# ---- cloud formats ----------------------------------------------------------

def vhd_geometry(size):
    """CHS of the VHD specification (appendix: CHS calculation)"""
    sectors = min(size // SECTOR, 65535 * 16 * 255)
    if sectors >= 65535 * 16 * 63:
        spt, heads = 255, 16
    else:
        spt = 17
        heads = max(4, (sectors // spt + 1023) // 1024)
        if sectors // spt >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
        if sectors // spt >= heads * 1024:
            spt, heads = 63, 16
    return sectors // spt // heads, heads, spt


def test_vhd_is_raw_plus_fixed_footer(img, epoch, roothash):
    raw_size = os.path.getsize(img.raw)
    assert os.path.getsize(img.vhd) == raw_size + 512, "the .vhd is not the .raw plus a 512-byte footer"
    assert sha256_file(img.vhd, 0, raw_size) == sha256_file(img.raw), "the .vhd's data is not the .raw"
    f = read_at(img.vhd, raw_size, 512)
    cookie, features, version, data_offset, stamp = struct.unpack_from(">8sIIQI", f, 0)
    orig, cur = struct.unpack_from(">QQ", f, 40)
    cyl, heads, spt = struct.unpack_from(">HBB", f, 56)
    disk_type, checksum = struct.unpack_from(">II", f, 60)
    assert cookie == b"conectix"
    assert features & 2 and version == 0x00010000, f"features {features:#x}, version {version:#x}"
    assert data_offset == 0xFFFFFFFFFFFFFFFF, "a fixed disk has no data offset"
    assert disk_type == 2, f"disk type {disk_type}, not 2 (fixed)"
    assert orig == cur == raw_size, f"sizes {orig}, {cur}, raw {raw_size}"
    assert cur % MIB == 0
    assert checksum == ~(sum(f[:64]) + sum(f[68:])) & 0xFFFFFFFF, "footer checksum"
    assert (cyl, heads, spt) == vhd_geometry(cur)
    assert f[85:] == bytes(427), "reserved footer bytes are not zero"
    # reproducible: the build's time, not the run's (VHD time counts from 2000-01-01)
    assert stamp == epoch - 946684800, f"footer time stamp {stamp}"
    # its unique id, as image/build.sh derives it
    assert f[68:84] == bytes.fromhex(hashlib.sha256(f"keyward-vhd {roothash}".encode()).hexdigest()[:32])


def test_gcp_tarball_holds_exactly_disk_raw(img):
    with open(img.gcp, "rb") as f:
        gz = f.read(10)
    assert gz[:3] == b"\x1f\x8b\x08" and not gz[3] & 0x08 and gz[4:8] == bytes(4), \
        "not gzip -n (a file name or a time stamp in the gzip header)"
    with tarfile.open(img.gcp, "r:gz") as t:
        members = t.getmembers()
    assert [(m.name, m.isreg()) for m in members] == [("disk.raw", True)], \
        f"members {[(m.name, m.type) for m in members]}"
    assert members[0].size == os.path.getsize(img.raw)
    tar = subprocess.Popen(["tar", "-xzOf", img.gcp, "disk.raw"], stdout=subprocess.PIPE)
    h = hashlib.sha256()
    for chunk in iter(lambda: tar.stdout.read(MIB), b""):
        h.update(chunk)
    assert tar.wait() == 0
    assert h.hexdigest() == sha256_file(img.raw), "disk.raw in the GCP tarball differs from the .raw"


# ---- ESP --------------------------------------------------------------------

def test_esp_holds_only_the_uki(img, extracted, tmp_path):
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    listing = run(["mdir", "-/", "-a", "-b", "-i", extracted["esp"], "::"], text=True, env=env).stdout.split()
    assert sorted(listing) == ["::/EFI/", "::/EFI/BOOT/", "::/EFI/BOOT/BOOTX64.EFI"], f"ESP holds {listing}"
    out = str(tmp_path / "BOOTX64.EFI")
    run(["mcopy", "-n", "-i", extracted["esp"], "::/EFI/BOOT/BOOTX64.EFI", out], env=env)
    assert sha256_file(out) == sha256_file(img.efi), "/EFI/BOOT/BOOTX64.EFI differs from keyward-<V>.efi"


# ---- UKI --------------------------------------------------------------------

class Uki:
    @classmethod
    def from_bytes(cls, data):
        u = cls.__new__(cls)
        u._load(data)
        return u

    def __init__(self, path):
        with open(path, "rb") as f:
            self._load(f.read())

    def _load(self, data):
        self.data = data
        self.pe = pefile.PE(data=self.data, fast_load=True)
        self.sections = {}
        for s in self.pe.sections:
            name = s.Name.rstrip(b"\0").decode("ascii", "replace")
            assert name not in self.sections, f"section {name} twice"
            raw = self.data[s.PointerToRawData:s.PointerToRawData + min(s.SizeOfRawData, s.Misc_VirtualSize)]
            # what the loader maps: VirtualSize bytes, zero-filled past the raw data
            self.sections[name] = raw + bytes(s.Misc_VirtualSize - len(raw))

    def security_dir(self):
        d = self.pe.OPTIONAL_HEADER.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
        return d

    def authenticode(self):
        opt = self.pe.OPTIONAL_HEADER
        checksum_at = opt.get_file_offset() + 64          # CheckSum, same place in PE32 and PE32+
        secdir = self.security_dir()
        secdir_at = secdir.get_file_offset()
        h = hashlib.sha256()
        h.update(self.data[:checksum_at])
        h.update(self.data[checksum_at + 4:secdir_at])
        h.update(self.data[secdir_at + 8:opt.SizeOfHeaders])
        hashed = opt.SizeOfHeaders
        for s in sorted(self.pe.sections, key=lambda s: s.PointerToRawData):
            if s.SizeOfRawData:
                h.update(self.data[s.PointerToRawData:s.PointerToRawData + s.SizeOfRawData])
                hashed += s.SizeOfRawData
        rest_end = len(self.data) - secdir.Size
        if rest_end > hashed:
            h.update(self.data[hashed:rest_end])
        return h.hexdigest()


@pytest.fixture(scope="session")
def uki(img):
    return Uki(img.efi)


def section_text(uki, name):
    return uki.sections[name].decode("utf-8")


def test_uki_sections(img, uki):
    missing = [s for s in UKI_SECTIONS if s not in uki.sections]
    assert not missing, f"the UKI lacks {missing} (has {sorted(uki.sections)})"
    assert uki.sections[".linux"][:2] == b"MZ", ".linux is not a PE (EFI-stub) kernel"
    # as loaded: sections must not overlap in memory, and fit SizeOfImage
    spans = sorted((s.VirtualAddress, s.VirtualAddress + s.Misc_VirtualSize, s.Name) for s in uki.pe.sections)
    for (a0, a1, an), (b0, _, bn) in zip(spans, spans[1:]):
        assert a1 <= b0, f"sections {an} and {bn} overlap in memory"
    assert spans[-1][1] <= uki.pe.OPTIONAL_HEADER.SizeOfImage
    for name, paths in PART_NAMES.items():
        part = img.part(name)
        if part:
            with open(part, "rb") as f:
                assert f.read() == uki.sections[name], f"section {name} differs from parts/{os.path.basename(part)}"


def test_uki_cmdline_root_hash_matches_partitions(uki, policy, gpt, roothash):
    cmdline = section_text(uki, ".cmdline")
    assert cmdline == policy["image"]["cmdline"], "policy.json image.cmdline is not the UKI's .cmdline"
    args = cmdline.split()
    opts = dict(a.split("=", 1) for a in args if "=" in a)
    assert opts.get("roothash") == roothash, f"roothash= {opts.get('roothash')}, policy.json {roothash}"
    by_name = {e["name"]: e["guid"] for e in gpt["primary"]["entries"]}
    assert opts.get("systemd.verity_root_data") == "PARTUUID=" + by_name["root"]
    assert opts.get("systemd.verity_root_hash") == "PARTUUID=" + by_name["root-verity"]
    assert opts.get("root") == "/dev/mapper/root" and "ro" in args and "rw" not in args
    assert opts.get("rootfstype") == "squashfs"
    # nothing on the measured command line that opens a shell
    bad = [a for a in args if a.split("=", 1)[0] in ("init", "rdinit", "break", "rd.break", "rd.shell",
                                                      "systemd.debug_shell", "systemd.debug-shell", "single",
                                                      "emergency", "rescue", "systemd.unit")]
    assert not bad, f"the command line has {bad}"


def test_uki_time_stamp(uki, epoch):
    assert uki.pe.FILE_HEADER.TimeDateStamp == epoch & 0xFFFFFFFF, "the PE time stamp is not SOURCE_DATE_EPOCH"


def test_uki_osrel_names_the_version(uki, policy):
    osrel = dict(l.split("=", 1) for l in section_text(uki, ".osrel").splitlines() if "=" in l)
    assert osrel.get("VERSION_ID", "").strip('"') == VERSION == policy["image"]["version"]


def test_uki_authenticode_and_pcr4(uki, policy):
    auth = uki.authenticode()
    assert auth == policy["image"]["uki_authenticode_sha256"], \
        f"Authenticode digest {auth}, policy.json {policy['image']['uki_authenticode_sha256']}"
    pcr = bytes(32)
    pcr = extend(pcr, sha(b"Calling EFI Application from Boot Option"))
    pcr = extend(pcr, sha(b"\0\0\0\0"))
    pcr = extend(pcr, bytes.fromhex(auth))
    kauth = Uki.from_bytes(uki.sections[".linux"]).authenticode()
    assert kauth == policy["image"]["kernel_authenticode_sha256"]
    pcr = extend(pcr, bytes.fromhex(kauth))
    assert policy["tpm"]["pcrs"]["4"] == pcr.hex()


def test_uki_signature_covers_the_same_digest(img, uki):
    """sbsign's signature (when the build signed) carries the Authenticode digest
    computed above: an independent check of that computation"""
    secdir = uki.security_dir()
    if not secdir.Size:
        return      # SB_KEY=none: nothing signed
    length, revision, ctype = struct.unpack_from("<IHH", uki.data, secdir.VirtualAddress)
    assert secdir.VirtualAddress + secdir.Size == len(uki.data), "data after the certificate table"
    assert revision == 0x0200 and ctype == 0x0002, f"WIN_CERTIFICATE revision {revision:#x}, type {ctype:#x}"
    cert = uki.data[secdir.VirtualAddress + 8:secdir.VirtualAddress + length]
    assert bytes.fromhex(uki.authenticode()) in cert, "the signature's SpcIndirectData digest is not ours"
    if shutil.which("osslsigncode"):
        out = run(["osslsigncode", "verify", "-in", img.efi], ok=False, text=True).stdout
        m = re.search(r"Calculated message digest\s*:\s*([0-9A-Fa-f]{64})", out)
        assert m and m.group(1).lower() == uki.authenticode(), out


def test_uki_sha256(img, policy):
    # docs/image.md: the hash of the UKI as published and installed in the ESP
    # (Secure Boot-signed); its Authenticode digest is the same signed or not
    want = sha256_file(img.efi)
    assert policy["image"]["uki_sha256"] == want, \
        f"policy.json uki_sha256 {policy['image']['uki_sha256']}: keyward-<V>.efi {want}"


def pcr11(uki, phase):
    pcr = bytes(32)
    for name in MEASURED_SECTIONS:
        data = uki.sections.get(name, b"")
        if data:
            pcr = extend(pcr, sha(name.encode() + b"\0"))
            pcr = extend(pcr, sha(data))
    for word in phase.split(":"):
        if word:
            pcr = extend(pcr, sha(word.encode()))
    return pcr.hex()


def test_pcr11_recomputed(uki, policy):
    phases = policy["image"]["pcr11"]
    assert set(phases) >= {"", "sysinit", "sysinit:ready"}, f"phases {sorted(phases)}"
    for phase, value in phases.items():
        assert pcr11(uki, phase) == value, f"PCR 11 for phase {phase!r}"
    assert policy["tpm"]["pcrs"]["11"] == phases["sysinit:ready"], "tpm.pcrs.11 is not phase sysinit:ready"


def test_pcr11_by_systemd_measure(uki, policy, tmp_path):
    cmd = ["/lib/systemd/systemd-measure", "calculate", "--bank=sha256", "--json=short"]
    for name in MEASURED_SECTIONS:
        if uki.sections.get(name):
            p = tmp_path / name[1:]
            p.write_bytes(uki.sections[name])
            cmd.append(f"--{name[1:]}={p}")
    phases = policy["image"]["pcr11"]
    cmd += [f"--phase={ph}" for ph in phases]
    out = json.loads(run(cmd, text=True).stdout)
    got = {e.get("phase", ""): e["hash"] for e in out["sha256"] if e["pcr"] == 11}
    assert got == phases


def rsa_public(img):
    with open(img.key, "rb") as f:
        return serialization.load_pem_public_key(f.read())


def tpm2_policy_pcr11(value_hex):
    """TPM2_PolicyPCR on a fresh trial session, PCR 11 of the sha256 bank"""
    sel = struct.pack(">IHB3s", 1, 0x000B, 3, bytes([0x00, 0x08, 0x00]))
    return sha(bytes(32) + struct.pack(">I", 0x0000017F) + sel + sha(bytes.fromhex(value_hex)))


def test_pcrsig_signs_the_sysinit_phase(img, uki, policy):
    sig = json.loads(uki.sections[".pcrsig"])
    assert sig == policy["image"]["pcr_signature"], "policy.json image.pcr_signature is not the UKI's .pcrsig"
    assert set(sig) == {"sha256"}, f"banks {sorted(sig)}"
    pub = rsa_public(img)
    # systemd's pkfp: SHA-256 of i2d_PublicKey (PKCS#1 RSAPublicKey), not of the SPKI
    pkfp = hashlib.sha256(pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)).hexdigest()
    by_pol = {tpm2_policy_pcr11(v).hex(): ph for ph, v in policy["image"]["pcr11"].items()}
    signed = []
    for e in sig["sha256"]:
        assert e["pcrs"] == [11] and e["pkfp"] == pkfp, f"entry {e}"
        assert e["pol"] in by_pol, f"signed policy {e['pol']} is for no phase of policy.json image.pcr11"
        pub.verify(base64.b64decode(e["sig"]), bytes.fromhex(e["pol"]),
                   padding.PKCS1v15(), hashes.SHA256())
        signed.append(by_pol[e["pol"]])
    # keyward-unlock opens the volume in phase "sysinit" (appliance/systemd/keyward-unlock.service)
    assert "sysinit" in signed, f"signed phases {signed}"


def test_pcrpkey_is_the_image_key(img, uki, policy):
    with open(img.key, "rb") as f:
        pem = f.read()
    assert uki.sections[".pcrpkey"] == pem, ".pcrpkey is not image-key.pem"
    assert b"PRIVATE" not in pem
    spki = rsa_public(img).public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert policy["image"]["pcr_public_key_sha256"] == hashlib.sha256(spki).hexdigest()


# ---- policy.json ------------------------------------------------------------

def test_policy_signature(img, tmp_path):
    p = run(["openssl", "dgst", "-sha256", "-verify", img.key, "-signature", img.sig, img.policy], ok=False, text=True)
    assert p.returncode == 0 and "Verified OK" in p.stdout, p.stdout + p.stderr
    tampered = tmp_path / "policy.json"
    tampered.write_bytes(open(img.policy, "rb").read().replace(b'"tofu": false', b'"tofu": true '))
    p = run(["openssl", "dgst", "-sha256", "-verify", img.key, "-signature", img.sig, str(tampered)], ok=False)
    assert p.returncode != 0, "the signature verifies a changed policy.json"


def test_policy_members(img, policy, epoch):
    assert set(policy) == {"keyward_policy", "tofu", "comment", "source", "created", "require", "tpm", "image"}
    assert policy["keyward_policy"] == 1 and policy["tofu"] is False
    assert policy["require"] == {"snp": False, "tpm": True, "azure": False, "event_log": False}
    assert set(policy["tpm"]) == {"pcrs"}, "an image policy has no tpm.ak_sha256 (the AK is per instance)"
    assert set(policy["tpm"]["pcrs"]) == {"4", "11", "12"}
    # PCR 12: nothing measured (a boot option's command line, ESP credentials)
    assert policy["tpm"]["pcrs"]["12"] == "00" * 32
    assert set(policy["image"]) == {"version", "verity_root_hash", "cmdline", "uki_sha256", "uki_authenticode_sha256",
                                    "kernel_authenticode_sha256",
                                    "pcr11", "pcr_public_key_sha256", "pcr_signature", "manifest_sha256"}
    assert policy["image"]["version"] == VERSION
    assert policy["created"] == datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert policy["image"]["manifest_sha256"] == sha256_file(img.manifest)


# ---- dm-verity --------------------------------------------------------------

def verify(data, hashdev, roothash):
    return run(["veritysetup", "verify", data, hashdev, roothash], ok=False, text=True)


def test_verity_parts(img, roothash):
    p = verify(os.path.join(img.parts, "root.sqfs"), os.path.join(img.parts, "root.verity"), roothash)
    assert p.returncode == 0, p.stdout + p.stderr


def test_verity_partitions_of_the_disk(extracted, roothash):
    p = verify(extracted["root"], extracted["root-verity"], roothash)
    assert p.returncode == 0, p.stdout + p.stderr
    wrong = roothash[:-1] + ("0" if roothash[-1] != "0" else "1")
    assert verify(extracted["root"], extracted["root-verity"], wrong).returncode != 0, "a wrong root hash verifies"


def test_verity_catches_one_flipped_byte(extracted, roothash, scratch):
    copy = os.path.join(scratch, "root-flipped.img")
    shutil.copyfile(extracted["root"], copy)
    with open(copy, "r+b") as f:
        f.seek(os.path.getsize(copy) // 2 + 123)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    p = verify(copy, extracted["root-verity"], roothash)
    assert p.returncode != 0, "veritysetup verify accepts a root partition with one byte changed"


def test_verity_superblock_derived(img):
    """salt and UUID fixed by the content, as image/build.sh derives them (reproducible)"""
    out = run(["veritysetup", "dump", os.path.join(img.parts, "root.verity")], text=True).stdout
    f = dict((k.strip(), v.strip()) for k, v in (l.split(":", 1) for l in out.splitlines() if ":" in l))
    sq = sha256_file(os.path.join(img.parts, "root.sqfs"))
    assert f["Hash type"] == "1" and f["Data block size"] == "4096" and f["Hash algorithm"] == "sha256", out
    assert f["Salt"] == hashlib.sha256(f"keyward-verity-salt {sq}".encode()).hexdigest(), out
    assert f["UUID"] == as_uuid(hashlib.sha256(f"keyward-verity-uuid {sq}".encode()).hexdigest()[:32]), out
    assert int(f["Data blocks"]) * 4096 == os.path.getsize(os.path.join(img.parts, "root.sqfs")), out


# ---- the root file system ---------------------------------------------------

LLN = re.compile(r"^(\S{10}) (\d+)/(\d+)\s+(\d+|\d+,\s*\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) squashfs-root(.*?)(?: -> (.*))?$")


@pytest.fixture(scope="session")
def rootfs(extracted):
    out = run(["unsquashfs", "-lln", extracted["root"]], text=True, env=dict(os.environ, TZ="UTC")).stdout
    files = {}
    for line in out.splitlines():
        m = LLN.match(line)
        if not m:
            continue
        mode, uid, gid, size, when, path, target = m.groups()
        files[path or "/"] = {"mode": mode, "uid": int(uid), "gid": int(gid), "size": size, "time": when,
                              "target": target}
    assert "/usr" in files, f"unsquashfs -lln listed nothing usable:\n{out[:2000]}"
    return files


@pytest.fixture(scope="session")
def rootdir(extracted, rootfs, scratch):
    """the root file system unpacked (regular files are what is read)"""
    d = os.path.join(scratch, "root")
    # device nodes cannot be made without root: unsquashfs then exits non-zero; what
    # matters is that every regular file is there, checked below
    run(["unsquashfs", "-n", "-no-xattrs", "-d", d, extracted["root"]], ok=False)
    regular = [p for p, e in rootfs.items() if e["mode"][0] == "-"]
    lost = [p for p in regular if not os.path.isfile(d + p)]
    assert not lost, f"unsquashfs did not unpack {lost[:10]}"
    return d


def read_root(rootdir, path):
    with open(rootdir + path, "rb") as f:
        return f.read()


def test_squashfs_superblock(extracted, epoch):
    sb = read_at(extracted["root"], 0, 96)
    magic, _inodes, mkfs_time, _bs, _frags, comp = struct.unpack_from("<IIIIIH", sb)
    assert magic == 0x73717368, "the root partition is not squashfs"
    assert comp == 6, f"compression id {comp}, not zstd (6)"
    assert mkfs_time == epoch, f"squashfs made at {mkfs_time}, SOURCE_DATE_EPOCH {epoch}"


def test_no_time_later_than_source_date_epoch(rootfs, epoch):
    limit = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
    late = [(p, e["time"]) for p, e in rootfs.items() if e["time"] > limit]
    assert not late, f"files newer than SOURCE_DATE_EPOCH ({limit}): {late[:10]}"


def test_keyward_files_present(rootfs, rootdir, img, manifest):
    for path in ("/usr/sbin/keywardd", "/usr/sbin/keyward-unlock", "/usr/sbin/keyward-provision", "/usr/bin/keywardctl"):
        e = rootfs.get(path)
        assert e and e["mode"][0] == "-" and e["mode"][3] == "x", f"{path}: {e}"
        built = manifest.get("inputs", {}).get("build/" + os.path.basename(path))
        if built:
            assert hashlib.sha256(read_root(rootdir, path)).hexdigest() == built, \
                f"{path} is not the build/{os.path.basename(path)} manifest.json names"
    units = sorted(f for f in os.listdir(os.path.join(SRC, "appliance", "systemd"))
                   if f.endswith((".service", ".socket", ".mount")))
    assert units
    for u in units:
        path = "/usr/lib/systemd/system/" + u
        assert path in rootfs, f"{path} missing"
        with open(os.path.join(SRC, "appliance", "systemd", u), "rb") as f:
            assert read_root(rootdir, path) == f.read(), f"{path} differs from appliance/systemd/{u}: rebuild the image"
    with open(img.key, "rb") as f:
        assert read_root(rootdir, "/usr/lib/systemd/tpm2-pcr-public-key.pem") == f.read()
    e = rootfs.get("/etc/keyward")
    assert e and e["mode"][0] == "l" and e["target"] == "/var/lib/keyward/etc", f"/etc/keyward: {e}"
    e = rootfs.get("/etc/machine-id")
    assert e and e["mode"][0] == "-" and e["size"] == "0", f"/etc/machine-id: {e} (must exist, empty)"


def test_no_ssh(rootfs):
    bad = [p for p in rootfs
           if re.search(r"(^|/)(sshd[^/]*|ssh\.(service|socket)|ssh@\.service|ssh_host_[^/]*|authorized_keys[^/]*|"
                        r"dropbear[^/]*)$", p)
           or p.startswith(("/etc/ssh/", "/usr/lib/openssh/", "/usr/share/openssh/"))
           or re.search(r"/\.ssh/.", p)]
    assert not bad, f"SSH server files in the image: {bad[:20]}"


def test_no_package_manager_or_compiler(rootfs):
    names = [(d, p.rsplit("/", 1)[1]) for p in rootfs for d in BIN_DIRS if p.startswith(d + "/") and p.count("/") == d.count("/") + 1]
    pm = [f"{d}/{n}" for d, n in names if n.startswith(("apt", "dpkg"))]
    assert not pm, f"package manager binaries: {pm}"
    cc = [f"{d}/{n}" for d, n in names if COMPILER.match(n)]
    cc += [p for p in rootfs if re.search(r"/(cc1|cc1plus|collect2|lto1)$", p)]
    assert not cc, f"compiler or assembler/linker binaries: {cc}"


def test_no_getty(rootfs):
    masked = {p.rsplit("/", 1)[1] for p, e in rootfs.items()
              if p.startswith("/etc/systemd/system/") and p.count("/") == 4 and e["target"] == "/dev/null"}
    enabled = [p for p in rootfs if re.search(r"\.(wants|requires)/", p) and p.startswith("/etc/")
               and GETTY_UNIT.match(p.rsplit("/", 1)[1])]
    assert not enabled, f"getty units enabled: {enabled}"
    # systemd-getty-generator starts serial-getty@ on the kernel console, and getty.target pulls the others
    need = {"getty@.service", "serial-getty@.service", "console-getty.service", "getty.target"}
    assert need <= masked, f"not masked: {sorted(need - masked)}"


def test_accounts_cannot_log_in(rootdir):
    passwd = [l.split(":") for l in read_root(rootdir, "/etc/passwd").decode().splitlines() if l]
    shells = {u[0]: u[6] for u in passwd}
    assert shells.get("root") == "/usr/sbin/nologin", f"root's shell is {shells.get('root')}"
    login = {u: s for u, s in shells.items() if s not in NOLOGIN}
    assert not login, f"accounts with a login shell: {login}"
    assert all(u[1] in ("x", "*", "!") for u in passwd), "a password in /etc/passwd"
    shadow = [l.split(":") for l in read_root(rootdir, "/etc/shadow").decode().splitlines() if l]
    bad = [u[0] for u in shadow if not re.fullmatch(r"[!*]+", u[1])]
    assert not bad, f"accounts with a password hash or an empty password in /etc/shadow: {bad}"


def test_no_private_keys(rootfs, rootdir):
    """every regular file is read: a PEM private key block fails anywhere but in
    the library of PUBLIC_TEST_KEYS; the words PRIVATE KEY are allowed only in
    ELF binaries (OpenSSL's PEM names, keywardd's messages) and in
    documentation"""
    blocks, words = [], []
    for p, e in rootfs.items():
        if e["mode"][0] != "-":
            continue
        data = read_root(rootdir, p)
        if PEM_PRIVATE_BLOCK.search(data):
            if not (data.startswith(b"\x7fELF") and PUBLIC_TEST_KEYS.match(p)):
                blocks.append(p)
        elif b"PRIVATE KEY" in data and not data.startswith(b"\x7fELF") and not p.startswith("/usr/share/doc/"):
            words.append(p)
    assert not blocks, f"private keys in the image: {blocks}"
    assert not words, f"files naming a PRIVATE KEY (neither a binary nor documentation): {words}"
    private = [p for p in rootfs if p.startswith("/etc/ssl/private/") or p.endswith(".key")]
    assert not private, f"key files: {private}"


# ---- manifest.json ----------------------------------------------------------

def dpkg_status(text):
    pkgs = set()
    for stanza in text.split("\n\n"):
        f = dict(re.findall(r"^([A-Za-z-]+): ?(.*)$", stanza, re.M))
        if f.get("Status", "").endswith(" installed"):
            pkgs.add((f["Package"], f["Version"], f["Architecture"]))
    return pkgs


def test_manifest(img, manifest, rootfs, rootdir):
    assert manifest.get("version") == VERSION
    pkgs = manifest["packages"]
    assert pkgs and all(set(p) >= {"name", "version", "arch"} and p["version"] for p in pkgs)
    listed = {(p["name"], p["version"], p["arch"]) for p in pkgs}
    assert len(listed) == len(pkgs), "a package twice in manifest.json"
    bad = sorted(p["name"] for p in pkgs if NOT_SHIPPED_PACKAGES.match(p["name"]))
    assert not bad, f"packages a key appliance must not have: {bad}"
    # the package database, where the image keeps one (image/build.sh: a copy, dpkg itself is removed)
    for path in [p for p in ("/usr/share/keyward/dpkg-status", "/var/lib/dpkg/status") if p in rootfs]:
        have = dpkg_status(read_root(rootdir, path).decode())
        assert have == listed, (f"{path} and manifest.json differ: only in the image {sorted(have - listed)[:10]}, "
                                f"only in the manifest {sorted(listed - have)[:10]}")
    for name, digest in manifest.get("outputs", {}).items():
        path = os.path.join(img.dir, name)
        assert os.path.isfile(path) and sha256_file(path) == digest, f"manifest.json outputs: {name} differs"


def test_sha256sums(img):
    sums = os.path.join(img.dir, "SHA256SUMS")
    if os.path.exists(sums):
        p = run(["sha256sum", "--check", "--strict", "SHA256SUMS"], ok=False, text=True, cwd=img.dir)
        assert p.returncode == 0, p.stdout + p.stderr
