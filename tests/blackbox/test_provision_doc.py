"""The provisioning document (issue 13): keyward.toml's syntax read by the
server's own parser, with the tables of first boot.  Every bad document is
refused with the line at fault and a message saying what, before anything
is written: the data disk keeps every byte and no state is left."""
import hashlib
import os
import subprocess

import pytest

from conftest import BUILD
from test_provision_disk import machine  # noqa: F401 - the fixture

PROV = os.path.join(BUILD, "keyward-provision")

GOOD = """\
[provision]
version = 1

[provision.unlock]
tpm2 = "pcrs"
tpm2_pcrs = "7"

[provision.hsm]
evaluation = true

[provision.tls]
names = ["kw.example.test", "10.0.0.5"]

[aws_xks_store.kms-a]
uri_prefix = "/kms-a"

[key.payments]
type = "aes"
ops = ["encrypt", "decrypt"]
xks_stores = ["kms-a"]
"""

# The smallest document that passes: what each bad one is built from.
MIN = """\
[provision]
version = 1
[provision.hsm]
evaluation = true
[provision.tls]
names = ["kw.example.test"]
"""

PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"

# (document, line, words the message must hold)
BAD = [
    # syntax: the server's parser, its messages
    (MIN + "[provision.tls\n", 7, "expected ']'"),
    (MIN + "names2 = 3\n", 7, "unknown key 'names2' in [provision.tls]"),
    (MIN + "[provision.disk]\ndevice = /dev/vdb\n", 8, "invalid value"),
    (MIN + "[provision.disk]\ndevice = \"/dev/vdb\n", 8, "unterminated string"),
    (MIN.replace("version = 1", "version = 2"), 2, "between 1 and 1"),
    (MIN.replace("version = 1", "version = \"1\""), 2, "must be an integer"),
    (MIN + "[provision]\n", 7, "duplicate table [provision]"),
    (MIN + "[provision.hsm]\n", 7, "duplicate table [provision.hsm]"),
    (MIN.replace("evaluation = true", "evaluation = true\nevaluation = false"), 5, "duplicate key 'evaluation'"),
    (MIN + "[provision.nothing]\n", 7, "unknown section [provision.nothing]"),
    (MIN + "[nothing]\n", 7, "unknown section [nothing]"),
    (MIN + "[provision.tls.x]\n", 7, "at most two name parts"),
    (MIN + "[[key]]\n", 7, "arrays of tables"),
    (MIN + "x = 1\n", 7, "unknown key 'x' in [provision.tls]"),
    ("version = 1\n" + MIN, 1, "outside any [section]"),
    (MIN + "[provision.disk]\ndevice = \"\"\"x\"\"\"\n", 8, "multi-line basic strings"),
    (MIN + "[provision.tls]\n", 7, "duplicate table"),
    (MIN + "[key.a]\ntype = 'aes'\nops = ['encrypt', 3]\n", 9, "arrays may only hold strings"),
    (MIN + "[key.a]\ntype = 'aes'\n[key.a]\n", 9, "duplicate table (first on line 7)"),
    (MIN + "[key]\n", 7, "needs a name"),
    (MIN + "[provision.unlock]\nsnp = yes\n", 8, "invalid value"),
    # the server's tables the appliance fixes
    (MIN + "[hsm]\nmodule = \"/x.so\"\n", 7, "[hsm] cannot be set in this document: the HSM link is [provision.hsm]"),
    (MIN + "[db]\n", 7, "[db] cannot be set"),
    (MIN + "[tls]\n", 7, "[tls] cannot be set"),
    (MIN + "[admin]\n", 7, "[admin] cannot be set"),
    (MIN + "[custody]\n", 7, "[custody] cannot be set"),
    (MIN + "[sandbox]\n", 7, "[sandbox] cannot be set"),
    (MIN + "[attestation]\n", 7, "[attestation] cannot be set"),
    # the document's own rules
    ("[provision.hsm]\nevaluation = true\n[provision.tls]\nnames = [\"a.b\"]\n", 1, "version = 1 is required"),
    (MIN.replace("evaluation = true", "evaluation = false"), 4, "module is required"),
    (MIN.replace("evaluation = true", "module = \"lib.so\"\ntoken_label = \"t\"\npin = \"1234\"")
     .replace("version = 1", "version = 1\nallow_secrets = true"), 5, "absolute path"),
    (MIN.replace("evaluation = true", "evaluation = true\ntoken_label = \"t\""), 5,
     "token_label: not with evaluation = true"),
    (MIN.replace("evaluation = true", "module = \"/usr/lib/x.so\"\ntoken_label = \"t\"\npin = \"1234\""), 6,
     "'pin' in [provision.hsm] is a secret"),
    (MIN + "[aws_xks_config]\naws_xks_enable = true\naws_xks_sigv4_secret_access_key = \"" + "A" * 43 + "\"\n",
     8, "its store's secret would be in keyward.toml"),
    (MIN + "[aws_xks_store.s1]\nuri_prefix = \"/s1\"\nsecret_access_key = \"" + "B" * 43 + "\"\n", 9,
     "[aws_xks_store.s1] secret_access_key: a key store made at provisioning lives in the key store"),
    (MIN + "[aws_xks_store.s1]\nuri_prefix = \"/s1\"\naccess_key_id = \"ABCDEFGHIJKLMNOPQRST\"\n", 9,
     "[aws_xks_store.s1] access_key_id: a key store made at provisioning"),
    (MIN + "[aws_xks_store.s1]\nuri_prefix = \"/s1\"\nclient_subjects = [\"CN=x\"]\n", 9,
     "[aws_xks_store.s1] client_subjects"),
    (MIN + "[aws_xks_store.s1]\nregion = \"eu-west-1\"\n", 7, "[aws_xks_store.s1] uri_prefix"),
    (MIN.replace("[provision.tls]", "[provision.tls]\nmode = \"supplied\"\ncertificate = '''\n" + PEM_CERT
                 + "'''\nprivate_key = '''\n" + PEM_KEY + "'''"), 12, "'private_key' in [provision.tls] is a secret"),
    (MIN + "[provision.unlock]\ntpm2 = \"maybe\"\n", 8, "tpm2 must be \"signed\""),
    (MIN + "[provision.unlock]\ntpm2 = \"pcrs\"\n", 8, "needs tpm2_pcrs"),
    (MIN + "[provision.unlock]\ntpm2_pcrs = \"7+7\"\n", 8, "distinct PCR numbers"),
    (MIN + "[provision.unlock]\ntpm2_pcrs = \"24\"\n", 8, "distinct PCR numbers"),
    (MIN + "[provision.unlock]\ntpm2 = \"none\"\n", 8, "only its recovery key"),
    (MIN + "[provision.unlock]\nsnp_tcb = \"00\"\n", 8, "snp_tcb needs snp = true"),
    (MIN + "[provision.unlock]\nsnp = true\nsnp_tcb = \"XYZ\"\n", 9, "16 lower-case hex"),
    (MIN + "[provision.unlock]\ntpm2_public_key = \"key.pem\"\n", 8, "absolute path"),
    (MIN + "mode = \"pem\"\n", 7, "mode must be"),
    (MIN + "key_type = \"dsa\"\n", 7, "key_type must be one of"),
    (MIN.replace("names = [\"kw.example.test\"]", "names = []"), 6, "names is required"),
    (MIN.replace("kw.example.test", "kw_example.test"), 6, "names:"),
    (MIN.replace("kw.example.test", "-kw.example.test"), 6, "names:"),
    (MIN + "days = 0\n", 7, "between 1 and 3650"),
    (MIN + "mode = \"supplied\"\n", 7, "needs certificate and private_key"),
    (MIN + "certificate = '''\n" + PEM_CERT + "'''\n", 7, "go with mode = \"supplied\""),
    (MIN + "[provision.admin]\ntoken_sha256 = \"abc\"\n", 8, "64 lower-case hex"),
    (MIN + "[key.a]\nops = [\"encrypt\"]\n", 7, "type is required"),
    (MIN + "[key.a]\ntype = \"des\"\n", 8, "type must be \"aes\" or \"rsa\""),
    (MIN + "[key.a]\ntype = \"aes\"\nsize = 128\n", 9, "AES keys are 256 bits"),
    (MIN + "[key.a]\ntype = \"rsa\"\nsize = 1024\n", 9, "2048, 3072 or 4096"),
    (MIN + "[key.a]\ntype = \"aes\"\nops = [\"sign\"]\n", 9, "not one of encrypt"),
    (MIN + "[key.a]\ntype = \"aes\"\nops = [\"wrap\", \"wrap\"]\n", 9, "\"wrap\" twice"),
    (MIN + "[key.a]\ntype = \"aes\"\nxks_stores = [\"nowhere\"]\n", 9, "names no [aws_xks_store.<name>]"),
    (MIN + "[key.a]\ntype = \"aes\"\nekm_clients = [\"cn\"]\n", 9, "azure_ekm_enable is not true"),
    (MIN + "[azure_ekm_config]\nazure_ekm_enable = true\n", 8, "give its CA as [provision.tls] client_ca"),
    (MIN + "client_ca = '''\nnot a certificate\n'''\n", 7, "client_ca holds no PEM certificate"),
    # the server's own checks, at the line of the key
    (MIN + "[aws_xks_store.s1]\nuri_prefix = \"no-slash\"\n", 8, "[aws_xks_store.s1] uri_prefix"),
    (MIN + "[http]\nmax_connections = 0\n", 8, "max_connections"),
]


