"""The console's information endpoints (docs/api.md, issue 14 part B) against a
real keywardd: the request history counts the XKS, EKM and admin requests the
test makes; the EKM set-up matches the configuration and its key URL answers
an EKM client over mutual TLS; the attestation summary of a swtpm quote names
the PCRs and the listener's key; the audit filters (actor, time range, newest
first with paging) cover admin rows and key-use batches alike; a key's
versions after a rotation; the unlock record in GET status; bad query values
are 400 bad_field."""
import base64
import datetime
import hashlib
import json
import os
import time

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from ekm_certs import make_pki
from swtpm import Swtpm, swtpm  # noqa: F401 (the fixture)
from test_attest import attest_env, spki_sha256
from test_ekm import ALLOWED_CN, API, CTX, EKM_RULES, PREFIX, Ekm, ekm_env
from test_xks import TOML as XKS_TOML
from test_xks import Xks


def get(s, path):
    r = s.api("GET", path)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return r.json()


def recent(series, route, minutes=2):
    """The sums of the last `minutes` points of a route's series (a minute
    may turn while the test runs)."""
    pts = [x for x in series if x["route"] == route][0]["points"][-minutes:]
    out = {"requests": 0, "errors": 0, "status": {}, "codes": {}, "p50": [], "p99": []}
    for p in pts:
        out["requests"] += p["requests"]
        out["errors"] += p["errors"]
        for k, v in p["status"].items():
            out["status"][k] = out["status"].get(k, 0) + v
        for k, v in p["codes"].items():
            out["codes"][k] = out["codes"].get(k, 0) + v
        if p["requests"]:
            out["p50"].append(p["p50_ms"])
            out["p99"].append(p["p99_ms"])
    return out


def xks_key(s, name="hk"):
    r = s.api("POST", "/api/v1/keys", {"name": name, "type": "AES",
                                       "operations": ["encrypt", "decrypt"],
                                       "rules": {"xks": {"key_stores": ["default"]}}})
    assert r.status_code == 201, r.text


@pytest.fixture
def pki(tmp_path):
    return make_pki(str(tmp_path / "pki"), ALLOWED_CN, "other.example.net")


def test_history_counts_xks_ekm_and_admin_requests(make_server, pki):
    s = make_server(extra_toml=XKS_TOML, env=ekm_env(pki)).start()
    xks_key(s)
    before = get(s, "/api/v1/metrics/history")
    assert before["interval_seconds"] == 60 and before["budget_ms"] == {"xks": 250, "ekm": 250}
    assert before["throttle"] == {"xks_per_store_rps": 0, "ekm_rps": 0}   # as test_xks.TOML sets
    assert [x["route"] for x in before["series"]] == ["xks", "ekm", "admin"]
    assert all(len(x["points"]) == 60 for x in before["series"])
    b = {r: recent(before["series"], r) for r in ("xks", "ekm", "admin")}

    x = Xks(s)
    for _ in range(3):
        assert x.enc("/a", "hk", b"history").status_code == 200
    bad = [x.enc("/a", "hk", b"history", secret="not-the-secret") for _ in range(2)]
    assert all(r.status_code >= 400 for r in bad)
    ekm = Ekm(s, pki["allowed"])
    for _ in range(2):
        assert ekm.post("/info").status_code == 200
    assert s.api("GET", "/api/v1/keys/no-such-key").status_code == 404

    after = get(s, "/api/v1/metrics/history")
    a = {r: recent(after["series"], r) for r in ("xks", "ekm", "admin")}
    dx = a["xks"]
    assert dx["requests"] - b["xks"]["requests"] == 5
    assert dx["status"].get("200", 0) - b["xks"]["status"].get("200", 0) == 3
    assert dx["errors"] - b["xks"]["errors"] == 2
    bad_status = str(bad[0].status_code)
    assert dx["status"].get(bad_status, 0) >= 2
    assert sum(dx["codes"].values()) - sum(b["xks"]["codes"].values()) == 2
    assert all(v is not None and v >= 0 for v in dx["p50"] + dx["p99"])
    assert a["ekm"]["requests"] - b["ekm"]["requests"] == 2
    assert a["ekm"]["status"].get("200", 0) - b["ekm"]["status"].get("200", 0) == 2
    # admin: the first history call (counted once answered) and the 404 (not_found)
    assert a["admin"]["status"].get("404", 0) - b["admin"]["status"].get("404", 0) == 1
    assert a["admin"]["codes"].get("not_found", 0) - b["admin"]["codes"].get("not_found", 0) == 1
    assert a["admin"]["requests"] - b["admin"]["requests"] == 2
    # the empty minutes of the hour: zeros and null percentiles
    first = after["series"][0]["points"][0]
    assert first["requests"] == 0 and first["p50_ms"] is None


