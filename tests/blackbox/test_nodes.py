"""The nodes sharing the key store (issue 16, docs/api.md#nodes) as the front
shows them, on a single appliance (SQLCipher): GET /api/v1/nodes lists one
node, itself, ACTIVE, for every admin role; /metrics labels every series
with the node id and says the engine in keyward_node_info, without the
fleet's series.  The fleet's side (three nodes on PostgreSQL) is in
tests/fleet/.  GET /nodes needs custody's KW_OP_NODES (the lead's part of
issue 16): before it, custody refuses the op and the first test fails with
500."""
import time

import requests

import promtext

NODE = "bb-node-1"
NODE_FIELDS = {"id", "address", "version", "schema", "state", "detail", "started_ms", "seen_ms",
               "age_ms", "self"}


def nodes_server(make_server):
    return make_server(env={"KEYWARD_DB_NODE_NAME": NODE}).start()


def check_single(doc):
    assert doc["engine"] == "sqlcipher", doc
    assert doc["self"] == NODE and doc["state"] == "ACTIVE", doc
    assert isinstance(doc["detail"], str), doc
    assert len(doc["nodes"]) == 1, doc
    n = doc["nodes"][0]
    assert NODE_FIELDS <= set(n), n
    assert n["id"] == NODE and n["self"] is True and n["state"] == "ACTIVE", n
    assert n["version"] == "0.1.0" and isinstance(n["address"], str), n
    now_ms = time.time() * 1000
    assert 0 <= n["age_ms"] < 60000, n
    assert n["started_ms"] <= n["seen_ms"] <= now_ms + 5000, n


def test_nodes_single_appliance_every_role(make_server):
    s = nodes_server(make_server)
    r = s.api("GET", "/api/v1/nodes")
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    check_single(r.json())
    for role in ("auditor", "operator"):
        tok = s.api("POST", "/api/v1/tokens", {"name": "n-" + role, "role": role}).json()["token"]
        r = s.api("GET", "/api/v1/nodes", token=tok)
        assert r.status_code == 200, (role, r.text)
        check_single(r.json())
    # no token, a wrong method, a body, a query: as every admin route
    r = s.api("GET", "/api/v1/nodes", token="")
    assert r.status_code == 401 and r.json()["error"] == "unauthenticated", r.text
    r = s.api("POST", "/api/v1/nodes")
    assert r.status_code == 405 and r.headers["Allow"] == "GET", r.text
    assert s.api("GET", "/api/v1/nodes/x").status_code == 404
    assert s.api("GET", "/api/v1/nodes?state=ACTIVE").status_code == 400


def test_metrics_carry_the_node_label(make_server):
    s = nodes_server(make_server)
    assert s.api("GET", "/api/v1/status").status_code == 200
    r = requests.get(s.url + "/metrics", verify=s.cacert, timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    m = promtext.parse(r.text, node=NODE)   # every keyward_* sample: node="bb-node-1" first
    assert m.value("keyward_node_info", engine="sqlcipher", version="0.1.0") == 1
    assert m.types["keyward_node_info"] == "gauge"
    assert m.value("keyward_custody_up") == 1
    assert m.find("keyward_http_requests_total", route="admin", status="200")
    assert m.value("keyward_http_connections_open") >= 1
    assert not m.has("keyward_db_up") and not m.has("keyward_fleet_nodes"), r.text
