"""Ingest side for the integration tests: exact BER frames over a raw socket, and qri-py."""

from __future__ import annotations

import multiprocessing
import socket
import time
from typing import Optional

from qri_http import DEFAULT_WAIT, HOST, Deadline


def ber_length(n: int, long_form_octets: Optional[int] = None) -> bytes:
    """A definite BER length: short form below 128, else long form; `long_form_octets`
    forces the long form with that many length octets (valid BER, not DER)."""
    if long_form_octets is None:
        if n < 0x80:
            return bytes([n])
        long_form_octets = max(1, (n.bit_length() + 7) // 8)
    return bytes([0x80 | long_form_octets]) + n.to_bytes(long_form_octets, "big")


def ber_tlv(tag: int, content: bytes, long_form_octets: Optional[int] = None) -> bytes:
    return bytes([tag]) + ber_length(len(content), long_form_octets) + content


def as_bytes(value) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


def ber_frame(peer, checksum, message, long_form_octets: Optional[int] = None) -> bytes:
    """`Message ::= SEQUENCE { peer, checksum, message OCTET STRING }` as qri-py sends it."""
    body = b"".join(ber_tlv(0x04, as_bytes(v), long_form_octets) for v in (peer, checksum, message))
    return ber_tlv(0x30, body, long_form_octets)


class Ingest:
    """A raw TCP connection to the ingest listener."""

    def __init__(self, port: int, timeout: float = DEFAULT_WAIT):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, data: bytes, tolerate_close: bool = False) -> None:
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            if not tolerate_close:
                raise

    def frames(self, *frames: bytes) -> None:
        self.send(b"".join(frames))

    def wait_closed(self, timeout: float = DEFAULT_WAIT) -> str:
        """Waits until the server closes the connection (it never sends a byte)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Deadline(f"ingest connection still open after {timeout:.1f}s")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except (socket.timeout, TimeoutError):
                continue
            except (ConnectionResetError, BrokenPipeError):
                return "reset"
            if not data:
                return "eof"
            raise AssertionError(f"the ingest listener sent bytes: {data[:64]!r}")

    def close(self) -> None:
        self.sock.close()


_start_method_set = False


class QriPy:
    """The real backend client, qri-py 3.0.0 (BER over one TCP connection, from a sender
    process). Messages are bytes: qri-py encodes `str` as latin-1."""

    def __init__(self, port: int):
        global _start_method_set
        import qri_py
        if not _start_method_set:
            # With "fork" the sender process would inherit every socket the test holds, so
            # streams the test closes would stay open on the server.
            multiprocessing.set_start_method("forkserver", force=True)
            _start_method_set = True
        self.client = qri_py.Qri(HOST, port)

    def send(self, peer, checksum, message) -> None:
        self.client.send(peer=as_bytes(peer), checksum=as_bytes(checksum), message=as_bytes(message))

    def close(self) -> None:
        # Its loop checks the running flag only between 1 s queue waits: end it at once
        # (messages still queued are of no interest after a test).
        worker = self.client.worker
        worker.running_flag.clear()
        worker.terminate()
        worker.join(5)
        self.client.queue.cancel_join_thread()
        self.client.queue.close()
