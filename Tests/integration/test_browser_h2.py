"""Headless Chromium over HTTP/2 (SPEC.md, *HTTP/2*): 20 EventSources to one origin from one
page all receive their messages — over HTTP/1.1 the seventh would wait for a free connection
(six per origin) — and the server sees them as h2 streams on one connection."""

import json

import pytest

from qri_http import wait_until
from test_browser import browser, page_server  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser

TABS = 20

MANY_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>qri h2 page</title></head><body>
<script>
  const report = (kind, body) =>
    fetch("/report/" + kind, {method: "POST", body: JSON.stringify(body)});
  for (let i = 0; i < %(tabs)d; i++) {
    const source = new EventSource(%(url)s + "&s=tab" + i);
    source.onmessage = (e) => report("message", {tab: i, data: e.data});
    source.onerror = () => report("error", {tab: i, readyState: source.readyState});
  }
</script>
</body></html>
"""


def test_twenty_eventsources_to_one_origin_over_h2(admin_qri, page_server, browser):  # noqa: F811
    srv = admin_qri()
    page_server.page = MANY_PAGE
    page_server.params = {"tabs": TABS}
    page_server.stream_url = f"https://localhost:{srv.public_port}/stream?p=browser"
    browser(page_server.origin + "/")
    ticks = lambda: {p["tab"] for k, p in page_server.reports if k == "message" and p["data"] == "Tick"}
    wait_until(lambda: len(ticks()) == TABS, 60, f"a Tick on all {TABS} EventSources")
    samples = srv.metrics()
    assert srv.metric("qri_streams", samples, protocol="h2") == TABS
    assert srv.metric("qri_streams", samples, protocol="h1") == 0
    assert srv.metric("qri_connections", samples, listener="public") <= 2
    for i in range(TABS):
        resp = srv.admin("POST", "/publish", data={"peer": "browser", "checksum": f"tab{i}", "message": f"001 to {i}"})
        assert resp.status_code == 202, resp.text
    got = lambda: {(p["tab"], p["data"]) for k, p in page_server.reports if k == "message" and p["data"].startswith("001")}
    wait_until(lambda: len(got()) == TABS, 30, f"a message on all {TABS} EventSources")
    assert got() == {(i, f"001 to {i}") for i in range(TABS)}
    assert "error" not in [k for k, _ in page_server.reports]
