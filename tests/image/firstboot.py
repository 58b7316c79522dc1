"""What the customer gets back on the serial console at the first boot
(docs/provisioning.md "What the customer gets back"), parsed."""
import json
import re

BEGIN = r"==== Keyward: provisioned "
END = r"==== end ===="
BLOCK = BEGIN + r".*?" + END


class FirstBoot:
    def __init__(self, block):
        self.block = block

        def one(rx, what):
            m = re.search(rx, block, re.MULTILINE)
            assert m, "no %s in the provisioning output:\n%s" % (what, redact(block))
            return m.group(1)

        self.recovery_key = one(r"^Recovery key of the data volume.*\n\s+(\S+)\s*$", "recovery key")
        self.admin_token = one(r"^First admin API token.*\n\s+(\S+)\s*$", "first admin token")
        self.fingerprint = one(r"^TLS certificate SHA-256 fingerprint: ([0-9A-F:]{95})\s*$", "TLS fingerprint")
        self.attest_line = one(r"^\s+(keyward-attest verify .*?)\s*$", "attestation command")
        m = re.search(r"--ak-sha256[ =]([0-9a-fA-F]{64})\b", block)
        self.ak_sha256 = m.group(1).lower() if m else None
        self.evaluation = "EVALUATION MODE" in block
        self.import_file = json.loads(one(r"^\s+import file: (\{.*\})\s*$", "XKS import file"))
        cred = self.import_file["XksProxyAuthenticationCredential"]
        self.access_key_id = cred["AccessKeyId"]
        self.secret_access_key = cred["RawSecretAccessKey"]
        self.xks_path = self.import_file["XksProxyUriPath"]
        self.ekm_urls = dict(re.findall(r"^  (\S+): (https://\S+/azureekm/\S+)\s*$", block, re.MULTILINE))

    def secrets(self):
        return [self.recovery_key, self.admin_token, self.secret_access_key]


def redact(text):
    """The block with the secrets masked, for messages and saved logs."""
    text = re.sub(r"(Recovery key of the data volume.*\n\s+)\S+", r"\1<recovery key>", text)
    text = re.sub(r"(First admin API token.*\n\s+)\S+", r"\1<admin token>", text)
    return re.sub(r'("RawSecretAccessKey":")[^"]*', r"\1<secret>", text)


def parse(serial_text):
    """The one provisioning block in the console text, parsed."""
    blocks = re.findall(BLOCK, serial_text.replace("\r", ""), re.DOTALL)
    assert len(blocks) == 1, "expected one provisioning block on the console, found %d" % len(blocks)
    return FirstBoot(blocks[0])
