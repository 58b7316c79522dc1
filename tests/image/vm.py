"""One virtual machine under qemu TCG: OVMF (the code read-only, its own
copy of the variables), a software TPM (swtpm, its state kept across the
machine's boots), virtio disks, user-mode networking with loopback port
forwards, the serial console in a file and QMP on a Unix socket.  Each boot
is one qemu process (-no-reboot: a reboot or a power-off ends it)."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time

OVMF_CODE = os.environ.get("KEYWARD_OVMF_CODE", "/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = os.environ.get("KEYWARD_OVMF_VARS", "/usr/share/OVMF/OVMF_VARS_4M.fd")
QEMU = os.environ.get("KEYWARD_QEMU", "qemu-system-x86_64")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc, timeout):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


class Swtpm:
    """A TPM 2.0 for one boot; the state directory outlives it, as a real
    TPM's NV memory outlives a power cycle (PCRs start from zero)."""

    def __init__(self, state_dir, log):
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        self.state_dir = state_dir
        self.sock = os.path.join(state_dir, "ctrl.sock")
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(
            ["swtpm", "socket", "--tpm2", "--tpmstate", "dir=" + state_dir,
             "--ctrl", "type=unixio,path=" + self.sock, "--terminate"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                with open(log, "rb") as f:
                    raise AssertionError("swtpm did not start: %s" % f.read().decode(errors="replace")[-2000:])
            time.sleep(0.05)

    def stop(self):
        _stop(self.proc, 10)
        self.log.close()


class Qmp:
    """The QEMU Machine Protocol over a Unix socket: one command at a time."""

    def __init__(self, path, timeout=10):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.s.settimeout(timeout)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.f = self.s.makefile("rwb")
        self._read()                       # the greeting
        self.command("qmp_capabilities")

    def _read(self):
        while True:
            line = self.f.readline()
            if not line:
                raise ConnectionError("QMP closed")
            msg = json.loads(line)
            if "event" not in msg:
                return msg

    def command(self, name, **args):
        req = {"execute": name}
        if args:
            req["arguments"] = args
        self.f.write(json.dumps(req).encode() + b"\n")
        self.f.flush()
        msg = self._read()
        if "error" in msg:
            raise AssertionError("QMP %s: %s" % (name, msg["error"]))
        return msg.get("return")

    def close(self):
        try:
            self.f.close()
            self.s.close()
        except OSError:
            pass


class Vm:
    """A machine: its disks, TPM state and firmware variables are files in
    `workdir`, kept from one boot to the next."""

    def __init__(self, workdir, boot_disk, data_disk, config_disk, forwards):
        self.dir = workdir
        self.boot_disk, self.data_disk, self.config_disk = boot_disk, data_disk, config_disk
        self.forwards = forwards           # {host port: guest port}
        self.tpm_dir = os.path.join(workdir, "tpm")
        self.vars = os.path.join(workdir, "OVMF_VARS.fd")
        if not os.path.exists(self.vars):
            shutil.copyfile(OVMF_VARS, self.vars)
        self.qmp_path = os.path.join(workdir, "qmp.sock")
        self.proc = None
        self.tpm = None
        self.boots = 0

    def argv(self, serial_log):
        fwd = ",".join("hostfwd=tcp:127.0.0.1:%d-:%d" % (h, g) for h, g in sorted(self.forwards.items()))
        return [QEMU, "-machine", "q35", "-accel", "tcg", "-m", "2048", "-smp", "2",
                "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=" + OVMF_CODE,
                "-drive", "if=pflash,format=raw,unit=1,file=" + self.vars,
                "-chardev", "socket,id=chrtpm,path=" + self.tpm.sock,
                "-tpmdev", "emulator,id=tpm0,chardev=chrtpm", "-device", "tpm-crb,tpmdev=tpm0",
                # vda: the image (through its overlay), vdb: the blank data disk,
                # vdc: the config disk (read-only: find-disk passes over it)
                "-drive", "if=none,id=os,format=qcow2,file=" + self.boot_disk,
                "-device", "virtio-blk-pci,drive=os,bootindex=0",
                "-drive", "if=none,id=data,format=raw,file=" + self.data_disk,
                "-device", "virtio-blk-pci,drive=data",
                "-drive", "if=none,id=cidata,format=raw,readonly=on,file=" + self.config_disk,
                "-device", "virtio-blk-pci,drive=cidata",
                "-netdev", "user,id=n0" + ("," + fwd if fwd else ""),
                "-device", "virtio-net-pci,netdev=n0",
                "-serial", "file:" + serial_log, "-display", "none", "-no-reboot",
                "-qmp", "unix:%s,server=on,wait=off" % self.qmp_path]

    def start(self, serial_log, boot_disk=None):
        """Boots once; the serial console goes to serial_log."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        if boot_disk:
            self.boot_disk = boot_disk
        self.boots += 1
        self.tpm = Swtpm(self.tpm_dir, os.path.join(self.dir, "swtpm-%d.log" % self.boots))
        if os.path.exists(self.qmp_path):
            os.unlink(self.qmp_path)
        self.qemu_log_path = os.path.join(self.dir, "qemu-%d.log" % self.boots)
        self.qemu_log = open(self.qemu_log_path, "wb")
        self.proc = subprocess.Popen(self.argv(serial_log), stdout=self.qemu_log, stderr=self.qemu_log,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.started = time.monotonic()
        return self

    def exited(self):
        return self.proc is not None and self.proc.poll() is not None

    def returncode(self):
        rc = self.proc.poll()
        return "exit status %s, qemu said: %s" % (rc, self.qemu_output()[-1000:].strip() or "nothing")

    def qemu_output(self):
        try:
            with open(self.qemu_log_path, "rb") as f:
                return f.read().decode(errors="replace")
        except (OSError, AttributeError):
            return ""

    def wait_exit(self, timeout):
        """True when qemu ended within timeout (the guest powered off)."""
        try:
            self.proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            return False

    def powerdown(self, timeout):
        """ACPI power button, then waits for the guest to power off.  Returns
        True for a clean power-off within timeout; otherwise stops qemu hard
        and returns False."""
        if self.exited():
            self._cleanup()
            return False
        q = Qmp(self.qmp_path)
        try:
            q.command("system_powerdown")
        finally:
            q.close()
        clean = self.wait_exit(timeout)
        if not clean:
            self.kill()
        self._cleanup()
        return clean

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                q = Qmp(self.qmp_path, timeout=3)
                q.command("quit")
                q.close()
                self.proc.wait(timeout=10)
            except (OSError, AssertionError, ConnectionError, subprocess.TimeoutExpired, ValueError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(timeout=10)
        self._cleanup()

    def _cleanup(self):
        if self.tpm is not None:
            self.tpm.stop()
            self.tpm = None
        if getattr(self, "qemu_log", None) is not None and not self.qemu_log.closed:
            self.qemu_log.close()
