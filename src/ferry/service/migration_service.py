"""Migrations as use cases: start (claim, precheck, queue), admit, cancel, predict,
recover.

One migration per VM at a time (409 otherwise).  `start` claims the
migration and runs the pipeline's prechecks inside the request (a refusal
answers at once with its reason), then queues it; `dispatch` starts queued
migrations, oldest first, as the concurrency limits admit them
(`migration/admission.py`), each in a worker; the VM is released when the
pipeline is done, whatever happened, and the queue is looked at again.
After a controller restart, `recover` hands every migration that was
running back to the pipeline, which asks both hosts and records the true
outcome, and starts the queue again.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

from ferry.clock import Clock
from ferry.domain.models import Migration, MigrationState
from ferry.domain.names import check_name
from ferry.domain.vocab import EventKind, OnTimeout, Policy
from ferry.errors import Conflict, DatabaseUnavailable, FerryError, InvalidRequest
from ferry.migration.admission import Limits, admit
from ferry.migration.figures import Final
from ferry.migration.measure import measure
from ferry.migration.pipeline import MigrationPipeline
from ferry.migration.planning import POSTCOPY_CAPABLE, timeout_s
from ferry.migration.prechecks import PrecheckResult
from ferry.migration.requests import Hooks, Request, Timeouts, Unfinished
from ferry.predict.dirty import MIB
from ferry.predict.inputs import (
    build_inputs,
    describe,
    input_spread,
    link_bytes_s,
    sources,
)
from ferry.predict.strategy import report
from ferry.service.connections import HostConnections
from ferry.service.hosts import HostService
from ferry.service.inventory import Inventory
from ferry.service.migration_store import MigrationStore
from ferry.service.vms import VmService

log = logging.getLogger("ferry.migrations")


def _enum(kind: type[Policy] | type[OnTimeout], value: str, field: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        raise InvalidRequest(f"{field} must be one of {', '.join(v.value for v in kind)}",
                             {"field": field}) from None


def check_limits(bandwidth_mib_s: int | None, max_downtime_ms: int | None,
                 link_mib_s: float | None = None) -> None:
    """The ranges a migration's (or a drain's) numbers must lie in."""
    if bandwidth_mib_s is not None and not 1 <= bandwidth_mib_s <= 100_000:
        raise InvalidRequest("bandwidth must be between 1 and 100000 MiB/s",
                             {"field": "bandwidth_mib_s"})
    if max_downtime_ms is not None and not 1 <= max_downtime_ms <= 60_000:
        raise InvalidRequest("max downtime must be between 1 and 60000 ms",
                             {"field": "max_downtime_ms"})
    if link_mib_s is not None and not 1 <= link_mib_s <= 100_000:
        raise InvalidRequest("link must be between 1 and 100000 MiB/s", {"field": "link_mib_s"})


class MigrationService:
    def __init__(self, store: MigrationStore, pipeline: MigrationPipeline, inventory: Inventory,
                 conns: HostConnections, hosts: HostService, vms: VmService, clock: Clock,
                 executor: Executor, timeouts: Timeouts, limits: Limits) -> None:
        self.store, self.pipeline, self.inventory = store, pipeline, inventory
        self.conns, self.hosts, self.vms = conns, hosts, vms
        self.clock, self.executor, self.timeouts, self.limits = clock, executor, timeouts, limits
        self._cancels: dict[int, threading.Event] = {}
        self._fresh: dict[int, PrecheckResult] = {}  # checked in the request, not yet run
        self._waiting_why: dict[int, str] = {}
        self._dispatching = threading.RLock()
        self._hooks: dict[int, Hooks] = {}

    def start(self, vm: str, to: str, bandwidth_mib_s: int | None = None,
              max_downtime_ms: int | None = None, policy: Policy | str = Policy.AUTO,
              timeout_per_gib_s: float | None = None,
              on_timeout: OnTimeout | str = OnTimeout.ABORT, link_mib_s: float | None = None,
              hooks: Hooks | None = None, tls: bool | None = None,
              compress: bool | None = None) -> Migration:
        """Validate, claim and precheck a migration (a refusal answers at once and
        releases the VM), then queue it: it starts as soon as the limits admit it.
        `link_mib_s`: the link's speed for the prediction (not a cap); `hooks`:
        see `MigrationPipeline.run` (kept in this process only); `tls`: None encrypts the
        stream where both hosts can, False moves it in clear, True refuses unless both
        can; `compress`: see `planning.compressed_inputs` (`auto` only)."""
        check_name("vm", vm)
        check_name("host", to)
        req = Request(vm, to, _enum(Policy, policy, "policy"), bandwidth_mib_s,
                      max_downtime_ms, timeout_per_gib_s, _enum(OnTimeout, on_timeout,
                                                                 "on_timeout"), link_mib_s,
                      tls, compress)
        if compress and req.policy != Policy.AUTO:
            raise InvalidRequest(f"--compress is for policy auto (which chooses it where "
                                 f"pre-copy alone finishes), not {req.policy}",
                                 {"field": "compress"})
        if req.on_timeout == OnTimeout.FORCE and req.policy not in POSTCOPY_CAPABLE:
            raise InvalidRequest(f"--on-timeout force finishes with post-copy, which policy "
                                 f"{req.policy} does not enable: use auto or postcopy",
                                 {"field": "on_timeout"})
        if timeout_per_gib_s is not None and not 1 <= timeout_per_gib_s <= 86_400:
            raise InvalidRequest("timeout per GiB must be between 1 and 86400 s")
        check_limits(bandwidth_mib_s, max_downtime_ms, link_mib_s)
        self.inventory.locate(vm)  # where the VM really is, right now
        claim = self.store.claim(req)
        cancel = self._cancels[claim.id] = threading.Event()
        if hooks is not None:
            self._hooks[claim.id] = hooks
        try:
            checked = self.pipeline.precheck(claim)
        except DatabaseUnavailable:
            self._cancels.pop(claim.id, None)
            self._hooks.pop(claim.id, None)
            self.executor.submit(self._abandon, claim.id, vm)  # once the database is back
            raise
        except BaseException:
            self._cancels.pop(claim.id, None)
            self._hooks.pop(claim.id, None)
            self._release(vm)
            raise
        if cancel.is_set():  # cancelled while its prechecks ran
            self._end_before_start(claim.id, vm, "while its prechecks ran")
            return self.store.get(claim.id)
        self.store.transition(claim.id, MigrationState.QUEUED)
        self._fresh[claim.id] = checked
        self.dispatch()
        self._fresh.pop(claim.id, None)  # still waiting: checked again when admitted
        return self.store.get(claim.id)

    def dispatch(self) -> None:
        """Start every queued migration the limits admit now, oldest first; say once
        why each of the others waits."""
        with self._dispatching:
            # a running job whose source has sent everything no longer counts (libvirt
            # finishes it, ~1.7 s on the lab: the link is free); a broken post-copy does
            busy = (self.store.moves(MigrationState.RUNNING, sending=True)
                    + self.store.moves(MigrationState.POSTCOPY_PAUSED))  # both QEMUs still up
            admitted, why = admit(self.store.moves(MigrationState.QUEUED), busy, self.limits)
            for mid in admitted:
                if not self.store.admitted(mid):
                    continue  # cancelled (or taken by another controller) meanwhile
                self._waiting_why.pop(mid, None)
                self.store.recorder(mid).event(EventKind.ADMITTED, "admitted: starting")
                cancel = self._cancels.setdefault(mid, threading.Event())
                self.executor.submit(self._run, mid, cancel, self._fresh.pop(mid, None))
            for mid, reason in why.items():
                if self._waiting_why.get(mid) != reason:
                    self._waiting_why[mid] = reason
                    self.store.recorder(mid).event(EventKind.QUEUED, f"waiting: {reason}")

    def _run(self, mid: int, cancel: threading.Event, checked: PrecheckResult | None) -> None:
        claim = self.store.claim_of(mid)
        hooks = self._hooks.get(mid) or Hooks()
        heard = hooks.sent

        def sent() -> None:  # its slot is free: what waits may start
            self.dispatch()
            if heard is not None:
                heard()
        try:
            self.pipeline.run(claim, cancel, checked, replace(hooks, sent=sent))
        finally:
            self._cancels.pop(mid, None)
            self._hooks.pop(mid, None)
            self._release(claim.request.vm, dispatch=True)

    def _release(self, vm: str, dispatch: bool = False) -> None:
        """Free the VM, start what waited for this slot (`dispatch`: before reading
        every host again, which waits on busy hosts for seconds), then reconcile."""
        self.store.release(vm)
        if dispatch:
            self.dispatch()
        try:
            self.inventory.reconcile()
        except FerryError as exc:  # e.g. the database went away again: the loop retries
            log.warning("reconcile after a migration failed: %s", exc.message)

    def _abandon(self, mid: int, vm: str) -> None:
        """The database went away during a request's prechecks: end the migration (no
        job was started) and free the VM when it answers again."""
        self.store.finish(mid, Final(MigrationState.FAILED, error=(
            "the database stopped answering during the prechecks; nothing was started")))
        self._release(vm)

    def _end_before_start(self, mid: int, vm: str, when: str) -> None:
        if self.store.finish(mid, Final(MigrationState.CANCELLED,
                                        error=f"cancelled {when}; nothing was started")):
            self.store.recorder(mid).event(EventKind.CANCEL, f"cancelled {when}")
        self._cancels.pop(mid, None)
        self._hooks.pop(mid, None)
        self._waiting_why.pop(mid, None)
        self._release(vm)

    def cancel(self, mid: int) -> Migration:
        """Cancel in any phase: a queued migration ends at once (no job was started),
        one in its prechecks or plan before its job starts, a running job is aborted
        (the VM stays on the source).  The request is stored: the controller running
        the job acts on it even if it is not this one.  After a post-copy switch the
        job cannot be aborted: libvirt refuses, and the event says so."""
        m = self.store.get(mid)
        if m.state.finished:
            raise Conflict(f"migration {mid} already {m.state}")
        if m.state == MigrationState.POSTCOPY_PAUSED:
            raise Conflict(f"migration {mid} broke in post-copy: the guest runs on "
                           f"{m.destination} already and cannot go back; recover it with "
                           f"`ferry migration recover {mid}`")
        self.store.recorder(mid).event(EventKind.CANCEL_REQUESTED,
                                       "cancel requested through the API")
        if m.state == MigrationState.QUEUED and self.store.finish(
                mid, Final(MigrationState.CANCELLED,
                           error="cancelled while queued; nothing was started")):
            self.store.recorder(mid).event(EventKind.CANCEL, "cancelled while queued")
            self._cancels.pop(mid, None)
            self._waiting_why.pop(mid, None)
            self._release(m.vm)
            self.dispatch()
            return self.store.get(mid)
        self.store.request_cancel(mid)  # the controller running it may be another one
        ev = self._cancels.get(mid)
        if ev is not None:
            ev.set()
        return self.store.get(mid)

    def watch_cancels(self) -> None:
        """Act on cancels stored through another controller (or before a restart):
        each job this controller runs and somebody asked to cancel is told now.
        Run from a background loop every `CANCEL_POLL_S`."""
        for mid in self.store.cancels_asked():
            ev = self._cancels.get(mid)
            if ev is not None and not ev.is_set():
                self.store.recorder(mid).event(EventKind.CANCEL_REQUESTED,
                                               "cancel stored by another controller: acting")
                ev.set()

    def resume_postcopy(self, mid: int) -> Migration:
        """`ferry migration recover ID`: try to resume a post-copy that broke, now (its
        worker wakes up; after a restart or once it gave up, a new one starts)."""
        m = self.store.get(mid)
        if m.state != MigrationState.POSTCOPY_PAUSED:
            raise Conflict(f"migration {mid} is {m.state}, not postcopy-paused: nothing to "
                           "recover")
        self.store.recorder(mid).event(EventKind.RECOVERING,
                                       "resuming the post-copy requested through the API")
        wake = self._cancels.get(mid)
        if wake is not None:
            wake.set()  # the worker's pause between attempts ends now
        else:
            u = next((u for u in self.store.unfinished() if u.id == mid), None)
            if u is not None:
                self._cancels[mid] = threading.Event()
                self._cancels[mid].set()  # the first attempt at once
                self.executor.submit(self._resume, u, self._cancels[mid])
        return self.store.get(mid)

    def look_at_paused(self) -> None:
        """A paused post-copy nobody is working on may have ended without us (QEMU
        resumes by itself when its connection survived): settle it when the hosts
        say so.  Run from the background loop."""
        for u in self.store.unfinished():
            if u.state != MigrationState.POSTCOPY_PAUSED or u.id in self._cancels:
                continue
            if not self.pipeline.still_paused(u):
                self._cancels[u.id] = threading.Event()
                self.executor.submit(self._resume, u, self._cancels[u.id],
                                     "the hosts no longer show the post-copy paused")

    def recover(self) -> None:
        """After a restart: settle what an earlier process was doing, then start what
        waits in the queue."""
        for u in self.store.unfinished():
            cancel = self._cancels[u.id] = threading.Event()
            self.executor.submit(self._resume, u, cancel)
        self.dispatch()

    def _resume(self, u: Unfinished, cancel: threading.Event,
                why: str = "controller restarted; asking both hosts") -> None:
        try:
            self.pipeline.resume(u, cancel, why)
        finally:
            self._cancels.pop(u.id, None)
            self._release(u.vm, dispatch=True)

    def predict(self, vm: str, to: str, bandwidth_mib_s: int | None = None,
                max_downtime_ms: int | None = None) -> dict[str, Any]:
        """`ferry predict`: measure the guest now, then predict every policy."""
        check_name("vm", vm)
        check_name("host", to)
        check_limits(bandwidth_mib_s, max_downtime_ms)
        self.inventory.reconcile()
        v = self.vms.get(vm)
        dest = self.hosts.get(to)
        if v.host is None or v.host == to:
            raise InvalidRequest(f"VM {vm} runs on {v.host}: pick another destination")
        src = self.hosts.get(v.host)
        h = self.store.history(vm, src.name, dest.name,
                               encrypted=src.migration_tls and dest.migration_tls)
        m = measure(self.conns.get(src.uri), vm, v.memory_mib, self.clock,
                    bandwidth_bytes_s=link_bytes_s(h, bandwidth_mib_s)[0])
        timeout = timeout_s(v.memory_mib, 0, self.timeouts.per_gib_s, self.timeouts.min_s)
        inp, link_how = build_inputs(m, h, v.memory_mib, bandwidth_mib_s, max_downtime_ms,
                                     timeout)
        return {**report(inp, input_spread(m, h, v.memory_mib, inp)), "vm": vm,
                "source": src.name, "destination": dest.name,
                "sources": sources(m, h, bandwidth_mib_s),
                "inputs": {**describe(m, h, v.memory_mib), "memory_mib": v.memory_mib,
                           "link_mib_s": round(inp.link.final_bytes_s / MIB, 1),
                           "link": link_how, "bandwidth_mib_s": bandwidth_mib_s,
                           "max_downtime_ms": round(inp.limit_s * 1000)}}
