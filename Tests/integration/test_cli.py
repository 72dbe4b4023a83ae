"""The command line and start-up (SPEC.md, *Command line*)."""

import re
import signal
import time

import pytest

from qri_gateway import LISTENING_RE


def output_lines(result):
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


def test_listening_line_names_the_three_ports(qri):
    srv = qri()
    m = srv.wait_log(LISTENING_RE, 1)
    assert re.search(r"public=127\.0\.0\.1:\d+ admin=127\.0\.0\.1:\d+ ingest=127\.0\.0\.1:\d+", m.string), m.string
    ports = {srv.public_port, srv.admin_port, srv.ingest_port}
    assert len(ports) == 3 and 0 not in ports, "port 0 means a free port, three different ones"
    assert srv.stream("p", "c").first_tick.is_tick


def test_ingest_off(qri):
    srv = qri("--ingest-listen", "off")
    m = srv.wait_log(LISTENING_RE, 1)
    assert m.group(3) == "off", m.string
    assert srv.ingest_port is None


def assert_one_line_error(result, *names):
    lines = output_lines(result)
    assert result.returncode != 0, f"exit status 0 with output {lines}"
    assert len(lines) == 1, f"expected a one-line error, got {len(lines)} lines:\n" + "\n".join(lines)
    assert any(n in lines[0] for n in names), f"the error does not name {' or '.join(names)}: {lines[0]}"


def test_unknown_flag_is_a_one_line_error(qri_cli):
    assert_one_line_error(qri_cli("--no-such-flag"), "no-such-flag")


def test_stream_buffer_below_twice_the_frame_cap_is_an_error(qri_cli):
    result = qri_cli("--stream-buffer-bytes", "1M", "--max-frame-bytes", "1M")
    assert_one_line_error(result, "stream-buffer-bytes", "max-frame-bytes")


@pytest.mark.parametrize("flag, value", [
    ("--history-memory", "12Q"),
    ("--history-memory", "-1"),
    ("--tick-interval", "soon"),
    ("--listen", "127.0.0.1"),
    ("--listen", "127.0.0.1:99999"),
])
def test_malformed_value_is_a_one_line_error(qri_cli, flag, value):
    assert_one_line_error(qri_cli(flag, value), flag.lstrip("-"))


def test_size_suffixes_are_accepted(qri):
    srv = qri("--history-memory", "12K", "--max-frame-bytes", "512K", "--stream-buffer-bytes", "1M")
    assert srv.stream("p", "c").first_tick.is_tick


def test_sigterm_closes_streams_with_close_notify_and_exits_zero(qri):
    srv = qri("--shutdown-timeout", "5")
    stream = srv.stream("p", "c", suppress_ragged_eofs=False)
    srv.signal(signal.SIGTERM)
    start = time.monotonic()
    how = stream.wait_closed(8)
    assert how == "eof", f"the stream was closed without a TLS close_notify ({how})"
    assert srv.wait_exit(8) == 0
    assert time.monotonic() - start < 7, "shutdown took longer than SHUTDOWN_TIMEOUT"
