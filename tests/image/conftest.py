"""The image boot test's settings: where the build and the image are, the
bounds of each wait (TCG is slow; each is finite), and the record of each
phase's duration written to build/artefacts/image-boot/summary.json."""
import contextlib
import glob
import json
import os
import re
import shutil
import time

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("KEYWARD_BUILD", os.path.join(ROOT, "build"))
IMAGE_DIR = os.environ.get("KEYWARD_IMAGE_DIR", os.path.join(BUILD, "image"))
VERSION = os.environ.get("KEYWARD_VERSION", "")
ARTEFACTS = os.environ.get("KEYWARD_IMAGE_ARTEFACTS", os.path.join(BUILD, "artefacts", "image-boot"))


def bound(name, default):
    """A wait's bound in seconds, KEYWARD_IMAGE_<NAME>_S overriding it."""
    return int(os.environ.get("KEYWARD_IMAGE_%s_S" % name, default))


FIRST_BOOT_S = bound("FIRST_BOOT", 900)      # firmware, kernel, provisioning (argon2id, RSA, self-test)
BOOT_S = bound("BOOT", 600)                  # a later boot until keywardd answers
POWEROFF_S = bound("POWEROFF", 180)          # ACPI power button to qemu's exit
REFUSAL_S = bound("REFUSAL", 600)            # the tampered boot until it powers itself off


class Image:
    def __init__(self, raw):
        self.raw = raw
        self.dir = os.path.dirname(raw)
        self.version = re.match(r"keyward-(.+)\.raw$", os.path.basename(raw)).group(1)
        self.policy = os.path.join(self.dir, "policy.json")
        self.policy_key = os.path.join(self.dir, "image-key.pem")


@pytest.fixture(scope="session")
def image():
    """The built disk.  Without it the test fails (never skips): the image
    is what this test is about."""
    if VERSION:
        found = [os.path.join(IMAGE_DIR, "keyward-%s.raw" % VERSION)]
        found = [f for f in found if os.path.isfile(f)]
    else:
        found = sorted(glob.glob(os.path.join(IMAGE_DIR, "keyward-*.raw")))
    if len(found) != 1:
        pytest.fail("no image to boot: %s %s (run `make image` as root first, or set KEYWARD_IMAGE_DIR to "
                    "the directory holding keyward-<version>.raw)"
                    % (os.path.join(IMAGE_DIR, "keyward-%s.raw" % (VERSION or "<version>")),
                       "does not exist" if not found else "is ambiguous: %s" % found), pytrace=False)
    return Image(found[0])


class Record:
    """What happened, phase by phase, for summary.json and the test output."""

    def __init__(self, path):
        self.path = path
        self.started = time.time()
        self.phases = []
        self.facts = {}

    @contextlib.contextmanager
    def phase(self, name):
        t0 = time.monotonic()
        entry = {"phase": name, "seconds": None, "ok": False}
        self.phases.append(entry)
        try:
            yield entry
            entry["ok"] = True
        except BaseException as e:
            entry["error"] = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
            raise
        finally:
            entry["seconds"] = round(time.monotonic() - t0, 1)
            print("image-boot: %-48s %7.1f s  %s" % (name, entry["seconds"], "ok" if entry["ok"] else "FAILED"))
            self.write()

    def write(self):
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        doc = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
               "total_seconds": round(time.time() - self.started, 1), "phases": self.phases,
               "facts": self.facts}
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, self.path)


@pytest.fixture(scope="session")
def record():
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    os.makedirs(ARTEFACTS)
    r = Record(os.path.join(ARTEFACTS, "summary.json"))
    yield r
    r.write()
    print("\nimage-boot: summary in %s" % r.path)
    for p in r.phases:
        print("image-boot:   %-48s %7.1f s  %s" % (p["phase"], p["seconds"] or 0, "ok" if p["ok"] else "FAILED"))
