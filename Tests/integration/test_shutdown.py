"""Graceful shutdown on SIGTERM and SIGINT (SPEC.md, *Command line*): stop accepting, close
every stream with a TLS close_notify, exit 0 within SHUTDOWN_TIMEOUT. (The single-stream
SIGTERM case is in test_cli.py.)"""

import signal
import socket
import time

import pytest

from qri_http import HOST, read_response
from qri_ingest import ber_frame


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_closes_every_kind_of_connection_in_order(admin_qri, sig):
    srv = admin_qri("--shutdown-timeout", "5", "--threads", "2")
    streams = [srv.stream(f"p{i}", "c", suppress_ragged_eofs=False) for i in range(12)]
    admin_conn = srv.admin_connect(suppress_ragged_eofs=False)
    admin_conn.sendall(srv.admin_bytes("GET", "/healthz"))
    assert read_response(admin_conn).status == 200
    ingest = srv.ingest()
    ingest.frames(ber_frame("p0", "c", "before"))
    streams[0].wait_data("before")
    no_handshake = socket.create_connection((HOST, srv.public_port))
    half_request = srv.connect(suppress_ragged_eofs=False)
    half_request.sendall(b"GET /stream?p=1&s=x HTTP/1.1\r\nHo")

    start = time.monotonic()
    srv.signal(sig)
    assert srv.wait_exit(10) == 0
    elapsed = time.monotonic() - start
    assert elapsed < 6, f"shutdown took {elapsed:.1f}s with --shutdown-timeout 5"
    hows = [s.wait_closed(5) for s in streams]
    assert hows == ["eof"] * len(streams), f"streams not closed with a close_notify: {hows}"
    assert admin_conn.wait_closed(5) == "eof", "the admin keep-alive connection got no close_notify"
    assert ingest.wait_closed(5) in ("eof", "reset")
    srv.wait_log(r"(?i)stop|shut", 1)


def test_shutdown_within_budget_despite_a_client_that_does_not_read(admin_qri):
    srv = admin_qri("--shutdown-timeout", "2", "--stream-buffer-bytes", "8M")
    stuck = srv.stream("stuck", "c", rcvbuf=16 * 1024)
    reader = srv.stream("reader", "c")
    ingest = srv.ingest()
    for i in range(24):          # 3 MiB the stuck client will never read
        ingest.frames(ber_frame("stuck", "c", b"x" * (128 * 1024)))
    ingest.frames(ber_frame("reader", "c", "queued"))
    reader.wait_data("queued")
    start = time.monotonic()
    srv.signal(signal.SIGTERM)
    code = srv.wait_exit(10)
    elapsed = time.monotonic() - start
    assert code == 0, f"exit status {code}"
    assert elapsed < 4, f"shutdown took {elapsed:.1f}s with --shutdown-timeout 2"
    stuck.close()


def test_no_new_connections_after_shutdown(admin_qri):
    srv = admin_qri()
    port = srv.public_port
    srv.signal(signal.SIGTERM)
    assert srv.wait_exit(10) == 0
    with pytest.raises(OSError):
        socket.create_connection((HOST, port), timeout=2).close()
