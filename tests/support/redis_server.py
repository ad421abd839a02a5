"""A throwaway, real Redis server (Debian's redis-server) on 127.0.0.1 for one test session."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis

START_TIMEOUT = 20  # seconds to wait for PING to answer


def redis_available() -> bool:
    """True when the redis-server binary is installed (.ci/run installs it)."""
    return shutil.which("redis-server") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """`redis-server` in a temporary directory, no persistence, loopback only."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="runbase-redis-"))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """The redis:// URL clients connect to."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        """Start the server and wait until it answers PING."""
        log = open(self.workdir / "redis.log", "wb")
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=1).ping():
                    return self
            except redis.ConnectionError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start:\n" + (self.workdir / "redis.log").read_text())

    def stop(self) -> None:
        """Stop the server and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
