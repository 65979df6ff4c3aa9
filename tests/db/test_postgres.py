"""The controller's state on PostgreSQL (by URL), against a throwaway real server.

Starts PostgreSQL 15 with initdb/pg_ctl on a loopback port, runs the Alembic
migrations through the Controller and round-trips records through the
service layer, exactly as with SQLite.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import inspect

from ferry.db.models import HostRow, MigrationRow, VmRow
from ferry.domain.models import MigrationState, Sample
from ferry.errors import NotFound
from ferry.service import hosts, migrations, vms
from ferry.service.controller import Controller
from ferry.service.settings import Settings

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_postgres(*args: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *args], check=True,
                   capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 server binaries missing (postgresql-15 package)")
    tmp = Path(tempfile.mkdtemp(prefix="ferry-pg-"))
    data = tmp / "data"
    shutil.chown(tmp, "postgres", "postgres")
    port = _free_port()
    _as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(tmp / "log"),
                 "-o", f"-c listen_addresses=127.0.0.1 -c port={port} -k {tmp}", "start")
    try:
        _as_postgres(str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "ferry")
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/ferry"
    finally:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(tmp, ignore_errors=True)


def test_schema_and_service_on_postgres(pg_url: str) -> None:
    ctx = Controller(Settings(db_url=pg_url, token="x" * 32))
    try:
        assert ctx.engine.dialect.name == "postgresql"
        tables = set(inspect(ctx.engine).get_table_names())
        assert {"hosts", "vms", "migrations", "samples", "events", "alembic_version"} <= tables
        with ctx.session() as s:
            s.add(HostRow(name="node1", uri="qemu+tcp://198.18.0.11/system", state="up",
                          virt_type="qemu"))
            s.add(VmRow(name="web1", host="node1", state="running", memory_mib=256, vcpus=1,
                        disks=["/pool/web1.disk"]))
            m = MigrationRow(vm="web1", source="node1", destination="node2",
                             state=MigrationState.RUNNING, transferred_bytes=5 * 2**32)
            s.add(m)
            s.flush()
            mid = m.id
        assert [h.name for h in hosts.list_hosts(ctx)] == ["node1"]
        assert vms.get_vm(ctx, "web1").disks == ["/pool/web1.disk"]
        rec = migrations.DbRecorder(ctx, mid)
        rec.sample(Sample(t_ms=250, iteration=1, memory_total_bytes=2**28,
                          memory_processed_bytes=2**27, memory_remaining_bytes=2**27,
                          dirty_rate_bytes_s=2**20, bandwidth_bytes_s=2**27))
        rec.event("started", "test")
        got = migrations.get_migration(ctx, mid)
        assert got.transferred_bytes == 5 * 2**32  # BIGINT survives
        assert [e.kind for e in got.events] == ["started"]
        assert migrations.get_samples(ctx, mid)[0].memory_remaining_bytes == 2**27
        with pytest.raises(NotFound):
            migrations.get_migration(ctx, mid + 1000)
    finally:
        ctx.shutdown()
    # a second controller on the same database finds the schema current
    again = Controller(Settings(db_url=pg_url, token="y" * 32))
    try:
        assert [h.name for h in hosts.list_hosts(again)] == ["node1"]
    finally:
        again.shutdown()
