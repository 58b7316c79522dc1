"""Editing a LUKS2 header as an attacker who controls the disk would (for the
keyward-unlock tests)."""
import hashlib
import json


def rewrite_header(path, edit, copies=(0, 1)):
    """Edits the JSON of the header copies (edit(dict) changes it in place)
    and writes each back with a valid checksum, as an attacker who controls
    the disk would."""
    with open(path, "r+b") as f:
        first = f.read(4096)
        size = int.from_bytes(first[8:16], "big")
        f.seek(0)
        both = bytearray(f.read(2 * size))
        for c in copies:
            base = c * size
            area = both[base + 4096:base + size]
            meta = json.loads(area[:area.index(b"\0")].decode())
            edit(meta)
            text = json.dumps(meta, separators=(",", ":")).encode()
            assert len(text) < size - 4096
            both[base + 4096:base + size] = text + b"\0" * (size - 4096 - len(text))
            both[base + 448:base + 512] = b"\0" * 64
            both[base + 448:base + 480] = hashlib.sha256(bytes(both[base:base + size])).digest()
        f.seek(0)
        f.write(both)
