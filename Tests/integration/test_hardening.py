"""Hardening (SPEC.md, *Limits and bad input*): timeouts counted, framing errors on the public
listener, a client that never reads, random garbage, and the connection cap."""

import concurrent.futures
import os
import random
import socket
import ssl
import struct
import time

import httpx
import pytest

from qri_http import HOST, Deadline, StreamClosed, TLSConn, parse_prometheus, published, read_response, wait_until
from qri_ingest import ber_frame

RSS_BOUND = 200 * 1024 * 1024


def rejected(srv, reason, samples=None):
    return srv.metric("qri_connections_rejected_total", samples, reason=reason)


def wait_socket_closed(sock, timeout):
    """Reads and discards until the peer closes a plain socket; returns seconds waited."""
    start = time.monotonic()
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except (socket.timeout, TimeoutError):
        raise Deadline(f"socket still open after {timeout:.1f}s") from None
    return time.monotonic() - start


# ---------------------------------------------------------------------------------------------
# Timeouts, counted


@pytest.mark.parametrize("listener", ["public", "admin"])
def test_half_sent_request_line_is_closed_by_header_timeout_and_counted(admin_qri, listener):
    srv = admin_qri("--header-timeout", "1")
    conn = srv.connect() if listener == "public" else srv.admin_connect()
    start = time.monotonic()
    conn.sendall(b"GET /stream?p=1&s=x HT")
    conn.wait_closed(6)
    assert time.monotonic() - start >= 0.7, "closed before the header timeout"
    srv.wait_metric("qri_connections_rejected_total", lambda v: v == 1, reason="header_timeout")


@pytest.mark.parametrize("listener", ["public", "admin"])
@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])
def test_never_handshaking_client_is_closed_by_handshake_timeout_and_counted(admin_qri, listener, sent):
    srv = admin_qri("--handshake-timeout", "1")
    sock = socket.create_connection((HOST, srv.public_port if listener == "public" else srv.admin_port))
    sock.sendall(sent)
    waited = wait_socket_closed(sock, 6)
    sock.close()
    assert waited >= 0.7, f"closed after {waited:.2f}s, before the handshake timeout"
    srv.wait_metric("qri_connections_rejected_total", lambda v: v == 1, reason="handshake_timeout")


def test_next_request_on_keep_alive_gets_the_header_timeout(admin_qri):
    srv = admin_qri("--header-timeout", "1", "--idle-timeout", "30")
    conn = srv.admin_connect()
    conn.sendall(srv.admin_bytes("GET", "/healthz"))
    assert read_response(conn).status == 200
    conn.sendall(b"GET /backdoor HTTP/1.1\r\nHo")
    start = time.monotonic()
    conn.wait_closed(6)
    elapsed = time.monotonic() - start
    assert 0.7 <= elapsed < 5, f"closed after {elapsed:.2f}s (header timeout 1 s, idle timeout 30 s)"
    srv.wait_metric("qri_connections_rejected_total", lambda v: v == 1, reason="header_timeout")


# ---------------------------------------------------------------------------------------------
# Framing errors on the public listener

