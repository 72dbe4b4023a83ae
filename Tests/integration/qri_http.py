"""Client side of the public listener for the integration tests: TLS connections, HTTP/1.1
responses and an EventSource-like SSE reader, all with deadlines.

No helper sleeps in the hope that something happened: each waits for a condition with a
deadline and fails with what it saw when the deadline passes.
"""

from __future__ import annotations

import codecs
import dataclasses
import re
import socket
import ssl
import time
import urllib.parse
from pathlib import Path
from typing import Callable, Optional

HOST = "127.0.0.1"
DEFAULT_WAIT = 10.0     # default deadline of a single wait in the helpers


class Deadline(AssertionError):
    """A wait ran past its deadline."""


class StreamClosed(Exception):
    """The peer closed the connection (how: `.how`)."""

    def __init__(self, how: str):
        super().__init__(f"connection closed ({how})")
        self.how = how


def now_us() -> int:
    """Microseconds since the Unix epoch, the clock Qri's event ids are based on."""
    return time.time_ns() // 1000


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.02):
    """Polls `predicate` until it returns something truthy; fails naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise Deadline(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# TLS and HTTP


def client_context(ca: Path, alpn: Optional[list[str]] = ("http/1.1",), **versions) -> ssl.SSLContext:
    """A verifying client context that trusts only the test CA."""
    ctx = ssl.create_default_context(cafile=str(ca))
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if "minimum_version" in versions:
        ctx.minimum_version = versions["minimum_version"]
    if "maximum_version" in versions:
        ctx.maximum_version = versions["maximum_version"]
    return ctx


# --------------------------------------------------------------------------------------------
# HTTP over TLS


class Headers:
    """Response headers in arrival order, looked up case-insensitively."""

    def __init__(self, items: list[tuple[str, str]]):
        self.items = items

    def get_all(self, name: str) -> list[str]:
        return [v for k, v in self.items if k.lower() == name.lower()]

    def get(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def tokens(self, name: str) -> set[str]:
        """The comma-separated tokens of a list header, lower-cased (`Allow`, `Vary`, …)."""
        return {t.strip().lower() for v in self.get_all(name) for t in v.split(",") if t.strip()}

    def __contains__(self, name: str) -> bool:
        return bool(self.get_all(name))

    def __repr__(self) -> str:
        return "Headers(" + repr(self.items) + ")"


class Dechunker:
    """Incremental decoder of `Transfer-Encoding: chunked`."""

    def __init__(self):
        self.buf = b""
        self.state = "size"     # size → data → crlf → size … → done
        self.remaining = 0
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = bytearray()
        while not self.done:
            if self.state == "size":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    break
                size = int(self.buf[:i].split(b";")[0].strip(), 16)
                self.buf = self.buf[i + 2:]
                if size == 0:
                    self.done = True
                    break
                self.remaining, self.state = size, "data"
            elif self.state == "data":
                if not self.buf:
                    break
                take = self.buf[: self.remaining]
                out += take
                self.buf = self.buf[len(take):]
                self.remaining -= len(take)
                if self.remaining == 0:
                    self.state = "crlf"
            else:  # crlf after a chunk
                if len(self.buf) < 2:
                    break
                assert self.buf[:2] == b"\r\n", f"bad chunk terminator {self.buf[:2]!r}"
                self.buf = self.buf[2:]
                self.state = "size"
        return bytes(out)


def connect_tcp(port: int, timeout: float, rcvbuf: Optional[int] = None) -> socket.socket:
    """A TCP connection to HOST:port with a timeout and, when given, a receive buffer size."""
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        # Set before connect so the TCP window is small from the start.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(timeout)
    try:
        raw.connect((HOST, port))
    except BaseException:
        raw.close()
        raise
    return raw


class TLSConn:
    """A TLS client connection to 127.0.0.1 (SNI and verification: localhost) with a read
    buffer and deadline-bound reads."""

    def __init__(self, port: int, ca: Path, *, context: Optional[ssl.SSLContext] = None,
                 server_hostname: str = "localhost", timeout: float = DEFAULT_WAIT,
                 rcvbuf: Optional[int] = None, suppress_ragged_eofs: bool = True):
        self.ctx = context or client_context(ca)
        raw = connect_tcp(port, timeout, rcvbuf)
        try:
            self.sock = self.ctx.wrap_socket(raw, server_hostname=server_hostname,
                                             suppress_ragged_eofs=suppress_ragged_eofs)
        except BaseException:
            raw.close()
            raise
        self.buf = b""
        self.closed: Optional[str] = None

    def sendall(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv_some(self, deadline: float, size: int = 65536) -> bytes:
        """Reads what has arrived; raises Deadline at the deadline and StreamClosed at the end."""
        if self.closed:
            raise StreamClosed(self.closed)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise Deadline("deadline passed while waiting for data")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(size)
        except (socket.timeout, TimeoutError):
            raise Deadline("deadline passed while waiting for data") from None
        except ssl.SSLZeroReturnError:
            data = b""
        except ssl.SSLEOFError:
            self.closed = "eof without close_notify"
            raise StreamClosed(self.closed) from None
        except (ConnectionResetError, BrokenPipeError):
            self.closed = "reset"
            raise StreamClosed(self.closed) from None
        except ssl.SSLError as e:
            self.closed = f"tls error: {e}"
            raise StreamClosed(self.closed) from None
        if not data:
            self.closed = "eof"
            raise StreamClosed(self.closed)
        return data

    def fill(self, deadline: float) -> None:
        self.buf += self.recv_some(deadline)

    def read_until(self, sep: bytes, deadline: float, limit: int = 1 << 20) -> bytes:
        while sep not in self.buf:
            assert len(self.buf) < limit, "no separator within limit"
            self.fill(deadline)
        i = self.buf.index(sep) + len(sep)
        head, self.buf = self.buf[:i], self.buf[i:]
        return head

    def read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self.fill(deadline)
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_to_end(self, deadline: float) -> bytes:
        """Everything until the peer closes (whatever the way)."""
        while True:
            try:
                self.fill(deadline)
            except StreamClosed:
                data, self.buf = self.buf, b""
                return data

    def wait_closed(self, timeout: float = DEFAULT_WAIT) -> str:
        """Reads and discards until the peer closes; returns how it closed."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.recv_some(deadline)
        except StreamClosed as e:
            return e.how
        except Deadline:
            raise Deadline(f"connection still open after {timeout:.1f}s") from None

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


