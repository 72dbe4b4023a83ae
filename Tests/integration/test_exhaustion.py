"""Resource exhaustion (SPEC.md, *Limits and bad input*): what a hostile client can make the
process hold — memory, descriptors, connection slots — and that operators and backends keep
their way in while it tries."""

import os
import socket
import time

import pytest

from qri_gateway import SANITIZED, rss_test
from qri_http import HOST, Deadline, wait_until

MiB = 1 << 20


def rejected(srv, reason, samples=None):
    return srv.metric("qri_connections_rejected_total", samples, reason=reason)


def settle_rss(srv, timeout=3.0):
    """RSS once it stops moving for a moment (the loops finish freeing what they dropped)."""
    last = srv.rss_bytes()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = srv.rss_bytes()
        if abs(now - last) < 256 << 10:
            return now
        last = now
    return last


# ---------------------------------------------------------------------------------------------
# Item 0: an oversized chunked admin body is answered 413 and leaves nothing behind


def test_oversized_chunked_admin_bodies_leave_no_memory_behind(admin_qri):
    """Before the fix each such request leaked its partly decoded body (~2 MiB): 80 of them
    grew a release build by ~80 MiB. No token is sent: the body is read before auth."""
    srv = admin_qri("--admin-plaintext", "--max-body-bytes", "1M")
    chunk = b"x" * (64 << 10)
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32)) + b"0\r\n\r\n"  # 2 MiB
    head = srv.admin_bytes("POST", "/backdoor", {"Transfer-Encoding": "chunked"}, auth=False)

    def one():
        conn = srv.admin_connect()
        conn.sendall(head)
        try:
            conn.sendall(body)
        except OSError:
            pass  # the server may half-close and drop the rest: the answer is what counts
        data = conn.read_to_end(time.monotonic() + 10)
        conn.close()
        assert data.startswith(b"HTTP/1.1 413 "), data[:80]

    one()
    before = settle_rss(srv)
    for _ in range(80):
        one()
    srv.wait_metric("qri_connections_rejected_total", lambda v: v >= 81, reason="body_too_large")
    if SANITIZED:
        return  # LeakSanitizer judges at exit; RSS means nothing under it
    grown = settle_rss(srv) - before
    assert grown < 24 * MiB, f"RSS grew {grown / MiB:.1f} MiB after 80 oversized chunked bodies"


# ---------------------------------------------------------------------------------------------
# Item 1: a full public listener keeps nobody else out


def raise_own_fd_limit():
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def idle_tcp(port, n):
    """`n` TCP connections that never send a byte (no ClientHello)."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.connect((HOST, port))
        socks.append(s)
    return socks


def close_all(socks):
    for s in socks:
        s.close()


def test_full_public_listener_leaves_admin_metrics_and_ingest_served(admin_qri):
    """Before: one cap for all listeners; 300 idle TCP connections to the public port kept
    /healthz and /metrics out, and qri-py's messages on a new ingest connection were lost."""
    raise_own_fd_limit()
    srv = admin_qri("--max-connections", "50", "--handshake-timeout", "60")
    stream = srv.stream("flood", "x")
    flood = idle_tcp(srv.public_port, 300)
    try:
        srv.wait_metric("qri_connections_rejected_total", lambda v: v >= 250, reason="max_connections")
        health = srv.admin_client(token=None).get("/healthz")
        assert health.status_code == 200 and health.text.strip() == "ok"
        assert srv.metric("qri_connections", listener="public") == 50
        qripy = srv.qripy()
        for i in range(5):
            qripy.send(b"flood", b"x", f"during flood {i}".encode())
        got = stream.messages_until("during flood 4", timeout=10)
        assert [e.data for e in got if e.data.startswith("during")] == [f"during flood {i}" for i in range(5)]
    finally:
        close_all(flood)


