"""Routing of (peer, checksum, message) to open streams (SPEC.md, *Routing*, event format).

Absence is asserted without sleeping: after the message under test, a marker goes to every
stream on the same ingest connection (frames are routed in order), and once a stream has its
marker, nothing it should not have got can still be on its way.
"""

import time

import pytest

from qri_http import Deadline
from qri_ingest import ber_frame


def data(events):
    return [e.data for e in events]


def test_message_reaches_every_stream_of_its_pair_only(qri):
    srv = qri()
    tab1 = srv.stream("user-42", "chk-a")
    tab2 = srv.stream("user-42", "chk-a")
    other_checksum = srv.stream("user-42", "chk-b")
    other_peer = srv.stream("user-43", "chk-a")
    q = srv.qripy()
    q.send(b"user-42", b"chk-a", b"hello")
    for peer, checksum in [(b"user-42", b"chk-a"), (b"user-42", b"chk-b"), (b"user-43", b"chk-a")]:
        q.send(peer, checksum, b"marker")

    got1, got2 = tab1.messages_until("marker"), tab2.messages_until("marker")
    assert data(got1) == ["hello", "marker"]
    assert data(got2) == ["hello", "marker"]
    # One event, same id, on every stream of the pair.
    assert got1[0].id == got2[0].id and got1[0].id is not None
    assert data(other_checksum.messages_until("marker")) == ["marker"]
    assert data(other_peer.messages_until("marker")) == ["marker"]


@pytest.mark.parametrize("message, lines", [
    (b"a\nb", ["a", "b"]),
    (b"a\rb", ["a", "b"]),
    (b"a\r\nb", ["a", "b"]),                       # CRLF is one break, not two
    (b"a\rb\nc\r\nd", ["a", "b", "c", "d"]),
    (b"e\r\rf\n\ng", ["e", "", "f", "", "g"]),
    (b"x\n", ["x", ""]),
    (b"\nx", ["", "x"]),
    # A message cannot inject fields or events of its own.
    (b"x\n\ndata: injected\n\nid: 1\nevent: gap\n", ["x", "", "data: injected", "", "id: 1", "event: gap", ""]),
    (b" leading space", [" leading space"]),
    (b": not a comment", [": not a comment"]),
])
def test_line_breaks_split_into_data_lines(qri, message, lines):
    srv = qri()
    stream = srv.stream("ml", "x")
    q = srv.qripy()
    q.send(b"ml", b"x", message)
    q.send(b"ml", b"x", b"marker")
    got = stream.messages_until("marker")
    assert len(got) == 2, f"the message became {len(got) - 1} events: {got}"
    event = got[0]
    assert [v for k, v in event.fields if k == "data"] == lines
    assert event.data == "\n".join(lines)
    assert event.event == "message" and event.id is not None


def test_utf8_message(qri):
    srv = qri()
    stream = srv.stream("utf", "8")
    text = "héllo wörld ✓ 日本語 🚀"
    srv.qripy().send(b"utf", b"8", text.encode("utf-8"))
    assert stream.wait_for(lambda e: not e.is_tick).data == text


def test_200_streams_20_pairs_1000_messages_in_order(qri):
    """Each of 200 streams (10 per pair) gets exactly its pair's 50 messages, in order."""
    pairs = [(f"peer{i % 7}", f"sum{i}") for i in range(20)]   # peers shared between pairs
    srv = qri()
    streams = {pair: [srv.stream(*pair, timeout=20) for _ in range(10)] for pair in pairs}

    expected = {pair: [] for pair in pairs}
    frames = []
    for n in range(1000):
        pair = pairs[(n * 7) % 20]        # interleaved, not round-robin in pair order
        msg = f"{pair[0]}/{pair[1]}#{n}"
        expected[pair].append(msg)
        frames.append(ber_frame(pair[0], pair[1], msg))
    ingest = srv.ingest()
    for i in range(0, len(frames), 100):   # ten writes of 100 frames each
        ingest.send(b"".join(frames[i:i + 100]))

    deadline = time.monotonic() + 60
    for pair, group in streams.items():
        ids = None
        for stream in group:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise Deadline("200 streams did not get their 1,000 messages within 60 s")
            got = stream.messages_until(expected[pair][-1], remaining)
            assert data(got) == expected[pair], f"{pair}: got {len(got)} messages, wrong set or order"
            if ids is None:
                ids = [e.id for e in got]
            assert [e.id for e in got] == ids, f"{pair}: ids differ between streams of one pair"
