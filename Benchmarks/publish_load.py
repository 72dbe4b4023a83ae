"""Sends pipelined `POST /publish` requests to a plain admin listener, for profiling the
admin request path under callgrind or perf (see BENCHMARKS.md, *Where the time goes*).

    python3 Benchmarks/publish_load.py PORT TOKEN [--requests N] [--batch K] [--json]

Each request publishes to its own pair (`p<i>`, `c`); with --batch K > 1 each request is an
NDJSON batch of K messages. Prints requests, messages and seconds.
"""

import argparse
import json
import socket
import time


def request(token: str, body: bytes, content_type: str) -> bytes:
    return (f"POST /publish HTTP/1.1\r\nHost: qri\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("token")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="single publishes as JSON instead of a form")
    parser.add_argument("--depth", type=int, default=64, help="requests in flight")
    args = parser.parse_args()

    payloads = []
    for i in range(args.requests):
        if args.batch > 1:
            lines = [json.dumps({"peer": f"p{i * args.batch + k}", "checksum": "c", "message": "m" * 32})
                     for k in range(args.batch)]
            payloads.append(request(args.token, ("\n".join(lines) + "\n").encode(), "application/x-ndjson"))
        elif args.json:
            payloads.append(request(args.token, json.dumps({"peer": f"p{i}", "checksum": "c", "message": "m" * 32}).encode(),
                                    "application/json"))
        else:
            payloads.append(request(args.token, f"peer=p{i}&checksum=c&message={'m' * 32}".encode(),
                                    "application/x-www-form-urlencoded"))
    conn = socket.create_connection(("127.0.0.1", args.port))
    start = time.monotonic()
    sent = answered = 0
    pending = b""
    while answered < args.requests:
        if sent < args.requests and sent - answered <= args.depth // 2:
            # Refill the window in one write, so the sender stays ahead of the server.
            upto = min(args.requests, answered + args.depth)
            conn.sendall(b"".join(payloads[sent:upto]))
            sent = upto
        data = conn.recv(1 << 20)
        if not data:
            raise SystemExit("connection closed")
        pending += data
        answered += pending.count(b"HTTP/1.1 202")
        if b"HTTP/1.1 4" in pending or b"HTTP/1.1 5" in pending:
            raise SystemExit(f"unexpected answer: {pending[:300]!r}")
        pending = pending[pending.rfind(b"HTTP/1.1 202") + 12:]
    elapsed = time.monotonic() - start
    print(f"requests={args.requests} messages={args.requests * args.batch} seconds={elapsed:.2f}")


if __name__ == "__main__":
    main()
