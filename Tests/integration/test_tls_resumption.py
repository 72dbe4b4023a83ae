"""TLS session resumption on the public listener (SPEC.md, *Observability*:
`qri_tls_resumptions_total{kind}`): TLS 1.2 session ids resume however the previous connection
ended, tickets resume in TLS 1.2 and 1.3, and each resumption is counted by its kind."""

import re
import socket
import ssl
import struct
import subprocess

import pytest

from qri_http import HOST, client_context, connect_tcp

RESUMPTIONS = "qri_tls_resumptions_total"


def handshake(port, ctx, session=None):
    """A TLS connection to `port` that offers `session` (verified against the test CA)."""
    raw = connect_tcp(port, 10)
    try:
        return ctx.wrap_socket(raw, server_hostname="localhost", session=session)
    except BaseException:
        raw.close()
        raise


def wait_closed(srv):
    """Waits until the gateway has seen every public connection end."""
    srv.wait_metric("qri_connections", lambda v: v == 0, listener="public")


def counts(srv):
    samples = srv.metrics()
    return {kind: srv.metric(RESUMPTIONS, samples, kind=kind) for kind in ("cache", "ticket")}


def test_resumption_series_exist_at_zero(admin_qri):
    assert counts(admin_qri()) == {"cache": 0, "ticket": 0}


def test_openssl_s_client_reconnects_with_session_ids(admin_qri, tls_files):
    """sslyze's check: five reconnections offering the first session's id, no tickets. Each
    connection ends with s_client's close_notify, and the gateway's close must keep it."""
    srv = admin_qri()
    result = subprocess.run(
        ["openssl", "s_client", "-connect", f"{HOST}:{srv.public_port}", "-servername", "localhost",
         "-CAfile", str(tls_files.ca_crt), "-tls1_2", "-no_ticket", "-reconnect"],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    out = result.stdout.decode("latin-1", "replace")
    # One "New, TLSv1.2" for the first handshake, then one line per reconnection.
    lines = re.findall(r"^(New|Reused), TLSv1\.2", out, re.M)
    assert lines[:1] == ["New"] and len(lines) == 6, out[-3000:]
    assert lines[1:] == ["Reused"] * 5, f"session-id reconnections: {lines[1:]}"
    srv.wait_metric(RESUMPTIONS, lambda v: v == 5, kind="cache")
    assert srv.metric(RESUMPTIONS, kind="ticket") == 0


@pytest.mark.parametrize("ending", ["fin", "reset"])
def test_session_id_resumes_after_an_abrupt_close(admin_qri, tls_files, ending):
    """The first connection ends without a close_notify (a TCP FIN, or a reset): its session
    still resumes, as RFC 5246 §7.2.1 allows since TLS 1.1."""
    srv = admin_qri()
    ctx = client_context(tls_files.ca_crt, maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.options |= ssl.OP_NO_TICKET
    first = handshake(srv.public_port, ctx)
    assert first.version() == "TLSv1.2" and not first.session_reused
    session = first.session
    assert session is not None and session.id, "the server gave a session id"
    if ending == "reset":
        first.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    first.close()                         # no unwrap(): no close_notify
    wait_closed(srv)

    second = handshake(srv.public_port, ctx, session=session)
    try:
        assert second.session_reused, "the session id of a connection closed abruptly did not resume"
    finally:
        second.close()
    srv.wait_metric(RESUMPTIONS, lambda v: v == 1, kind="cache")
    assert srv.metric(RESUMPTIONS, kind="ticket") == 0


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_ticket_resumption_is_counted_as_ticket(admin_qri, tls_files, version):
    srv = admin_qri()
    ctx = client_context(tls_files.ca_crt, minimum_version=version, maximum_version=version)
    first = handshake(srv.public_port, ctx)
    # TLS 1.3 tickets come after the handshake: a request and its answer bring them in.
    first.sendall(f"GET /nope HTTP/1.1\r\nHost: localhost:{srv.public_port}\r\n\r\n".encode())
    assert first.recv(65536).startswith(b"HTTP/1.1 404")
    session = first.session
    assert session is not None and session.has_ticket, "the server sent a ticket"
    first.unwrap()
    first.close()
    wait_closed(srv)

    second = handshake(srv.public_port, ctx, session=session)
    try:
        assert second.session_reused
    finally:
        second.close()
    srv.wait_metric(RESUMPTIONS, lambda v: v == 1, kind="ticket")
    assert srv.metric(RESUMPTIONS, kind="cache") == 0


def test_full_handshakes_are_not_counted(admin_qri, tls_files):
    srv = admin_qri()
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        conn = handshake(srv.public_port, client_context(tls_files.ca_crt, maximum_version=version))
        assert not conn.session_reused
        conn.close()
    wait_closed(srv)
    assert srv.metric("qri_tls_handshakes_total", result="ok") >= 2
    assert counts(srv) == {"cache": 0, "ticket": 0}
