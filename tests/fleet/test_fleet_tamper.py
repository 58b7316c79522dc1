"""Whoever administers the database cannot enable a disabled key, widen a
rule, swap key material or raise a token's role without detection (issue
16): each row that decides access carries a MAC under a key derived from
the HSM master key.  Each test changes rows in SQL as PostgreSQL's
superuser (psql over the cluster's Unix socket), then every node must
refuse to use the row (KW_ERR_DB_TAMPERED: the admin API answers 500
"db_tampered", XKS its internal error; never the tampered value's effect)
and log a line naming the row.  The audit chain: `keywardctl audit verify`
names a changed audit row.  And a node whose schema is older than the
database's refuses to start, saying both versions.

Rows are put back afterwards (their original bytes, so their MACs hold
again) so that the module's fleet stays usable."""
import json
import os
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetlib import META, api_ok, bound_aad, err_name, fleet_fixture, unb64, xks_key

fleet = fleet_fixture("tamper")
WAIT = 8.0      # bounded: a node holding the row cached re-reads it within cache_revalidate_seconds (2)


def q(s):
    """A SQL string literal."""
    return "'" + s.replace("'", "''") + "'"


def row(fleet, table, cols, where):
    out = fleet.sql("SELECT %s FROM %s WHERE %s" % (cols, table, where))
    return out.split("|") if out else None


def never_then(fleet, nodes, probe, forbidden, wanted, what, timeout=WAIT, cached=(),
               cached_ok=None):
    """Polls each node (nodes and cached) until wanted(resp); forbidden(resp)
    (the tampered value taking effect) fails at once.  Nodes in cached held
    the row from before the tamper (no notification drops it, the tamper
    sends none): until they re-read it (every cache_revalidate_seconds,
    docs/fleet.md) they may answer cached_ok (the value keyward wrote), and
    nothing else.  Returns {node: resp}."""
    got = {}
    pending = list(nodes) + list(cached)
    t0 = time.monotonic()
    last = {}
    while pending and time.monotonic() - t0 < timeout:
        for n in list(pending):
            r = probe(n)
            assert not forbidden(r), "%s: %s let the tampered row take effect: %s %s" % (
                what, n.name, r.status_code, r.text)
            last[n.name] = (r.status_code, r.text[:200])
            if wanted(r):
                got[n.name] = (r, time.monotonic() - t0)
                pending.remove(n)
            elif n in cached:
                assert cached_ok(r), "%s: %s answered %s %s" % (what, n.name, r.status_code, r.text)
        time.sleep(0.05)
    assert not pending, "%s: not refused as tampered within %.0f s on %s: %s\n%s" % (
        what, timeout, [n.name for n in pending], last, fleet.logs())
    print("%s: refused as tampered after %s" % (
        what, ", ".join("%s %.2f s" % (k, v[1]) for k, v in sorted(got.items()))))
    return got


def whose(r, other, aad):
    """A 200 to an encrypt after a swap: 'the other key's material' when
    python decrypts it with that material, else 'unknown material'."""
    j = r.json()
    iv, ct, tag, md = (unb64(j[k]) for k in ("initializationVector", "ciphertext",
                                             "authenticationTag", "ciphertextMetadata"))
    try:
        AESGCM(other).decrypt(iv, ct + tag, bound_aad(aad, md))
        return "the other key's material"
    except Exception:
        return "unknown material"


def admin_tampered(r):
    return r.status_code == 500 and err_name(r) == "db_tampered"


def xks_internal(r):
    return r.status_code == 500 and err_name(r) == "InternalException"


def logged(fleet, *needles, timeout=WAIT):
    """Some node's log has a line holding every needle."""
    def find():
        for n in fleet.nodes:
            for line in n.logs_all().splitlines():
                if all(x in line for x in needles):
                    return line
        return None
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = find()
        if line:
            return line
        time.sleep(0.1)
    raise AssertionError("no node logged a line with %s\n%s" % (needles, fleet.logs()))


