"""File helpers shared by the image build's Python steps (manifest.py,
policy.py): a file's SHA-256, and a JSON document written the one way the
build writes them (sorted keys, two-space indent, a final newline), so that
its bytes depend on its content only."""

import hashlib
import json


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_json(path: str, doc) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
