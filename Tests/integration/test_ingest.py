"""The ingest listener: BER frames over plain TCP (SPEC.md, *Ingest listener*)."""

import time

import pytest

from qri_ingest import ber_frame, ber_length, ber_tlv


def payload(size: int) -> bytes:
    return (b"0123456789abcdefghijklmnopqrstuvwxyz" * (size // 36 + 1))[:size]


def test_frames_split_byte_by_byte(qri):
    srv = qri()
    stream = srv.stream("p", "c")
    ingest = srv.ingest()
    for message in (b"first", b"second"):
        for byte in ber_frame("p", "c", message):
            ingest.send(bytes([byte]))
            time.sleep(0.002)   # not a wait for a result: it keeps the bytes in separate segments
    assert [e.data for e in stream.messages_until("second")] == ["first", "second"]


def test_several_frames_in_one_write(qri):
    srv = qri()
    stream = srv.stream("p", "c")
    messages = [f"m{i}" for i in range(20)]
    srv.ingest().send(b"".join(ber_frame("p", "c", m) for m in messages))
    assert [e.data for e in stream.messages_until("m19")] == messages


def test_frame_boundaries_anywhere_across_writes(qri):
    """Three frames cut into writes at awkward places (inside tags, lengths and contents)."""
    srv = qri()
    stream = srv.stream("p", "c")
    blob = ber_frame("p", "c", payload(300)) + ber_frame("p", "c", b"x") + ber_frame("p", "c", b"end")
    ingest = srv.ingest()
    for start, end in [(0, 1), (1, 3), (3, 6), (6, 150), (150, 309), (309, 312), (312, len(blob))]:
        ingest.send(blob[start:end])
        time.sleep(0.01)
    got = stream.messages_until("end")
    assert [e.data for e in got] == [payload(300).decode(), "x", "end"]


@pytest.mark.parametrize("size", [127, 128, 255, 256, 300, 70_000])
def test_long_form_lengths(qri, size):
    srv = qri()
    stream = srv.stream("p", "c")
    frame = ber_frame("p", "c", payload(size))
    if size >= 128:
        assert frame[1] & 0x80, "the SEQUENCE uses the long form"
    srv.ingest().send(frame + ber_frame("p", "c", b"end"))
    got = stream.messages_until("end")
    assert [len(e.data) for e in got] == [size, 3]
    assert got[0].data == payload(size).decode()


def test_non_minimal_long_form_lengths_are_ber(qri):
    """BER (unlike DER) allows the long form for short lengths: 0x81 0x05 means 5."""
    srv = qri()
    stream = srv.stream("p", "c")
    srv.ingest().send(ber_frame("p", "c", b"hello", long_form_octets=2) + ber_frame("p", "c", b"end"))
    assert [e.data for e in stream.messages_until("end")] == ["hello", "end"]


def octets(*values: bytes) -> bytes:
    return b"".join(ber_tlv(0x04, v) for v in values)


GARBAGE = {
    "http": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    "set-not-sequence": ber_tlv(0x31, octets(b"p", b"c", b"m")),
    "two-fields": ber_tlv(0x30, octets(b"p", b"c")),
    "four-fields": ber_tlv(0x30, octets(b"p", b"c", b"m", b"extra")),
    "integer-field": ber_tlv(0x30, octets(b"p", b"c") + ber_tlv(0x02, b"\x01")),
    "inner-length-overruns": b"\x30\x09" + octets(b"p", b"c") + b"\x04\x05m",
    "bare-octet-string": octets(b"hello"),
    "zeros": b"\x00" * 16,
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_garbage_closes_only_that_connection(qri, kind):
    srv = qri()
    stream = srv.stream("p", "c")
    bad, good = srv.ingest(), srv.ingest()
    good.send(ber_frame("p", "c", "before"))
    assert stream.wait_for(lambda e: not e.is_tick).data == "before"

    bad.send(GARBAGE[kind], tolerate_close=True)
    bad.wait_closed(10)

    # The other ingest connection, new ones, qri-py and the stream all keep working.
    good.send(ber_frame("p", "c", "from-good"))
    assert [e.data for e in stream.messages_until("from-good")] == ["from-good"]
    srv.ingest().send(ber_frame("p", "c", "from-new"))
    assert [e.data for e in stream.messages_until("from-new")] == ["from-new"]
    srv.qripy().send(b"p", b"c", b"from-qri-py")
    assert [e.data for e in stream.messages_until("from-qri-py")] == ["from-qri-py"]


def test_valid_frame_before_garbage_in_one_write_is_delivered(qri):
    srv = qri()
    stream = srv.stream("p", "c")
    ingest = srv.ingest()
    ingest.send(ber_frame("p", "c", "valid") + GARBAGE["http"], tolerate_close=True)
    assert stream.wait_for(lambda e: not e.is_tick).data == "valid"
    ingest.wait_closed(10)


def frame_of_total_size(total: int) -> tuple[bytes, int]:
    """A frame for ("p", "c") whose encoded size, tag and length included, is `total`, and
    the size of its message."""
    for size in range(total, 0, -1):
        frame = ber_frame("p", "c", payload(size))
        if len(frame) == total:
            return frame, size
        if len(frame) < total:
            break
    raise AssertionError(f"no frame of exactly {total} bytes")


def test_frame_at_the_cap_passes_and_one_byte_more_closes(qri):
    cap = 64 * 1024
    srv = qri("--max-frame-bytes", "64K")
    stream = srv.stream("p", "c")

    at_cap, size = frame_of_total_size(cap)
    srv.ingest().send(at_cap + ber_frame("p", "c", "end"))
    got = stream.messages_until("end")
    assert [len(e.data) for e in got] == [size, 3]

    over = srv.ingest()
    over.send(frame_of_total_size(cap + 1)[0] + ber_frame("p", "c", "never"), tolerate_close=True)
    over.wait_closed(10)

    srv.ingest().send(ber_frame("p", "c", "after"))
    assert [e.data for e in stream.messages_until("after")] == ["after"], "the oversized frame was not routed"


def test_oversized_length_closes_before_the_bytes_arrive(qri):
    """A header announcing 100 MiB closes the connection; Qri does not wait for, or buffer, it."""
    srv = qri()
    ingest = srv.ingest()
    ingest.send(b"\x30" + ber_length(100 * 1024 * 1024) + b"\x04\x01p", tolerate_close=True)
    ingest.wait_closed(10)
