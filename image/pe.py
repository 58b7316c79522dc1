"""PE/COFF helpers of the image build: the Authenticode digest (what UEFI
firmware measures into PCR 4 for an application it starts) and the
deterministic header fields of a PE we assembled.

Authenticode (Microsoft's "Windows Authenticode Portable Executable Signature
Format", section "Calculating the PE Image Hash"): the headers without the
CheckSum field and the Certificate Table directory entry, then each section's
raw data in file order, then the data after the last section up to the
certificate table.  A signature (sbsign) lives in that table, so the digest of
the signed and of the unsigned UKI are the same."""

import hashlib
import struct

import pefile


def authenticode_sha256(data: bytes) -> str:
    pe = pefile.PE(data=data, fast_load=True)
    opt = pe.OPTIONAL_HEADER
    cksum_off = opt.get_file_offset() + 64
    secdir = opt.DATA_DIRECTORY[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_SECURITY"]]
    secdir_off = secdir.get_file_offset()
    cert_off, cert_size = secdir.VirtualAddress, secdir.Size
    h = hashlib.sha256()
    h.update(data[:cksum_off])
    h.update(data[cksum_off + 4:secdir_off])
    h.update(data[secdir_off + 8:opt.SizeOfHeaders])
    done = opt.SizeOfHeaders
    for s in sorted((s for s in pe.sections if s.SizeOfRawData), key=lambda s: s.PointerToRawData):
        h.update(data[s.PointerToRawData:s.PointerToRawData + s.SizeOfRawData])
        done = max(done, s.PointerToRawData + s.SizeOfRawData)
    end = cert_off if cert_size else len(data)
    if end < done:
        raise ValueError("the certificate table overlaps the sections")
    h.update(data[done:end])
    return h.hexdigest()


def normalise(path: str, epoch: int) -> None:
    """TimeDateStamp = the build's SOURCE_DATE_EPOCH (objcopy writes the
    time of the run), then the header CheckSum recomputed."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    pe = pefile.PE(data=bytes(data), fast_load=True)
    struct.pack_into("<I", data, pe.FILE_HEADER.get_file_offset() + 4, epoch & 0xFFFFFFFF)
    pe = pefile.PE(data=bytes(data), fast_load=True)
    struct.pack_into("<I", data, pe.OPTIONAL_HEADER.get_file_offset() + 64, pe.generate_checksum())
    with open(path, "wb") as f:
        f.write(data)


def pcr_extend(pcr: bytes, digest_hex: str) -> bytes:
    return hashlib.sha256(pcr + bytes.fromhex(digest_hex)).digest()


def expected_pcr4(uki_authenticode: str, kernel_authenticode: str) -> str:
    """PCR 4 of a UEFI boot whose first boot option starts the UKI (OVMF,
    and the clouds' UEFI firmware without shim): EV_EFI_ACTION "Calling EFI
    Application from Boot Option", EV_SEPARATOR (four zero bytes), then
    EV_EFI_BOOT_SERVICES_APPLICATION with the UKI's Authenticode digest, and
    another with the kernel's: systemd-stub 252 (linux.c, load_trusted_image)
    starts the embedded kernel through the firmware's LoadImage(), which
    measures it too (seen in the image boot test: without it PCR 4 differs)."""
    pcr = bytes(32)
    pcr = pcr_extend(pcr, hashlib.sha256(b"Calling EFI Application from Boot Option").hexdigest())
    pcr = pcr_extend(pcr, hashlib.sha256(b"\x00\x00\x00\x00").hexdigest())
    pcr = pcr_extend(pcr, uki_authenticode)
    pcr = pcr_extend(pcr, kernel_authenticode)
    return pcr.hex()
