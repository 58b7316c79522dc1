"""The appliance's systemd units (appliance/systemd/, issue 12), checked on an
installed tree: `make install DESTDIR=<temp root>` over a copy of this
machine's own unit directory (so that sysinit.target and the other units ours
name resolve), then

- `systemd-analyze verify --root=<root>` on every unit of ours: it must say
  nothing at all (a warning is printed with exit status 0, so any output
  fails), and it checks that each ExecStart= binary exists in the root;
- `systemd-analyze security --offline=true --threshold=N --root=<root>`:
  at most 2.0 for the units that run keywardd, 3.5 for keyward-unlock
  (systemd 252 takes the threshold in tenths: 20, 35);
- the protections issue 12 names, each present as systemd reads it (the
  analyzer's JSON) or, where the analyzer has no entry (LimitCORE=,
  ReadWritePaths=, FailureAction=), in the unit file;
- every protection the analyzer finds missing is named in a comment of the
  unit, with the reason.

The last tests write copies of the units with one protection removed, and
assert that the check above fails on each: a check that cannot fail is no
check.

systemd is not PID 1 here: the units are analysed, not started.  What they
run is tested by tests/blackbox/test_standalone.py.
"""
import json
import os
import re
import shutil
import subprocess

import pytest

SRC = os.environ.get("KEYWARD_SRCDIR",
                     os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
UNITDIR = "usr/lib/systemd/system"
HOST_UNITS = "/usr/lib/systemd/system"
OURS = sorted(f for f in os.listdir(os.path.join(SRC, "appliance", "systemd"))
              if f.endswith((".service", ".socket", ".mount")))
# exposure bound (tenths) of each unit that runs something
BOUND = {"keyward-custody.service": 20, "keyward-front.service": 20,
         "keyward-unlock.service": 35,
         # no mount namespace of its own: the volume it mounts must be seen by
         # systemd and the services (the unit's "left out" block says each)
         "keyward-provision.service": 50}
KEYWARDD_UNITS = ["keyward-custody.service", "keyward-front.service"]


def sh(*argv):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stdout + p.stderr


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    r = str(tmp_path_factory.mktemp("root"))
    shutil.copytree(HOST_UNITS, os.path.join(r, UNITDIR), symlinks=True)
    code, out = sh("make", "-s", "--no-print-directory", "-C", SRC, "install", "DESTDIR=" + r)
    assert code == 0, out
    return r


def unit_text(root, name):
    with open(os.path.join(root, UNITDIR, name)) as f:
        return f.read()


def directives(text):
    """Key -> list of values, as the unit file sets them (our units use no
    line continuations); an empty assignment resets the list, as in systemd."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;[" or "=" not in line:
            continue
        k, v = line.split("=", 1)
        if v == "":
            out[k] = [""]
        else:
            out.setdefault(k, []).append(v)
    return out


def comments(text):
    return "\n".join(l for l in text.splitlines() if l.lstrip().startswith("#"))


# ---- the checks (each returns a list of problems; empty: passes) -------------

def check_verify(root, names):
    code, out = sh("systemd-analyze", "verify", "--root=" + root,
                   *[os.path.join(root, UNITDIR, n) for n in names])
    if code != 0 or out.strip():
        return ["systemd-analyze verify (exit %d):\n%s" % (code, out)]
    return []


def exposure(root, name):
    code, out = sh("systemd-analyze", "security", "--offline=true", "--root=" + root, name)
    m = re.search(r"Overall exposure level for %s: (\d+\.\d)" % re.escape(name), out)
    assert m, out
    return float(m.group(1))


def analysis(root, name):
    code, out = sh("systemd-analyze", "security", "--offline=true", "--json=short",
                   "--root=" + root, name)
    assert code == 0, out
    return {e["json_field"]: e for e in json.loads(out)}


def check_exposure(root, name):
    bound = BOUND[name]
    code, out = sh("systemd-analyze", "security", "--offline=true", "--root=" + root,
                   "--threshold=%d" % bound, name)
    level = exposure(root, name)
    if code != 0 or level * 10 > bound:
        return ["%s: exposure %.1f over %.1f (exit %d)" % (name, level, bound / 10, code)]
    return []


# what the analyzer must report as set, per unit (issue 12's list)
SET_BY_ANALYZER = {
    "keyward-custody.service": ["NoNewPrivileges", "ProtectSystem", "PrivateTmp",
                                "MemoryDenyWriteExecute", "SystemCallArchitectures",
                                "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules",
                                "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
                                "ProtectHostname", "RestrictRealtime", "RestrictSUIDSGID",
                                "LockPersonality", "ProtectProc", "ProcSubset", "UMask",
                                "KeyringMode", "RemoveIPC", "IPAddressDeny",
                                "RestrictAddressFamilies_AF_INET_INET6",
                                "RestrictNamespaces_user", "SystemCallFilter_privileged"],
    "keyward-front.service": ["NoNewPrivileges", "ProtectSystem", "PrivateTmp", "PrivateDevices",
                              "MemoryDenyWriteExecute", "SystemCallArchitectures",
                              "ProtectHome", "ProtectKernelTunables", "ProtectKernelModules",
                              "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock",
                              "ProtectHostname", "RestrictRealtime", "RestrictSUIDSGID",
                              "LockPersonality", "ProtectProc", "ProcSubset", "UMask",
                              "KeyringMode", "RemoveIPC", "RestrictNamespaces_user",
                              "SystemCallFilter_privileged"],
    "keyward-provision.service": ["NoNewPrivileges", "MemoryDenyWriteExecute",
                                  "SystemCallArchitectures",
                                  "ProtectClock", "ProtectHostname", "RestrictRealtime", "RestrictSUIDSGID", "LockPersonality",
                                  "UMask", "KeyringMode", "RestrictNamespaces_user",
                                  "CapabilityBoundingSet_CAP_SYS_MODULE",
                                  "CapabilityBoundingSet_CAP_NET_ADMIN"],
    "keyward-unlock.service": ["NoNewPrivileges", "MemoryDenyWriteExecute",
                               "SystemCallArchitectures", "ProtectKernelTunables",
                               "ProtectKernelModules", "ProtectKernelLogs", "RestrictRealtime",
                               "RestrictSUIDSGID", "LockPersonality", "IPAddressDeny",
                               "RestrictAddressFamilies_AF_INET_INET6",
                               "CapabilityBoundingSet_CAP_SYS_MODULE",
                               "CapabilityBoundingSet_CAP_NET_ADMIN"],
}


def check_protections(root, name):
    problems = []
    text = unit_text(root, name)
    d = directives(text)
    a = analysis(root, name)
    for field in SET_BY_ANALYZER[name]:
        if a.get(field, {}).get("set") is not True:
            problems.append("%s: %s is not set" % (name, a.get(field, {}).get("name", field)))
    want = {"NoNewPrivileges": ["yes"], "MemoryDenyWriteExecute": ["yes"], "LimitCORE": ["0"],
            # keyward-provision mounts the data volume for the services to see:
            # no mount namespace (the unit says why)
            "ProtectSystem": None if name == "keyward-provision.service" else ["strict"]}
    if name in KEYWARDD_UNITS:
        want.update({"PrivateTmp": ["yes"], "CapabilityBoundingSet": [""], "Type": ["notify"],
                     "RequiresMountsFor": ["/var/lib/keyward"]})
        # every capability gone: the analyzer's CapabilityBoundingSet entries
        caps = [f for f in a if f.startswith("CapabilityBoundingSet_")]
        problems += ["%s: %s" % (name, a[f]["name"]) for f in caps if a[f]["set"] is not True]
        # writable: the data volume alone (custody), nothing (front)
        rw = d.get("ReadWritePaths", [])
        allowed = [["/var/lib/keyward"]] if name == "keyward-custody.service" else [[]]
        if rw not in allowed:
            problems.append("%s: ReadWritePaths=%s" % (name, rw))
    sc = d.get("SystemCallFilter", [])
    if "@system-service" not in sc:
        problems.append("%s: SystemCallFilter=@system-service missing (%s)" % (name, sc))
    for k, v in want.items():
        if d.get(k) != v:
            problems.append("%s: %s=%s, want %s" % (name, k, d.get(k), v))
    # every protection found missing is explained in a comment
    c = comments(text)
    for e in a.values():
        if e["set"] is False and e["exposure"] and float(e["exposure"]) > 0:
            n = e["name"].replace("\u2026", "...")
            if n not in c:
                problems.append("%s: %s left out without a comment naming it" % (name, n))
    return problems


def check_boot_order(root):
    """keyward-unlock before the mount, the mount requiring it, the
    keywardd units requiring the mount, a failed unlock stopping the machine."""
    problems = []
    u = directives(unit_text(root, "keyward-unlock.service"))
    m = directives(unit_text(root, "var-lib-keyward.mount"))
    if "var-lib-keyward.mount" not in " ".join(u.get("Before", [])).split():
        problems.append("keyward-unlock.service is not Before=var-lib-keyward.mount")
    if u.get("FailureAction") not in (["halt"], ["poweroff"], ["halt-force"], ["poweroff-force"]):
        problems.append("keyward-unlock.service: FailureAction=%s" % u.get("FailureAction"))
    if u.get("Type") != ["oneshot"] or u.get("RemainAfterExit") != ["yes"]:
        problems.append("keyward-unlock.service: not a oneshot that remains")
    for k in ("Requires", "After"):
        if "keyward-unlock.service" not in " ".join(m.get(k, [])).split():
            problems.append("var-lib-keyward.mount: no %s=keyward-unlock.service" % k)
    # first boot: provisioning makes and opens the volume before unlock runs
    p = directives(unit_text(root, "keyward-provision.service"))
    for after in ("keyward-unlock.service", "var-lib-keyward.mount", "keyward-custody.socket",
                  "keyward-front.service"):
        if after not in " ".join(p.get("Before", [])).split():
            problems.append("keyward-provision.service is not Before=%s" % after)
    if u.get("ConditionPathExists") != ["!/dev/mapper/keyward-data"]:
        problems.append("keyward-unlock.service: ConditionPathExists=%s" % u.get("ConditionPathExists"))
    if m.get("What") != ["/dev/mapper/keyward-data"] or m.get("Where") != ["/var/lib/keyward"]:
        problems.append("var-lib-keyward.mount: What=%s Where=%s" % (m.get("What"), m.get("Where")))
    return problems


def check_all(root):
    problems = check_verify(root, OURS) + check_boot_order(root)
    for name in BOUND:
        problems += check_exposure(root, name) + check_protections(root, name)
    return problems


# ---- the installed units pass ------------------------------------------------

def test_units_are_installed(root):
    for name in OURS:
        assert os.path.isfile(os.path.join(root, UNITDIR, name)), name
    for path in ("usr/sbin/keywardd", "usr/sbin/keyward-unlock",
                 "usr/lib/sysctl.d/50-keyward.conf", "usr/lib/sysusers.d/keyward.conf"):
        assert os.path.isfile(os.path.join(root, path)), path
    assert {"keyward-custody.service", "keyward-custody.socket", "keyward-front.service",
            "keyward-unlock.service", "var-lib-keyward.mount"} <= set(OURS)


def test_units_pass_systemd_analyze_verify(root):
    assert check_verify(root, OURS) == []


@pytest.mark.parametrize("name", sorted(BOUND))
def test_exposure_within_bound(root, name):
    assert check_exposure(root, name) == []
    print("%s: exposure %.1f (bound %.1f)" % (name, exposure(root, name), BOUND[name] / 10))


@pytest.mark.parametrize("name", sorted(BOUND))
def test_protections_present_and_omissions_explained(root, name):
    assert check_protections(root, name) == []


def test_boot_order(root):
    assert check_boot_order(root) == []


def test_sysctl_lets_the_front_bind_443(root):
    text = open(os.path.join(root, "usr/lib/sysctl.d/50-keyward.conf")).read()
    assert re.search(r"^net\.ipv4\.ip_unprivileged_port_start\s*=\s*443$", text, re.M), text


def test_sysusers_creates_the_two_users(root, tmp_path):
    """systemd-sysusers, run on a root of its own, makes both users."""
    r = str(tmp_path)
    os.makedirs(os.path.join(r, "etc"))
    code, out = sh("systemd-sysusers", "--root=" + r,
                   os.path.join(root, "usr/lib/sysusers.d/keyward.conf"))
    assert code == 0, out
    passwd = open(os.path.join(r, "etc", "passwd")).read()
    assert re.search(r"^keyward-custody:", passwd, re.M) and re.search(r"^keyward-front:", passwd, re.M)
    assert re.search(r"^tss:.*:keyward-custody$", open(os.path.join(r, "etc", "group")).read(), re.M)


# ---- and the check fails when a protection goes ------------------------------

def mutated(root, tmp_path, name, edit):
    """A copy of the installed root in which unit name's text is edit(text)."""
    r = str(tmp_path / "mut")
    shutil.copytree(root, r, symlinks=True)
    p = os.path.join(r, UNITDIR, name)
    text = open(p).read()
    new = edit(text)
    assert new != text, "the edit changed nothing"
    with open(p, "w") as f:
        f.write(new)
    return r


def drop(key, value=None):
    """Removes the lines setting key (to value, when given)."""
    def edit(text):
        return "\n".join(l for l in text.splitlines()
                         if not (l.startswith(key + "=") and
                                 (value is None or l == "%s=%s" % (key, value)))) + "\n"
    return edit


REMOVALS = [
    ("keyward-custody.service", "NoNewPrivileges", None),
    ("keyward-front.service", "NoNewPrivileges", None),
    ("keyward-unlock.service", "NoNewPrivileges", None),
    ("keyward-custody.service", "ProtectSystem", None),
    ("keyward-front.service", "PrivateTmp", None),
    ("keyward-front.service", "PrivateDevices", None),
    ("keyward-custody.service", "MemoryDenyWriteExecute", None),
    ("keyward-unlock.service", "MemoryDenyWriteExecute", None),
    ("keyward-front.service", "SystemCallFilter", "@system-service"),
    ("keyward-custody.service", "CapabilityBoundingSet", None),
    ("keyward-front.service", "LimitCORE", None),
    ("keyward-custody.service", "ReadWritePaths", None),
    ("keyward-custody.service", "RestrictAddressFamilies", None),
    ("keyward-front.service", "ProtectKernelTunables", None),
    ("keyward-custody.service", "RequiresMountsFor", None),
    ("keyward-unlock.service", "FailureAction", None),
    ("var-lib-keyward.mount", "Requires", None),
]


@pytest.mark.parametrize("name,key,value", REMOVALS)
def test_check_fails_without(root, tmp_path, name, key, value):
    r = mutated(root, tmp_path, name, drop(key, value))
    problems = check_all(r)
    assert problems, "the check passed with %s=%s removed from %s" % (key, value or "", name)


EDITS = [
    # a writable path beyond the data volume
    ("ReadWritePaths=/var/lib/keyward", "ReadWritePaths=/var/lib/keyward /etc", "ReadWritePaths"),
    # PrivateUsers= left out of custody is explained; without the comment, fails
    ("# PrivateUsers=:", "# (private users):", "PrivateUsers="),
]


@pytest.mark.parametrize("old,new,problem", EDITS)
def test_check_fails_on_an_edit_of_custody(root, tmp_path, old, new, problem):
    r = mutated(root, tmp_path, "keyward-custody.service", lambda t: t.replace(old, new))
    assert any(problem in p for p in check_protections(r, "keyward-custody.service"))


def test_check_fails_over_the_exposure_bound(root, tmp_path):
    """The threshold itself: the front without its namespace and kernel
    protections is over 2.0, and systemd-analyze's --threshold says so."""
    gone = ("Protect", "Private", "Restrict", "SystemCall", "LockPersonality", "UMask",
            "MemoryDeny", "KeyringMode", "RemoveIPC", "DevicePolicy")

    def edit(text):
        return "\n".join(l for l in text.splitlines() if not l.startswith(gone)) + "\n"
    r = mutated(root, tmp_path, "keyward-front.service", edit)
    assert exposure(r, "keyward-front.service") > 2.0
    assert check_exposure(r, "keyward-front.service")


def test_verify_fails_on_a_warning_and_a_missing_binary(root, tmp_path):
    r = mutated(root, tmp_path, "keyward-front.service",
                lambda t: t.replace("ProtectSystem=strict", "ProtectSystem=strickt"))
    assert check_verify(r, ["keyward-front.service"])
    os.remove(os.path.join(r, "usr/sbin/keyward-unlock"))
    out = check_verify(r, ["keyward-unlock.service"])
    assert out and "keyward-unlock" in out[0]