def test_ekm_info_matches_config_and_key_url_answers(make_server, pki):
    s = make_server(env=ekm_env(pki, KEYWARD_AZURE_EKM_CONFIG_AZURE_EKM_RATE_LIMIT="7")).start()
    info = get(s, "/api/v1/ekm")
    assert info["enabled"] is True and info["client_auth"] is True
    assert info["path_prefix"] == PREFIX and info["rate_limit"] == 7
    assert info["public_host"] == "127.0.0.1:%d" % s.port
    assert info["url_base"] == "https://127.0.0.1:%d/azureekm/%s" % (s.port, PREFIX)
    assert info["client_cns"] == [ALLOWED_CN, "other.example"]
    with open(pki["ca"], "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    assert len(info["client_ca"]) == 1
    c = info["client_ca"][0]
    assert c["sha256"] == ca.fingerprint(hashes.SHA256()).hex()
    assert "keyward-test-ekm-client-ca" in c["subject"] and c["subject"] == c["issuer"]
    assert c["not_after"] == ca.not_valid_after.strftime("%Y-%m-%dT%H:%M:%SZ")

    r = s.api("POST", "/api/v1/keys", {"name": "ekm-kek", "type": "AES", "rules": EKM_RULES})
    assert r.status_code == 201, r.text
    key = get(s, "/api/v1/keys/ekm-kek")
    assert key["ekm_url"] == info["url_base"] + "/ekm-kek"
    r = requests.post(key["ekm_url"] + "/metadata" + API, json={"request_context": CTX},
                      cert=pki["allowed"], verify=s.cacert, timeout=30)
    assert r.status_code == 200, r.text


def test_ekm_info_disabled(server):
    info = get(server, "/api/v1/ekm")
    assert info["enabled"] is False and info["client_ca"] == []


def test_attestation_summary_with_swtpm(make_server, swtpm):  # noqa: F811
    s = make_server(env=attest_env(swtpm)).start()
    d = get(s, "/api/v1/attestation")
    assert d["enabled"] is True and d["ready"] is True, d
    assert d["tls_spki_sha256"] == spki_sha256(s.cacert).hex()
    assert d["tls_key_matches"] is True
    tpm = d["tpm"]
    assert tpm["available"] is True and tpm["pcr_bank"] == "sha256"
    assert tpm["ak_handle"] == "0x81010002"
    assert sorted(tpm["pcrs"], key=int) == ["0", "1", "2", "3", "4", "7", "11"]
    assert all(len(v) == 64 for v in tpm["pcrs"].values())
    assert d["snp"]["available"] is False and d["snp"]["absent"]
    assert len(d["nonce"]) == 64
    # the AK's pin: SHA-256 of the TPMT_PUBLIC in the evidence's TPM2B_PUBLIC
    ev = requests.get(s.url + "/attestation", params={"nonce": "00" * 32}, verify=s.cacert, timeout=30).json()
    ak = hashlib.sha256(base64.b64decode(ev["tpm"]["ak_public"])[2:]).hexdigest()
    assert tpm["ak_sha256"] == ak
    assert d["verify_command"] == ("keyward-attest verify https://127.0.0.1:%d --policy policy.json "
                                   "--policy-key image-key.pem --ak-sha256 %s" % (s.port, ak))
    # each call is fresh evidence: another nonce
    assert get(s, "/api/v1/attestation")["nonce"] != d["nonce"]


def test_attestation_disabled_says_why(server):
    d = get(server, "/api/v1/attestation")
    assert d["enabled"] is False and "enable = false" in d["detail"]
    assert "tpm" not in d


def audit(s, query):
    return get(s, "/api/v1/audit?" + query)


def all_pages(s, query, desc=False, limit=4):
    out, cursor = [], None
    while True:
        q = query + "&limit=%d" % limit
        if cursor is not None:
            q += ("&before=%d" if desc else "&after=%d") % cursor
        d = audit(s, q)
        out += d["events"]
        if d["next"] is None:
            return out
        assert d["next"] == d["events"][-1]["seq"]
        cursor = d["next"]


def test_audit_filters_over_rows_and_batches(make_server):
    s = make_server(extra_toml=XKS_TOML, env={"KEYWARD_DB_AUDIT_FLUSH_MS": "5"}).start()
    xks_key(s, "ak")
    x = Xks(s)
    t0 = datetime.datetime.now(datetime.timezone.utc)
    for _ in range(5):
        assert x.enc("/a", "ak", b"audit").status_code == 200
    time.sleep(1.1)
    t1 = datetime.datetime.now(datetime.timezone.utc)
    time.sleep(1.1)
    assert s.api("POST", "/api/v1/keys", {"name": "other", "type": "AES"}).status_code == 201
    for _ in range(3):
        assert x.enc("/a", "ak", b"audit").status_code == 200
    everything = all_pages(s, "order=asc")
    assert len(everything) >= 10
    xks = all_pages(s, "actor=xks%3A")
    assert len(xks) == 8 and all(e["actor"].startswith("xks:") for e in xks)
    tok = all_pages(s, "actor=token%3A")
    assert len(tok) >= 2 and all(e["actor"].startswith("token:") for e in tok)
    assert {e["key"] for e in tok} >= {"ak", "other"}
    assert all_pages(s, "actor=nobody") == []
    # key uses and the admin row together, by actor prefix and key
    assert len(all_pages(s, "actor=xks%3Adefault&key=ak")) == 8

    fmt = "%Y-%m-%dT%H:%M:%S.%fZ"
    first = all_pages(s, "since=%s&until=%s" % (t0.strftime(fmt), t1.strftime(fmt)))
    assert [e["actor"][:4] for e in first] == ["xks:"] * 5
    later = all_pages(s, "since=%s" % t1.strftime(fmt))
    assert len(later) == 4 and {e["key"] for e in later} == {"ak", "other"}

    desc = all_pages(s, "order=desc", desc=True, limit=3)
    assert [e["seq"] for e in desc] == [e["seq"] for e in reversed(everything)]
    assert [e["hash"] for e in desc] == [e["hash"] for e in reversed(everything)]
    d = all_pages(s, "order=desc&actor=xks%3A&since=" + t1.strftime(fmt), desc=True, limit=2)
    assert len(d) == 3 and d[0]["seq"] > d[-1]["seq"]


@pytest.mark.parametrize("query", [
    "since=yesterday", "since=2026-01-01T00:00:00", "until=2026-02-30T00:00:00Z",
    "since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "order=up", "order=DESC",
    "before=0", "before=-1", "actor=%C3%A9x", "actor=" + "a" * 129, "unknown=1",
    "since=2026-01-01T00:00:00%2B01:00"])
def test_audit_bad_query_values_are_bad_field(server, query):
    r = server.api("GET", "/api/v1/audit?" + query)
    assert r.status_code == 400, (query, r.text)
    assert r.json()["error"] == "bad_field", r.text


def test_key_versions_after_rotate(server):
    s = server
    assert s.api("POST", "/api/v1/keys", {"name": "vk", "type": "AES"}).status_code == 201
    d = get(s, "/api/v1/keys/vk/versions")
    assert d["name"] == "vk" and d["current_version"] == 1
    assert [(v["version"], v["current"]) for v in d["versions"]] == [(1, True)]
    for _ in range(2):
        assert s.api("POST", "/api/v1/keys/vk/rotate").status_code == 200
    d = get(s, "/api/v1/keys/vk/versions")
    assert d["current_version"] == 3
    assert [(v["version"], v["current"]) for v in d["versions"]] == [(1, False), (2, False), (3, True)]
    assert all(v["created"].endswith("Z") for v in d["versions"])
    assert s.api("GET", "/api/v1/keys/nope/versions").status_code == 404
    assert s.api("POST", "/api/v1/keys/vk/versions").status_code == 405


def test_status_unlock_record_read_at_start(make_server, tmp_path):
    rec = tmp_path / "unlock.json"
    rec.write_text(json.dumps({"device": "/dev/vdb", "name": "keyward-data", "binding": "tpm2",
                               "bindings_enrolled": ["tpm2", "snp", "recovery"],
                               "time": "2026-01-01T00:00:00Z"}))
    s = make_server(env={"KEYWARD_ATTESTATION_UNLOCK_RECORD": str(rec)}).start()
    d = get(s, "/api/v1/status")
    assert d["evaluation"] in (True, False)
    u = d["unlock"]
    assert u == {"state": "unlocked", "device": "/dev/vdb", "name": "keyward-data",
                 "binding": "tpm2", "bindings_enrolled": ["tpm2", "snp", "recovery"],
                 "time": "2026-01-01T00:00:00Z", "source": str(rec)}
    # read once at start: a change afterwards is not seen
    rec.write_text("{}")
    assert get(s, "/api/v1/status")["unlock"]["binding"] == "tpm2"


def test_status_unlock_record_absent_or_bad(make_server, tmp_path):
    s = make_server(env={"KEYWARD_ATTESTATION_UNLOCK_RECORD": str(tmp_path / "none.json")}).start()
    u = get(s, "/api/v1/status")["unlock"]
    assert u["state"] == "unknown" and "no unlock record" in u["detail"]
    s.stop()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"device": "/dev/vdb", "binding": "password",
                               "bindings_enrolled": [], "time": "x"}))
    s2 = make_server(env={"KEYWARD_ATTESTATION_UNLOCK_RECORD": str(bad)}).start()
    u = get(s2, "/api/v1/status")["unlock"]
    assert u["state"] == "unknown" and "not usable" in u["detail"]


