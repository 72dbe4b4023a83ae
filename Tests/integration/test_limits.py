"""Limits and timeouts on the public listener (SPEC.md, *Limits and bad input*)."""

import socket
import threading
import time

import pytest

from qri_http import HOST, Deadline
from qri_ingest import ber_frame


# ---------------------------------------------------------------------------------------------
# MAX_HEADER_BYTES


@pytest.mark.parametrize("where", ["header", "request-line"])
def test_request_head_over_8k_is_431(qri, where):
    srv = qri()
    pad = "a" * 9000
    if where == "header":
        resp = srv.request("GET", "/stream?p=1&s=x", headers={"X-Pad": pad})
    else:
        resp = srv.request("GET", f"/stream?p=1&s=x&pad={pad}")
    assert resp.status == 431, (resp.status, resp.text[:200])
    resp.conn.wait_closed(5)


def test_request_head_under_8k_is_served(qri):
    stream = qri().stream("p", "c", headers={"X-Pad": "a" * 7000})
    assert stream.first_tick.is_tick


def test_max_header_bytes_option(qri):
    srv = qri("--max-header-bytes", "1K")
    resp = srv.request("GET", "/stream?p=1&s=x", headers={"X-Pad": "a" * 1500})
    assert resp.status == 431, (resp.status, resp.text[:200])
    assert srv.stream("p", "c", headers={"X-Pad": "a" * 500}).first_tick.is_tick


# ---------------------------------------------------------------------------------------------
# STREAM_BUFFER: a client that does not read is closed; the others go on


def test_slow_stream_is_closed_while_its_sibling_keeps_receiving(qri):
    srv = qri("--stream-buffer-bytes", "2M", "--max-frame-bytes", "1M")
    # A small receive buffer keeps what the kernel absorbs for the slow client small.
    slow = srv.stream("slow", "pair", rcvbuf=32 * 1024)
    fast = srv.stream("slow", "pair")

    count, size, window = 160, 64 * 1024, 8   # 10 MiB in all, at most 512 KiB ahead of the reader
    fast_got, fast_error = [], []
    progress = threading.Condition()

    def read_fast():
        try:
            while True:
                e = fast.next_event(60)
                if e.is_tick:
                    continue
                with progress:
                    fast_got.append(e.data[:4])
                    progress.notify_all()
                if e.data == "end":
                    return
        except BaseException as e:          # reported by the main thread
            with progress:
                fast_error.append(e)
                progress.notify_all()

    reader = threading.Thread(target=read_fast, daemon=True)
    reader.start()
    ingest = srv.ingest()
    for i in range(count):
        # Paced by the reading stream, so that only the stream that does not read falls behind:
        # a burst of 10 MiB at once would overflow any client's 2 MiB.
        with progress:
            if not progress.wait_for(lambda: fast_error or len(fast_got) >= i - window, 30):
                raise Deadline(f"the reading stream is stuck at {len(fast_got)} messages")
            if fast_error:
                break
        ingest.send(ber_frame("slow", "pair", f"{i:04d}-".encode() + b"x" * (size - 5)))
    ingest.send(ber_frame("slow", "pair", "end"))

    reader.join(70)
    assert not reader.is_alive(), "the reading stream did not get all messages within 60 s"
    assert not fast_error, f"the reading stream failed: {fast_error[0]!r}"
    assert fast_got == [f"{i:04d}" for i in range(count)] + ["end"]

    # The slow client now reads what the kernel kept for it, then finds the connection closed.
    slow.wait_closed(30)
    slow_got = [e.data for e in slow.events if not e.is_tick]
    assert "end" not in slow_got and len(slow_got) < count, f"slow stream got {len(slow_got)} messages"

    # The pair goes on for the stream that reads.
    srv.qripy().send(b"slow", b"pair", b"after")
    fast.wait_data("after")


# ---------------------------------------------------------------------------------------------
# HEADER_TIMEOUT and HANDSHAKE_TIMEOUT


@pytest.mark.parametrize("sent", [b"", b"GET /stream?p=1&s=x HTTP/1.1\r\nHost: loc"])
def test_incomplete_request_head_is_closed_after_header_timeout(qri, sent):
    srv = qri("--header-timeout", "1")
    conn = srv.connect()
    start = time.monotonic()
    if sent:
        conn.sendall(sent)
    conn.wait_closed(6)                    # 1 s timeout plus a sweep's granularity
    assert time.monotonic() - start >= 0.5, "closed at once, not by the timeout"


def test_header_timeout_does_not_apply_to_open_streams(qri):
    srv = qri("--header-timeout", "1", "--tick-interval", "1")
    stream = srv.stream("p", "c")
    for _ in range(3):                     # about 3 s: three times the header timeout
        stream.wait_for(lambda e: e.is_tick, 5)
    srv.qripy().send(b"p", b"c", b"still-open")
    stream.wait_data("still-open")


@pytest.mark.parametrize("sent", [b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"])
def test_missing_tls_handshake_is_closed_after_handshake_timeout(qri, sent):
    srv = qri("--handshake-timeout", "1")
    sock = socket.create_connection((HOST, srv.public_port))
    start = time.monotonic()
    sock.sendall(sent)
    sock.settimeout(6)
    try:
        while sock.recv(4096):             # an alert may come first: discard it
            pass
    except (ConnectionResetError, BrokenPipeError):
        pass
    except (socket.timeout, TimeoutError):
        raise Deadline("the connection was still open 6 s after a 1 s handshake timeout") from None
    finally:
        sock.close()
    assert time.monotonic() - start >= 0.5, "closed at once, not by the timeout"


def test_other_clients_unaffected_by_a_stalled_one(qri):
    srv = qri("--handshake-timeout", "1", "--header-timeout", "1")
    stalled_tcp = socket.create_connection((HOST, srv.public_port))
    stalled_http = srv.connect()
    stalled_http.sendall(b"GET /stream?p=1&s=x HTTP/1.1\r\n")
    stream = srv.stream("p", "c")
    srv.qripy().send(b"p", b"c", b"hello")
    stream.wait_data("hello")
    stalled_http.wait_closed(6)
    stalled_tcp.close()
