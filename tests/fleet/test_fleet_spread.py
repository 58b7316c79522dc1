"""Three nodes, one key set (issue 16): XKS and EKM requests spread over the
nodes, a ciphertext made on one decrypting on the others (and checked by
python3-cryptography with the documented layouts); the fleet as the nodes
report it (XKS health's ekmFleetDetails, GET /api/v1/nodes, /metrics);
and kill -9 of one node in the middle of admin writes losing no
acknowledged write."""
import os
import threading
import time

import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import (aes_key_unwrap_with_padding,
                                                    aes_key_wrap_with_padding)
from cryptography.hazmat.primitives.serialization import load_der_public_key

from fleetlib import (NODE_NAMES, api_ok, bound_aad, fleet_fixture, health_entries,
                      poll_until, unb64, xks_key)
from test_ekm import unb64u

fleet = fleet_fixture("spread")


def test_xks_round_robin_ciphertexts_cross_nodes(fleet):
    nodes = fleet.nodes
    raw = os.urandom(32)
    xks_key(nodes[0], "rr-imported", raw=raw)          # made on node-a
    xks_key(nodes[1], "rr-generated")                  # made on node-b: python never sees it
    xs = [n.xks() for n in nodes]
    for key in ("rr-imported", "rr-generated"):
        for i in range(9):
            src = i % 3
            pt, aad = os.urandom(37 * i), b"fleet=%d" % i
            r = xs[src].enc("/a", key, pt, aad=aad)
            assert r.status_code == 200, (key, nodes[src].name, r.text)
            j = r.json()
            if key == "rr-imported":
                iv, ct, tag, md = (unb64(j[k]) for k in ("initializationVector", "ciphertext",
                                                         "authenticationTag", "ciphertextMetadata"))
                assert AESGCM(raw).decrypt(iv, ct + tag, bound_aad(aad, md)) == pt
            for dst in range(3):
                d = xs[dst].dec("/a", key, j, aad=aad)
                assert d.status_code == 200, (key, nodes[src].name, nodes[dst].name, d.text)
                assert unb64(d.json()["plaintext"]) == pt


def test_ekm_round_robin_wraps_cross_nodes(fleet):
    nodes = fleet.nodes
    kek = os.urandom(32)
    xks_key(nodes[2], "rr-kek", raw=kek)                # made on node-c
    api_ok(nodes[0], "POST", "/api/v1/keys", {"name": "rr-rsa", "type": "RSA", "size": 2048,
                                              "operations": ["wrap", "unwrap"],
                                              "rules": {"ekm": {"path_prefixes": [
                                                  "/azureekm/tenant0/pool-1"]}}})
    es = [n.ekm() for n in nodes]
    for i in range(6):
        src, dst = i % 3, (i + 1) % 3
        dek = os.urandom(32)
        r = es[src].wrap("rr-kek", "A256KWP", dek)
        assert r.status_code == 200, (nodes[src].name, r.text)
        wrapped = unb64u(r.json()["value"])
        assert aes_key_unwrap_with_padding(kek, wrapped) == dek
        u = es[dst].unwrap("rr-kek", "A256KWP", r.json()["value"])
        assert u.status_code == 200, (nodes[src].name, nodes[dst].name, u.text)
        assert unb64u(u.json()["value"]) == dek
        # python's wrap unwraps on yet another node
        u = es[(i + 2) % 3].unwrap("rr-kek", "A256KWP", aes_key_wrap_with_padding(kek, dek))
        assert u.status_code == 200 and unb64u(u.json()["value"]) == dek, u.text
    # RSA made on node-a: wrapped by python with the public key one node
    # reports, unwrapped on each node
    m = es[1].post("/rr-rsa/metadata")
    assert m.status_code == 200, m.text
    n, e = (int.from_bytes(unb64u(m.json()[k]), "big") for k in ("n", "e"))
    # the same public key on another node's admin API
    doc = api_ok(nodes[2], "GET", "/api/v1/keys/rr-rsa")
    pub = load_der_public_key(unb64(doc["public_key"]["spki"]))
    assert (pub.public_numbers().n, pub.public_numbers().e) == (n, e)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    for dst in range(3):
        dek = os.urandom(32)
        u = es[dst].unwrap("rr-rsa", "RSA-OAEP-256", pub.encrypt(dek, oaep))
        assert u.status_code == 200, (nodes[dst].name, u.text)
        assert unb64u(u.json()["value"]) == dek


