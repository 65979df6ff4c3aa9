"""Migrations as use cases: start (claim, then the pipeline), cancel, predict, recover.

One migration per VM at a time (409 otherwise).  `start` claims the
migration, runs the pipeline's prechecks and plan inside the request (a
refusal answers at once with its reason) and hands the job to a worker;
the VM is released when the pipeline is done, whatever happened.  After a
controller restart, `recover` hands every unfinished migration back to the
pipeline, which asks both hosts and records the true outcome.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor
from typing import Any

from ferry.clock import Clock
from ferry.domain.models import Migration
from ferry.domain.names import check_name
from ferry.domain.vocab import EventKind, OnTimeout, Policy
from ferry.errors import Conflict, InvalidRequest
from ferry.migration.measure import measure
from ferry.migration.pipeline import MigrationPipeline, Prepared, Request, Timeouts, Unfinished
from ferry.migration.planning import POSTCOPY_CAPABLE, timeout_s
from ferry.predict.dirty import MIB
from ferry.predict.inputs import build_inputs, describe
from ferry.predict.strategy import report
from ferry.service.connections import HostConnections
from ferry.service.hosts import HostService
from ferry.service.inventory import Inventory
from ferry.service.migration_store import MigrationStore
from ferry.service.vms import VmService


def _enum(kind: type[Policy] | type[OnTimeout], value: str, field: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InvalidRequest(f"{field} must be one of {', '.join(v.value for v in kind)}",
                             {"field": field}) from None


def _check_limits(bandwidth_mib_s: int | None, max_downtime_ms: int | None) -> None:
    if bandwidth_mib_s is not None and not 1 <= bandwidth_mib_s <= 100_000:
        raise InvalidRequest("bandwidth must be between 1 and 100000 MiB/s",
                             {"field": "bandwidth_mib_s"})
    if max_downtime_ms is not None and not 1 <= max_downtime_ms <= 60_000:
        raise InvalidRequest("max downtime must be between 1 and 60000 ms",
                             {"field": "max_downtime_ms"})


class MigrationService:
    def __init__(self, store: MigrationStore, pipeline: MigrationPipeline, inventory: Inventory,
                 conns: HostConnections, hosts: HostService, vms: VmService, clock: Clock,
                 executor: Executor, timeouts: Timeouts) -> None:
        self.store, self.pipeline, self.inventory = store, pipeline, inventory
        self.conns, self.hosts, self.vms = conns, hosts, vms
        self.clock, self.executor, self.timeouts = clock, executor, timeouts
        self._cancels: dict[int, threading.Event] = {}

    def start(self, vm: str, to: str, bandwidth_mib_s: int | None = None,
              max_downtime_ms: int | None = None, policy: Policy | str = Policy.AUTO,
              timeout_per_gib_s: float | None = None,
              on_timeout: OnTimeout | str = OnTimeout.ABORT) -> Migration:
        """Validate, claim, precheck and plan a migration, then run it in a worker;
        raise on refusal (the VM is released again)."""
        check_name("vm", vm)
        check_name("host", to)
        req = Request(vm, to, _enum(Policy, policy, "policy"), bandwidth_mib_s,
                      max_downtime_ms, timeout_per_gib_s, _enum(OnTimeout, on_timeout,
                                                                 "on_timeout"))
        if req.on_timeout == OnTimeout.FORCE and req.policy not in POSTCOPY_CAPABLE:
            raise InvalidRequest(f"--on-timeout force finishes with post-copy, which policy "
                                 f"{req.policy} does not enable: use auto or postcopy",
                                 {"field": "on_timeout"})
        if timeout_per_gib_s is not None and not 1 <= timeout_per_gib_s <= 86_400:
            raise InvalidRequest("timeout per GiB must be between 1 and 86400 s")
        _check_limits(bandwidth_mib_s, max_downtime_ms)
        self.inventory.reconcile()  # where the VM really is, right now
        claim = self.store.claim(req)
        try:
            prepared = self.pipeline.prepare(claim)
        except BaseException:
            self._release(vm)
            raise
        cancel = self._cancels[claim.id] = threading.Event()
        self.executor.submit(self._run, prepared, cancel)
        return self.store.get(claim.id)

    def _run(self, prepared: Prepared, cancel: threading.Event) -> None:
        try:
            self.pipeline.run(prepared, cancel)
        finally:
            self._cancels.pop(prepared.claim.id, None)
            self._release(prepared.claim.request.vm)

    def _release(self, vm: str) -> None:
        self.store.release(vm)
        self.inventory.reconcile()

    def cancel(self, mid: int) -> Migration:
        m = self.store.get(mid)
        if m.state.finished:
            raise Conflict(f"migration {mid} already {m.state}")
        ev = self._cancels.get(mid)
        if ev is None:
            raise Conflict(f"migration {mid} is not running in this controller")
        ev.set()
        self.store.recorder(mid).event(EventKind.CANCEL_REQUESTED,
                                       "cancel requested through the API")
        return self.store.get(mid)

    def recover(self) -> None:
        """Settle migrations left unfinished by an earlier controller process."""
        for u in self.store.unfinished():
            cancel = self._cancels[u.id] = threading.Event()
            self.executor.submit(self._resume, u, cancel)

    def _resume(self, u: Unfinished, cancel: threading.Event) -> None:
        try:
            self.pipeline.resume(u, cancel)
        finally:
            self._cancels.pop(u.id, None)
            self._release(u.vm)

    def predict(self, vm: str, to: str, bandwidth_mib_s: int | None = None,
                max_downtime_ms: int | None = None) -> dict[str, Any]:
        """`ferry predict`: measure the guest now, then predict every policy."""
        check_name("vm", vm)
        check_name("host", to)
        _check_limits(bandwidth_mib_s, max_downtime_ms)
        self.inventory.reconcile()
        v = self.vms.get(vm)
        dest = self.hosts.get(to)
        if v.host is None or v.host == to:
            raise InvalidRequest(f"VM {vm} runs on {v.host}: pick another destination")
        src = self.hosts.get(v.host)
        m = measure(self.conns.get(src.uri), vm, v.memory_mib, self.clock)
        h = self.store.history(vm, src.name, dest.name)
        timeout = timeout_s(v.memory_mib, 0, self.timeouts.per_gib_s, self.timeouts.min_s)
        inp, link_how = build_inputs(m, h, v.memory_mib, bandwidth_mib_s, max_downtime_ms,
                                     timeout)
        return {**report(inp), "vm": vm, "source": src.name, "destination": dest.name,
                "inputs": {**describe(m, h, v.memory_mib), "memory_mib": v.memory_mib,
                           "link_mib_s": round(inp.link.final_bytes_s / MIB, 1),
                           "link": link_how, "bandwidth_mib_s": bandwidth_mib_s,
                           "max_downtime_ms": round(inp.limit_s * 1000)}}
