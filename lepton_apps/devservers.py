"""Throw-away local servers for the tests and benchmarks: PostgreSQL (Debian's ``postgresql``) and Redis
(Debian's ``redis-server``), each in a temporary folder on a free 127.0.0.1 port, stopped by the caller.

``make test`` installs the Debian packages (scripts/ensure_debian.sh); nothing here downloads anything.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_binary(name: str) -> str | None:
    """Return the path of a PostgreSQL server program (``initdb``, ``pg_ctl``), or None when not installed."""
    import glob
    import shutil

    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class PostgresServer:
    """A PostgreSQL cluster in a temporary folder, started with pg_ctl; ``url`` for SQLAlchemy."""

    def __init__(self, folder: Path, fsync: bool = True):
        self.folder, self.port, self.fsync = folder, free_port(), fsync
        self.initdb, self.pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.data, self.sock = folder / "data", folder / "sock"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        r = subprocess.run([*self.as_user, *args], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {r.stdout[-1500:]} {r.stderr[-1500:]}")

    def create(self) -> None:
        self.sock.mkdir(parents=True)
        if self.as_user:
            subprocess.run(["chown", "-R", "postgres", str(self.folder)], check=True)
        self._run(self.initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.start()

    def start(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-w", "-t", "60", "-l", str(self.folder / "log"),
                  "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1"
                  + ("" if self.fsync else " -c fsync=off"), "start")

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.data), "-w", "-m", "immediate", "stop")


class RedisServer:
    """A redis-server process in a temporary folder; ``url`` for redis-py."""

    def __init__(self, folder: Path):
        import shutil

        self.folder, self.port = folder, free_port()
        self.binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--dir", str(self.folder), "--protected-mode", "yes"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        import redis

        client = redis.Redis.from_url(self.url, socket_connect_timeout=1)
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
