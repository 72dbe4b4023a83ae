"""The public listener: `GET /stream?p=PEER&s=CHECKSUM` (SPEC.md, *Public listener*)."""

import re
import subprocess
import threading

import pytest

from qri_http import Headers, SSEParser, now_us

HEX_ID = re.compile(r"^[0-9a-f]{1,16}$")


def assert_stream_headers(headers, origin="*"):
    assert (headers.get("content-type") or "").split(";")[0].strip() == "text/event-stream"
    assert "no-cache" in headers.tokens("cache-control")
    assert headers.get("x-accel-buffering") == "no"
    assert headers.get("access-control-allow-origin") == origin


def assert_starts_with_retry_then_tick(blocks):
    """The first event (block with data) is the Tick, and a `retry` field comes no later."""
    first_data = next(i for i, b in enumerate(blocks) if any(k == "data" for k, _ in b))
    assert [v for k, v in blocks[first_data] if k == "data"] == ["Tick"], blocks[: first_data + 1]
    retry = [v for b in blocks[: first_data + 1] for k, v in b if k == "retry"]
    assert retry and retry[0].isdigit(), f"no retry field before the first Tick: {blocks[:first_data + 1]}"


# ---------------------------------------------------------------------------------------------
# The stream's head and first events, seen by curl and by Python's ssl


