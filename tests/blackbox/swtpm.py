"""A software TPM 2.0 (swtpm) on free loopback ports, one per test, for the
tests that need a real TPM (attestation, the data volume's TPM2 binding)."""
import os
import shutil
import socket
import subprocess
import tempfile
import time

import pytest


def two_free_ports():
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            p = a.getsockname()[1]
            if p >= 65535:
                continue
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", p + 1))
                except OSError:
                    continue
            return p
    raise AssertionError("no two adjacent free ports")


class Swtpm:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="kw-swtpm-")
        self.port = two_free_ports()
        self.log = open(os.path.join(self.dir, "swtpm.log"), "wb")
        self._spawn()

    def _spawn(self):
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", "dir=" + self.dir,
             "--server", "type=tcp,port=%d,bindaddr=127.0.0.1" % self.port,
             "--ctrl", "type=tcp,port=%d,bindaddr=127.0.0.1" % (self.port + 1),
             "--flags", "not-need-init,startup-clear"], stdout=self.log, stderr=self.log)
        deadline = time.time() + 10
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("swtpm did not start")

    def reboot(self):
        """The same TPM (its seeds and state kept), PCRs back to zero: a new boot."""
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self._spawn()

    @property
    def tcti(self):
        return "swtpm:host=127.0.0.1,port=%d" % self.port

    def tool(self, *args):
        return subprocess.run(list(args) + ["-T", self.tcti], capture_output=True, text=True, timeout=30)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def swtpm():
    t = Swtpm()
    yield t
    t.stop()
