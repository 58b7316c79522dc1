"""The provisioning document the booted VM finds on its config disk
(docs/provisioning.md): evaluation HSM, a self-signed certificate for the
forwarded loopback address, one XKS key store, one AES key that both the XKS
store and an EKM client may use, EKM over mutual TLS with the test's client
CA, and a generated first admin token."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "blackbox"))
from ekm_certs import make_pki  # noqa: E402  (tests/blackbox: the EKM test PKI)

EKM_CN = "contoso.managedhsmclient.azure.net"
EKM_PREFIX = "tenant0"
XKS_STORE = "kms"
XKS_URI_PREFIX = "/kms"
# the self-test of provisioning signs XKS health for us-east-1 whatever the store says
# (provisioning/run_api.c kwp_run_selftest: so.region unset): another region fails its step
XKS_REGION = "us-east-1"
KEY = "boot-kek"

TEMPLATE = """\
# user data of the image boot test (tests/image): a customer's first boot
[provision]
version = 1

[provision.unlock]
tpm2 = "signed"             # PCR 11 under the image key's signed policy

[provision.hsm]
evaluation = true           # a SoftHSM2 token on the data volume

[provision.tls]
names = ["127.0.0.1", "localhost"]
client_ca = '''
{client_ca}'''

[azure_ekm_config]
azure_ekm_enable = true
azure_ekm_path_prefix = "{ekm_prefix}"
azure_ekm_client_cns = ["{ekm_cn}"]

[aws_xks_store.{store}]
uri_prefix = "{uri_prefix}"
region = "{region}"

[key.{key}]
type = "aes"
ops = ["encrypt", "decrypt", "wrap", "unwrap"]
xks_stores = ["{store}"]
ekm_clients = ["{ekm_cn}"]
"""


def make(directory):
    """Writes the EKM client PKI and the document into directory; returns
    (document text, pki paths)."""
    pki = make_pki(os.path.join(directory, "pki"), EKM_CN, "other.example")
    with open(pki["ca"]) as f:
        ca = f.read()
    doc = TEMPLATE.format(client_ca=ca, ekm_prefix=EKM_PREFIX, ekm_cn=EKM_CN, store=XKS_STORE,
                          uri_prefix=XKS_URI_PREFIX, region=XKS_REGION, key=KEY)
    return doc, pki


def check(provision_bin, path):
    """keyward-provision check on the host: what the appliance will say."""
    p = subprocess.run([provision_bin, "check", path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, "keyward-provision check refuses the test's document (exit %d):\n%s%s" % (
        p.returncode, p.stdout, p.stderr)
    return p.stdout
