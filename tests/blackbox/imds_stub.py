"""A loopback stub of the three clouds' instance metadata services, for
keyward-provision's input tests (issue 13).  It answers only what a real
service answers to a well-formed request, and records every request so
that a test can check what was sent:
  AWS IMDSv2  PUT /latest/api/token with X-aws-ec2-metadata-token-ttl-seconds,
              then GET /latest/user-data with X-aws-ec2-metadata-token
              (401 without or with a wrong token, 404 with no user data);
  Azure IMDS  GET /metadata/instance/compute/userData?api-version=...&format=text
              with "Metadata: true" (400 without), the user data in base64
              ("" when none);
  GCP         GET /computeMetadata/v1/instance/attributes/user-data with
              "Metadata-Flavor: Google" (403 without), answering with that
              header too (404 with no user data).
"""
import base64
import http.server
import secrets
import threading
import urllib.parse


class Imds:
    def __init__(self, cloud, user_data=None, fail_first=0, status=None, gcp_flavor=True, azure_raw=None):
        self.cloud = cloud                # "aws" | "azure" | "gcp"
        self.user_data = user_data        # bytes, or None for none
        self.fail_first = fail_first      # answer 500 to this many requests first
        self.status = status              # force this status on the user-data request
        self.gcp_flavor = gcp_flavor      # GCP: send Metadata-Flavor back
        self.azure_raw = azure_raw        # Azure: this body as is (not base64)
        self.requests = []                # (method, path, headers dict)
        self.token = secrets.token_urlsafe(32)
        stub = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def reply(self, code, body=b"", headers=()):
                self.send_response(code)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def handle_any(self):
                stub.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                if stub.fail_first > 0:
                    stub.fail_first -= 1
                    return self.reply(500, b"busy")
                return getattr(stub, stub.cloud)(self)

            do_GET = handle_any
            do_PUT = handle_any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def aws(self, h):
        if h.command == "PUT" and h.path == "/latest/api/token":
            if "x-aws-ec2-metadata-token-ttl-seconds" not in {k.lower() for k in h.headers.keys()}:
                return h.reply(400)
            return h.reply(200, self.token.encode())
        if h.command == "GET" and h.path == "/latest/user-data":
            if h.headers.get("X-aws-ec2-metadata-token") != self.token:
                return h.reply(401)
            if self.status:
                return h.reply(self.status)
            if self.user_data is None:
                return h.reply(404)
            return h.reply(200, self.user_data)
        return h.reply(404)

    def azure(self, h):
        u = urllib.parse.urlsplit(h.path)
        q = urllib.parse.parse_qs(u.query)
        if h.command == "GET" and u.path == "/metadata/instance/compute/userData":
            if h.headers.get("Metadata") != "true" or "api-version" not in q or q.get("format") != ["text"]:
                return h.reply(400)
            if self.status:
                return h.reply(self.status)
            body = b"" if self.user_data is None else base64.b64encode(self.user_data)
            if self.azure_raw is not None:
                body = self.azure_raw
            return h.reply(200, body)
        return h.reply(404)

    def gcp(self, h):
        flavor = [("Metadata-Flavor", "Google")] if self.gcp_flavor else []
        if h.command == "GET" and h.path == "/computeMetadata/v1/instance/attributes/user-data":
            if h.headers.get("Metadata-Flavor") != "Google":
                return h.reply(403, b"", flavor)
            if self.status:
                return h.reply(self.status, b"", flavor)
            if self.user_data is None:
                return h.reply(404, b"", flavor)
            return h.reply(200, self.user_data, flavor)
        return h.reply(404, b"", flavor)
