"""Draining a host: plan, run, cancel, resume after a restart, and end maintenance.

`plan` (dry run) places every VM of the host, measures them all at once,
predicts each move and schedules them (`drain/schedule.py`).  `start` puts
the host in maintenance, stores the plan and hands it to a runner, which
every TICK_S looks at its moves' migrations and starts the moves the same
schedule says start now, given what runs and what remains of it (so the
plan is re-made as moves end early or late, and the ETA with it).  Moves are
ordinary migrations: admitted under the concurrency limits, prechecked
again, measured, recorded.  A move that fails is tried once more on another
destination, then reported with its reason while the rest go on.  The
drain's state is in the database: after a controller restart `recover`
hands every unfinished drain to a new runner, which finds its migrations
where the restarted controller left them.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Executor
from dataclasses import replace
from datetime import datetime
from typing import Any

from ferry.clock import Clock
from ferry.domain.models import Migration
from ferry.domain.names import check_name
from ferry.drain.model import Model, MoveSpec, quiet
from ferry.drain.placement import Candidate, Placement
from ferry.drain.schedule import Active, Limits
from ferry.errors import Conflict, FerryError, InvalidRequest
from ferry.predict.inputs import Measurement
from ferry.service.drain_gate import LinkGate
from ferry.service.drain_moves import DrainMoves
from ferry.service.drain_plan import (
    DrainPlanner,
    DrainRequest,
    model_of,
    plan_dict,
    spec_dict,
    spec_of,
    streams_seen,
)
from ferry.service.drain_store import DrainStore, aware
from ferry.service.hosts import HostService
from ferry.service.inventory import Inventory
from ferry.service.migration_service import MigrationService, check_limits
from ferry.service.migration_store import MigrationStore

log = logging.getLogger("ferry.drains")
TICK_S = 1.0
NAP_S = 0.1  # how soon a runner hears that one of its migrations ended
MEASURING = "measuring"  # a planning drain's move whose guest is not measured yet
# what a move's run has told (kept when a plan is made around a move under way)
RUNTIME = ("state", "migration", "migrations", "tried", "error", "to", "started_at",
           "total_ms", "downtime_ms", "reached_bytes_s", "cancel_sent")


def early_slots(spec: MoveSpec, moving: list[MoveSpec], limits: Limits,
                max_parallel: int) -> bool:
    """May `spec` start while its drain is still planning, beside `moving`: within the
    admission limits (per source, capped by the drain's `max_parallel`; per
    destination; cluster-wide), which would otherwise refuse the migration."""
    return (sum(o.source == spec.source for o in moving) < min(limits.per_source, max_parallel)
            and sum(o.destination == spec.destination for o in moving) < limits.per_destination
            and len(moving) < limits.cluster)


def _check(req: DrainRequest) -> None:
    check_name("host", req.host)
    for h in req.to:
        check_name("host", h)
    if not 1 <= req.max_parallel <= 64:
        raise InvalidRequest("max parallel must be between 1 and 64",
                             {"field": "max_parallel"})
    check_limits(None, req.max_downtime_ms, req.link_mib_s)


class DrainService:
    def __init__(self, drains: DrainStore, planner: DrainPlanner, migrations: MigrationService,
                 store: MigrationStore, hosts: HostService, inventory: Inventory,
                 clock: Clock, executor: Executor) -> None:
        self.drains, self.planner, self.migrations = drains, planner, migrations
        self.store, self.hosts, self.inventory = store, hosts, inventory
        self.clock, self.executor = clock, executor
        self._running: set[int] = set()
        self._woken: set[int] = set()  # drains one of whose migrations has just ended
        self._lock = threading.Lock()
        self.gate = LinkGate(drains, store, clock)
        self.moves = DrainMoves(drains, planner, migrations, store, hosts, self.gate, clock,
                                self.choose, self._woken.add)

    # -- planning --------------------------------------------------------------
    def _place(self, req: DrainRequest, vms: list[str] | None
               ) -> tuple[list[Candidate], Placement, dict[str, str]]:
        _check(req)
        self.hosts.get(req.host)
        for h in req.to:
            self.hosts.get(h)
        self.inventory.reconcile()
        cands, targets, uris = self.planner.candidates(vms, None if vms else req.host)
        to = (req.host,) if vms is not None else req.to
        return cands, self.planner.place(cands, targets, to), uris

    def plan(self, req: DrainRequest, vms: list[str] | None = None) -> dict[str, Any]:
        """Where every VM goes, in which order, how many at once, and the ETA; nothing
        moves.  `vms`: move these to `req.host` instead (a return)."""
        cands, placement, uris = self._place(req, vms)
        specs, model, unmeasured = self.planner.specs(cands, placement, uris, req.link_mib_s,
                                                      req.max_downtime_ms, tls=req.tls,
                                                      compress=req.compress)
        sched = self.planner.schedule(specs, model, req.max_parallel)
        return plan_dict(req.host, sched, specs, model, {**placement.blocked, **unmeasured},
                         req.max_parallel)

    def choose(self, vm: str, to: tuple[str, ...] = ()) -> str:
        """`ferry migrate VM` without `--to`: the drain's placement for one VM."""
        check_name("vm", vm)
        for h in to:
            check_name("host", h)
        self.inventory.locate(vm)
        cands, targets, _ = self.planner.candidates([vm])
        if not cands:
            raise InvalidRequest(f"no VM named {vm!r}")
        p = self.planner.place(cands, targets, to)
        if vm not in p.to:
            raise Conflict(f"VM {vm} has nowhere to go: {p.blocked[vm]}", {"reason":
                                                                          p.blocked[vm]})
        return p.to[vm]

    def migrate(self, vm: str, to: str | None, **kw: Any) -> Migration:
        """`ferry migrate VM [--to H | --to H2,H3]`: one host named goes there; none or
        several: placement chooses (among those named)."""
        hosts = tuple(h for h in (to or "").split(",") if h)
        dest = hosts[0] if len(hosts) == 1 else self.choose(vm, hosts)
        return self.migrations.start(vm, dest, **kw)

    # -- running -----------------------------------------------------------------
    def start(self, req: DrainRequest, vms: list[str] | None = None) -> dict[str, Any]:
        """Place every VM, record the drain (`planning`; the host in maintenance unless
        it is a return), measure the guests and store the plan (`_finish_plan`: the
        first quiet guest moves while the others are measured), then run it."""
        cands, placement, _uris = self._place(req, vms)
        request = {"to": list(req.to), "max_parallel": req.max_parallel,
                   "link_mib_s": req.link_mib_s, "max_downtime_ms": req.max_downtime_ms,
                   "return": vms is not None, "tls": req.tls, "compress": req.compress}
        source = {c.vm: str(c.host) for c in cands}
        moves: list[dict[str, Any]] = [
            {"vm": vm, "to": to, "source": source[vm], "order": i, "state": MEASURING,
             "migration": None, "migrations": [], "tried": [], "error": ""}
            for i, (vm, to) in enumerate(placement.to.items())]
        did = self.drains.create(req.host, request, moves,
                                 [{"vm": v, "reason": r}
                                  for v, r in sorted(placement.blocked.items())], None)
        self._finish_plan(did, early=True)
        self._submit(did)
        return self.drains.get(did)

    def _finish_plan(self, did: int, early: bool) -> None:
        """Measure the drain's guests still `measuring` (all at once), schedule them
        after what already runs, and store the plan with the ETA.

        With `early`, each guest whose measurement shows it quiet (`quiet` at its
        share of the link with every slot busy: it converges whatever shares) starts
        moving at once, with that measurement, while the drain's slots allow
        (`early_slots`), instead of waiting for the slowest guest's (~6-8 s for six
        guests on the lab): their transfers overlap the others' measurement.
        Without it (a restart cut the planning short), the plan is only finished."""
        d = self.drains.get(did)
        req = d["request"]
        by_vm = {m["vm"]: m for m in d["moves"]}
        waiting = [m for m in d["moves"] if m["state"] == MEASURING]
        cands, _targets, uris = self.planner.candidates([m["vm"] for m in waiting])
        lock = threading.Lock()
        gate = {"open": early}  # closed once the plan is made (a late answer starts nothing)
        started: list[MoveSpec] = []
        running = [spec_of(m, d["host"]) for m in d["moves"]
                   if m["state"] in ("pending", "running") and "model" in m]

        quiet_waiting: list[tuple[MoveSpec, float, Measurement]] = []

        def moving(sp: MoveSpec) -> bool:
            """Does this early move still hold its slot (not ended, not all sent)?"""
            mid = by_vm[sp.vm].get("migration")
            if mid is None:
                return True
            return not self.store.get(int(mid)).off_link

        def start_if_quiet(spec: MoveSpec, link: float, m: Measurement) -> None:
            """Start `spec` if it is quiet and a slot is free, and any quiet guest
            measured earlier that found none (an early move may have ended since: lab,
            a quiet guest waited 5 s for the plan with the link idle)."""
            with lock:
                slots = min(self.planner.limits.per_source, req["max_parallel"])
                if quiet(spec.guest, link / slots):
                    quiet_waiting.append((spec, link, m))
                for item in list(quiet_waiting):
                    if start_early(*item):
                        quiet_waiting.remove(item)

        def start_early(spec: MoveSpec, link: float, m: Measurement) -> bool:
            if not gate["open"] or self.drains.cancel_requested(did) or not early_slots(
                    spec, [*running, *(s for s in started if moving(s))],
                    self.planner.limits, req["max_parallel"]):
                return False
            started.append(spec)
            mv = by_vm[spec.vm]
            mv.update(state="pending",
                      model=spec_dict(spec, Model({spec.source: link,
                                                   spec.destination: link})))
            self.planner.measured[spec.vm] = (m, self.clock.monotonic())
            self.drains.event(did, "early", f"{spec.vm} is quiet: it moves while the "
                              "others are measured")
            self.moves.start(mv, d)
            self.drains.save(did, d["moves"], None)
            return True

        specs, model, unmeasured = self.planner.specs(
            cands, Placement({m["vm"]: m["to"] for m in waiting}, {}), uris,
            req.get("link_mib_s"), req.get("max_downtime_ms"), start_if_quiet, req.get("tls"),
            req.get("compress"))
        with lock:
            gate["open"] = False
        early_vms = {sp.vm for sp in started}
        for vm in early_vms:  # its measurement went with its move: not for a later one
            self.planner.measured.pop(vm, None)
        specs += [spec_of(m, d["host"]) for m in d["moves"]
                  if m["state"] != MEASURING and m["vm"] not in early_vms]
        now = (self.clock.now() - datetime.fromisoformat(d["started_at"])).total_seconds()
        active: list[Active] = []
        pending: list[MoveSpec] = []
        settled: list[MoveSpec] = []
        for sp in specs:
            mv = by_vm[sp.vm]
            if mv["state"] == "running":
                active.append(self.moves.active({**mv, "model": spec_dict(sp, model)},
                                           d["host"], now))
            elif mv["state"] in (MEASURING, "pending"):
                pending.append(replace(sp, destination=mv["to"]))  # a retry may move it
            else:
                settled.append(sp)
        sched = self.planner.best_from(pending, model, req["max_parallel"], active, now)
        planned = plan_dict(d["host"], sched, specs, model, {}, req["max_parallel"])
        moves: list[dict[str, Any]] = []
        for pm in planned["moves"]:
            old = by_vm[pm["vm"]]
            mv = {**pm, "state": "pending", "migration": None, "migrations": [], "tried": [],
                  "error": ""}
            if old["state"] != MEASURING:
                mv.update({k: old[k] for k in RUNTIME if k in old})
            moves.append(mv)
        moves += [{**by_vm[sp.vm], "model": spec_dict(sp, model)} for sp in settled]
        blocked = [*d["blocked"], *({"vm": v, "reason": r} for v, r in sorted(unmeasured.items()))]
        self.drains.planned(did, moves, blocked, round(sched.eta_s * 1000),
                            round((now + sched.eta_s) * 1000), sched.transfers)

    def _submit(self, did: int) -> None:
        with self._lock:
            if did in self._running:
                return
            self._running.add(did)
        self.executor.submit(self._drive, did)

    def recover(self) -> None:
        """After a restart: every unfinished drain gets a runner again."""
        for did in self.drains.unfinished():
            self._submit(did)

    def cancel(self, did: int) -> dict[str, Any]:
        """Queued moves do not start; running ones are cancelled (their VMs stay on the
        source); the drain ends `cancelled` once none runs.  The host stays in
        maintenance until `ferry host activate`."""
        self.drains.request_cancel(did)
        self.drains.event(did, "cancel", "cancel requested: queued moves stop, running "
                          "ones are cancelled")
        d = self.drains.get(did)
        since = datetime.fromisoformat(d["started_at"])
        for m in d["moves"]:  # at once, not at the runner's next look; a move being
            if m["state"] not in ("pending", "running", MEASURING):  # started has no id
                continue  # stored yet (nor the quiet one moving while a plan is made)
            for mig in self.store.list_migrations(m["vm"], 5):
                if mig.state.finished or (mig.created_at and aware(mig.created_at) < since):
                    continue
                try:
                    self.migrations.cancel(mig.id)
                except FerryError as exc:  # finished meanwhile, or past its switch
                    log.info("drain %s: migration %s not cancelled: %s", did, mig.id,
                             exc.message)
        return d

    def _drive(self, did: int) -> None:
        try:
            while not self._tick(did):
                self._nap(did)
        except Exception as exc:  # never leave a drain running because of a bug
            log.exception("drain %s failed", did)
            d = self.drains.get(did)
            self.drains.save(did, d["moves"], None, "failed", f"internal error: {exc}")
        finally:
            with self._lock:
                self._running.discard(did)

    def _nap(self, did: int) -> None:
        """Until the next look: TICK_S, or less once one of the drain's migrations has
        ended (its slot is free: the next move starts now, not up to a tick later)."""
        waited = 0.0
        while waited < TICK_S and did not in self._woken:
            self.clock.sleep(NAP_S)
            waited += NAP_S
        self._woken.discard(did)

    def _tick(self, did: int) -> bool:
        """One look: follow moves, retry or report failures, start what the schedule
        says starts now, update the ETA.  True once the drain has ended."""
        d = self.drains.get(did)
        moves: list[dict[str, Any]] = d["moves"]
        if any(m["state"] == MEASURING for m in moves):
            self._finish_plan(did, early=False)  # a restart cut its planning short
            return False
        cancelling = self.drains.cancel_requested(did)
        for m in moves:
            if m["state"] == "running":
                self.moves.follow(m, d, cancelling)
        if cancelling:
            for m in moves:
                if m["state"] == "pending":
                    m["state"], m["error"] = "cancelled", "drain cancelled before it started"
            if not any(m["state"] == "running" for m in moves):
                self.drains.save(did, moves, 0, "cancelled")
                self.drains.event(did, "ended", "cancelled")
                return True
            self.drains.save(did, moves, d["eta_ms"], "cancelling")
            return False
        pending = [m for m in moves if m["state"] == "pending"]
        running = [m for m in moves if m["state"] == "running"]
        if not pending and not running:
            ok = all(m["state"] == "completed" for m in moves)
            self.drains.save(did, moves, 0, "completed" if ok else "failed",
                             "" if ok else "some VMs did not move: see each move's error")
            self.drains.event(did, "ended", "every move completed" if ok else
                              f"{sum(m['state'] != 'completed' for m in moves)} moves did "
                              "not complete")
            return True
        starts, eta = self._schedule(d, pending, running)
        for m in starts:
            if self.drains.cancel_requested(did):
                break  # the next look cancels the rest
            self.moves.start(m, d)
        self.drains.save(did, moves, eta)
        return False

    def _schedule(self, d: dict[str, Any], pending: list[dict[str, Any]],
                  running: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
        """Which pending moves start now, and the ETA, from the same schedule as the
        plan, fed with what is running and what remains of it."""
        now = self.clock.monotonic()
        active = [self.moves.active(m, d["host"], now) for m in running]
        specs = [spec_of(m, d["host"]) for m in sorted(pending, key=lambda m: m["order"])]
        model = model_of([*pending, *running], d["host"], d["request"].get("link_mib_s"),
                         streams_seen(d["moves"], d["host"]))
        sched = self.planner.schedule_from(specs, model, d["request"]["max_parallel"],
                                           active, now, d["request"].get("transfers"))
        # a move may prepare one preparation early: its job waits at the gate anyway
        early = {m["vm"]: float(m["model"]["overhead_s"]) for m in pending}
        start_now = {s.vm for s in sched.slots
                     if s.vm in early and s.start_s <= now + early[s.vm]}
        return ([m for m in pending if m["vm"] in start_now],
                round(sched.eta_s * 1000))

    # -- maintenance -------------------------------------------------------------
    def activate(self, host: str, back: bool = False, max_parallel: int = 2
                 ) -> dict[str, Any]:
        """End maintenance; with `back`, move the VMs the last drain moved away (those
        still where it put them) back, as a drain of their own."""
        check_name("host", host)
        self.hosts.get(host)
        if any(d["host"] == host and d["state"] in ("running", "cancelling")
               and not d["request"].get("return") for d in self.drains.all()):
            raise Conflict(f"host {host} is being drained: cancel the drain first")
        self.drains.set_maintenance(host, False)
        out: dict[str, Any] = {"host": host, "state": self.hosts.get(host).state.value,
                               "return": None}
        if back:
            last = self.drains.last_of(host)
            vms = [m["vm"] for m in (last["moves"] if last else [])
                   if m["state"] == "completed"]
            self.inventory.reconcile()
            where = {v.name: v.host for v in self.migrations.vms.list_vms()}
            vms = [v for v in vms if v in where and where[v] != host]
            if vms:
                asked = (last or {}).get("request", {})
                req = DrainRequest(host, max_parallel=max_parallel,
                                   link_mib_s=asked.get("link_mib_s"), tls=asked.get("tls"),
                                   compress=asked.get("compress"))
                out["return"] = self.start(req, vms)
        return out