def test_fleet_is_reported_by_every_node(fleet):
    names = set(NODE_NAMES)
    for node in fleet.nodes:
        x = node.xks()

        def all_active():
            r = x.health("/a")
            assert r.status_code == 200, (node.name, r.text)
            e = health_entries(r)
            return e if set(e) >= names and all(e[n] == "ACTIVE" for n in names) else None
        # heartbeats every heartbeat_ms (1 s): bounded wait for all three
        entries, _ = poll_until(all_active, 10, 0.2, "%s: ekmFleetDetails with the three nodes "
                                "ACTIVE" % node.name)
        assert set(entries) == names, entries

        doc = api_ok(node, "GET", "/api/v1/nodes")
        assert doc["engine"] == "postgresql" and doc["self"] == node.name, doc
        assert doc["state"] == "ACTIVE", doc
        listed = {n["id"]: n for n in doc["nodes"]}
        assert set(listed) == names, doc
        for other in fleet.nodes:
            n = listed[other.name]
            assert n["self"] is (other is node), (node.name, n)
            assert n["state"] == "ACTIVE", (node.name, n)
            assert n["address"].endswith(":%d" % other.port), (node.name, n)
            assert isinstance(n["schema"], int) and n["schema"] >= 1, n
            assert 0 <= n["age_ms"] < 10000, n

        r = requests.get(node.url + "/metrics", verify=node.cacert, timeout=10)
        assert r.status_code == 200, r.text
        mine = 'node="%s"' % node.name
        labelled = [line for line in r.text.splitlines() if mine in line and not line.startswith("#")]
        assert labelled, "%s: no /metrics line labelled %s:\n%s" % (node.name, mine, r.text[:3000])
        for other in set(NODE_NAMES) - {node.name}:
            # each node reports its own series; the others' come from their own /metrics
            stray = [line for line in r.text.splitlines()
                     if 'node="%s"' % other in line and line.startswith("keyward_http_")]
            assert not stray, (node.name, stray[:3])


def _writer(node, acked, answers, stop, prefix):
    sess = requests.Session()
    h = {"Authorization": "Bearer " + node.token}
    i = 0
    while not stop.is_set():
        name = "%s-%s-%04d" % (prefix, node.name, i)
        i += 1
        body = {"name": name, "type": "AES", "operations": ["encrypt", "decrypt"],
                "rules": {"xks": {"key_stores": ["default"]}}}
        t = time.monotonic()
        try:
            r = sess.post(node.url + "/api/v1/keys", json=body, headers=h, verify=node.cacert,
                          timeout=15)
        except requests.RequestException as e:
            answers.append((t, node.name, name, repr(e)))
            if node.proc is None:          # killed: its writer is done
                return
            continue
        answers.append((t, node.name, name, r.status_code))
        if r.status_code == 201:
            acked.append((node.name, name))


def test_kill9_of_a_node_mid_load_loses_no_acknowledged_write(fleet):
    a, b, c = fleet.nodes
    acked, answers = [], []
    stop = threading.Event()
    threads = [threading.Thread(target=_writer, args=(n, acked, answers, stop, "k9"), daemon=True)
               for n in (a, b, c)]
    for t in threads:
        t.start()
    try:
        time.sleep(1.5)
        kill_at = time.monotonic()
        b.kill9_all()
        time.sleep(2.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads)
    try:
        on_b = [n for who, n in acked if who == "node-b"]
        after = [x for x in answers if x[0] > kill_at + 0.2 and x[1] != "node-b"]
        assert on_b, "node-b acknowledged nothing before its kill: %s" % answers[:10]
        assert after, "no writes reached the survivors after the kill"
        # the survivors kept accepting writes, before and after the kill
        bad = [x for x in answers if x[1] != "node-b" and x[3] != 201]
        assert not bad, "survivors refused writes: %s\n%s" % (bad[:10], fleet.logs())
        bad_b = [x for x in answers if x[1] == "node-b" and x[0] < kill_at and x[3] != 201]
        assert not bad_b, bad_b[:10]

        xa, xc = a.xks(), c.xks()
        sa, sc = requests.Session(), requests.Session()
        for who, name in acked:
            for node, s in ((a, sa), (c, sc)):
                g = s.get(node.url + "/api/v1/keys/" + name, verify=node.cacert, timeout=10,
                          headers={"Authorization": "Bearer " + node.token})
                assert g.status_code == 200, ("acknowledged by %s, missing on %s" % (who, node.name),
                                              name, g.status_code, g.text)
                assert g.json()["state"] == "enabled", g.text
            # its material works: sealed on one survivor's side, used on both
            pt = os.urandom(16)
            r = xa.enc("/a", name, pt)
            assert r.status_code == 200, (name, r.text)
            d = xc.dec("/a", name, r.json())
            assert d.status_code == 200 and unb64(d.json()["plaintext"]) == pt, (name, d.text)
        # the fleet's one audit chain, appended by three nodes at once and one
        # of them killed mid-transaction, still verifies
        v = api_ok(c, "POST", "/api/v1/audit/verify")
        assert v["ok"] is True, v
        print("kill -9: %d acknowledged creates (%d on node-b before its kill), all present"
              % (len(acked), len(on_b)))
    finally:
        b.start()
    # the restarted node serves the same key set
    for who, name in acked[-5:] + [x for x in acked if x[0] == "node-b"][-5:]:
        assert b.api("GET", "/api/v1/keys/" + name).status_code == 200, name
