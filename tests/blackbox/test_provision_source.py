"""keyward-provision fetch (issue 13): the provisioning document found in a
cloud's instance metadata, against loopback stubs of AWS IMDSv2, Azure IMDS
and GCP's metadata server (imds_stub.py) that also check what is sent."""
import base64
import json
import os
import stat
import subprocess

import pytest

from conftest import BUILD
from imds_stub import Imds

PROV = os.path.join(BUILD, "keyward-provision")
DOC = b'[provision]\n# a document\n'


@pytest.fixture
def clouds():
    made = []

    def make(*a, **kw):
        s = Imds(*a, **kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.stop()


def fetch(tmp_path, *args, env=None, name=None):
    """One run, into a new output file (name: that one)."""
    out = str(tmp_path / (name or "doc-%d.toml" % len(os.listdir(str(tmp_path)))))
    r = subprocess.run([PROV, "fetch", "--out", out, "--timeout-ms", "1000", *args], capture_output=True, text=True,
                       timeout=120, env=env)
    data = open(out, "rb").read() if os.path.exists(out) else None
    logs = [json.loads(line) for line in r.stderr.splitlines() if line.startswith("{")]
    return r, data, logs, out


def only(cloud, url):
    """Every source off but this cloud, at url."""
    return ["--no-nocloud", "--no-ovf"] + [a for c in ("aws", "azure", "gcp")
                                           for a in ((("--%s-url" % c), url) if c == cloud else ("--no-" + c,))]


def test_aws_imdsv2_token_then_user_data(tmp_path, clouds):
    aws = clouds("aws", DOC)
    r, data, logs, out = fetch(tmp_path, *only("aws", aws.url))
    assert r.returncode == 0, r.stderr
    assert data == DOC
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert [(m, p) for m, p, _ in aws.requests] == [("PUT", "/latest/api/token"), ("GET", "/latest/user-data")]
    assert aws.requests[0][2]["x-aws-ec2-metadata-token-ttl-seconds"] == "300"
    assert aws.requests[1][2]["x-aws-ec2-metadata-token"] == aws.token
    assert {"event": "provision_document", "source": "aws-imds"}.items() <= logs[-1].items()
    assert DOC.decode() not in r.stderr and r.stdout == ""    # the document is never printed


def test_azure_user_data_is_base64(tmp_path, clouds):
    az = clouds("azure", DOC)
    r, data, logs, _ = fetch(tmp_path, *only("azure", az.url))
    assert r.returncode == 0, r.stderr
    assert data == DOC and logs[-1]["source"] == "azure-imds"
    m, path, h = az.requests[0]
    assert m == "GET" and path.startswith("/metadata/instance/compute/userData?") and h["metadata"] == "true"


def test_gcp_needs_the_flavor_header_both_ways(tmp_path, clouds):
    g = clouds("gcp", DOC)
    r, data, logs, _ = fetch(tmp_path, *only("gcp", g.url))
    assert r.returncode == 0, r.stderr
    assert data == DOC and logs[-1]["source"] == "gcp-metadata"
    assert g.requests[0][2]["metadata-flavor"] == "Google"
    # a server that does not say it is Google's metadata server is not believed
    fake = clouds("gcp", DOC, gcp_flavor=False)
    r, data, _, _ = fetch(tmp_path, "--attempts", "1", *only("gcp", fake.url))
    assert r.returncode == 3 and data is None
    assert "gcp-metadata: the answer lacks Metadata-Flavor: Google" in r.stderr


def test_first_found_wins_in_order(tmp_path, clouds):
    aws, az, g = clouds("aws"), clouds("azure", b"from azure"), clouds("gcp", b"from gcp")
    r, data, logs, _ = fetch(tmp_path, "--no-nocloud", "--no-ovf", "--aws-url", aws.url, "--azure-url", az.url,
                             "--gcp-url", g.url)
    assert r.returncode == 0, r.stderr
    assert data == b"from azure" and logs[-1]["source"] == "azure-imds"
    assert len(aws.requests) == 2           # token, then 404: no user data, no retry
    assert g.requests == []                  # never asked
    # a local file comes before any cloud
    f = tmp_path / "local.toml"
    f.write_bytes(b"local")
    r, data, logs, _ = fetch(tmp_path, "--file", str(f), "--nocloud-device", "/dev/null", "--aws-url", aws.url)
    assert r.returncode == 0 and data == b"local" and logs[-1]["source"] == "file"
    assert len(aws.requests) == 2


def test_failures_are_retried_a_bounded_number_of_times(tmp_path, clouds):
    aws = clouds("aws", DOC, fail_first=2)
    r, data, logs, _ = fetch(tmp_path, "--attempts", "3", *only("aws", aws.url))
    assert r.returncode == 0 and data == DOC, r.stderr
    assert [l["attempt"] for l in logs if l["event"] == "provision_source_failed"] == ["1", "2"]
    flaky = clouds("azure", DOC, fail_first=5)
    r, data, _, _ = fetch(tmp_path, "--attempts", "2", *only("azure", flaky.url))
    assert r.returncode == 3 and data is None
    assert len(flaky.requests) == 2 and "azure-imds: HTTP 500" in r.stderr


def test_nothing_anywhere(tmp_path, clouds):
    aws, az, g = clouds("aws"), clouds("azure"), clouds("gcp")
    r, data, _, _ = fetch(tmp_path, "--no-nocloud", "--no-ovf", "--aws-url", aws.url, "--azure-url", az.url,
                          "--gcp-url", g.url)
    assert r.returncode == 3 and data is None
    assert ("no provisioning document: aws-imds: 404: no user data; azure-imds: empty user data; "
            "gcp-metadata: 404: no user data") in r.stderr, r.stderr
    # nobody listening: bounded by the timeout and the attempts
    r, _, _, _ = fetch(tmp_path, "--attempts", "1", *only("aws", "http://127.0.0.1:1"))
    assert r.returncode == 3 and "aws-imds: " in r.stderr


def test_unusable_documents_stop_the_search(tmp_path, clouds):
    big = clouds("aws", b"x" * (64 * 1024 + 1))
    later = clouds("gcp", DOC)
    r, data, _, _ = fetch(tmp_path, "--no-nocloud", "--no-ovf", "--aws-url", big.url, "--no-azure", "--gcp-url",
                          later.url)
    assert r.returncode == 4 and data is None and "aws-imds: the user data is unusable: more than" in r.stderr
    assert later.requests == []              # a bad document is not a reason to look elsewhere
    bad = clouds("azure", azure_raw=b"%%% not base64")
    r, data, _, _ = fetch(tmp_path, *only("azure", bad.url))
    assert r.returncode == 4 and "userData is not base64" in r.stderr


def test_no_proxy_and_no_redirect(tmp_path, clouds):
    aws = clouds("aws", DOC)
    env = dict(os.environ, http_proxy="http://127.0.0.1:1", HTTP_PROXY="http://127.0.0.1:1", ALL_PROXY="http://127.0.0.1:1")
    r, data, _, _ = fetch(tmp_path, *only("aws", aws.url), env=env)
    assert r.returncode == 0 and data == DOC, r.stderr
    moved = clouds("gcp", status=302)
    r, data, _, _ = fetch(tmp_path, "--attempts", "1", *only("gcp", moved.url))
    assert r.returncode == 3 and "HTTP 302" in r.stderr


def test_output_and_usage_errors(tmp_path, clouds):
    aws = clouds("aws", DOC)
    out = tmp_path / "doc.toml"
    out.write_bytes(b"keep")
    r, data, _, _ = fetch(tmp_path, *only("aws", aws.url), name="doc.toml")
    assert r.returncode == 5 and data == b"keep"
    r = subprocess.run([PROV, "fetch"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--out" in r.stderr
    r = subprocess.run([PROV, "fetch", "--out", "x", "--timeout-ms", "0"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    r = subprocess.run([PROV, "bogus"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    r = subprocess.run([PROV, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and "exit status" in r.stdout
    missing = str(tmp_path / "none.toml")
    r, _, _, _ = fetch(tmp_path, "--file", missing)
    assert r.returncode == 3 and "cannot read " + missing in r.stderr


OVF = ('<?xml version="1.0" encoding="utf-8"?>\n<ns0:Environment xmlns:ns0="http://schemas.dmtf.org/ovf/environment/1" '
       'xmlns:ns1="http://schemas.microsoft.com/windowsazure"><ns1:ProvisioningSection>'
       '<ns1:LinuxProvisioningConfigurationSet><ns1:UserName>azureuser</ns1:UserName>'
       '<ns1:UserPassword>Hunter2-not-for-us</ns1:UserPassword><ns1:CustomData>%s</ns1:CustomData>'
       '</ns1:LinuxProvisioningConfigurationSet></ns1:ProvisioningSection></ns0:Environment>\n')


@pytest.fixture
def disk(tmp_path):
    """disk(label, {name: bytes or ("link", target)}) -> a loop device holding
    an ext4 file system with those files (this kernel mounts no iso9660,
    udf or vfat; the code tries them first)."""
    devs = []

    def make(label, files):
        root = tmp_path / ("fs-%d" % len(devs))
        root.mkdir()
        for name, content in files.items():
            if isinstance(content, tuple):
                os.symlink(content[1], str(root / name))
            else:
                (root / name).write_bytes(content)
        img = str(tmp_path / ("disk-%d.img" % len(devs)))
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(root), img, "8M"], check=True,
                       capture_output=True, timeout=60)
        dev = subprocess.run(["losetup", "-f", "--show", img], check=True, capture_output=True, text=True,
                             timeout=30).stdout.strip()
        devs.append(dev)
        return dev
    yield make
    for d in devs:
        subprocess.run(["losetup", "-d", d], capture_output=True, timeout=30)


def no_clouds():
    return ["--no-aws", "--no-azure", "--no-gcp"]


def test_a_nocloud_config_disk_comes_before_the_clouds(tmp_path, clouds, disk):
    dev = disk("CIDATA", {"user-data": DOC, "meta-data": b"instance-id: kw1\n"})
    aws = clouds("aws", b"from aws")
    r, data, logs, _ = fetch(tmp_path, "--nocloud-device", dev, "--no-ovf", "--aws-url", aws.url, "--no-azure",
                             "--no-gcp")
    assert r.returncode == 0, r.stderr
    assert data == DOC and logs[-1]["source"] == "nocloud"
    assert aws.requests == []
    # unmounted again, mount point gone
    assert dev not in open("/proc/self/mounts").read()
    assert not [d for d in os.listdir("/run") if d.startswith("keyward-provision-")]


def test_azure_custom_data_from_the_provisioning_cd(tmp_path, disk):
    dev = disk("rd_rdfe", {"ovf-env.xml": (OVF % base64.b64encode(DOC).decode()).encode()})
    r, data, logs, _ = fetch(tmp_path, "--no-nocloud", "--ovf-device", dev, *no_clouds())
    assert r.returncode == 0, r.stderr
    assert data == DOC and logs[-1]["source"] == "azure-ovf"
    assert "Hunter2" not in r.stderr


def test_media_without_the_file_are_passed_over(tmp_path, clouds, disk):
    empty = disk("CIDATA", {"meta-data": b"instance-id: kw1\n"})
    no_custom = disk("rd_rdfe", {"ovf-env.xml": (OVF.replace("<ns1:CustomData>%s</ns1:CustomData>", "")).encode()})
    g = clouds("gcp", DOC)
    r, data, logs, _ = fetch(tmp_path, "--nocloud-device", empty, "--ovf-device", no_custom, "--no-aws",
                             "--no-azure", "--gcp-url", g.url)
    assert r.returncode == 0, r.stderr
    assert data == DOC and logs[-1]["source"] == "gcp-metadata"
    absent = [l["source"] for l in logs if l["event"] == "provision_source_absent"]
    assert absent == ["nocloud", "azure-ovf"]
    # no such devices at all
    r, _, _, _ = fetch(tmp_path, "--nocloud-device", str(tmp_path / "none"), "--ovf-device", "/dev/null",
                       *no_clouds())
    assert r.returncode == 3
    assert "nocloud: no %s" % (tmp_path / "none") in r.stderr and "azure-ovf: /dev/null is not a block device" in r.stderr


def test_unusable_media_stop_the_search(tmp_path, clouds, disk):
    aws = clouds("aws", b"from aws")
    link = disk("CIDATA", {"user-data": ("link", "/etc/shadow")})
    r, data, _, _ = fetch(tmp_path, "--nocloud-device", link, "--no-ovf", "--aws-url", aws.url, "--no-azure",
                          "--no-gcp")
    assert r.returncode == 4 and data is None and "nocloud: the document is unusable" in r.stderr, r.stderr
    assert aws.requests == []
    bad = disk("rd_rdfe", {"ovf-env.xml": (OVF % "W3Byb<x/>").encode()})
    r, data, _, _ = fetch(tmp_path, "--no-nocloud", "--ovf-device", bad, *no_clouds())
    assert r.returncode == 4 and "CustomData holds something other than base64" in r.stderr, r.stderr
    big = disk("CIDATA", {"user-data": b"x" * (64 * 1024 + 1)})
    r, data, _, _ = fetch(tmp_path, "--nocloud-device", big, "--no-ovf", *no_clouds())
    assert r.returncode == 4 and "larger than" in r.stderr
