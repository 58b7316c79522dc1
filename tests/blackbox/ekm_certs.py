"""Test PKI for the EKM black-box tests (python3-cryptography): a client CA,
client certificates signed by it (an allowed CN, another CN, an expired one),
and a certificate from an unrelated CA.  Everything is written as PEM files
into a directory; nothing here is a mock: keywardd verifies them with
OpenSSL during real TLS handshakes."""
import datetime
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class CA:
    def __init__(self, cn):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder()
                     .subject_name(_name(cn)).issuer_name(_name(cn))
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=30))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                     .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                                  False, False), critical=True)
                     .sign(self.key, hashes.SHA256()))

    def issue(self, cn, days_valid=(1, 30)):
        """A client certificate; days_valid = (days before now, days after now),
        negative 'after' makes an expired certificate."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder()
                .subject_name(_name(cn)).issuer_name(self.cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=days_valid[0]))
                .not_valid_after(now + datetime.timedelta(days=days_valid[1]))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        return cert, key


def make_pki(directory, allowed_cn, other_cn):
    """Writes the PKI into directory; returns a dict of paths:
    ca, allowed, other, foreign, expired -> (certfile, keyfile) (ca: certfile)."""
    os.makedirs(directory, exist_ok=True)
    ca = CA("keyward-test-ekm-client-ca")
    foreign_ca = CA("keyward-test-foreign-ca")
    out = {"ca": _write(os.path.join(directory, "client-ca.pem"),
                        ca.cert.public_bytes(serialization.Encoding.PEM))}
    for label, issuer, cn, validity in (("allowed", ca, allowed_cn, (1, 30)),
                                        ("other", ca, other_cn, (1, 30)),
                                        ("foreign", foreign_ca, allowed_cn, (1, 30)),
                                        ("expired", ca, allowed_cn, (10, -2))):
        cert, key = issuer.issue(cn, validity)
        c = _write(os.path.join(directory, label + ".crt"),
                   cert.public_bytes(serialization.Encoding.PEM))
        k = _write(os.path.join(directory, label + ".key"), _key_pem(key))
        os.chmod(k, 0o600)
        out[label] = (c, k)
    return out