STREAM = b"GET /stream?p=1&s=x HTTP/1.1\r\n"
PUBLIC_BAD = {
    "cl-and-te": (STREAM + b"Host: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "te-and-cl": (STREAM + b"Host: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400),
    "two-differing-cl": (STREAM + b"Host: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400),
    "cl-list-differing": (STREAM + b"Host: x\r\nContent-Length: 1, 2\r\n\r\nxx", 400),
    "bad-chunk-size": (STREAM + b"Host: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n", 400),
    "obs-fold": (STREAM + b"Host: x\r\nX-A: 1\r\n folded\r\n\r\n", 400),
    "obs-fold-tab": (STREAM + b"Host: x\r\nX-A: 1\r\n\tfolded\r\n\r\n", 400),
    "bare-cr": (STREAM + b"Host: x\rX-A: 1\r\n\r\n", 400),
    "bare-lf": (STREAM + b"Host: x\nX-A: 1\r\n\r\n", 400),
    "missing-host": (STREAM + b"Accept: text/event-stream\r\n\r\n", 400),
    "two-hosts": (STREAM + b"Host: x\r\nHost: y\r\n\r\n", 400),
    "space-before-colon": (STREAM + b"Host : x\r\n\r\n", 400),
    "h2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "te-gzip": (STREAM + b"Host: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    "te-gzip-chunked": (STREAM + b"Host: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501),
}


@pytest.mark.parametrize("shape", list(PUBLIC_BAD))
def test_public_bad_framing_is_answered_and_closed(admin_qri, shape):
    srv = admin_qri()
    raw, status = PUBLIC_BAD[shape]
    smuggled = b"GET /stream?p=smuggled&s=x HTTP/1.1\r\nHost: x\r\n\r\n"
    resp = srv.request("GET", "/", raw=raw + smuggled)
    assert resp.status == status, f"{shape}: expected {status}, got {resp.status} {resp.text[:200]!r}"
    rest = resp.conn.read_to_end(time.monotonic() + 5)
    assert b"HTTP/1.1" not in rest and b"data:" not in rest, f"more came after the answer: {rest[:200]!r}"
    samples = srv.metrics()
    assert srv.metric("qri_streams", samples) == 0, "a stream was opened"
    if status == 400:
        assert rejected(srv, "bad_request", samples) == 1


# ---------------------------------------------------------------------------------------------
# A client that never reads


def test_stream_that_never_reads_5mib_is_closed_and_memory_stays_bounded(admin_qri):
    srv = admin_qri("--stream-buffer-bytes", "512K", "--max-frame-bytes", "128K")
    slow = srv.stream("slow", "c", rcvbuf=16 * 1024)
    reader = srv.stream("reader", "c")
    ingest = srv.ingest()
    chunk = b"s" * (64 * 1024)
    for i in range(80):                                    # 5 MiB
        ingest.frames(ber_frame("slow", "c", chunk))
        if i % 16 == 15:
            ingest.frames(ber_frame("reader", "c", f"progress {i}"))
            reader.wait_data(f"progress {i}")
            assert srv.rss_bytes() < RSS_BOUND, f"RSS {srv.rss_bytes() >> 20} MiB while sending"
    srv.wait_metric("qri_slow_streams_closed_total", lambda v: v == 1)
    srv.wait_metric("qri_streams", lambda v: v == 1)
    rss = srv.rss_bytes()
    assert rss < RSS_BOUND, f"RSS {rss >> 20} MiB"
    # The slow client reads what the kernel kept for it, then finds the connection closed.
    slow.wait_closed(20)
    assert sum(len(e.data) for e in slow.events if not e.is_tick) < 5 * 1024 * 1024
    ingest.frames(ber_frame("reader", "c", "after"))
    reader.wait_data("after")


# ---------------------------------------------------------------------------------------------
# Random garbage


def _garbage_connection(kind, rnd, srv, tls_ctx, held):
    ports = {"public": srv.public_port, "admin": srv.admin_port, "ingest": srv.ingest_port}
    listener = ("public", "admin", "ingest")[rnd.randrange(3)]
    payload = rnd.randbytes(rnd.randrange(1, 3000))
    sock = socket.create_connection((HOST, ports[listener]), timeout=3)
    try:
        if kind == 0:                               # random bytes
            sock.sendall(payload)
        elif kind == 1:                             # a TLS record header, then garbage
            body = rnd.randbytes(rnd.randrange(0, 600))
            sock.sendall(b"\x16\x03" + bytes([rnd.randrange(0, 5)]) + struct.pack(">H", rnd.randrange(0, 70000) & 0xFFFF)
                         + b"\x01" + body)
        elif kind == 2:                             # half-open: a partial hello, then our FIN
            sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + payload[:rnd.randrange(0, 50)])
            sock.shutdown(socket.SHUT_WR)
        elif kind == 3:                             # connect and go
            pass
        elif kind == 4:                             # reset
            sock.sendall(payload[:100])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif kind == 5 and listener != "ingest":    # a real handshake, then garbage inside TLS
            tls = tls_ctx.wrap_socket(sock, server_hostname="localhost")
            sock = tls
            tls.sendall(payload)
            tls.settimeout(0.3)
            try:
                tls.recv(100)
            except (OSError, ssl.SSLError):
                pass
        elif kind == 6:                             # left open until the end of the loop
            sock.sendall(payload[: rnd.randrange(0, 20)])
            held.append(sock)
            return
        else:                                       # garbage, read a little
            sock.sendall(payload)
            try:
                sock.settimeout(0.2)
                sock.recv(100)
            except OSError:
                pass
    except (OSError, ssl.SSLError):
        pass
    sock.close()


def test_2000_garbage_connections_leave_the_process_healthy(admin_qri, tls_files):
    srv = admin_qri("--handshake-timeout", "2", "--header-timeout", "2", "--threads", "2")
    stream = srv.stream("p", "c")
    rss_before = srv.rss_bytes()
    seed = int.from_bytes(os.urandom(4), "big")
    ctx = ssl.create_default_context(cafile=str(tls_files.ca_crt))
    held = []
    deadline = time.monotonic() + 90

    def run(batch):
        rnd = random.Random(seed * 10007 + batch)
        for i in range(50):
            assert time.monotonic() < deadline, "the garbage loop ran out of time"
            _garbage_connection(rnd.randrange(8), rnd, srv, ctx, held)

    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            for future in [pool.submit(run, b) for b in range(40)]:     # 40 × 50 = 2000
                future.result()
    finally:
        for sock in held:
            sock.close()

    assert srv.proc.poll() is None, f"qri died (seed {seed})"
    assert srv.admin_client(token=None).get("/healthz").text.strip() == "ok"
    assert srv.admin("POST", "/publish", data={"peer": "p", "checksum": "c", "message": "still here"}).status_code == 202
    assert stream.wait_for(lambda e: not e.is_tick).data == "still here"
    fresh = srv.stream("p2", "c2")
    assert fresh.first_tick.is_tick
    rss = srv.rss_bytes()
    assert rss < RSS_BOUND, f"RSS {rss >> 20} MiB after garbage (was {rss_before >> 20} MiB; seed {seed})"
    # Everything the garbage opened is closed again (by the peer or by the timeouts).
    srv.wait_metric("qri_connections", lambda v: v == 2, 15, listener="public")
    srv.wait_metric("qri_connections", lambda v: v == 0, 15, listener="ingest")
    assert srv.metric("qri_tls_handshakes_total", result="failed") > 100


# ---------------------------------------------------------------------------------------------
# MAX_CONNECTIONS


def refused_at_once(connect):
    """`connect()` returns a socket-like object; the server must close it without a byte
    within a second (never a 503)."""
    start = time.monotonic()
    try:
        sock = connect()
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, ConnectionRefusedError) as e:
        return time.monotonic() - start, repr(e)
    try:
        sock.settimeout(3)
        data = sock.recv(100)
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as e:
        data = repr(e).encode()
    except (socket.timeout, TimeoutError):
        raise Deadline("the connection over the limit is still open after 3 s") from None
    finally:
        sock.close()
    assert b"HTTP/" not in data, f"an HTTP answer instead of a close: {data!r}"
    return time.monotonic() - start, data


