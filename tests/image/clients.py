"""Clients of the booted appliance through the forwarded loopback port, as
its customers reach it: the certificate checked against the fingerprint the
console showed, XKS signed with SigV4 by botocore (not our signer), EKM over
mutual TLS, the admin API with the first token."""
import base64
import hashlib
import json
import os
import ssl
import time
import uuid

import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

XKS_SERVICE = "kms-xks-proxy"
EKM_API = "?api-version=0.1-preview"


def fingerprint(der):
    h = hashlib.sha256(der).hexdigest().upper()
    return ":".join(h[i:i + 2] for i in range(0, len(h), 2))


def server_certificate(port, timeout):
    """The PEM certificate the appliance serves on 127.0.0.1:port, waiting
    (bounded) while the forward has nobody behind it yet."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            return ssl.get_server_certificate(("127.0.0.1", port), timeout=10)
        except (OSError, ssl.SSLError) as e:
            last = e
            time.sleep(2)
    raise AssertionError("no TLS answer on 127.0.0.1:%d within %d s (last: %s)" % (port, timeout, last))


def pinned_cacert(port, expected_fp, path, timeout=120):
    """Writes the served certificate to path after checking its SHA-256
    fingerprint is the one printed on the console; returns path."""
    pem = server_certificate(port, timeout)
    fp = fingerprint(ssl.PEM_cert_to_DER_cert(pem))
    assert fp == expected_fp, "the served certificate's fingerprint %s is not the console's %s" % (fp, expected_fp)
    with open(path, "w") as f:
        f.write(pem)
    return path


class Appliance:
    def __init__(self, port, cacert, token=None):
        self.url = "https://127.0.0.1:%d" % port
        self.cacert = cacert
        self.token = token

    def get(self, path, **kw):
        return requests.get(self.url + path, verify=self.cacert, timeout=30, **kw)

    def api(self, method, path, body=None):
        h = {"Authorization": "Bearer " + self.token}
        return requests.request(method, self.url + path, json=body, headers=h, verify=self.cacert, timeout=60)

    def wait_healthy(self, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                r = self.get("/healthz")
                if r.status_code == 200:
                    return r.json()
                last = "%d %s" % (r.status_code, r.text[:200])
            except requests.RequestException as e:
                last = str(e)
            time.sleep(2)
        raise AssertionError("GET /healthz not 200 within %d s (last: %s)" % (timeout, last))


class Xks:
    """AWS KMS's side of XKS: requests signed with the store's credential."""

    def __init__(self, appliance, path, akid, secret, region):
        self.a, self.path, self.akid, self.secret, self.region = appliance, path, akid, secret, region

    def call(self, op, body):
        url = self.a.url + self.path + op
        data = json.dumps(body, separators=(",", ":")).encode()
        req = AWSRequest(method="POST", url=url, data=data, headers={"Content-Type": "application/json"})
        SigV4Auth(Credentials(self.akid, self.secret), XKS_SERVICE, self.region).add_auth(req)
        return requests.post(url, data=data, headers=dict(req.headers.items()), verify=self.a.cacert, timeout=60)

    @staticmethod
    def meta(op):
        return {"awsPrincipalArn": "arn:aws:iam::111122223333:role/image-boot-test",
                "kmsKeyArn": "arn:aws:kms:eu-west-3:111122223333:key/image-boot-test",
                "kmsOperation": op, "kmsRequestId": str(uuid.uuid4())}

    def encrypt(self, key, plaintext, aad):
        r = self.call("/keys/%s/encrypt" % key, {
            "requestMetadata": self.meta("Encrypt"), "plaintext": base64.b64encode(plaintext).decode(),
            "additionalAuthenticatedData": base64.b64encode(aad).decode(), "encryptionAlgorithm": "AES_GCM"})
        assert r.status_code == 200, "XKS encrypt: %d %s" % (r.status_code, r.text)
        return r.json()

    def decrypt(self, key, ct, aad):
        body = {"requestMetadata": self.meta("Decrypt"), "encryptionAlgorithm": "AES_GCM",
                "additionalAuthenticatedData": base64.b64encode(aad).decode()}
        body.update({k: ct[k] for k in ("ciphertext", "initializationVector", "authenticationTag")})
        if "ciphertextMetadata" in ct:
            body["ciphertextMetadata"] = ct["ciphertextMetadata"]
        r = self.call("/keys/%s/decrypt" % key, body)
        assert r.status_code == 200, "XKS decrypt: %d %s" % (r.status_code, r.text)
        return base64.b64decode(r.json()["plaintext"])


def b64u(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def unb64u(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


class Ekm:
    """Azure Managed HSM's side of EKM: a client certificate of the CA the
    document named."""

    def __init__(self, key_url, cacert, cert):
        self.key_url, self.cacert, self.cert = key_url, cacert, cert

    def _post(self, op, body, cert=True):
        ctx = {"request_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4()), "pool_name": "image-boot"}
        return requests.post(self.key_url + "/" + op + EKM_API, data=json.dumps(dict(body, request_context=ctx)),
                             headers={"Content-Type": "application/json"}, cert=self.cert if cert else None,
                             verify=self.cacert, timeout=60)

    def wrap(self, value, alg="A256KW"):
        r = self._post("wrapkey", {"alg": alg, "value": b64u(value)})
        assert r.status_code == 200, "EKM wrapkey: %d %s" % (r.status_code, r.text)
        return r.json()["value"]

    def unwrap(self, wrapped, alg="A256KW"):
        r = self._post("unwrapkey", {"alg": alg, "value": wrapped})
        assert r.status_code == 200, "EKM unwrapkey: %d %s" % (r.status_code, r.text)
        return unb64u(r.json()["value"])

    def wrap_without_certificate(self):
        """The same request with no client certificate: EKM must say 401."""
        return self._post("wrapkey", {"alg": "A256KW", "value": b64u(os.urandom(32))}, cert=False)
