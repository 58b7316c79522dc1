"""The web console's static files (/ui/, docs/console.md): served from the
binary on the listener of the admin API only, with the security headers on
every answer of that listener (files, the API, /healthz, /metrics, errors),
Cache-Control by kind of file, ETag and 304, and no inline script or style
in any HTML page served."""
from html.parser import HTMLParser

import requests

from conftest import free_port

SECURITY = {
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def get(url, cacert, method="GET", **kw):
    return requests.request(method, url, verify=cacert, timeout=10, allow_redirects=False, **kw)


def assert_security(r):
    for k, v in SECURITY.items():
        assert r.headers.get(k) == v, (r.request.method, r.url, r.status_code, k, r.headers.get(k))


class Page(HTMLParser):
    """Collects what the CSP forbids, and the files a page refers to."""

    def __init__(self):
        super().__init__()
        self.problems = []
        self.refs = []
        self.in_script = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in a:
            if name.startswith("on"):
                self.problems.append("%s %s= handler" % (tag, name))
        if "style" in a:
            self.problems.append("%s style attribute" % tag)
        if tag == "style":
            self.problems.append("<style> element")
        if tag == "script":
            if not a.get("src"):
                self.problems.append("inline <script>")
            else:
                self.refs.append(a["src"])
            self.in_script = True
        if tag == "link" and a.get("href"):
            self.refs.append(a["href"])
        for name in ("href", "src"):
            v = a.get(name) or ""
            if v.startswith(("http:", "https:", "//", "data:", "javascript:")):
                self.problems.append("%s %s=%s: not 'self'" % (tag, name, v))

    def handle_endtag(self, tag):
        if tag == "script":
            self.in_script = False

    def handle_data(self, data):
        if self.in_script and data.strip():
            self.problems.append("script text inside <script>")


def modules(js_text):
    """The relative imports of an ES module ('./x.js')."""
    out = []
    for line in js_text.splitlines():
        line = line.strip()
        if line.startswith("import ") and " from '" in line:
            out.append(line.split(" from '")[1].split("'")[0])
    return out


def crawl(base, cacert):
    """Every file reachable from /ui/ (HTML, its links, the module graph)."""
    seen, todo, files = set(), ["index.html"], {}
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        r = get(base + "/ui/" + name, cacert)
        assert r.status_code == 200, (name, r.status_code)
        files[name] = r
        if name.endswith(".html"):
            p = Page()
            p.feed(r.text)
            assert p.problems == [], (name, p.problems)
            todo += [x for x in p.refs if "/" not in x]
        if name.endswith(".js"):
            todo += [m[2:] for m in modules(r.text) if m.startswith("./")]
    return files


def test_console_files_headers_types_and_cache(server):
    s = server
    files = crawl(s.url, s.cacert)
    assert {"index.html", "app.js", "app.css", "api.js", "favicon.svg"} <= set(files)
    for name, r in files.items():
        assert_security(r)
        ext = name[name.rindex("."):]
        assert r.headers["Content-Type"].split(";")[0] == TYPES[ext], name
        if ext == ".html":
            assert r.headers["Cache-Control"] == "no-store", name
            assert "ETag" not in r.headers
        else:
            assert r.headers["Cache-Control"] == "no-cache", name
            etag = r.headers["ETag"]
            assert etag.startswith('"') and len(etag) == 66, etag
            # revalidation: 304 without a body, the same validators
            r2 = get(s.url + "/ui/" + name, s.cacert, headers={"If-None-Match": etag})
            assert r2.status_code == 304 and r2.content == b""
            assert r2.headers["ETag"] == etag and r2.headers["Cache-Control"] == "no-cache"
            assert_security(r2)
            r3 = get(s.url + "/ui/" + name, s.cacert, headers={"If-None-Match": '"stale"'})
            assert r3.status_code == 200 and r3.content == r.content
        # no text of the page would run inline: no eval, no markup injection
        if ext == ".js":
            for banned in ("eval(", "new Function", "innerHTML", "outerHTML", "document.write"):
                assert banned not in r.text, (name, banned)
    # / and /ui/index.html are the same page
    assert get(s.url + "/ui/index.html", s.cacert).content == files["index.html"].content


def test_console_redirect_head_404_405(server):
    s = server
    r = get(s.url + "/ui", s.cacert)
    assert r.status_code == 301 and r.headers["Location"] == "/ui/"
    assert_security(r)
    full = get(s.url + "/ui/app.js", s.cacert)
    r = get(s.url + "/ui/app.js", s.cacert, method="HEAD")
    assert r.status_code == 200 and r.content == b""
    assert int(r.headers["Content-Length"]) == len(full.content)
    assert r.headers["ETag"] == full.headers["ETag"]
    assert_security(r)
    for path in ("/ui/nope.js", "/ui/sub/app.js", "/uix", "/ui/APP.JS"):
        r = get(s.url + path, s.cacert)
        assert r.status_code == 404, path
        assert r.json()["error"] == "no_route"
        assert r.headers["Cache-Control"] == "no-store"
        assert_security(r)
    r = get(s.url + "/ui/", s.cacert, method="POST", data=b"x")
    assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD"
    assert_security(r)


def test_security_headers_on_every_kind_of_admin_answer(server):
    s = server
    tok = {"Authorization": "Bearer " + s.token}
    answers = [
        get(s.url + "/api/v1/keys", s.cacert, headers=tok),                       # API 200
        get(s.url + "/api/v1/keys", s.cacert),                                    # API 401
        get(s.url + "/api/v1/keys/nope", s.cacert, headers=tok),                  # API 404
        get(s.url + "/api/v1/keys", s.cacert, method="PUT", headers=tok),         # API 405
        get(s.url + "/healthz", s.cacert),
        get(s.url + "/metrics", s.cacert),
        get(s.url + "/nothing/here", s.cacert),                                   # no route
        get(s.url + "/ui/../api/v1/keys", s.cacert),                              # bad path
    ]
    for r in answers:
        assert_security(r)
        assert r.headers["Cache-Control"] == "no-store", (r.url, r.status_code)
    assert answers[0].status_code == 200 and answers[1].status_code == 401


def test_console_only_on_the_admin_listener(make_server):
    admin_port = free_port()
    s = make_server(env={"KEYWARD_ADMIN_LISTEN": "127.0.0.1:%d" % admin_port}).start()
    admin = "https://127.0.0.1:%d" % admin_port
    r = get(admin + "/ui/", s.cacert)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/html")
    assert_security(r)
    assert_security(get(admin + "/healthz", s.cacert))
    assert_security(get(admin + "/metrics", s.cacert))
    # the main listener (what AWS and Azure reach) has no console
    r = get(s.url + "/ui/", s.cacert)
    assert r.status_code == 404 and r.json()["error"] == "no_route"
    assert get(s.url + "/ui", s.cacert).status_code == 404
    # and none of the console's headers: it is not the admin listener
    r = get(s.url + "/healthz", s.cacert)
    assert "Content-Security-Policy" not in r.headers
    assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_console_absent_without_the_admin_api(make_server):
    s = make_server(env={"KEYWARD_ADMIN_ENABLE": "false"}).start()
    r = get(s.url + "/ui/", s.cacert)
    assert r.status_code == 404


def test_console_absent_when_disabled(make_server):
    s = make_server(env={"KEYWARD_CONSOLE_ENABLE": "false"}).start()
    r = get(s.url + "/ui/", s.cacert)
    assert r.status_code == 404 and r.json()["error"] == "no_route"
    # the admin API itself stays
    r = get(s.url + "/api/v1/keys", s.cacert, headers={"Authorization": "Bearer " + s.token})
    assert r.status_code == 200