def snapshot(dev):
    with open(dev, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


@pytest.fixture
def prov(machine, tmp_path):  # noqa: F811 - machine is the fixture
    disk = machine.disk("vdb", mib=40)
    sysb, devdir = tmp_path / "sys" / "block", tmp_path / "dev"

    def run(text, *extra):
        doc = tmp_path / "user-data"
        doc.write_text(text)
        return subprocess.run([PROV, "run", "--doc", str(doc), "--data-dir", str(tmp_path / "data"),
                               "--state-dir", str(tmp_path / "state"), "--no-activate",
                               "--sys-block", str(sysb), "--dev-dir", str(devdir),
                               "--console", str(tmp_path / "console"), *extra],
                              capture_output=True, text=True, timeout=60)
    run.disk = disk
    run.tmp = tmp_path
    return run


def test_a_good_document_passes_check(tmp_path):
    doc = tmp_path / "user-data"
    doc.write_text(GOOD)
    r = subprocess.run([PROV, "check", str(doc)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(str(doc) + ": ok (sha256 ")


@pytest.mark.skipif(os.geteuid() != 0, reason="loop devices need root")
@pytest.mark.parametrize("text,line,words", BAD, ids=["bad%02d" % i for i in range(len(BAD))])
def test_a_bad_document_is_refused_at_its_line_and_nothing_is_written(prov, text, line, words):
    before = snapshot(prov.disk)
    r = prov(text)
    assert r.returncode == 4, (r.returncode, r.stderr)
    lines = [x for x in r.stderr.splitlines() if not x.startswith("{")]
    first = lines[0] if lines else ""
    assert first.startswith("keyward-provision: %s:%d: " % (prov.tmp / "user-data", line)), r.stderr
    assert words in first, r.stderr
    assert snapshot(prov.disk) == before
    for d in ("data", "state", "console"):
        assert not (prov.tmp / d).exists(), d


def test_there_are_at_least_forty_bad_documents():
    assert len(BAD) >= 40


def test_secrets_allowed_are_warned_about_and_never_echoed(tmp_path):
    secret = "Zq" * 22
    doc = tmp_path / "user-data"
    doc.write_text(MIN.replace("version = 1", "version = 1\nallow_secrets = true").replace(
        "evaluation = true", "module = \"/usr/lib/x.so\"\ntoken_label = \"t\"\npin = \"%s\"" % secret))
    r = subprocess.run([PROV, "check", str(doc)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "warning" in r.stderr and "metadata" in r.stderr and "encrypted data volume" in r.stderr
    assert "'pin' in [provision.hsm]" in r.stderr
    assert secret not in r.stderr + r.stdout


def test_a_pem_in_a_multi_line_string_is_read(tmp_path):
    """'''...''' holds a PEM as written; a supplied certificate that is not a real one is
    refused by the TLS step, not by the parser."""
    doc = tmp_path / "user-data"
    doc.write_text(MIN.replace("version = 1", "version = 1\nallow_secrets = true").replace(
        "[provision.tls]", "[provision.tls]\nmode = \"supplied\"\ncertificate = '''\n" + PEM_CERT +
        "'''\nprivate_key = '''\n" + PEM_KEY + "'''"))
    r = subprocess.run([PROV, "check", str(doc)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