def test_curl_sees_headers_retry_and_tick(qri, tls_files):
    srv = qri()
    port = srv.public_port
    before = now_us()
    # HTTP/1.1 here (curl would get h2 by default: test_h2.py covers that).
    curl = subprocess.Popen(
        ["curl", "-sSN", "--http1.1", "--cacert", str(tls_files.ca_crt), "--resolve", f"localhost:{port}:127.0.0.1",
         "-D", "-", "-H", "Origin: https://app.example", f"https://localhost:{port}/stream?p=1&s=x"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = bytearray()
    got_tick = threading.Event()

    def read():
        for chunk in iter(lambda: curl.stdout.read1(4096), b""):
            out.extend(chunk)
            if re.search(rb"data: Tick\r?\n\r?\n", out):
                got_tick.set()
        got_tick.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert got_tick.wait(15), f"curl saw no Tick within 15s: {bytes(out)!r}"
    finally:
        curl.kill()
        curl.wait()
        reader.join(5)
    text = bytes(out)
    head, sep, body = text.partition(b"\r\n\r\n")
    assert sep, f"no end of headers in curl's output: {text!r} stderr={curl.stderr.read()!r}"
    lines = head.decode("latin-1").split("\r\n")
    assert re.match(r"HTTP/1\.1 200\b", lines[0]), lines[0]
    headers = Headers([tuple(x.strip() for x in line.split(":", 1)) for line in lines[1:]])
    assert_stream_headers(headers)

    parser = SSEParser()
    events = parser.feed(body)
    assert_starts_with_retry_then_tick(parser.blocks)
    tick = events[0]
    assert tick.is_tick
    assert tick.id and HEX_ID.match(tick.id), tick
    assert tick.id_int >= before


def test_python_ssl_sees_headers_retry_and_tick(qri):
    srv = qri()
    before = now_us()
    stream = srv.stream("1", "x", headers={"Origin": "https://app.example"})
    assert_stream_headers(stream.headers)
    assert_starts_with_retry_then_tick(stream.blocks)
    assert stream.events[0] is stream.first_tick
    assert HEX_ID.match(stream.first_tick.id), stream.first_tick
    assert stream.first_tick.id_int >= before


def test_without_origin_default_cors_is_star(qri):
    stream = qri().stream("1", "x")
    assert stream.headers.get("access-control-allow-origin") == "*"


# ---------------------------------------------------------------------------------------------
# Answers other than 200: each closes the connection


@pytest.mark.parametrize("target, missing", [
    ("/stream", "[ps]"),
    ("/stream?s=x", "p"),
    ("/stream?p=&s=x", "p"),
    ("/stream?p=1", "s"),
    ("/stream?p=1&s=", "s"),
    ("/stream?s=x&q=1", "p"),
])
def test_missing_or_empty_parameter_is_400_naming_it(qri, target, missing):
    resp = qri().request("GET", target)
    assert resp.status == 400, (resp.status, resp.text)
    assert re.search(rf"\b{missing}\b", resp.text), f"400 body does not name {missing}: {resp.text!r}"
    resp.conn.wait_closed(5)


@pytest.mark.parametrize("target", ["/", "/nope", "/stream/x?p=1&s=x", "/streams?p=1&s=x", "/backdoor"])
def test_other_path_is_404(qri, target):
    resp = qri().request("GET", target)
    assert resp.status == 404, (resp.status, resp.text)
    resp.conn.wait_closed(5)


@pytest.mark.parametrize("method", ["POST", "HEAD", "PUT", "DELETE", "PATCH"])
def test_other_method_on_stream_is_405_with_allow(qri, method):
    body = b"x=1" if method in ("POST", "PUT", "PATCH") else b""
    resp = qri().request(method, "/stream?p=1&s=x", body=body)
    assert resp.status == 405, (resp.status, resp.text)
    allow = resp.headers.tokens("allow")
    assert "get" in allow, f"Allow: {resp.headers.get('allow')!r}"
    assert method.lower() not in allow
    if method == "HEAD":
        assert resp.body == b""
    resp.conn.wait_closed(5)


def test_options_preflight_answers_cors(qri):
    resp = qri().request("OPTIONS", "/stream?p=1&s=x", headers={
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id",
    })
    assert resp.status in (200, 204), (resp.status, resp.text)
    assert resp.headers.get("access-control-allow-origin") == "*"
    assert "get" in resp.headers.tokens("access-control-allow-methods"), resp.headers
    # EventSource sends Last-Event-ID on reconnect: a preflight asking for it must be allowed.
    allowed = resp.headers.tokens("access-control-allow-headers")
    assert "last-event-id" in allowed or "*" in allowed, resp.headers


# ---------------------------------------------------------------------------------------------
# CORS_ORIGINS as a list


@pytest.fixture
def listed_origins(qri):
    return qri("--cors-origins", "https://a.example,https://b.example")


@pytest.mark.parametrize("origin", ["https://a.example", "https://b.example"])
def test_listed_origin_is_echoed_with_vary(listed_origins, origin):
    stream = listed_origins.stream("1", "x", headers={"Origin": origin})
    assert stream.headers.get("access-control-allow-origin") == origin
    assert "origin" in stream.headers.tokens("vary"), stream.headers


@pytest.mark.parametrize("headers", [{"Origin": "https://c.example"}, {"Origin": "https://a.example.evil"}, {}])
def test_unlisted_or_missing_origin_gets_no_allow_origin(listed_origins, headers):
    stream = listed_origins.stream("1", "x", headers=headers)
    assert "access-control-allow-origin" not in stream.headers, stream.headers


def test_listed_origin_preflight(listed_origins):
    resp = listed_origins.request("OPTIONS", "/stream?p=1&s=x", headers={
        "Origin": "https://b.example", "Access-Control-Request-Method": "GET"})
    assert resp.status in (200, 204), (resp.status, resp.text)
    assert resp.headers.get("access-control-allow-origin") == "https://b.example"
    assert "origin" in resp.headers.tokens("vary")


# ---------------------------------------------------------------------------------------------
# Parameters are percent-decoded; '+' stays '+'


def test_percent_decoding_of_peer_and_checksum(qri):
    srv = qri()
    space = srv.stream(target="/stream?p=a%20b&s=x")
    plus = srv.stream(target="/stream?p=a+b&s=x")
    utf8 = srv.stream(target="/stream?p=%C3%A9t%C3%A9&s=c%2Fd%3D")
    q = srv.qripy()
    q.send(b"a b", b"x", b"to-space")
    q.send(b"a+b", b"x", b"to-plus")
    q.send("été".encode(), b"c/d=", b"to-utf8")
    for peer, checksum in [(b"a b", b"x"), (b"a+b", b"x"), ("été".encode(), b"c/d=")]:
        q.send(peer, checksum, b"end")
    assert [e.data for e in space.messages_until("end")] == ["to-space", "end"]
    assert [e.data for e in plus.messages_until("end")] == ["to-plus", "end"]
    assert [e.data for e in utf8.messages_until("end")] == ["to-utf8", "end"]


# ---------------------------------------------------------------------------------------------
# Ticks and ids


def test_ticks_every_tick_interval(qri):
    srv = qri("--tick-interval", "1")
    connected = now_us()
    stream = srv.stream("1", "x")
    ticks = [stream.first_tick] + [stream.wait_for(lambda e: e.is_tick, 5) for _ in range(3)]
    ids = [t.id_int for t in ticks]
    assert ids == sorted(set(ids)), f"tick ids not strictly increasing: {[t.id for t in ticks]}"
    assert all(i >= connected for i in ids)
    # Three periods of 1 s (the first may be cut short if ticks follow a shared timer).
    assert ticks[-1].at - ticks[0].at >= 1.5, [t.at for t in ticks]


def test_ids_strictly_increasing_hex_and_not_below_clock(qri):
    srv = qri("--tick-interval", "1")
    stream = srv.stream("ids", "x")
    q = srv.qripy()
    sent_at = {}
    for i in range(30):
        sent_at[f"m{i}"] = now_us()    # taken before the message can have been issued
        q.send(b"ids", b"x", f"m{i}".encode())
    events = stream.collect_until(lambda e: e.data == "m29", 20)
    all_events = [stream.first_tick] + events
    for e in all_events:
        assert e.id is not None and HEX_ID.match(e.id), e
    ids = [e.id_int for e in all_events]
    assert all(a < b for a, b in zip(ids, ids[1:])), [e.id for e in all_events]
    for e in events:
        if not e.is_tick:
            assert e.id_int >= sent_at[e.data], (e.data, e.id, sent_at[e.data])
    assert [e.data for e in events if not e.is_tick] == [f"m{i}" for i in range(30)]
