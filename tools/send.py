"""Sends one message to Qri's ingest port with qri-py, as a backend would (used by `make send`
and `make tour`). The values come from the environment, so no shell quoting gets in the way:
SEND_PEER, SEND_CHECKSUM, SEND_MESSAGE, SEND_INGEST (HOST:PORT)."""

import multiprocessing
import os
import time

if __name__ == "__main__":
    # qri-py sends from a worker process; "forkserver" keeps it from inheriting our sockets.
    multiprocessing.set_start_method("forkserver")
    from qri_py import Qri

    host, _, port = os.environ.get("SEND_INGEST", "127.0.0.1:5679").rpartition(":")
    peer = os.environ.get("SEND_PEER", "1").encode()
    checksum = os.environ.get("SEND_CHECKSUM", "x").encode()
    message = os.environ.get("SEND_MESSAGE", "hello from qri-py").encode()
    q = Qri(host or "127.0.0.1", int(port))
    q.send(peer=peer, checksum=checksum, message=message)
    time.sleep(1)   # qri-py sends from its worker process: give it a moment before exiting
    print(f"sent {message.decode(errors='replace')!r} to peer={peer.decode()} checksum={checksum.decode()} "
          f"over {host or '127.0.0.1'}:{port}")
    os._exit(0)     # qri-py's worker would otherwise keep the process waiting