@pytest.mark.parametrize("listener", ["admin", "ingest"])
def test_admin_and_ingest_have_caps_of_their_own(admin_qri, listener):
    srv = admin_qri("--admin-plaintext", f"--max-{listener}-connections", "3")
    port = srv.admin_port if listener == "admin" else srv.ingest_port
    # Four at once: the loops accept in no set order, so any one of them may be the fourth.
    socks = [socket.create_connection((HOST, port)) for _ in range(4)]
    try:
        import select
        deadline = time.monotonic() + 3
        closed = set()
        while time.monotonic() < deadline and not closed:
            readable, _, _ = select.select(socks, [], [], 0.1)
            closed.update(s for s in readable if s.recv(1) == b"")
        time.sleep(0.3)  # a second close, if any, would show by now
        readable, _, _ = select.select(socks, [], [], 0)
        closed.update(s for s in readable if s.recv(1) == b"")
        assert len(closed) == 1, f"{len(closed)} of 4 connections closed with a cap of 3"
    finally:
        close_all(socks)
    srv.wait_metric("qri_connections_rejected_total", lambda v: v == 1, reason=f"max_{listener}_connections")
    assert srv.metric("qri_connections_rejected_total", reason="max_connections") == 0


# ---------------------------------------------------------------------------------------------
# Item 2: running out of descriptors backs off instead of spinning


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_emfile_on_accept_backs_off_logs_once_a_second_and_refuses_the_waiting(admin_qri):
    """Before: level-triggered epoll reported the listener again at once — millions of
    'accept failed' lines, both cores busy, deliveries seconds late."""
    import resource
    raise_own_fd_limit()
    srv = admin_qri("--admin-plaintext")
    stream = srv.stream("emfile", "x")
    ingest = srv.ingest()
    from qri_ingest import ber_frame
    # The ingest connection must be accepted before descriptors run out, or the server's
    # back-off would refuse it like the flood.
    srv.wait_metric("qri_connections", lambda v: v == 1, listener="ingest")
    open_fds = len(os.listdir(f"/proc/{srv.pid}/fd"))
    _, hard = resource.prlimit(srv.pid, resource.RLIMIT_NOFILE)
    resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (open_fds + 2, hard))
    flood = []
    try:
        lines_before = len(srv.lines)
        cpu_before = cpu_seconds(srv.pid)
        start = time.monotonic()
        for _ in range(200):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex((HOST, srv.public_port))
            flood.append(s)
        ingest.frames(ber_frame("emfile", "x", "delivered while out of descriptors"))
        stream.wait_data("delivered while out of descriptors", timeout=5)
        time.sleep(max(0.0, 2.0 - (time.monotonic() - start)))
        cpu = cpu_seconds(srv.pid) - cpu_before
        elapsed = time.monotonic() - start
        accept_lines = [l for l in srv.lines[lines_before:] if "accept failed" in l]
        assert cpu < 0.5 * elapsed, f"{cpu:.2f} s of CPU in {elapsed:.1f} s: the loop spins"
        assert 1 <= len(accept_lines) <= elapsed + 2, f"{len(accept_lines)} accept lines in {elapsed:.1f} s"
    finally:
        resource.prlimit(srv.pid, resource.RLIMIT_NOFILE, (hard, hard))
        close_all(flood)
    # The spare descriptor refused connections at the head of the queue (counted as over
    # the limit) rather than leaving them waiting.
    assert srv.metric("qri_connections_rejected_total", reason="max_connections") > 0
    # Descriptors back: new streams are served again.
    wait_until(lambda: srv.stream("emfile", "y", timeout=2), 10, "a stream after the limit is lifted")


# ---------------------------------------------------------------------------------------------
# Item 3: a connection that never says hello costs little, and gives its memory back


@rss_test
def test_connections_without_client_hello_cost_less_than_an_idle_stream(admin_qri):
    """Before: the TLS state was made at accept — 42.5 KB per silent connection (an idle
    stream costs ~15 KB), and RSS stayed at its peak after they left."""
    raise_own_fd_limit()
    srv = admin_qri("--handshake-timeout", "120")
    n = 4000
    before = settle_rss(srv)
    flood = idle_tcp(srv.public_port, n)
    try:
        srv.wait_metric("qri_connections", lambda v: v == n, listener="public", timeout=20)
        per_connection = (settle_rss(srv) - before) / n
        assert per_connection < 8 * 1024, f"{per_connection / 1024:.1f} KB per silent connection"
    finally:
        close_all(flood)
    srv.wait_metric("qri_connections", lambda v: v == 0, listener="public", timeout=20)
    # The loops trim the heap within a second of a flood leaving.
    wait_until(lambda: srv.rss_bytes() < before + 8 * MiB, 10,
               f"RSS back near {before / MiB:.0f} MiB (is {srv.rss_bytes() / MiB:.0f} MiB)")


