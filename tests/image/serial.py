"""The VM's serial console (qemu -serial file:LOG): waiting, bounded, for a
line to appear, while watching for the lines that mean it never will."""
import re
import time

# lines after which waiting for anything else is pointless (the boot failed)
FATAL = [
    r"Kernel panic",
    r"end Kernel panic",
    r"Failed to start .*Keyward",
    r"keyward-provision: step \S+ failed",
    r"You are in emergency mode",
    r"Dependency failed for .*[Kk]eyward",
]


class SerialLog:
    def __init__(self, path):
        self.path = path

    def text(self):
        try:
            with open(self.path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def mark(self):
        """An offset for wait_for(start=...): only what comes after now."""
        return len(self.text().replace("\r", ""))

    def tail(self, n=60):
        """The last n lines, after our programs' own lines (a refusal or a
        failed step says why), which the shutdown's noise would bury."""
        lines = self.text().replace("\r", "").splitlines()
        ours = [ln for ln in lines if re.search(r"(^|: )(keyward-unlock|keyward-provision|keywardd)( \w+)?: ", ln)][-20:]
        head = "our programs said:\n%s\n---\n" % "\n".join(ours) if ours else ""
        return head + "\n".join(lines[-n:])

    def check(self, vm=None, fatal=FATAL, what="the boot", start=0):
        """Fails when one of `fatal` matches the log (from `start`) or the
        VM's process has exited, with the log's tail in the message."""
        text = self.text().replace("\r", "")[start:]
        for b in fatal or []:
            f = re.search(b, text, re.MULTILINE)
            if f:
                raise AssertionError("serial console says %r while waiting for %s; last lines:\n%s"
                                     % (f.group(0), what, self.tail()))
        if vm is not None and vm.exited():
            raise AssertionError("the VM exited (%s) while waiting for %s; last lines:\n%s"
                                 % (vm.returncode(), what, self.tail()))

    def wait_for(self, pattern, timeout, vm=None, fatal=FATAL, what=None, start=0):
        """Waits until `pattern` (a regex, DOTALL|MULTILINE) matches the log
        from offset `start`; returns the match.  Fails at once when one of
        `fatal` matches first, when the VM's process exits, or after
        `timeout` seconds, each with the log's tail in the message."""
        rx = re.compile(pattern, re.DOTALL | re.MULTILINE)
        what = what or pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.text().replace("\r", "")[start:])
            if m:
                return m
            self.check(vm, fatal, what, start)
            if time.monotonic() > deadline:
                raise AssertionError("no %s on the serial console within %d s; last lines:\n%s"
                                     % (what, timeout, self.tail()))
            time.sleep(1)
