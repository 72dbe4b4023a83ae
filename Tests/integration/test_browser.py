"""A real browser: headless Chromium's EventSource, from a page of another origin.

The page is served over plain HTTP by a small Python server on 127.0.0.1 (origin
http://127.0.0.1:PORT); it opens `new EventSource("https://localhost:QRI/stream?…")`, the way
qri-js does, and reports every event and error back to that server with `fetch`.
"""

import json
import os
import shutil
import signal
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qri_http import Deadline, wait_until

pytestmark = pytest.mark.browser

BROWSER_DEADLINE = 60.0

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>qri test page</title></head><body>
<script>
  const report = (kind, body) =>
    fetch("/report/" + kind, {method: "POST", body: JSON.stringify(body)});
  const source = new EventSource(%(url)s);
  source.onopen = () => report("open", {});
  source.onmessage = (e) => report("message", {data: e.data, id: e.lastEventId, origin: e.origin});
  source.onerror = () => report("error", {readyState: source.readyState});
</script>
</body></html>
"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class PageServer:
    """Serves the test page and collects the page's reports."""

    def __init__(self):
        self.reports = []
        self.cond = threading.Condition()
        self.stream_url = None
        self.page = PAGE            # a template with %(url)s and the keys of `params`
        self.params = {}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                body = (outer.page % {"url": json.dumps(outer.stream_url), **outer.params}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length) or b"{}")
                kind = self.path.rsplit("/", 1)[-1]
                with outer.cond:
                    outer.reports.append((kind, payload))
                    outer.cond.notify_all()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def wait_report(self, predicate, what, timeout=BROWSER_DEADLINE):
        with self.cond:
            ok = self.cond.wait_for(lambda: any(predicate(k, p) for k, p in self.reports), timeout)
            if not ok:
                raise Deadline(f"the page did not report {what} within {timeout:.0f}s; reports: {self.reports}")
            return next(p for k, p in self.reports if predicate(k, p))

    def messages(self):
        with self.cond:
            return [p["data"] for k, p in self.reports if k == "message"]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def page_server():
    server = PageServer()
    yield server
    server.close()


@pytest.fixture
def browser(tmp_path):
    """`browser(url)` opens a page in headless Chromium, closed at teardown."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium found (make deps installs Debian's chromium)")
    procs = []

    def open_page(url):
        log = open(tmp_path / f"chromium{len(procs)}.log", "wb")
        proc = subprocess.Popen(
            [chromium, "--headless=new", "--no-sandbox", "--disable-gpu", "--ignore-certificate-errors",
             f"--user-data-dir={tmp_path / f'profile{len(procs)}'}", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--remote-debugging-port=0", url],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        procs.append((proc, log))
        return proc

    yield open_page
    for proc, log in procs:
        # Chromium runs several processes in its own session: end that process group.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        except ProcessLookupError:
            pass
        log.close()


def test_browser_eventsource_receives_messages(qri, page_server, browser):
    srv = qri()
    page_server.stream_url = f"https://localhost:{srv.public_port}/stream?p=browser&s=tab"
    browser(page_server.origin + "/")

    tick = page_server.wait_report(lambda k, p: k == "message" and p["data"] == "Tick", "the first Tick")
    assert tick["id"] and int(tick["id"], 16) > 0, tick

    q = srv.qripy()
    q.send(b"browser", b"tab", "001héllo ✓".encode())
    got = page_server.wait_report(lambda k, p: k == "message" and p["data"].startswith("001"), "the message")
    assert got["data"] == "001héllo ✓"
    assert int(got["id"], 16) > int(tick["id"], 16)
    assert got["origin"] == f"https://localhost:{srv.public_port}"

    q.send(b"browser", b"tab", b"line1\r\nline2\rline3")
    page_server.wait_report(lambda k, p: k == "message" and p["data"] == "line1\nline2\nline3", "the multi-line message")
    assert "error" not in [k for k, _ in page_server.reports]


def test_browser_with_its_origin_listed(qri, page_server, browser):
    srv = qri("--cors-origins", f"https://elsewhere.example,{page_server.origin}")
    page_server.stream_url = f"https://localhost:{srv.public_port}/stream?p=browser&s=listed"
    browser(page_server.origin + "/")
    page_server.wait_report(lambda k, p: k == "message" and p["data"] == "Tick", "the first Tick")
    srv.qripy().send(b"browser", b"listed", b"listed-ok")
    page_server.wait_report(lambda k, p: k == "message" and p["data"] == "listed-ok", "the message")


def test_browser_with_its_origin_not_listed_cannot_read(qri, page_server, browser):
    srv = qri("--cors-origins", "https://elsewhere.example")
    page_server.stream_url = f"https://localhost:{srv.public_port}/stream?p=browser&s=unlisted"
    browser(page_server.origin + "/")
    # The browser refuses the response (no Access-Control-Allow-Origin) and fails the EventSource.
    page_server.wait_report(lambda k, p: k == "error", "an EventSource error")
    assert page_server.messages() == []


# ---------------------------------------------------------------------------------------------
# The admin listener's backdoor, seen on the page

POSTING_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>qri backdoor page</title></head><body>
<script>
  const report = (kind, body) =>
    fetch("/report/" + kind, {method: "POST", body: JSON.stringify(body)});
  const source = new EventSource(%(url)s);
  let posted = false;
  source.onmessage = (e) => {
    report("message", {data: e.data, id: e.lastEventId});
    if (e.data === "Tick" && !posted) {
      posted = true;
      // A cross-origin POST with a bearer token: the browser sends a CORS preflight first.
      fetch(%(admin)s + "/backdoor", {
        method: "POST",
        headers: {"Authorization": "Bearer " + %(token)s, "Content-Type": "application/x-www-form-urlencoded"},
        body: "type=002&message=" + encodeURIComponent("posted by the page ✓"),
      }).then((r) => report("post", {status: r.status}),
              (err) => report("post-error", {message: String(err)}));
    }
  };
  source.onerror = () => report("error", {readyState: source.readyState});
</script>
</body></html>
"""