# ---------------------------------------------------------------------------------------------
# Item 4: a reader that keeps up almost, but never quite, holds no more than its buffer


@rss_test
def test_reader_that_never_lets_its_queue_drain_holds_about_what_is_unsent(admin_qri):
    """The publisher keeps 12 MiB in flight (more than the socket buffers hold), so the
    stream's queue never empties while 100 MiB pass through. Before: bytes already sent were
    kept until the queue drained — RSS grew by everything that passed."""
    import threading
    from qri_ingest import ber_frame
    srv = admin_qri("--stream-buffer-bytes", "32M", "--max-frame-bytes", "1M", "--history", "0")
    stream = srv.stream("slow", "x", rcvbuf=16 << 10)
    size, window, total = 256 << 10, 48, 400
    received = [0]
    failure = []

    def read():
        conn = stream.conn
        tail = b""
        deadline = time.monotonic() + 60
        try:
            while received[0] < total:
                data = tail + conn.recv_some(deadline, 1 << 20)
                received[0] += data.count(b"\n\n")
                tail = data[-1:]
                if tail == b"\n" and data.endswith(b"\n\n"):
                    tail = b""
        except Exception as e:  # reported by the main thread
            failure.append(e)

    before = settle_rss(srv)
    peak = before
    reader = threading.Thread(target=read, daemon=True)
    ingest = srv.ingest()
    # Only whole events count: the stream's buffer may hold a Tick and the first frames.
    received[0] = 0
    reader.start()
    body = b"y" * size
    deadline = time.monotonic() + 60
    for i in range(total):
        while i - received[0] >= window and not failure:
            assert time.monotonic() < deadline, f"stuck at {received[0]} of {total}"
            time.sleep(0.001)
        assert not failure, failure
        ingest.frames(ber_frame("slow", "x", body))
        if i % 20 == 0:
            peak = max(peak, srv.rss_bytes())
    reader.join(60)
    assert not failure, failure
    assert srv.metric("qri_slow_streams_closed_total") == 0
    grown = peak - before
    assert grown < 48 * MiB, f"RSS grew {grown / MiB:.0f} MiB for a window of {window * size / MiB:.0f} MiB"


# ---------------------------------------------------------------------------------------------
# Item 5: ingest frames have a deadline; admin and ingest sockets probe dead peers


def test_half_a_frame_and_silence_is_closed_by_the_frame_timeout(admin_qri):
    from qri_ingest import ber_frame
    srv = admin_qri("--frame-timeout", "1")
    stream = srv.stream("ft", "x")
    steady = srv.ingest()
    half = srv.ingest()
    frame = ber_frame("ft", "x", "z" * 1000)
    half.send(frame[: len(frame) // 2])
    start = time.monotonic()
    half.wait_closed(6)
    assert time.monotonic() - start >= 0.7, "closed before the frame timeout"
    # Between frames there is no deadline: a quiet sender keeps its connection.
    steady.frames(frame)
    stream.wait_data("z" * 1000)
    time.sleep(1.6)
    steady.frames(ber_frame("ft", "x", "after a quiet while"))
    stream.wait_data("after a quiet while")
    srv.wait_metric("qri_connections_rejected_total", lambda v: v == 1, reason="frame_timeout")


def test_admin_and_ingest_sockets_use_tcp_keepalive(admin_qri):
    import subprocess
    srv = admin_qri("--admin-plaintext")
    ingest = srv.ingest()
    admin = srv.admin_connect()
    public = srv.connect()

    def timers(port):
        out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{port} )"],
                             capture_output=True, text=True, check=True).stdout
        return out

    wait_until(lambda: "keepalive" in timers(srv.ingest_port), 5, "ingest keepalive timer")
    wait_until(lambda: "keepalive" in timers(srv.admin_port), 5, "admin keepalive timer")
    ingest_timer = timers(srv.ingest_port)
    # The first probe after 60 s of silence.
    assert "keepalive,59" in ingest_timer or "keepalive,1min" in ingest_timer, ingest_timer
    assert "keepalive" not in timers(srv.public_port)
    admin.close()
    public.close()


