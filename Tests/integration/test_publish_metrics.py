"""`POST /publish` and `GET /metrics` on the admin listener (SPEC.md, *Admin listener*,
*Observability*)."""

import json
import re
import socket
import ssl

import pytest

from qri_gateway import cert_info
from qri_http import HOST, TLSConn, client_context, published
from qri_ingest import ber_frame


def publish(srv, peer, checksum, message, **kw):
    return srv.admin("POST", "/publish", data={"peer": peer, "checksum": checksum, "message": message}, **kw)


# ---------------------------------------------------------------------------------------------
# /publish


def test_publish_delivered_counts_open_streams_of_the_pair(admin_qri):
    srv = admin_qri()
    other = srv.stream("pp", "other")             # same peer, other checksum: never counted
    answers = []
    streams = []
    for n in range(3):
        resp = publish(srv, "pp", "cc", f"msg{n}")
        assert resp.status_code == 202, resp.text
        assert resp.headers["content-type"].split(";")[0] == "application/json"
        answers.append(resp.json())
        streams.append(srv.stream("pp", "cc"))
    assert [published(a) for a in answers] == [{"delivered": 0}, {"delivered": 1}, {"delivered": 2}]
    # The two streams opened before msg2 got it as one event, with the id the answer gave.
    got = [s.wait_data("msg2") for s in streams[:2]]
    assert got[0].id == got[1].id == answers[2]["id"]
    assert int(answers[0]["id"], 16) < int(answers[1]["id"], 16) < int(answers[2]["id"], 16)
    publish(srv, "pp", "other", "marker")
    assert [e.data for e in other.messages_until("marker")] == ["marker"]