def test_disabled_key_enabled_in_sql_is_refused_and_logged(fleet):
    a, b, c = fleet.nodes
    kid = xks_key(a, "t-state")["id"]
    api_ok(a, "POST", "/api/v1/keys/t-state/disable")
    xs = {n.name: n.xks() for n in fleet.nodes}
    # node-b holds the key cached as disabled (a cache is dropped by a
    # change's notification, and the tamper sends none): until it re-reads
    # the row it may answer from that copy, the state keyward wrote
    r = xs["node-b"].enc("/a", "t-state", b"x")
    assert r.status_code == 400 and err_name(r) == "InvalidStateException", r.text
    assert row(fleet, "keys", "state", "id = %s" % q(kid)) == ["disabled"]
    fleet.sql("UPDATE keys SET state = 'enabled' WHERE id = %s" % q(kid))
    try:
        # the nodes that read the row refuse it as tampered
        never_then(fleet, [a, c], lambda n: xs[n.name].enc("/a", "t-state", b"x"),
                   lambda r: r.status_code == 200, xks_internal, "state disabled->enabled, XKS",
                   cached=[b], cached_ok=lambda r: r.status_code == 400 and
                   err_name(r) == "InvalidStateException")
        never_then(fleet, [a, c], lambda n: n.api("GET", "/api/v1/keys/t-state"),
                   lambda r: r.status_code == 200 and r.json().get("state") == "enabled",
                   admin_tampered, "state disabled->enabled, admin GET",
                   cached=[b], cached_ok=lambda r: r.status_code == 200 and
                   r.json().get("state") == "disabled")
        line = logged(fleet, "keys/" + kid)
        assert "MAC" in line or "mac" in line or "tamper" in line, line
    finally:
        fleet.sql("UPDATE keys SET state = 'disabled' WHERE id = %s" % q(kid))


def test_rule_widened_in_sql_is_refused(fleet):
    a = fleet.nodes[0]
    narrow = {"xks": {"key_stores": ["default"],
                      "principals": ["arn:aws:iam::999999999999:role/nobody"]}}
    kid = xks_key(a, "t-rules", rules=narrow)["id"]
    xs = {n.name: n.xks() for n in fleet.nodes}
    r = xs["node-c"].enc("/a", "t-rules", b"x", meta=META)
    assert r.status_code == 403 and err_name(r) == "AccessDeniedException", r.text
    (stored,) = row(fleet, "keys", "rules", "id = %s" % q(kid))
    doc = json.loads(stored)
    assert doc["xks"]["principals"], stored
    wide = dict(doc, xks={k: v for k, v in doc["xks"].items() if k != "principals"})
    fleet.sql("UPDATE keys SET rules = %s WHERE id = %s" % (q(json.dumps(wide, separators=(",", ":"))),
                                                       q(kid)))
    try:
        # node-c holds the key cached with its narrow rules (its 403 above)
        a, b, c = fleet.nodes
        never_then(fleet, [a, b], lambda n: xs[n.name].enc("/a", "t-rules", b"x", meta=META),
                   lambda r: r.status_code == 200, xks_internal, "rules widened, XKS",
                   cached=[c], cached_ok=lambda r: r.status_code == 403 and
                   err_name(r) == "AccessDeniedException")
        never_then(fleet, [a, b], lambda n: n.api("GET", "/api/v1/keys/t-rules"),
                   lambda r: r.status_code == 200 and "principals" not in r.text, admin_tampered,
                   "rules widened, admin GET",
                   cached=[c], cached_ok=lambda r: r.status_code == 200 and "principals" in r.text)
        logged(fleet, "keys/" + kid)
    finally:
        fleet.sql("UPDATE keys SET rules = %s WHERE id = %s" % (q(stored), q(kid)))


def test_sealed_material_swapped_between_keys_is_refused(fleet):
    a = fleet.nodes[0]
    raw1, raw2 = os.urandom(32), os.urandom(32)
    k1 = xks_key(a, "t-swap-1", raw=raw1)["id"]
    k2 = xks_key(a, "t-swap-2", raw=raw2)["id"]
    b1 = fleet.sql("SELECT encode(blob, 'hex') FROM key_versions WHERE key_id = %s AND version = 1" % q(k1))
    b2 = fleet.sql("SELECT encode(blob, 'hex') FROM key_versions WHERE key_id = %s AND version = 1" % q(k2))
    assert b1 and b2 and b1 != b2
    fleet.sql("BEGIN; UPDATE key_versions SET blob = decode(%s, 'hex') WHERE key_id = %s AND version = 1; "
        "UPDATE key_versions SET blob = decode(%s, 'hex') WHERE key_id = %s AND version = 1; COMMIT"
        % (q(b2), q(k1), q(b1), q(k2)))
    try:
        # node-b and node-c never used these keys: they must read the rows
        for name, other in (("t-swap-1", raw2), ("t-swap-2", raw1)):
            xs = {n.name: n.xks() for n in fleet.nodes[1:]}
            # any 200 is the swap unnoticed (python says whose material it used)
            never_then(fleet, fleet.nodes[1:], lambda n: xs[n.name].enc("/a", name, b"x", aad=b"t"),
                       lambda r: r.status_code == 200 and whose(r, other, b"t"), xks_internal,
                       "blobs swapped (%s), XKS" % name)
        logged(fleet, "key_versions/", k1)
    finally:
        fleet.sql("BEGIN; UPDATE key_versions SET blob = decode(%s, 'hex') WHERE key_id = %s AND version = 1; "
            "UPDATE key_versions SET blob = decode(%s, 'hex') WHERE key_id = %s AND version = 1; COMMIT"
            % (q(b1), q(k1), q(b2), q(k2)))