# ---------------------------------------------------------------------------------------------
# Item 9: a closed connection is freed when it closes, not at its old deadline


@rss_test
def test_closed_keep_alive_admin_connections_are_freed_at_once(admin_qri):
    """Before: each connection stayed referenced by its armed timeout (here a 10-minute idle
    timeout) after it closed."""
    srv = admin_qri("--admin-plaintext", "--idle-timeout", "600", "--header-timeout", "600")
    request = srv.admin_bytes("GET", "/healthz", auth=False)

    def burst(n):
        for _ in range(n):
            s = socket.create_connection((HOST, srv.admin_port))
            s.sendall(request)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            s.close()

    burst(2000)
    srv.wait_metric("qri_connections", lambda v: v <= 1, listener="admin")  # the metrics client
    before = settle_rss(srv)
    burst(20000)
    srv.wait_metric("qri_connections", lambda v: v <= 1, listener="admin")  # the metrics client
    grown = settle_rss(srv) - before
    assert grown < 12 * MiB, f"RSS grew {grown / MiB:.1f} MiB after 20,000 closed keep-alive connections"


# ---------------------------------------------------------------------------------------------
# Item 10: what operators see during an attack, and small start-up matters


def test_rejections_are_logged_with_the_peer_at_most_once_a_second(admin_qri):
    srv = admin_qri("--admin-plaintext")
    start_line = len(srv.lines)
    started = time.monotonic()
    for _ in range(60):
        resp = srv.request("GET", "/stream", raw=b"GET /stream?p=1&s=x HTTP/1.1\r\nHost: a\r\nHost\r\n\r\n")
        assert resp.status == 400
    srv.wait_metric("qri_connections_rejected_total", lambda v: v == 60, reason="bad_request")
    srv.request("GET", "/stream", raw=b"GET / HTTP/1.1\r\nHost: a\r\nHost\r\n\r\n")
    elapsed = time.monotonic() - started
    lines = [l for l in srv.lines[start_line:] if "connection rejected" in l]
    assert lines and all("peer=127.0.0.1:" in l and "reason=bad_request" in l for l in lines), lines
    assert len(lines) <= elapsed + 2, f"{len(lines)} lines in {elapsed:.1f} s"
    if len(lines) > 1:
        assert any("folded=" in l for l in lines[1:]), lines


def test_listening_line_is_printed_at_every_log_level(qri):
    from qri_gateway import LISTENING_RE
    srv = qri("--log-level", "critical")
    assert srv.public_port and srv.admin_port


def test_token_file_readable_by_others_is_a_start_up_warning(qri, tmp_path):
    token = tmp_path / "loose.token"
    token.write_text("a-token-of-some-length\n")
    token.chmod(0o644)
    srv = qri("--admin-token-file", str(token))
    line = srv.wait_log(r"can be read by its group or others", 5).string
    assert "a-token-of-some-length" not in srv.log_text()
    assert "644" in line
    tight = tmp_path / "tight.token"
    tight.write_text("another-token-value\n")
    tight.chmod(0o600)
    other = qri("--admin-token-file", str(tight))
    other.wait_log(r"listening public=", 5)
    assert "group or others" not in other.log_text()


def test_leftover_temporary_state_file_is_removed_at_start(admin_qri, tmp_path):
    state = tmp_path / "state" / "backdoor.json"
    state.parent.mkdir()
    state.write_text('{"backdoor": {"007": "kept"}}')
    leftover = tmp_path / "state" / "backdoor.json.tmp"
    leftover.write_text('{"backdoor": {"007": "half writ')
    srv = admin_qri("--state-file", str(state))
    assert not leftover.exists()
    assert srv.admin("GET", "/backdoor", params={"type": "007"}).json() == {"type": "007", "message": "kept"}