def test_max_connections_closes_the_one_over_at_once_and_counts_it(admin_qri, tls_files):
    srv = admin_qri("--max-connections", "5")
    streams = [srv.stream(f"p{i}", "c") for i in range(5)]
    attempts = [
        lambda: TLSConn(srv.public_port, tls_files.ca_crt, timeout=3),
        lambda: socket.create_connection((HOST, srv.public_port), timeout=3),
    ]
    for attempt in attempts:
        elapsed, how = refused_at_once(attempt)
        assert elapsed < 1.5, f"took {elapsed:.2f}s to close ({how})"
    # The cap is the public listener's alone: admin and ingest are still served.
    assert srv.admin("GET", "/healthz").status_code == 200
    srv.ingest().frames(ber_frame("p0", "c", "ingest still open"))
    streams[0].wait_data("ingest still open")
    # Room again: close two streams.
    streams[0].close()
    streams[1].close()

    def metrics_now():
        try:
            with httpx.Client(base_url=srv.admin_url, verify=ssl.create_default_context(cafile=str(tls_files.ca_crt)),
                              headers={"Authorization": f"Bearer {srv.admin_token}"}, timeout=3) as c:
                resp = c.get("/metrics")
                return resp.text if resp.status_code == 200 else None
        except httpx.HTTPError:
            return None

    samples = parse_prometheus(wait_until(metrics_now, 10, "room for a /metrics request"))
    assert rejected(srv, "max_connections", samples) >= len(attempts)
    assert srv.metric("qri_streams", samples) == 3
    # The remaining streams still get messages, and a new stream fits again.
    ingest_free = wait_until(lambda: _try(lambda: srv.stream("p2", "c", timeout=3)), 10, "a stream to fit again")
    assert ingest_free.first_tick.is_tick
    publish = httpx.Client(base_url=srv.admin_url, verify=ssl.create_default_context(cafile=str(tls_files.ca_crt)),
                           headers={"Authorization": f"Bearer {srv.admin_token}"}, timeout=3)
    try:
        resp = wait_until(lambda: _try(lambda: publish.post("/publish", data={"peer": "p2", "checksum": "c", "message": "fits"})),
                          10, "room for a publish")
        assert published(resp.json()) == {"delivered": 2}
    finally:
        publish.close()
    streams[2].wait_data("fits")
    ingest_free.wait_data("fits")


def _try(make):
    try:
        return make()
    except (OSError, ssl.SSLError, AssertionError, StreamClosed, httpx.HTTPError):
        return None


# ---------------------------------------------------------------------------------------------
# An admin client that pipelines requests and never reads the answers


def test_admin_client_that_never_reads_its_answers_cannot_grow_memory(admin_qri):
    """No token needed: 401 answers are ~6 times the size of `GET /metrics`. The server must
    stop reading (or close) once the unsent answers pile up, not buffer them all."""
    srv = admin_qri()
    conn = srv.admin_connect(rcvbuf=16 * 1024)
    batch = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 20_000           # 700 KB
    sent = 0
    conn.sock.settimeout(2)
    try:
        while sent < 40 * 1024 * 1024:
            conn.sock.sendall(batch)
            sent += len(batch)
            assert srv.rss_bytes() < RSS_BOUND, f"RSS {srv.rss_bytes() >> 20} MiB after {sent >> 20} MiB of requests"
    except (socket.timeout, TimeoutError, ssl.SSLError, ConnectionResetError, BrokenPipeError):
        pass                                  # the server stopped reading, or closed: fine
    rss, until = 0, time.monotonic() + 1      # what it read is still being answered: the peak
    while time.monotonic() < until:
        rss = max(rss, srv.rss_bytes())
        time.sleep(0.05)
    assert rss < RSS_BOUND, f"RSS {rss >> 20} MiB after {sent >> 20} MiB of unread pipelined requests"
    assert srv.admin_client(token=None).get("/healthz").status_code == 200
