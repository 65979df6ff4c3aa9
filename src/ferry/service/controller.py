"""The controller: settings, database, host connections, workers, reconciler.

One `Controller` per `ferry serve` process.  Use cases (hosts, vms,
migrations) are functions that take it; they hold no state of their own.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session

from ferry.db.engine import make_engine, session_factory, upgrade
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.libvirt_driver import LibvirtHost
from ferry.hypervisor.types import CpuVerdict
from ferry.service.settings import Settings

log = logging.getLogger("ferry.controller")


class Controller:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        upgrade(settings.db_url)
        self.engine = make_engine(settings.db_url)
        self._sessions = session_factory(self.engine)
        self._conns: dict[str, LibvirtHost] = {}
        self._conns_lock = threading.Lock()
        self.workers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ferry-job")
        self.cancel_events: dict[int, threading.Event] = {}
        self.migration_lock = threading.Lock()  # check-then-insert of one migration per VM
        self.stopping = threading.Event()
        self._reconciler: threading.Thread | None = None
        self._cpu_cache: dict[tuple[str, str, str], CpuVerdict] = {}

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed on success, rolled back on error."""
        s = self._sessions()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    def host(self, uri: str) -> LibvirtHost:
        """A shared, lazily (re)connected handle to the host at `uri`."""
        with self._conns_lock:
            h = self._conns.get(uri)
            if h is None:
                h = self._conns[uri] = LibvirtHost(uri)
            return h

    def cpu_verdict(self, host_name: str, uri: str, cpu_xml: str,
                    virt_type: str) -> CpuVerdict | None:
        """compareHypervisorCPU of `cpu_xml` on a host, cached per (host, CPU):
        the answer only changes when the host's hypervisor does (refresh clears it)."""
        key = (host_name, hashlib.sha256(cpu_xml.encode()).hexdigest(), virt_type)
        if key in self._cpu_cache:
            return self._cpu_cache[key]
        try:
            verdict = self.host(uri).compare_cpu(cpu_xml, virt_type)
        except HypervisorError:
            return None
        self._cpu_cache[key] = verdict
        return verdict

    def forget_cpu_verdicts(self, host_name: str | None = None) -> None:
        for key in [k for k in self._cpu_cache if host_name in (None, k[0])]:
            del self._cpu_cache[key]

    def start(self) -> None:
        """Recover unfinished migrations, then reconcile periodically."""
        from ferry.service import hosts, migrations

        migrations.recover(self)

        def loop() -> None:
            while not self.stopping.wait(self.settings.reconcile_interval_s):
                try:
                    hosts.reconcile(self)
                except Exception:  # keep the loop alive; the next round retries
                    log.exception("reconcile failed")

        self._reconciler = threading.Thread(target=loop, name="ferry-reconcile", daemon=True)
        self._reconciler.start()

    def shutdown(self) -> None:
        self.stopping.set()
        self.workers.shutdown(wait=False, cancel_futures=False)
        with self._conns_lock:
            for h in self._conns.values():
                h.close()
            self._conns.clear()
        self.engine.dispose()