def test_browser_backdoor_post_shows_up_on_the_page(admin_qri, page_server, browser):
    srv = admin_qri()
    page_server.stream_url = f"https://localhost:{srv.public_port}/stream?p=browser&s=herald"
    browser(page_server.origin + "/")
    page_server.wait_report(lambda k, p: k == "message" and p["data"] == "Tick", "the first Tick")

    assert srv.admin("POST", "/backdoor", data={"type": "001", "message": "Maintenance at 18:00 ✓"}).status_code == 204
    got = page_server.wait_report(lambda k, p: k == "message" and p["data"].startswith("001"), "the backdoor message")
    assert got["data"] == "001Maintenance at 18:00 ✓"
    assert srv.admin("DELETE", "/backdoor?type=001").status_code == 204
    page_server.wait_report(lambda k, p: k == "message" and p["data"] == "001delete", "the deletion")
    assert "error" not in [k for k, _ in page_server.reports]


@pytest.mark.parametrize("cors", ["listed", "star"])
def test_browser_page_posts_to_the_backdoor_across_origins(admin_qri, page_server, browser, cors):
    args = ["--cors-origins", f"https://elsewhere.example,{page_server.origin}"] if cors == "listed" else []
    srv = admin_qri(*args)
    page_server.page = POSTING_PAGE
    page_server.params = {"admin": json.dumps(f"https://localhost:{srv.admin_port}"),
                          "token": json.dumps(srv.admin_token)}
    page_server.stream_url = f"https://localhost:{srv.public_port}/stream?p=browser&s=poster"
    browser(page_server.origin + "/")
    result = page_server.wait_report(lambda k, p: k in ("post", "post-error"), "the page's POST")
    assert result == {"status": 204}, f"the page's cross-origin POST: {result}"
    got = page_server.wait_report(lambda k, p: k == "message" and p["data"].startswith("002"), "the posted message")
    assert got["data"] == "002posted by the page ✓"
    assert srv.admin("GET", "/backdoor?type=002").json() == {"type": "002", "message": "posted by the page ✓"}


