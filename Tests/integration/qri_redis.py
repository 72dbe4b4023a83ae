"""Real redis-server processes for the cluster tests (Debian's package): own port, own
folder, no persistence unless asked, stopped after the test."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

from qri_http import HOST, Deadline


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def require_redis() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.path.exists(path):
        pytest.fail("redis-server is not installed: run make deps", pytrace=False)
    return path


class RedisServer:
    """One redis-server. `restart()` keeps the port (and, with `persist`, the data)."""

    def __init__(self, workdir: Path, persist: bool = False, tls: Optional[dict] = None,
                 password: Optional[str] = None):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.persist = persist
        self.tls = tls
        self.password = password
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}{HOST}:{self.port}"

    def command(self) -> list[str]:
        cmd = [require_redis(), "--bind", HOST, "--dir", str(self.workdir), "--daemonize", "no",
               "--logfile", str(self.workdir / "redis.log"), "--maxmemory-policy", "noeviction"]
        if self.persist:
            cmd += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        else:
            cmd += ["--appendonly", "no", "--save", ""]
        if self.password:
            cmd += ["--requirepass", self.password]
        if self.tls:
            cmd += ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", self.tls["cert"],
                    "--tls-key-file", self.tls["key"], "--tls-auth-clients", "no"]
        else:
            cmd += ["--port", str(self.port)]
        return cmd

    def start(self) -> None:
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited: {(self.workdir / 'redis.log').read_text()[-2000:]}")
                time.sleep(0.02)
        raise Deadline("redis-server did not listen within 10 s")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def restart(self, keep_data: bool = True) -> None:
        self.kill()
        if not keep_data:
            for f in self.workdir.glob("*.aof*"):
                f.unlink() if f.is_file() else shutil.rmtree(f)
            shutil.rmtree(self.workdir / "appendonlydir", ignore_errors=True)
        self.start()

    def cli(self, *args: str) -> str:
        cmd = ["redis-cli", "-h", HOST, "-p", str(self.port)]
        if self.password:
            cmd += ["--no-auth-warning", "-a", self.password]
        if self.tls:
            cmd += ["--tls", "--cacert", self.tls["cert"]]
        return subprocess.run(cmd + list(args), capture_output=True, text=True, check=True, timeout=10).stdout

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
