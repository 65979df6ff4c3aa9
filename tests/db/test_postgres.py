"""The controller's state on PostgreSQL (by URL), against a throwaway real server.

Starts PostgreSQL 15 with initdb/pg_ctl on a loopback port, runs the Alembic
migrations and a whole migration through the service layer, exactly as
with SQLite.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from ferry.domain.models import MigrationState
from ferry.domain.vocab import EventKind
from ferry.errors import DatabaseUnavailable, NotFound
from ferry.service.host_queries import InlineQueries
from ferry.service.settings import GuestImage, Settings
from ferry.service.wiring import build
from ferry.simulated import InlineExecutor, SimClock, SimCluster, Workload
from tests.db.conftest import Postgres


def test_schema_and_a_whole_migration_on_postgres(pg_url: str, tmp_path: Path) -> None:
    """Every use case over PostgreSQL: hosts, a pool, a VM, a migration with its
    samples and events (on the simulated cluster: the database is the point)."""
    clock = SimClock()
    cluster = SimCluster(clock)
    for n in ("node1", "node2"):
        cluster.add_host(n)
    cluster.add_shared_dir("/srv/shared")
    settings = Settings(db_url=pg_url, token="x" * 32, secret_key_file=str(tmp_path / "k"),
                        guest_image=GuestImage(kernel="/k", initrd="/i"))
    svc = build(settings, cluster.connector, clock, InlineExecutor(), InlineQueries())
    try:
        assert svc.db.engine.dialect.name == "postgresql"
        tables = set(inspect(svc.db.engine).get_table_names())
        assert {"hosts", "vms", "migrations", "samples", "events", "alembic_version"} <= tables
        for n in ("node1", "node2"):
            svc.hosts.add(n, cluster.host(n).uri)
        svc.pools.add("shared", "dir-shared", "/srv/shared")
        # 3 GiB of non-zero memory: the bytes sent do not fit a 32-bit integer
        cluster.workloads["web1"] = Workload(dirty_mib_s=16, wss_mib=256, nonzero_mib=3072)
        svc.vms.create("web1", "node1", 4096, workload_dirty_mib_s=16, workload_wss_mib=256)
        m = svc.migrations.start("web1", "node2")
        assert m.state == MigrationState.COMPLETED and m.transferred_bytes
        assert m.transferred_bytes > 3 * 2**30  # BIGINT survives
        assert [e.kind for e in m.events][:2] == [EventKind.REQUESTED, EventKind.PRECHECK]
        assert svc.store.samples(m.id)[-1].memory_total_bytes == 4096 * 2**20
        assert svc.vms.get("web1").host == "node2"
        with pytest.raises(NotFound):
            svc.store.get(m.id + 1000)
    finally:
        svc.shutdown()
    # a second controller on the same database finds the schema current
    again = build(settings, cluster.connector, clock, InlineExecutor(), InlineQueries())
    try:
        assert [h.name for h in again.hosts.list_hosts()] == ["node1", "node2"]
    finally:
        again.shutdown()


def test_postgres_stopped_mid_migration_the_job_goes_on_and_is_recorded(
        pg: Postgres, tmp_path: Path) -> None:
    """The server stopped (fast shutdown: every connection closed) while the job runs,
    started again 40 s later: the migration completes on the hosts, the API answers
    503 meanwhile, and the record is whole once the server is back."""
    clock = SimClock()
    cluster = SimCluster(clock)
    for n in ("node1", "node2"):
        cluster.add_host(n)
    cluster.add_shared_dir("/srv/shared")
    settings = Settings(db_url=pg.new_database("outage"), token="x" * 32,
                        secret_key_file=str(tmp_path / "k"),
                        guest_image=GuestImage(kernel="/k", initrd="/i"))
    svc = build(settings, cluster.connector, clock, InlineExecutor(), InlineQueries())
    answers: list[int] = []

    def ask() -> None:
        try:
            svc.store.list_migrations()
            answers.append(200)
        except DatabaseUnavailable as exc:
            answers.append(exc.status)

    try:
        for n in ("node1", "node2"):
            svc.hosts.add(n, cluster.host(n).uri)
        svc.pools.add("shared", "dir-shared", "/srv/shared")
        cluster.workloads["db1"] = Workload(dirty_mib_s=8, wss_mib=64)
        svc.vms.create("db1", "node1", 512, workload_dirty_mib_s=8, workload_wss_mib=64)
        clock.call_at(3.0, pg.stop)  # the job runs from ~1 s to ~12 s
        clock.call_at(5.0, ask)
        clock.call_at(40.0, pg.start)
        m = svc.migrations.start("db1", "node2", bandwidth_mib_s=16)
        assert answers == [503]
        m = svc.store.get(m.id)
        assert m.state == MigrationState.COMPLETED, m.error
        assert [e.kind for e in m.events][-1] == EventKind.RESOLVED
        assert svc.store.samples(m.id)[-1].t_ms > 9000  # taken during the outage
        assert cluster.where("db1") == {"node2": "running"}
        assert svc.vms.get("db1").host == "node2"
    finally:
        svc.shutdown()