def test_browser_stream_on_one_node_message_published_on_another(admin_qri, redis_server, page_server, browser):
    """Cluster mode: the page's EventSource is on node A; the message goes in at node B."""
    redis = redis_server()
    a = admin_qri("--redis", redis.url)
    b = admin_qri("--redis", redis.url, "--admin-plaintext")
    for node in (a, b):
        wait_until(lambda: node.admin_client(token=None).get("/readyz").status_code == 200, 15, "node ready")
    page_server.stream_url = f"https://localhost:{a.public_port}/stream?p=browser&s=cluster"
    browser(page_server.origin + "/")
    page_server.wait_report(lambda k, p: k == "message" and p["data"] == "Tick", "the first Tick")
    resp = b.admin("POST", "/publish", data={"peer": "browser", "checksum": "cluster", "message": "001 via node B"})
    assert resp.status_code == 202 and resp.json()["nodes"] == 1, resp.text
    got = page_server.wait_report(lambda k, p: k == "message" and p["data"] == "001 via node B", "the message")
    assert int(got["id"], 16) == int(resp.json()["id"], 16)


# ---------------------------------------------------------------------------------------------
# qri-js's default onError: the first drop ends the stream for good

# qri-js (Orderry/qri-js, src/index.coffee) wraps the EventSource and, unless the caller
# passes its own `onError`, calls `close()` on it at the first error: a restart, a drain or a
# network blip then ends the stream for good, and no retry, jitter or Last-Event-ID helps.
# The page mimics that wrapper; the fix on the page is `onError: function () {}`.
QRI_JS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>qri-js onError page</title></head><body>
<script>
  const report = (kind, body) =>
    fetch("/report/" + kind, {method: "POST", body: JSON.stringify(body)});
  // What qri-js does with an error: the caller's onError, else close() (the default).
  function openLikeQriJs(url, options) {
    const source = new EventSource(url);
    const onError = options.onError || function () { source.close(); };
    source.onopen = () => report("open", {});
    source.onmessage = (e) => report("message", {data: e.data, id: e.lastEventId});
    source.onerror = (e) => {
      onError(e);
      report("error", {readyState: source.readyState});
    };
    return source;
  }
  const source = openLikeQriJs(%(url)s, %(options)s);
</script>
</body></html>
"""


@pytest.mark.parametrize("options", ["{}", "{onError: function () {}}"], ids=["default-onError", "onError-noop"])
def test_qri_js_default_on_error_ends_the_stream_at_the_first_restart(qri, page_server, browser, options):
    first = qri("--retry-jitter", "0")
    port = first.public_port
    page_server.page = QRI_JS_PAGE
    page_server.params = {"options": options}
    page_server.stream_url = f"https://localhost:{port}/stream?p=browser&s=restart"
    browser(page_server.origin + "/")
    page_server.wait_report(lambda k, p: k == "message" and p["data"] == "Tick", "the first Tick")
    first.qripy().send(b"browser", b"restart", b"before the restart")
    page_server.wait_report(lambda k, p: k == "message" and p["data"] == "before the restart", "the message")

    first.signal(signal.SIGTERM)            # a restart: the stream ends with a close_notify
    assert first.wait_exit(10) == 0
    error = page_server.wait_report(lambda k, p: k == "error", "the EventSource error")
    second = qri("--listen", f"127.0.0.1:{port}", "--retry-jitter", "0")
    if options == "{}":
        # close() at the first error: CLOSED (2), and the browser never comes back.
        assert error["readyState"] == 2, error
        with pytest.raises(Deadline):
            page_server.wait_report(lambda k, p: k == "open" and len([r for r in page_server.reports if r[0] == "open"]) > 1,
                                    "a second open", timeout=6)
    else:
        # The browser reconnects after retry: (CONNECTING, 0) and resumes with Last-Event-ID.
        assert error["readyState"] == 0, error
        with page_server.cond:
            opens = len([r for r in page_server.reports if r[0] == "open"])
        page_server.wait_report(lambda k, p: len([r for r in page_server.reports if r[0] == "open"]) > opens,
                                "the reconnection", timeout=20)
        page_server.wait_report(lambda k, p: k == "message" and p["data"] == "Tick"
                                and sum(1 for r in page_server.reports if r[0] == "message" and r[1]["data"] == "Tick") >= 2,
                                "a Tick from the restarted gateway")
        second.qripy().send(b"browser", b"restart", b"after the restart")
        page_server.wait_report(lambda k, p: k == "message" and p["data"] == "after the restart", "the message after")