def test_keywardctl_console_commands(server):
    s = server
    assert s.api("POST", "/api/v1/keys", {"name": "ck", "type": "AES"}).status_code == 201
    assert s.api("POST", "/api/v1/keys/ck/rotate").status_code == 200
    p = s.ctl("key", "versions", "ck", check=True)
    lines = p.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["VERSION", "CREATED", "CURRENT"] and len(lines) == 3, p.stdout
    assert json.loads(s.ctl("--json", "key", "versions", "ck", check=True).stdout)["current_version"] == 2
    assert json.loads(s.ctl("--json", "ekm", "info", check=True).stdout)["enabled"] is False
    assert json.loads(s.ctl("--json", "attestation", check=True).stdout)["enabled"] is False
    d = json.loads(s.ctl("--json", "audit", "list", "--desc", "--limit", "1", "--actor", "token:",
                         check=True).stdout)
    assert len(d["events"]) == 1 and d["events"][0]["action"] == "key.rotate"
    d2 = json.loads(s.ctl("--json", "audit", "list", "--desc", "--limit", "1", "--before",
                          str(d["next"]), check=True).stdout)
    assert d2["events"][0]["seq"] < d["events"][0]["seq"]
    p = s.ctl("audit", "list", "--since", "2000-01-01T00:00:00Z", "--until", "2999-01-01T00:00:00Z",
              check=True)
    assert "key.create" in p.stdout
    p = s.ctl("audit", "list", "--since", "yesterday")
    assert p.returncode == 1 and "RFC 3339" in p.stderr