def test_publish_is_routed_exactly_like_ingest(admin_qri):
    srv = admin_qri()
    target = srv.stream("user", "chk")
    wrong_checksum = srv.stream("user", "chk2")
    wrong_peer = srv.stream("user2", "chk")
    ingest = srv.ingest()
    publish(srv, "user", "chk", "via publish\r\nline 2")
    ingest.frames(ber_frame("user", "chk", "via ingest"))
    target.wait_data("via ingest")
    publish(srv, "user", "chk", "")                        # an empty message is allowed
    for p, c in (("user", "chk"), ("user", "chk2"), ("user2", "chk")):
        ingest.frames(ber_frame(p, c, "marker"))
    target.messages_until("marker")
    got = [e for e in target.events if not e.is_tick]
    assert [e.data for e in got] == ["via publish\nline 2", "via ingest", "", "marker"]
    ids = [e.id_int for e in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert [e.data for e in wrong_checksum.messages_until("marker")] == ["marker"]
    assert [e.data for e in wrong_peer.messages_until("marker")] == ["marker"]


def test_published_message_goes_to_history_for_resume(admin_qri):
    srv = admin_qri()
    first = srv.stream("away", "tab")
    resume_from = first.first_tick.id
    first.close()
    srv.wait_metric("qri_streams", lambda v: v == 0)
    before = srv.metric("qri_messages_without_stream_total")
    assert published(publish(srv, "away", "tab", "while away").json()) == {"delivered": 0}
    assert srv.metric("qri_messages_without_stream_total") == before + 1
    back = srv.stream("away", "tab", headers={"Last-Event-ID": resume_from})
    assert back.wait_for(lambda e: not e.is_tick).data == "while away"


@pytest.mark.parametrize("fields", [
    {"checksum": "c", "message": "m"},
    {"peer": "p", "message": "m"},
    {"peer": "p", "checksum": "c"},
    {"peer": "", "checksum": "c", "message": "m"},
    {"peer": "p", "checksum": "", "message": "m"},
])
def test_publish_missing_or_empty_fields_are_400(admin_qri, fields):
    srv = admin_qri()
    stream = srv.stream("p", "c")
    for kw in ({"data": fields}, {"content": json.dumps(fields).encode(), "headers": {"Content-Type": "application/json"}}):
        resp = srv.admin("POST", "/publish", **kw)
        assert resp.status_code == 400, (kw, resp.status_code, resp.text)
        assert isinstance(resp.json().get("error"), str)
    publish(srv, "p", "c", "marker")
    assert [e.data for e in stream.messages_until("marker")] == ["marker"]


def test_publish_json_body(admin_qri):
    srv = admin_qri()
    stream = srv.stream("p ✓", "c")
    resp = srv.admin("POST", "/publish", content=json.dumps({"peer": "p ✓", "checksum": "c", "message": "json ✓"}).encode(),
                     headers={"Content-Type": "application/json"})
    assert resp.status_code == 202 and published(resp.json()) == {"delivered": 1}, resp.text
    assert stream.wait_for(lambda e: not e.is_tick).data == "json ✓"
    resp = srv.admin("POST", "/publish", content=b'{"peer": "p", "checksum": "c", "message": 1}',
                     headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text


# ---------------------------------------------------------------------------------------------
# /metrics

SERIES = {
    "qri_connections": [{"listener": v} for v in ("public", "admin", "ingest")],
    "qri_streams": [{"protocol": "h1"}, {"protocol": "h2"}],
    "qri_pairs": [{}],
    "qri_messages_received_total": [{"source": v} for v in ("ingest", "publish", "backdoor")],
    "qri_events_delivered_total": [{"kind": v} for v in ("message", "herald", "tick", "replay", "gap")],
    "qri_messages_without_stream_total": [{}],
    "qri_slow_streams_closed_total": [{}],
    "qri_connections_rejected_total": [{"reason": v} for v in (
        "max_connections", "header_timeout", "handshake_timeout", "idle_timeout", "header_too_large",
        "body_too_large", "bad_request", "bad_frame",
        "h2_rapid_reset", "h2_flood", "h2_header_too_large", "h2_protocol_error")],
    "qri_tls_handshakes_total": [{"result": v} for v in ("ok", "failed")],
    "qri_tls_resumptions_total": [{"kind": v} for v in ("cache", "ticket")],
    "qri_cert_reloads_total": [{"result": v} for v in ("ok", "failed")],
    "qri_cert_expiry_timestamp_seconds": [{}],
}


def test_metrics_text_has_every_series(admin_qri, tls_files):
    srv = admin_qri()
    resp = srv.admin("GET", "/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain"), resp.headers["content-type"]
    samples = srv.metrics()
    missing = [f"{name}{labels}" for name, all_labels in SERIES.items() for labels in all_labels
               if (name, frozenset(labels.items())) not in samples]
    assert not missing, f"series missing from /metrics: {missing}"
    for name in SERIES:
        if name.endswith("_total"):
            assert re.search(rf"^# TYPE {name} counter$", resp.text, re.M), f"{name} is not typed a counter"
    assert srv.metric("qri_cert_expiry_timestamp_seconds", samples) == cert_info(tls_files.server_crt)["not_after"]


def test_metrics_move_with_traffic(admin_qri, tls_files):
    srv = admin_qri()
    m0 = srv.metrics()

    def delta(name, samples, **labels):
        return srv.metric(name, samples, **labels) - srv.metric(name, m0, **labels)

    assert srv.metric("qri_streams", m0) == 0
    assert srv.metric("qri_connections", m0, listener="public") == 0
    assert srv.metric("qri_connections", m0, listener="admin") == 1     # the one asking

    a1, a2, b = srv.stream("a", "1"), srv.stream("a", "1"), srv.stream("b", "1")
    ingest = srv.ingest()
    ingest.frames(ber_frame("a", "1", "from ingest"))
    a1.wait_data("from ingest")
    a2.wait_data("from ingest")
    assert published(publish(srv, "b", "1", "from publish").json()) == {"delivered": 1}
    b.wait_data("from publish")
    assert published(publish(srv, "nobody", "1", "unheard").json()) == {"delivered": 0}
    assert srv.admin("POST", "/backdoor", data={"type": "001", "message": "herald"}).status_code == 204
    for s in (a1, a2, b):
        s.wait_data("001herald")
    # Resume: one replayed event; a Last-Event-ID older than the process: a gap.
    resumed = srv.stream("a", "1", headers={"Last-Event-ID": a1.first_tick.id})
    resumed.wait_data("from ingest")
    gapped = srv.stream("zz", "1", headers={"Last-Event-ID": "1"})
    gapped.wait_for(lambda e: e.event == "gap")
    # A failed handshake and a bad request.
    with pytest.raises((ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        TLSConn(srv.public_port, tls_files.ca_crt, context=client_context(tls_files.ca_crt, alpn=["h3"]))
    bad = srv.request("GET", "/stream?p=1&s=x", headers={"Content-Length": "1", "Transfer-Encoding": "chunked"})
    assert bad.status == 400
    bad.conn.close()                      # else it lingers, counted, for up to a grace period
    srv.wait_metric("qri_connections", lambda v: v == 5, listener="public")

    m1 = srv.metrics()
    assert delta("qri_messages_received_total", m1, source="ingest") == 1
    assert delta("qri_messages_received_total", m1, source="publish") == 2
    assert delta("qri_messages_received_total", m1, source="backdoor") == 1
    assert delta("qri_events_delivered_total", m1, kind="message") == 3
    assert delta("qri_events_delivered_total", m1, kind="herald") == 3 + 2       # broadcast + on connect
    assert delta("qri_events_delivered_total", m1, kind="tick") >= 5
    assert delta("qri_events_delivered_total", m1, kind="replay") >= 1
    assert delta("qri_events_delivered_total", m1, kind="gap") == 1
    assert delta("qri_messages_without_stream_total", m1) == 1
    assert srv.metric("qri_streams", m1) == 5
    assert srv.metric("qri_connections", m1, listener="public") == 5
    assert srv.metric("qri_connections", m1, listener="ingest") == 1
    assert srv.metric("qri_connections", m1, listener="admin") == 1
    assert srv.metric("qri_pairs", m1) == 4          # a/1, b/1, nobody/1 (history), zz/1
    assert delta("qri_tls_handshakes_total", m1, result="ok") >= 5
    assert delta("qri_tls_handshakes_total", m1, result="failed") == 1
    assert delta("qri_connections_rejected_total", m1, reason="bad_request") == 1

    # Closing moves the gauges back.
    for s in (a1, a2, resumed):
        s.close()
    ingest.close()
    srv.wait_metric("qri_streams", lambda v: v == 2)
    srv.wait_metric("qri_connections", lambda v: v == 2, listener="public")
    srv.wait_metric("qri_connections", lambda v: v == 0, listener="ingest")


def test_bad_ingest_frame_is_counted(admin_qri):
    srv = admin_qri()
    ingest = srv.ingest()
    ingest.send(b"\x04\x01x")             # an OCTET STRING, not a SEQUENCE
    ingest.wait_closed(5)
    srv.wait_metric("qri_connections_rejected_total", lambda v: v == 1, reason="bad_frame")
