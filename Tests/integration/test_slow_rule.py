"""The slow-stream rule (SPEC.md, *Public listener*): a stream is judged only on the bytes its
client refused — still queued after a write was tried and the socket took no more — never on
events queued within one loop pass before any write was tried."""

import threading

from qri_http import Deadline
from qri_ingest import ber_frame

FRAME_CAP = 256 * 1024
BODY = FRAME_CAP - 64                       # tag and lengths fit in the rest
BURST = 5 * 1024 * 1024


def test_reading_client_takes_a_burst_larger_than_its_buffer_whole(admin_qri):
    srv = admin_qri("--max-frame-bytes", "256K", "--stream-buffer-bytes", "512K", "--history", "0")
    fast = srv.stream("burst", "c")
    count = BURST // BODY + 1
    got, errors = [], []

    def read():
        try:
            while True:
                e = fast.next_event(60)
                if e.is_tick:
                    continue
                got.append((e.data[:4], len(e.data)))
                if e.data == "end":
                    return
        except BaseException as e:           # reported below
            errors.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ingest = srv.ingest()
    # The whole burst at once: the sender does not wait for the reader.
    ingest.frames(*[ber_frame("burst", "c", f"{i:04d}".encode() + b"b" * (BODY - 4)) for i in range(count)])
    ingest.frames(ber_frame("burst", "c", "end"))
    reader.join(70)
    assert not reader.is_alive(), f"the reader got {len(got)} of {count} messages within 60 s"
    assert not errors, f"the reading stream failed after {len(got)} of {count} messages: {errors[0]!r}"
    assert got == [(f"{i:04d}", BODY) for i in range(count)] + [("end", 3)]
    assert srv.metric("qri_slow_streams_closed_total") == 0


def test_client_that_never_reads_is_still_closed_and_counted(admin_qri):
    srv = admin_qri("--max-frame-bytes", "256K", "--stream-buffer-bytes", "512K", "--history", "0")
    slow = srv.stream("burst", "c", rcvbuf=16 * 1024)
    witness = srv.stream("witness", "c")
    ingest = srv.ingest()
    for i in range(BURST // BODY + 1):
        ingest.frames(ber_frame("burst", "c", f"{i:04d}".encode() + b"s" * (BODY - 4)))
    srv.wait_metric("qri_slow_streams_closed_total", lambda v: v == 1)
    srv.wait_metric("qri_streams", lambda v: v == 1)
    slow.wait_closed(20)
    assert sum(len(e.data) for e in slow.events if not e.is_tick) < BURST
    ingest.frames(ber_frame("witness", "c", "after"))
    witness.wait_data("after")
