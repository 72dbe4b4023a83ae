"""HTTP/2 on the public listener (SPEC.md, *HTTP/2*): ALPN, the same answers per stream as
over HTTP/1.1, resume and gap, many streams on one connection with exact routing, the
slow-stream rule per stream, GOAWAY on shutdown, and the counts by protocol."""

import shutil
import signal
import subprocess

import pytest

from qri_h2 import H2Client
from qri_http import HOST
from qri_ingest import ber_frame


def h2(srv, **kw) -> H2Client:
    client = H2Client(srv.public_port, srv.tls.ca_crt, **kw)
    assert client.alpn == "h2"
    return client


def opened(srv, p, s):
    """A new HTTP/2 connection with one stream that has had its first Tick."""
    client = h2(srv)
    stream = client.stream(p, s)
    client.wait(lambda: stream.events, what=f"the Tick of stream {p}/{s}")
    return client, stream


def publish(srv, peer, checksum, message) -> dict:
    resp = srv.admin("POST", "/publish", data={"peer": peer, "checksum": checksum, "message": message})
    assert resp.status_code == 202, resp.text
    return resp.json()


@pytest.mark.skipif(not shutil.which("curl"), reason="curl missing")
def test_curl_http2_gets_a_stream(admin_qri):
    srv = admin_qri()
    url = f"https://localhost:{srv.public_port}/stream?p=curl&s=x"
    curl = subprocess.Popen(["curl", "-sS", "--http2", "-N", "-i", "--max-time", "4", "--cacert", str(srv.tls.ca_crt),
                             "--resolve", f"localhost:{srv.public_port}:{HOST}", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    srv.wait_metric("qri_streams", lambda v: v == 1, protocol="h2")
    publish(srv, "curl", "x", "over h2")
    out, err = curl.communicate(timeout=10)
    text = out.decode()
    assert text.startswith("HTTP/2 200"), (text, err)
    head = text.split("\r\n\r\n")[0].lower()
    assert "content-type: text/event-stream" in head
    assert "cache-control: no-cache" in head and "x-accel-buffering: no" in head
    assert "access-control-allow-origin: *" in head
    assert "connection:" not in head
    assert "data: Tick" in text and "data: over h2" in text


def test_answers_on_their_own_streams_without_closing_the_connection(admin_qri):
    srv = admin_qri()
    c = h2(srv)
    live = c.stream("a", "x", origin="https://app.example")
    missing = c.request("/stream?p=a")
    no_path = c.request("/elsewhere")
    post = c.request("/stream?p=a&s=x", method="DELETE")
    head = c.request("/stream?p=a&s=x", method="HEAD")
    pre = c.request("/stream", method="OPTIONS", headers={"origin": "https://app.example",
                                                            "access-control-request-method": "GET"})
    c.wait(lambda: all(s.ended for s in (missing, no_path, post, head, pre)) and live.events, what="answers")
    assert missing.status == 400 and b"missing parameter s" in missing.body
    assert no_path.status == 404
    assert post.status == 405 and post.headers["allow"] == "GET, OPTIONS"
    assert head.status == 405 and head.body == b""
    assert pre.status == 204 and "GET" in pre.headers["access-control-allow-methods"]
    assert live.status == 200 and live.headers["content-type"] == "text/event-stream"
    assert live.events[0].is_tick and b"retry: " in live.body
    # The connection still serves: a new stream opens and the live one receives.
    other = c.stream("b", "x")
    c.wait(lambda: other.events, what="second stream's Tick")
    publish(srv, "a", "x", "still here")
    c.wait_data(live, "still here")
    assert not c.closed and c.goaway is None
    assert srv.metric("qri_streams", protocol="h2") == 2
    assert srv.metric("qri_streams", protocol="h1") == 0


def test_resume_and_gap_over_h2(admin_qri):
    srv = admin_qri("--history", "4")
    ids = [publish(srv, "r", "x", f"m{i}")["id"] for i in range(3)]
    c = h2(srv)
    resumed = c.stream("r", "x", **{"last-event-id": ids[0]})
    c.wait(lambda: "m2" in resumed.messages(), what="replay")
    assert resumed.messages() == ["m1", "m2"]
    assert resumed.events[0].is_tick and resumed.events[0].id == ids[0]
    for i in range(3, 9):
        publish(srv, "r", "x", f"m{i}")
    gapped = c.stream("r", "x", **{"last-event-id": ids[0]})
    c.wait(lambda: any(e.event == "gap" for e in gapped.events) and "m8" in gapped.messages(), what="gap")
    gap = next(e for e in gapped.events if e.event == "gap")
    assert gap.data == ids[0]


def test_100_streams_on_100_pairs_routing_exact_and_one_slow_stream_reset(admin_qri):
    srv = admin_qri("--max-frame-bytes", "64K", "--stream-buffer-bytes", "128K", "--history", "0")
    c = h2(srv)
    streams = [c.stream(f"p{i}", "x") for i in range(100)]
    c.wait(lambda: all(s.events for s in streams), what="100 Ticks")
    assert srv.metric("qri_streams", protocol="h2") == 100
    ingest = srv.ingest()
    for i in range(100):
        ingest.frames(ber_frame(f"p{i}", "x", f"to {i}"))
    c.wait(lambda: all(f"to {i}" in s.messages() for i, s in enumerate(streams)), what="100 messages")
    for i, s in enumerate(streams):
        assert s.messages() == [f"to {i}"], f"stream {i} got {s.messages()}"
    # Stream 7 stops reading: its window closes, what it refused passes STREAM_BUFFER.
    slow = streams[7]
    slow.reading = False
    chunk = b"z" * (60 * 1024)
    for round in range(6):
        ingest.frames(ber_frame("p7", "x", chunk))
        for i in range(0, 100, 10):
            if i != 0:
                ingest.frames(ber_frame(f"p{i}", "x", f"round {round}"))
        c.wait(lambda: all(f"round {round}" in streams[i].messages() for i in range(10, 100, 10)), what=f"round {round}")
    c.wait(lambda: slow.reset is not None, what="RST_STREAM of the slow stream")
    assert slow.reset == 8      # CANCEL
    assert srv.metric("qri_slow_streams_closed_total") == 1
    srv.wait_metric("qri_streams", lambda v: v == 99, protocol="h2")
    for i in range(100):
        if i != 7:
            ingest.frames(ber_frame(f"p{i}", "x", f"after {i}"))
    c.wait(lambda: all(f"after {i}" in s.messages() for i, s in enumerate(streams) if i != 7), what="99 after")
    assert not c.closed and c.goaway is None


def test_max_concurrent_streams_is_h2_max_streams(admin_qri):
    srv = admin_qri("--h2-max-streams", "3")
    c = h2(srv)
    c.wait(lambda: 3 in c.remote_settings, what="SETTINGS")
    assert c.remote_settings[3] == 3         # MAX_CONCURRENT_STREAMS
    streams = [c.stream(f"m{i}", "x") for i in range(3)]
    c.wait(lambda: all(s.events for s in streams), what="3 streams")
    # The client library itself refuses to open a fourth; the three go on.
    publish(srv, "m2", "x", "three")
    c.wait_data(streams[2], "three")


def test_shutdown_sends_goaway(admin_qri):
    srv = admin_qri()
    c, _ = opened(srv, "g", "x")
    srv.signal(signal.SIGTERM)
    c.wait(lambda: c.goaway is not None, what="GOAWAY")
    assert c.goaway.error_code == 0
    c.wait_closed()
    assert srv.wait_exit(10) == 0


def test_http11_is_still_selected_when_h2_is_not_offered(admin_qri):
    srv = admin_qri()
    stream = srv.stream("one", "x")
    assert stream.status == 200
    assert srv.metric("qri_streams", protocol="h1") == 1


def test_sighup_rotation_leaves_h2_streams_open(admin_qri):
    srv = admin_qri()
    c, s = opened(srv, "hup", "x")
    srv.signal(signal.SIGHUP)
    srv.wait_metric("qri_cert_reloads_total", lambda v: v == 1, result="ok")
    publish(srv, "hup", "x", "after rotation")
    c.wait_data(s, "after rotation")
    opened(srv, "hup", "x")
    assert c.goaway is None and not c.closed


def test_an_idle_h2_stream_costs_little_memory(admin_qri):
    """Issue 10's target: at most 2 KB of server memory per additional idle stream on an
    existing connection (RSS, so the bound here is looser against allocator noise)."""
    srv = admin_qri("--threads", "1")
    clients = [opened(srv, f"warm{i}", "x")[0] for i in range(8)]
    for c in clients:                       # warm the registry and allocator
        more = [c.stream(f"w{c.sock.fileno()}-{j}", "x") for j in range(20)]
        c.wait(lambda: all(s.events for s in more), what="warm-up streams")
    before = srv.rss_bytes()
    count = 0
    for k, c in enumerate(clients):
        fresh = [c.stream(f"idle{k}-{j}", "x") for j in range(100)]
        c.wait(lambda: all(s.events for s in fresh), what="100 idle streams")
        count += len(fresh)
    assert srv.metric("qri_streams", protocol="h2") == 8 * 21 + count
    per_stream = (srv.rss_bytes() - before) / count
    print(f"RSS per additional idle h2 stream: {per_stream:.0f} bytes")
    assert per_stream < 4096, f"{per_stream:.0f} bytes of RSS per idle h2 stream"
