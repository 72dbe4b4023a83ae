"""Shared TLS session-ticket keys (SPEC.md, TICKET_KEY_FILE): a ticket issued by one qri
process resumes on another that shares the key file; the file is re-read on SIGHUP, and a bad
file keeps the old keys; without a file, each process has its own random keys."""

import os
import signal
import ssl

import pytest

from qri_http import client_context, connect_tcp

RESUMPTIONS = "qri_tls_resumptions_total"
VERSIONS = [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3]


def new_key() -> bytes:
    return os.urandom(80)


def ticket_from(srv, ctx):
    """A full handshake with `srv`; returns the session (with its ticket)."""
    conn = ctx.wrap_socket(connect_tcp(srv.public_port, 10), server_hostname="localhost")
    try:
        # TLS 1.3 tickets come after the handshake: a request and its answer bring them in.
        conn.sendall(f"GET /nope HTTP/1.1\r\nHost: localhost:{srv.public_port}\r\n\r\n".encode())
        assert conn.recv(65536).startswith(b"HTTP/1.1 404")
        session = conn.session
        assert session is not None and session.has_ticket, "the server sent no ticket"
        return session
    finally:
        conn.close()


def resumes(srv, ctx, session) -> bool:
    conn = ctx.wrap_socket(connect_tcp(srv.public_port, 10), server_hostname="localhost", session=session)
    try:
        return conn.session_reused
    finally:
        conn.close()


def context(tls_files, version):
    ctx = client_context(tls_files.ca_crt, minimum_version=version, maximum_version=version)
    if version == ssl.TLSVersion.TLSv1_2:
        ctx.options &= ~ssl.OP_NO_TICKET
    return ctx


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_a_ticket_from_one_process_resumes_on_another_sharing_the_file(admin_qri, tls_files, tmp_path, version):
    keys = tmp_path / "ticket.keys"
    keys.write_bytes(new_key() + new_key())
    a = admin_qri("--ticket-key-file", keys)
    b = admin_qri("--ticket-key-file", keys)
    ctx = context(tls_files, version)
    session = ticket_from(a, ctx)
    assert resumes(b, ctx, session), "process B did not resume A's ticket"
    b.wait_metric(RESUMPTIONS, lambda v: v == 1, kind="ticket")
    assert b.metric(RESUMPTIONS, kind="cache") == 0


@pytest.mark.parametrize("version", VERSIONS, ids=["tls1.2", "tls1.3"])
def test_without_a_file_each_process_has_its_own_keys(admin_qri, tls_files, version):
    a, b = admin_qri(), admin_qri()
    ctx = context(tls_files, version)
    session = ticket_from(a, ctx)
    assert not resumes(b, ctx, session), "B resumed a ticket of A without shared keys"
    assert resumes(a, ctx, ticket_from(a, ctx)), "A does not resume its own tickets"


def test_older_keys_decrypt_and_sighup_reloads_the_file(admin_qri, tls_files, tmp_path):
    old, new = new_key(), new_key()
    keys = tmp_path / "ticket.keys"
    keys.write_bytes(old)
    srv = admin_qri("--ticket-key-file", keys)
    ctx = context(tls_files, ssl.TLSVersion.TLSv1_3)
    under_old = ticket_from(srv, ctx)

    # A new key first, the old one second: the new encrypts, the old still decrypts.
    keys.write_bytes(new + old)
    start = len(srv.lines)
    srv.signal(signal.SIGHUP)
    srv.wait_log(r"keys=2 .*ticket keys reloaded", start=start)
    assert resumes(srv, ctx, under_old), "a ticket under the second key did not resume"
    under_new = ticket_from(srv, ctx)
    other = admin_qri("--ticket-key-file", keys)
    assert resumes(other, ctx, under_new)

    # A bad file (not a whole number of 80-byte keys) is logged, and the keys stay.
    keys.write_bytes(new[:79])
    start = len(srv.lines)
    srv.signal(signal.SIGHUP)
    srv.wait_log(r"ticket key reload failed; keeping the old keys", start=start)
    assert resumes(srv, ctx, under_old), "a bad file dropped the old keys"
    # The certificate reload of the same SIGHUP went on regardless.
    assert srv.metric("qri_cert_reloads_total", result="ok") == 2

    # Only the new key now: tickets under the old one no longer resume.
    keys.write_bytes(new)
    start = len(srv.lines)
    srv.signal(signal.SIGHUP)
    srv.wait_log(r"keys=1 .*ticket keys reloaded", start=start)
    assert not resumes(srv, ctx, under_old)
    assert resumes(srv, ctx, under_new)


@pytest.mark.parametrize("content", [b"", b"x" * 79, b"x" * 81, b"x" * 80 * 17], ids=["empty", "79", "81", "17-keys"])
def test_a_bad_key_file_is_a_start_up_error(qri_cli, tmp_path, content):
    keys = tmp_path / "bad.keys"
    keys.write_bytes(content)
    result = qri_cli("--ticket-key-file", keys)
    assert result.returncode != 0
    assert "--ticket-key-file" in result.stderr and "bad.keys" in result.stderr, result.stderr


def test_a_missing_key_file_is_a_start_up_error(qri_cli, tmp_path):
    result = qri_cli("--ticket-key-file", tmp_path / "missing.keys")
    assert result.returncode != 0 and "missing.keys" in result.stderr, result.stderr


def test_tickets_survive_a_certificate_reload(admin_qri, tls_files):
    """Without a file the random keys belong to the process, not to the certificate's context."""
    srv = admin_qri()
    ctx = context(tls_files, ssl.TLSVersion.TLSv1_3)
    session = ticket_from(srv, ctx)
    start = len(srv.lines)
    srv.signal(signal.SIGHUP)
    srv.wait_log(r"certificate reloaded", start=start)
    assert resumes(srv, ctx, session)
