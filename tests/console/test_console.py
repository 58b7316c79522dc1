"""The web console (/ui/) in a real browser: one keywardd on loopback, set up
by the black-box harness (tests/blackbox: SoftHSM2, SQLCipher, TLS, admin
token) with Azure EKM over mutual TLS, AWS XKS and attestation (swtpm) on,
and the node test files beside this one (*.test.mjs: playwright-core driving
Debian's /usr/bin/chromium headless) run against it with `node --test`, one
file at a time.  Screenshots go to build/artefacts/console/.

Run by `make test-console` (which installs tests/console/node_modules with
`npm ci`); the fixtures are imported from tests/blackbox, not copied."""
import glob
import os
import shutil
import subprocess
import sys
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "blackbox"))

from conftest import BUILD, Server  # noqa: E402  (tests/blackbox/conftest.py)
from ekm_certs import make_pki  # noqa: E402
from swtpm import Swtpm  # noqa: E402
from test_attest import attest_env  # noqa: E402
from test_ekm import ALLOWED_CN, OTHER_CN, ekm_env  # noqa: E402
from test_xks import TOML as XKS_TOML  # noqa: E402

ARTEFACTS = os.path.join(BUILD, "artefacts", "console")
NODE_FILES = sorted(os.path.basename(p) for p in glob.glob(os.path.join(HERE, "*.test.mjs")))
# one node file's bound (each test in it has its own, smaller one)
FILE_TIMEOUT = 150
# the lockout the sign-in test meets: 3 failures, then 60 s (2^n more after)
# and the node id the overview's node table shows (overview.test.mjs)
CONSOLE_NODE = "console-node-1"
CONSOLE_ENV = {"KEYWARD_CONSOLE_LOGIN_MAX_FAILURES": "3",
               "KEYWARD_CONSOLE_LOCKOUT_SECONDS": "60",
               "KEYWARD_DB_NODE_NAME": CONSOLE_NODE}


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
        pytest.fail("tests/console/node_modules is missing: run `make test-console` (npm ci)")
    d = str(tmp_path_factory.mktemp("console"))
    pki = make_pki(os.path.join(d, "pki"), ALLOWED_CN, OTHER_CN)
    shutil.rmtree(ARTEFACTS, ignore_errors=True)
    os.makedirs(ARTEFACTS)
    tpm = Swtpm()
    s = None
    try:
        env = ekm_env(pki, KEYWARD_CUSTODY_TIMEOUT_MS="60000")
        env.update(attest_env(tpm))
        env.update(CONSOLE_ENV)
        s = Server(os.path.join(d, "srv"), env=env, extra_toml=XKS_TOML).start()
        yield s, pki
    finally:
        if s is not None:
            s.stop()
        tpm.stop()


@pytest.mark.parametrize("name", NODE_FILES)
def test_console(console, name):
    s, pki = console
    env = dict(os.environ)
    env.update({"KW_URL": s.url, "KW_CA": s.cacert, "KW_TOKEN": s.token,
                "KW_ARTEFACTS": ARTEFACTS, "KW_EKM_CERT": pki["allowed"][0],
                "KW_EKM_KEY": pki["allowed"][1], "KW_EKM_CN": ALLOWED_CN, "KW_NODE": CONSOLE_NODE,
                # never a downloaded browser
                "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
    t0 = time.monotonic()
    try:
        p = subprocess.run(["node", "--test", "--test-reporter=spec", name], cwd=HERE, env=env,
                           capture_output=True, text=True, timeout=FILE_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail("%s: still running after %d s\n%s\n--- server log ---\n%s"
                    % (name, FILE_TIMEOUT, out, s.logs()))
    took = time.monotonic() - t0
    if p.returncode != 0:
        pytest.fail("%s: node --test exited %d after %.1f s\n%s%s\n--- server log ---\n%s"
                    % (name, p.returncode, took, p.stdout, p.stderr, s.logs()))
    assert s.proc.poll() is None, "keywardd died during %s:\n%s" % (name, s.logs())
