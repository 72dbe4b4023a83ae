"""An HTTP/2 client for the integration tests: Python `h2` over a TLS socket with ALPN `h2`,
many streams on one connection, each with its own SSE parser, and a way to stop reading one
stream (no WINDOW_UPDATE for it) while the others go on."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Callable, Optional

import h2.config
import h2.connection
import h2.events
import h2.settings

from qri_http import HOST, Deadline, Event, SSEParser, StreamClosed


class H2Stream:
    def __init__(self, sid: int):
        self.id = sid
        self.status: Optional[int] = None
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.parser = SSEParser()
        self.events: list[Event] = []
        self.ended = False
        self.reset: Optional[int] = None          # error code of a RST_STREAM from the server
        self.reading = True                       # False: its window is never reopened

    def messages(self) -> list[str]:
        return [e.data for e in self.events if not e.is_tick]


class H2Client:
    def __init__(self, port: int, ca: Path, *, window: int = 65535, timeout: float = 10.0,
                 rcvbuf: Optional[int] = None):
        context = ssl.create_default_context(cafile=str(ca))
        context.set_alpn_protocols(["h2", "http/1.1"])
        raw = socket.create_connection((HOST, port), timeout=timeout)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock = context.wrap_socket(raw, server_hostname="localhost")
        self.alpn = self.sock.selected_alpn_protocol()
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        self.conn.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
            h2.settings.SettingCodes.ENABLE_PUSH: 0})
        self.conn.initiate_connection()
        self.streams: dict[int, H2Stream] = {}
        self.goaway: Optional[h2.events.ConnectionTerminated] = None
        self.closed = False
        self.remote_settings: dict = {}
        self._send()

    def _send(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:          # the server closed (after a GOAWAY, in the abuse tests)
                self.closed = True

    def request(self, path: str, method: str = "GET", headers: Optional[dict] = None, end: bool = True) -> H2Stream:
        sid = self.conn.get_next_available_stream_id()
        all_headers = [(":method", method), (":path", path), (":scheme", "https"), (":authority", f"localhost")]
        all_headers += list((headers or {}).items())
        self.conn.send_headers(sid, all_headers, end_stream=end)
        self._send()
        stream = self.streams[sid] = H2Stream(sid)
        return stream

    def stream(self, p: str, s: str, **headers) -> H2Stream:
        return self.request(f"/stream?p={p}&s={s}", headers=headers)

    def pump(self, timeout: float = 0.2) -> None:
        """Reads what the server sent within `timeout` and handles it."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return
        except (ConnectionResetError, ssl.SSLError, OSError):
            self.closed = True
            return
        if not data:
            self.closed = True
            return
        for event in self.conn.receive_data(data):
            self._handle(event)
        self._send()

    def _handle(self, event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            st = self.streams[event.stream_id]
            st.headers = dict(event.headers)
            st.status = int(st.headers[":status"])
        elif isinstance(event, h2.events.DataReceived):
            st = self.streams[event.stream_id]
            st.body += event.data
            st.events += st.parser.feed(event.data)
            if st.reading:
                self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif event.flow_controlled_length:
                # Keeps the connection's window open so that the other streams go on.
                self.conn.increment_flow_control_window(event.flow_controlled_length)
        elif isinstance(event, h2.events.StreamEnded):
            self.streams[event.stream_id].ended = True
        elif isinstance(event, h2.events.StreamReset):
            if event.stream_id in self.streams:
                self.streams[event.stream_id].reset = event.error_code
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.goaway = event
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.remote_settings.update({k: v.new_value for k, v in event.changed_settings.items()})

    def wait(self, predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > end:
                raise Deadline(f"HTTP/2: {what} not met within {timeout}s")
            if self.closed:
                if predicate():
                    return
                raise StreamClosed(f"connection closed while waiting for {what}")
            self.pump(0.1)

    def wait_data(self, stream: H2Stream, data: str, timeout: float = 10.0) -> None:
        self.wait(lambda: data in stream.messages(), timeout, f"{data!r} on stream {stream.id}")

    def wait_closed(self, timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not self.closed:
            if time.monotonic() > end:
                raise Deadline(f"HTTP/2 connection still open after {timeout}s")
            self.pump(0.1)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
