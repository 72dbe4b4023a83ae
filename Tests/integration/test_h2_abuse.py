"""HTTP/2 abuse bounds (SPEC.md, *HTTP/2*): each attack, sent with the Python `h2` and
`hyperframe` libraries, ends its connection with GOAWAY, is counted in
`qri_connections_rejected_total{reason}`, and leaves the process serving other connections."""

from h2.errors import ErrorCodes
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, PingFrame, SettingsFrame

from qri_h2 import H2Client


def rejected(srv, reason):
    return srv.metric("qri_connections_rejected_total", reason=reason)


def h2(srv) -> H2Client:
    client = H2Client(srv.public_port, srv.tls.ca_crt)
    assert client.alpn == "h2"
    return client


def send_raw(c: H2Client, raw: bytes) -> None:
    """Sends frames the client library would not; the server may close before all are sent."""
    try:
        c.sock.sendall(raw)
    except OSError:
        c.closed = True


def attacked(srv, attacker: H2Client, reason: str) -> None:
    """The attacker's connection ends with GOAWAY (when it can still read it), the reason is
    counted once, and a new connection gets a stream with its Tick and a message."""
    attacker.wait(lambda: attacker.goaway is not None or attacker.closed, 20, "GOAWAY")
    if attacker.goaway is not None:
        assert attacker.goaway.error_code != 0, attacker.goaway
    srv.wait_metric("qri_connections_rejected_total", lambda v: v == 1, reason=reason)
    other = h2(srv)
    s = other.stream("after", "attack")
    other.wait(lambda: s.events, what="a Tick after the attack")
    resp = srv.admin("POST", "/publish", data={"peer": "after", "checksum": "attack", "message": "served"})
    assert resp.status_code == 202
    other.wait_data(s, "served")


def test_rapid_reset(admin_qri):
    srv = admin_qri()
    bystander = h2(srv)
    watched = bystander.stream("by", "stander")
    bystander.wait(lambda: watched.events, what="Tick")
    c = h2(srv)
    for _ in range(400):
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "GET"), (":path", "/stream?p=r&s=x"), (":scheme", "https"),
                                  (":authority", "localhost")])
        c.conn.reset_stream(sid, ErrorCodes.CANCEL)
    c._send()
    attacked(srv, c, "h2_rapid_reset")
    # The other connection of the same process was not disturbed.
    srv.admin("POST", "/publish", data={"peer": "by", "checksum": "stander", "message": "still"})
    bystander.wait_data(watched, "still")


def test_continuation_flood(admin_qri):
    srv = admin_qri()
    c = h2(srv)
    encoded = c.conn.encoder.encode([(":method", "GET"), (":path", "/stream?p=c&s=x"), (":scheme", "https"),
                                     (":authority", "localhost")])
    head = HeadersFrame(1, data=encoded)        # no END_HEADERS: CONTINUATIONs must follow
    raw = head.serialize()
    for _ in range(200):
        raw += ContinuationFrame(1, data=c.conn.encoder.encode([("x-pad", "a")])).serialize()
    send_raw(c, raw)
    attacked(srv, c, "h2_flood")


def test_oversized_header_block(admin_qri):
    srv = admin_qri("--max-header-bytes", "4K")
    c = h2(srv)
    c.request("/stream?p=big&s=x", headers={"x-big": "b" * 6000})
    attacked(srv, c, "h2_header_too_large")


def test_ping_flood(admin_qri):
    srv = admin_qri()
    c = h2(srv)
    send_raw(c, PingFrame(0, opaque_data=b"12345678").serialize() * 5000)
    attacked(srv, c, "h2_flood")


def test_settings_flood(admin_qri):
    srv = admin_qri()
    c = h2(srv)
    send_raw(c, SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}).serialize() * 5000)
    attacked(srv, c, "h2_flood")


def test_empty_data_frame_flood(admin_qri):
    srv = admin_qri()
    c = h2(srv)
    # A request with a body that never comes: empty DATA frames, no END_STREAM.
    c.request("/stream?p=e&s=x", end=False)
    send_raw(c, DataFrame(1, data=b"").serialize() * 2000)
    attacked(srv, c, "h2_flood")