def test_sealed_material_with_a_flipped_byte_is_refused(fleet):
    a = fleet.nodes[0]
    kid = xks_key(a, "t-flip")["id"]
    blob = fleet.sql("SELECT encode(blob, 'hex') FROM key_versions WHERE key_id = %s AND version = 1"
               % q(kid))
    raw = bytearray(bytes.fromhex(blob))
    raw[len(raw) // 2] ^= 0x01
    fleet.sql("UPDATE key_versions SET blob = decode(%s, 'hex') WHERE key_id = %s AND version = 1"
        % (q(raw.hex()), q(kid)))
    try:
        xs = {n.name: n.xks() for n in fleet.nodes[1:]}
        never_then(fleet, fleet.nodes[1:], lambda n: xs[n.name].enc("/a", "t-flip", b"x"),
                   lambda r: r.status_code == 200, xks_internal, "blob byte flipped, XKS")
        never_then(fleet, fleet.nodes[1:], lambda n: n.api("GET", "/api/v1/keys/t-flip/versions"),
                   lambda r: r.status_code == 200, admin_tampered, "blob byte flipped, versions")
        logged(fleet, "key_versions/", kid)
    finally:
        fleet.sql("UPDATE key_versions SET blob = decode(%s, 'hex') WHERE key_id = %s AND version = 1"
            % (q(blob), q(kid)))


def test_token_role_raised_in_sql_is_refused(fleet):
    a, b, c = fleet.nodes
    doc = api_ok(a, "POST", "/api/v1/tokens", {"name": "t-operator", "role": "operator"})
    token, tid = doc["token"], doc["id"]
    # an operator may not list tokens (admin only): 403, cached on node-b
    r = b.api("GET", "/api/v1/tokens", token=token)
    assert r.status_code == 403, r.text
    assert row(fleet, "tokens", "role", "id = %s" % q(tid)) == ["operator"]
    fleet.sql("UPDATE tokens SET role = 'admin' WHERE id = %s" % q(tid))
    try:
        never_then(fleet, fleet.nodes, lambda n: n.api("GET", "/api/v1/tokens", token=token),
                   lambda r: r.status_code == 200, admin_tampered, "token role operator->admin")
        logged(fleet, "tokens/" + tid)
    finally:
        fleet.sql("UPDATE tokens SET role = 'operator' WHERE id = %s" % q(tid))


def test_audit_row_changed_in_sql_is_named_by_keywardctl_audit_verify(fleet):
    a, b, c = fleet.nodes
    xks_key(a, "t-audit")
    api_ok(b, "POST", "/api/v1/keys/t-audit/disable")
    v = api_ok(c, "POST", "/api/v1/audit/verify")
    assert v["ok"] is True, v
    seq = int(fleet.sql("SELECT seq FROM audit WHERE key_name = 't-audit' AND action = 'key.create'"))
    detail = fleet.sql("SELECT encode(convert_to(detail, 'UTF8'), 'hex') FROM audit WHERE seq = %d" % seq)
    fleet.sql("UPDATE audit SET detail = 'nothing to see' WHERE seq = %d" % seq)
    try:
        for n in fleet.nodes:
            d = api_ok(n, "POST", "/api/v1/audit/verify")
            assert d["ok"] is False and d["first_bad_seq"] == seq, (n.name, d)
        p = b.ctl("audit", "verify")
        assert p.returncode == 6, (p.returncode, p.stdout, p.stderr)
        assert str(seq) in p.stdout + p.stderr, (p.stdout, p.stderr)
    finally:
        fleet.sql("UPDATE audit SET detail = convert_from(decode(%s, 'hex'), 'UTF8') WHERE seq = %d"
            % (q(detail), seq))
    v = api_ok(c, "POST", "/api/v1/audit/verify")
    assert v["ok"] is True, v


def test_node_with_an_older_schema_refuses_to_start(fleet):
    (version,) = row(fleet, "kw_schema", "version", "id = 1")
    version = int(version)
    fleet.sql("UPDATE kw_schema SET version = version + 1 WHERE id = 1")
    try:
        d = fleet.make_node("node-d", extra=True)
        rc, out = d.run_to_exit(timeout=60)
        assert rc != 0, out
        lines = [l for l in out.splitlines() if str(version + 1) in l and str(version) in l
                 and "schema" in l]
        assert lines, "no line naming schema %d and %d:\n%s" % (version + 1, version, out)
    finally:
        fleet.sql("UPDATE kw_schema SET version = %d WHERE id = 1" % version)
    # it did not join the fleet
    ids = [n["id"] for n in api_ok(fleet.nodes[0], "GET", "/api/v1/nodes")["nodes"]]
    assert "node-d" not in ids, ids
