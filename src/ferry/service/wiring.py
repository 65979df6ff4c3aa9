"""The object graph, built in one place: what `ferry serve` runs, what tests build.

Everything a use case needs is passed to it here, once; no module looks
anything up at run time.  The hypervisor driver, the clock and the worker
pool are parameters, so tests wire a simulated cluster, its virtual clock
and an inline executor into the very same services.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field

from ferry.clock import Clock, SystemClock
from ferry.hypervisor.base import Connector, Hypervisor
from ferry.migration.admission import Limits
from ferry.migration.pipeline import MigrationPipeline
from ferry.migration.requests import Timeouts
from ferry.service.connections import HostConnections
from ferry.service.cpu import CpuService
from ferry.service.cpu_verdicts import CpuVerdicts
from ferry.service.database import Database
from ferry.service.drain_plan import DrainPlanner
from ferry.service.drain_store import DrainStore
from ferry.service.drains import DrainService
from ferry.service.host_queries import HostQueries, ThreadedQueries
from ferry.service.hosts import HostService
from ferry.service.inventory import Inventory
from ferry.service.metrics import MetricsService
from ferry.service.migration_service import MigrationService
from ferry.service.migration_store import MigrationStore
from ferry.service.pools import PoolService
from ferry.service.secrets import SecretBox
from ferry.service.settings import Settings
from ferry.service.vms import VmService
from ferry.service.volumes import VolumeService

log = logging.getLogger("ferry.controller")
WORKERS = 16
CANCEL_POLL_S = 2.0  # a cancel asked through another controller reaches the job this fast
PAUSED_LOOK_S = 5.0  # a broken post-copy that QEMU finished by itself is recorded this fast


@dataclass
class Services:
    settings: Settings
    db: Database
    conns: HostConnections
    inventory: Inventory
    hosts: HostService
    pools: PoolService
    volumes: VolumeService
    vms: VmService
    cpu: CpuService
    migrations: MigrationService
    store: MigrationStore
    drains: DrainService
    executor: Executor
    metrics: MetricsService
    stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        """Recover unfinished migrations, then reconcile periodically."""
        self.migrations.recover()
        self.drains.recover()

        def reconcile() -> None:
            self.inventory.reconcile()
            self.migrations.dispatch()  # e.g. one another controller ended

        self._every(self.settings.reconcile_interval_s, "reconcile", reconcile,
                    "reconcile")
        self._every(CANCEL_POLL_S, "cancels", self.migrations.watch_cancels,
                    "looking for cancel requests")
        # more often than a full reconcile: a database query when nothing is paused
        self._every(PAUSED_LOOK_S, "paused", self.migrations.look_at_paused,
                    "looking at paused post-copies")

    def _every(self, period_s: float, name: str, step: Callable[[], None], what: str) -> None:
        """Run `step` every `period_s` in a thread of its own until shutdown; a failed
        round is logged ("`what` failed") and the next one tries again."""
        def loop() -> None:
            while not self.stopping.wait(period_s):
                try:
                    step()
                except Exception:
                    log.exception("%s failed", what)

        threading.Thread(target=loop, name=f"ferry-{name}", daemon=True).start()

    def shutdown(self) -> None:
        self.stopping.set()
        self.executor.shutdown(wait=False, cancel_futures=False)
        self.conns.close_all()
        self.db.dispose()


def rotate_secret_key(settings: Settings) -> int:
    """A new key seals every stored secret; the old keys are then dropped.  Run with
    the controller stopped (it holds the old keys).  Returns how many were re-sealed."""
    db = Database(settings.db_url)
    try:
        old = SecretBox(settings.secret_key_path())
        new = old.rotated()
        n = PoolService(db, HostConnections(_no_hosts), old).seal_stored_keys(new)
        new.drop_old_keys()
        return n
    finally:
        db.dispose()


def _no_hosts(uri: str) -> Hypervisor:
    raise RuntimeError(f"no host is reached while rotating keys ({uri})")


def build(settings: Settings, connector: Connector, clock: Clock | None = None,
          executor: Executor | None = None, queries: HostQueries | None = None) -> Services:
    """Real defaults: the system clock, a thread pool for migrations, hosts asked in
    parallel with a deadline.  Tests pass a virtual clock and inline versions."""
    clock = clock or SystemClock()
    executor = executor or ThreadPoolExecutor(max_workers=WORKERS,
                                              thread_name_prefix="ferry-job")
    db = Database(settings.db_url, settings.database_outage_s)
    box = SecretBox(settings.secret_key_path())
    conns = HostConnections(connector)
    verdicts = CpuVerdicts(conns)
    queries = queries or ThreadedQueries()
    inventory = Inventory(db, conns, verdicts, queries)
    pools = PoolService(db, conns, box)
    pools.seal_stored_keys()  # an older Ferry stored keys in clear
    volumes = VolumeService(db, conns, pools)
    hosts = HostService(db, conns, inventory, pools, verdicts)
    cpu = CpuService(db, conns, inventory)
    vms = VmService(db, conns, settings, inventory, pools, volumes, cpu)
    store = MigrationStore(db, clock, box)
    timeouts = Timeouts(settings.migration_timeout_per_gib_s, settings.migration_timeout_min_s,
                        settings.postcopy_auto_resume, settings.compress_streams)
    pipeline = MigrationPipeline(conns.get, store, clock, timeouts)
    limits = Limits(settings.migrations_per_source, settings.migrations_per_destination,
                    settings.migrations_per_cluster)
    migrations = MigrationService(store, pipeline, inventory, conns, hosts, vms, clock,
                                  executor, timeouts, limits)
    planner = DrainPlanner(db, conns, store, queries, clock, limits, timeouts)
    drains = DrainService(DrainStore(db, clock), planner, migrations, store, hosts, inventory,
                          clock, executor)
    return Services(settings, db, conns, inventory, hosts, pools, volumes, vms, cpu,
                    migrations, store, drains, executor, MetricsService(db))