@dataclasses.dataclass
class Response:
    status: int
    reason: str
    headers: Headers
    body: bytes
    conn: TLSConn

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


def read_response_head(conn: TLSConn, deadline: float) -> tuple[int, str, Headers]:
    head = conn.read_until(b"\r\n\r\n", deadline).decode("latin-1")
    lines = head.split("\r\n")
    m = re.match(r"HTTP/1\.1 (\d{3})(?: (.*))?$", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    items = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        assert sep, f"bad header line {line!r}"
        items.append((name.strip(), value.strip()))
    return int(m.group(1)), m.group(2) or "", Headers(items)


def read_response_body(conn: TLSConn, method: str, status: int, headers: Headers,
                       deadline: float) -> bytes:
    if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
        return b""
    if "chunked" in headers.tokens("transfer-encoding"):
        dec, out = Dechunker(), bytearray()
        out += dec.feed(conn.buf)
        conn.buf = b""
        while not dec.done:
            out += dec.feed(conn.recv_some(deadline))
        conn.buf = dec.buf
        return bytes(out)
    if "content-length" in headers:
        return conn.read_exact(int(headers.get("content-length")), deadline)
    return conn.read_to_end(deadline)


# --------------------------------------------------------------------------------------------
# Server-Sent Events


@dataclasses.dataclass
class Event:
    """One dispatched SSE event (a block with at least one `data` field)."""
    id: Optional[str]           # the block's own `id` field (None if it had none)
    event: str                  # `event` field, "message" when absent
    data: str                   # data lines joined with "\n"
    retry: Optional[int]        # `retry` field of this block, if any
    fields: list[tuple[str, str]]
    at: float                   # time.monotonic() when it was parsed

    @property
    def id_int(self) -> int:
        assert self.id is not None, f"event without id: {self}"
        return int(self.id, 16)

    @property
    def is_tick(self) -> bool:
        return self.event == "message" and self.data == "Tick"


class SSEParser:
    """The WHATWG event-stream parser: UTF-8, lines end with CRLF, LF or CR, `:` comments."""

    def __init__(self):
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self.text = ""
        self.first = True
        self.fields: list[tuple[str, str]] = []
        self.blocks: list[list[tuple[str, str]]] = []   # every non-empty block, in order
        self.comments: list[str] = []

    def feed(self, data: bytes) -> list[Event]:
        self.text += self.decoder.decode(data)
        if self.first and self.text:
            self.text = self.text.removeprefix("\ufeff")
            self.first = False
        events = []
        while True:
            i = min((p for p in (self.text.find("\r"), self.text.find("\n")) if p >= 0), default=-1)
            if i < 0:
                break
            if self.text[i] == "\r":
                if i + 1 == len(self.text):
                    break   # a CR at the end: wait to see whether an LF follows
                end = i + 2 if self.text[i + 1] == "\n" else i + 1
            else:
                end = i + 1
            line, self.text = self.text[:i], self.text[end:]
            event = self._line(line)
            if event:
                events.append(event)
        return events

    def _line(self, line: str) -> Optional[Event]:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments.append(line[1:])
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        self.fields.append((name, value))
        return None

    def _dispatch(self) -> Optional[Event]:
        fields, self.fields = self.fields, []
        if not fields:
            return None
        self.blocks.append(fields)
        data = [v for k, v in fields if k == "data"]
        if not data:
            return None
        ids = [v for k, v in fields if k == "id" and "\0" not in v]
        types = [v for k, v in fields if k == "event"]
        retries = [int(v) for k, v in fields if k == "retry" and v.isdigit()]
        return Event(id=ids[-1] if ids else None, event=types[-1] if types and types[-1] else "message",
                     data="\n".join(data), retry=retries[-1] if retries else None,
                     fields=fields, at=time.monotonic())


class SSEStream:
    """`GET /stream` on the public listener, read like an EventSource would.

    `events` holds every event parsed so far; `next_event`/`wait_for` move a cursor over it.
    """

    def __init__(self, conn: TLSConn, status: int, headers: Headers):
        self.conn = conn
        self.status = status
        self.headers = headers
        self.parser = SSEParser()
        self.dechunker = Dechunker() if "chunked" in headers.tokens("transfer-encoding") else None
        self.events: list[Event] = []
        self.pos = 0
        self.closed: Optional[str] = None
        self.first_tick: Optional[Event] = None
        if conn.buf:
            pending, conn.buf = conn.buf, b""
            self._feed(pending)

    @property
    def blocks(self) -> list[list[tuple[str, str]]]:
        return self.parser.blocks

    def _feed(self, data: bytes) -> None:
        if self.dechunker:
            data = self.dechunker.feed(data)
        self.events.extend(self.parser.feed(data))

    def _pump(self, deadline: float) -> None:
        try:
            self._feed(self.conn.recv_some(deadline))
        except StreamClosed as e:
            self.closed = e.how
            raise

    def next_event(self, timeout: float = DEFAULT_WAIT) -> Event:
        deadline = time.monotonic() + timeout
        while self.pos >= len(self.events):
            try:
                self._pump(deadline)
            except Deadline:
                raise Deadline(f"no event within {timeout:.1f}s; so far: {self._summary()}") from None
        self.pos += 1
        return self.events[self.pos - 1]

    def collect_until(self, predicate: Callable[[Event], bool], timeout: float = DEFAULT_WAIT) -> list[Event]:
        """Events from the cursor up to and including the first that matches."""
        deadline = time.monotonic() + timeout
        got = []
        while True:
            try:
                event = self.next_event(max(0.0, deadline - time.monotonic()))
            except Deadline:
                raise Deadline(f"no matching event within {timeout:.1f}s; skipped: {got!r}") from None
            got.append(event)
            if predicate(event):
                return got

    def wait_for(self, predicate: Callable[[Event], bool], timeout: float = DEFAULT_WAIT) -> Event:
        return self.collect_until(predicate, timeout)[-1]

    def wait_data(self, data: str, timeout: float = DEFAULT_WAIT) -> Event:
        return self.wait_for(lambda e: e.data == data, timeout)

    def messages_until(self, data: str, timeout: float = DEFAULT_WAIT) -> list[Event]:
        """Non-Tick events up to and including the one whose data is `data`."""
        return [e for e in self.collect_until(lambda e: e.data == data, timeout) if not e.is_tick]

    def wait_closed(self, timeout: float = DEFAULT_WAIT) -> str:
        """Reads (and parses) until the server closes; returns how it closed."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._pump(deadline)
            except StreamClosed as e:
                return e.how
            except Deadline:
                raise Deadline(f"stream still open after {timeout:.1f}s") from None

    def _summary(self) -> str:
        return repr([(e.id, e.event, e.data[:40]) for e in self.events[-8:]])

    def close(self) -> None:
        self.conn.close()


def stream_target(p, s, **query) -> str:
    """`/stream?p=…&s=…` with each value percent-encoded (bytes or str)."""
    parts = [("p", p), ("s", s), *query.items()]
    return "/stream?" + "&".join(
        f"{k}={urllib.parse.quote(v, safe='')}" for k, v in parts if v is not None)


# --------------------------------------------------------------------------------------------
# Plain HTTP, raw requests on a kept connection, Prometheus text


class PlainConn(TLSConn):
    """A plain TCP connection with TLSConn's buffered, deadline-bound reads (the admin
    listener with `--admin-plaintext`)."""

    def __init__(self, port: int, *, timeout: float = DEFAULT_WAIT, rcvbuf: Optional[int] = None):
        self.ctx = None
        self.sock = connect_tcp(port, timeout, rcvbuf)
        self.buf = b""
        self.closed: Optional[str] = None


def request_bytes(method: str, target: str, host: str, headers: Optional[dict] = None,
                  body: bytes = b"") -> bytes:
    """One HTTP/1.1 request: `Host`, then `headers`, then `Content-Length` when there is a body
    and neither it nor `Transfer-Encoding` was given."""
    hdrs = {"Host": host, **(headers or {})}
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k in hdrs):
        hdrs["Content-Length"] = str(len(body))
    return (f"{method} {target} HTTP/1.1\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n").encode("utf-8") + body


def read_response(conn: TLSConn, method: str = "GET", timeout: float = DEFAULT_WAIT) -> Response:
    """The next whole response on `conn` (keep-alive: the connection stays usable)."""
    deadline = time.monotonic() + timeout
    status, reason, headers = read_response_head(conn, deadline)
    body = read_response_body(conn, method, status, headers, deadline)
    return Response(status, reason, headers, body, conn)


def chunked(*chunks: bytes) -> bytes:
    """A chunked body of `chunks` and its last chunk."""
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks if c) + b"0\r\n\r\n"


_SAMPLE_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?\s*')


def published(answer: dict) -> dict:
    """A `/publish` answer (or batch result) with its event id checked (lower-case hex, as on
    the wire) and taken out, so the rest can be compared: `{"delivered": N}`."""
    assert re.fullmatch(r"[0-9a-f]{1,16}", answer.get("id", "")), answer
    return {k: v for k, v in answer.items() if k != "id"}


def parse_prometheus(text: str) -> dict[tuple[str, frozenset], float]:
    """Prometheus text format → {(name, frozenset of (label, value)): value}. Fails on a line
    that is not a comment, a blank or a sample."""
    samples = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        name, labels_text, value = m.groups()
        labels = {}
        if labels_text:
            pos = 0
            for lm in _LABEL_RE.finditer(labels_text):
                assert lm.start() == pos, f"bad labels in {line!r}"
                labels[lm.group(1)] = lm.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
                pos = lm.end()
            assert pos == len(labels_text), f"bad labels in {line!r}"
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"series given twice: {line!r}"
        samples[key] = float(value)
    return samples
