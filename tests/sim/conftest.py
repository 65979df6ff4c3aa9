"""A controller wired to a simulated cluster: the real services, pipeline and database
(SQLite in a temporary directory), with in-memory hosts on a virtual clock.

Nothing here starts a process, a namespace or a guest, or needs root: these
tests run in `make test-unit`.  Faults happen at virtual times
(`env.at(2.0, ...)`), so each test is deterministic.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ferry.db.engine import upgrade
from ferry.domain.models import Migration
from ferry.domain.vocab import EventKind, WorkloadPattern
from ferry.service.host_queries import InlineQueries
from ferry.service.settings import GuestImage, Settings
from ferry.service.wiring import Services, build
from ferry.simulated import InlineExecutor, SimClock, SimCluster

HOSTS = ("node1", "node2", "node3")
SHARED = "/srv/shared"
LOCAL = "/srv/local"


class ControllerCrash(BaseException):
    """The controller process dies: raised from the clock, it unwinds every loop (they
    catch Exception only), and the test builds a new controller on the same state."""


def crash() -> None:
    raise ControllerCrash


class DeferredExecutor(Executor):
    """Workers that start only when the test says so (`run_next`): what is admitted,
    and in which order, can be looked at in between."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        self.waiting.append((fn, args))
        f: Future[Any] = Future()
        return f

    def run_next(self) -> None:
        fn, args = self.waiting.pop(0)
        fn(*args)


@dataclass
class SimEnv:
    clock: SimClock
    cluster: SimCluster
    svc: Services
    db_url: str
    settings: Settings
    others: list[Services] = field(default_factory=list)

    def at(self, t: float, fn: Callable[[], object]) -> None:
        """Do `fn` when the virtual clock reaches `t` seconds."""
        self.clock.call_at(t, fn)

    def in_job(self, t: float, fn: Callable[[], object], staged: bool = False) -> None:
        """Do `fn` `t` seconds after the next migration job starts transferring at its
        own rate (measuring the guest takes a while, before the job or while it is
        staged, so absolute times would land before it); `staged`: after it starts."""
        seen = len(self.cluster.jobs)

        def check() -> None:
            job = self.cluster.jobs[seen] if len(self.cluster.jobs) > seen else None
            if job is not None and (at := job.started_at if staged else job.released_at) \
                    is not None:
                self.at(max(at + t, self.clock.monotonic()), fn)
            else:
                self.at(self.clock.monotonic() + 0.05, check)

        self.at(self.clock.monotonic(), check)

    def vm(self, name: str = "web1", host: str = "node1", memory: int = 256, dirty: int = 0,
           wss: int = 32, disks: list[tuple[str, float]] | None = None,
           pattern: WorkloadPattern = WorkloadPattern.UNIFORM) -> str:
        self.svc.vms.create(name, host, memory, workload_dirty_mib_s=dirty,
                            workload_wss_mib=wss, disks=disks, workload_pattern=pattern)
        return name

    def migrate(self, vm: str, to: str, **kw: Any) -> Migration:
        """Start a migration; with the inline executor it has ended when this returns."""
        m = self.svc.migrations.start(vm, to, **kw)
        return self.svc.store.get(m.id)

    def kinds(self, m: Migration) -> list[EventKind]:
        return [e.kind for e in self.svc.store.get(m.id).events]

    def restart(self, executor: Executor | None = None) -> Services:
        """A new controller process on the same database and cluster."""
        svc = build(self.settings, self.cluster.connector, self.clock,
                    executor or InlineExecutor(), InlineQueries())
        self.others.append(svc)
        return svc


def make_env(tmp_path: Path, executor: Executor | None = None,
             cpu_models: dict[str, str] | None = None,
             registered: tuple[str, ...] = HOSTS, settings_kw: dict[str, Any] | None = None,
             **cluster_kw: Any) -> SimEnv:
    """Three hosts (Haswell unless `cpu_models` says otherwise), a shared directory
    registered as pool `shared` and each host's own directory as pool `local`."""
    clock = SimClock()
    cluster = SimCluster(clock, **cluster_kw)
    for name in HOSTS:
        cluster.add_host(name, cpu_model=(cpu_models or {}).get(name, "Haswell"))
    cluster.add_shared_dir(SHARED)
    url = f"sqlite:///{tmp_path / 'ferry.db'}"
    settings = Settings(db_url=url, token="t" * 32,
                        guest_image=GuestImage(kernel="/img/vmlinuz", initrd="/img/initrd"),
                        **(settings_kw or {}))
    svc = build(settings, cluster.connector, clock, executor or InlineExecutor(),
                InlineQueries())
    for name in registered:
        svc.hosts.add(name, cluster.host(name).uri)
    svc.pools.add("shared", "dir-shared", SHARED)
    svc.pools.add("local", "local", LOCAL)
    return SimEnv(clock, cluster, svc, url, settings)


@pytest.fixture(scope="session")
def schema_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database at the newest schema, made once and copied per test (Alembic's
    upgrade is most of a fresh controller's start-up)."""
    path = tmp_path_factory.mktemp("schema") / "ferry.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(autouse=True)
def _fresh_db(tmp_path: Path, schema_db: Path) -> None:
    shutil.copy(schema_db, tmp_path / "ferry.db")


@pytest.fixture
def env(tmp_path: Path) -> Iterator[SimEnv]:
    e = make_env(tmp_path)
    yield e
    for s in [e.svc, *e.others]:
        s.shutdown()
