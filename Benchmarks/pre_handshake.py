"""Memory of a connection before its TLS handshake, next to an idle stream's, in one run.

Starts the release `qri` on free loopback ports, then measures its RSS (VmRSS) after N TCP
connections that never send a byte, and again after N idle TLS streams on top of them.
Prints RESULT lines like qri-bench does. Usage: pre_handshake.py [N] (default 5000).
"""

import os
import re
import resource
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N = int(sys.argv[1]) if len(sys.argv) > 1 else 5000


def rss(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def settle(pid):
    last = rss(pid)
    for _ in range(30):
        time.sleep(0.2)
        now = rss(pid)
        if abs(now - last) < 64 << 10:
            return now
        last = now
    return last


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    proc = subprocess.Popen([str(ROOT / ".build/release/qri"), "--listen", "127.0.0.1:0",
                             "--admin-listen", "127.0.0.1:0", "--ingest-listen", "off",
                             "--cert", str(ROOT / "certs/server.crt"), "--key", str(ROOT / "certs/server.key"),
                             "--state-file", "/tmp/qri-pre-handshake/backdoor.json", "--threads", "1",
                             "--handshake-timeout", "600", "--header-timeout", "600"],
                            stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in proc.stderr:
            m = re.search(r"listening public=127\.0\.0\.1:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        base = settle(proc.pid)
        silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(N)]
        with_silent = settle(proc.pid)
        ctx = ssl.create_default_context(cafile=str(ROOT / "certs/server.crt"))
        ctx.set_alpn_protocols(["http/1.1"])
        streams = []
        for i in range(N):
            s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
            s.sendall(f"GET /stream?p={i}&s=x HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            data = b""
            while b"data: Tick" not in data:
                data += s.recv(4096)
            streams.append(s)
        with_streams = settle(proc.pid)
        print(f"RESULT pre_handshake connections={N} bytes_per_connection={(with_silent - base) // N}")
        print(f"RESULT idle_stream streams={N} bytes_per_stream={(with_streams - with_silent) // N}")
        for s in silent + streams:
            s.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
