"""[admin] listen: the admin API on its own address and port, off the
listener that Azure and AWS reach."""
import requests

from conftest import free_port


def test_admin_api_only_on_its_own_listener(make_server):
    admin_port = free_port()
    s = make_server(env={"KEYWARD_ADMIN_LISTEN": "127.0.0.1:%d" % admin_port})
    s.start()
    h = {"Authorization": "Bearer " + s.token}
    admin_url = "https://127.0.0.1:%d" % admin_port
    r = requests.get(admin_url + "/api/v1/keys", headers=h, verify=s.cacert, timeout=10)
    assert r.status_code == 200, r.text
    # the main listener does not know the admin API (nor the metrics)
    r = requests.get(s.url + "/api/v1/keys", headers=h, verify=s.cacert, timeout=10)
    assert r.status_code == 404
    assert r.json()["error"] == "no_route"
    assert requests.get(s.url + "/metrics", verify=s.cacert, timeout=10).status_code == 404
    assert requests.get(admin_url + "/metrics", verify=s.cacert, timeout=10).status_code == 200
    # liveness is on both
    assert requests.get(s.url + "/healthz", verify=s.cacert, timeout=10).status_code == 200
    assert requests.get(admin_url + "/healthz", verify=s.cacert, timeout=10).status_code == 200


def test_admin_disabled_has_no_admin_routes(make_server):
    s = make_server(env={"KEYWARD_ADMIN_ENABLE": "false"})
    s.start()
    r = requests.get(s.url + "/api/v1/keys", headers={"Authorization": "Bearer x"},
                     verify=s.cacert, timeout=10)
    assert r.status_code == 404
