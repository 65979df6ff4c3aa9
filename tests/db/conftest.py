"""A throwaway PostgreSQL 15 (Debian's server binaries, initdb + pg_ctl as the
postgres user) on a free loopback port, for the tests of this directory."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                   capture_output=True, timeout=120)


@dataclass
class Postgres:
    url: str
    data: Path
    log: Path
    options: str

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def new_database(self, name: str) -> str:
        port = self.url.rsplit(":", 1)[1].split("/")[0]
        _as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", port, name)
        return self.url.rsplit("/", 1)[0] + "/" + name

    def start(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.log),
                     "-o", self.options, "start")


@pytest.fixture(scope="session")
def pg() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 server binaries missing (postgresql-15 package)")
    tmp = Path(tempfile.mkdtemp(prefix="ferry-pg-"))
    shutil.chown(tmp, "postgres", "postgres")
    port = free_port()
    server = Postgres(f"postgresql+psycopg://postgres@127.0.0.1:{port}/ferry", tmp / "data",
                      tmp / "log", f"-c listen_addresses=127.0.0.1 -c port={port} -k {tmp}")
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(server.data), "-A", "trust",
                 "-U", "postgres")
    server.start()
    try:
        _as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "ferry")
        yield server
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(server.data), "-m", "immediate",
                     "stop")
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_url(pg: Postgres) -> str:
    return pg.url
