"""A drain's plan from what the controller knows: placement over the inventory, each
guest measured (all at once, in parallel), each move predicted, then scheduled.

The plan is a list of moves in the order they start, each with its
destination, its model inputs (so the runner re-plans from the same figures
after a restart) and its prediction; the VMs that cannot move, with why.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select

from ferry.clock import Clock
from ferry.db.models import HostRow, PoolRow, VmRow, VolumeRow
from ferry.domain.models import HostState
from ferry.domain.vocab import Policy
from ferry.drain.model import DEFAULT_FINISH_S, Model, MoveSpec
from ferry.drain.placement import Candidate, Disk, Placement, Target, place
from ferry.drain.schedule import Active, Limits, Schedule, best_plan, plan
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import PageSample
from ferry.migration.measure import measure, read_pages
from ferry.migration.planning import compressed_inputs, timeout_s
from ferry.migration.requests import Timeouts
from ferry.predict.dirty import MIB, DirtyCurve
from ferry.predict.inputs import (
    ASSUMED_LINK_MIB_S,
    History,
    Measurement,
    build_inputs,
    link_bytes_s,
)
from ferry.predict.load import streams_together
from ferry.predict.precopy import Guest
from ferry.service import convert
from ferry.service.connections import HostConnections
from ferry.service.database import Database
from ferry.service.host_queries import HostQueries
from ferry.service.migration_store import MigrationStore

MEASURE_WITHIN_S = 30.0
# a guest's move in the model's terms, its link's rate, and its measurement
OnMeasured = Callable[[MoveSpec, float, Measurement], None]
PRECHECK_AND_START_S = 1.5  # prechecks, libvirt's p2p start (lab: ~1-1.5 s)
# guests measured at once (a host of many VMs is not measured all at once).  On the
# lab's two CPUs six at once read TCG dirtiers at a third to a half of their rate
# (mixed mix: the plan's ETA 31-40 % short); two at a time read one of them right
# but the plan then came 8 s later with the link idle for 5 s, and the ETA was
# still 19-28 % short (two runs): all six at once is kept there.  (Measured with the
# lab's 10 ms guest tick, which alone filled its CPUs; with the 20 ms tick six at
# once read a 64 MiB/s guest at 18 MiB/s, a 40 MiB/s one right: docs/lab.md.  Those
# runs read each guest's pages while its windows ran: see `specs`)
MEASURE_AT_ONCE = 8
MEASURE_EACH_S = 6.0  # one guest's measurement before a move: at most ~5 s
REUSE_FOR_S = 300.0  # a plan's measurement stands for the guest this long


@dataclass(frozen=True)
class DrainRequest:
    host: str
    to: tuple[str, ...] = ()
    max_parallel: int = 2
    link_mib_s: float | None = None  # the source's link, when history does not know it
    max_downtime_ms: int | None = None
    tls: bool | None = None  # None: encrypted where both hosts can; False: in clear
    compress: bool | None = None  # None: where it pays (planning.compressed_inputs)


def spec_dict(m: MoveSpec, model: Model) -> dict[str, Any]:
    g = m.guest
    stream = model.streams.get(m.source)
    together = model.together_bytes_s.get(m.source)
    return {"link_bytes_s": round(model.link(m.source)),
            "stream_bytes_s": None if stream is None else round(stream),
            "together_bytes_s": None if together is None else round(together),
            "memory_mib": m.memory_mib,
            "nonzero_bytes": round(g.nonzero_bytes),
            "nonzero_profile": [round(x, 3) for x in g.profile],
            "dirty_bytes_s": round(g.curve.rate_bytes_s),
            "wss_bytes": None if g.curve.wss_bytes == float("inf") else round(g.curve.wss_bytes),
            "cold_bytes_s": round(g.curve.cold_rate_bytes_s),
            "cold_wss_bytes": round(g.curve.cold_wss_bytes), "streaming": g.curve.streaming,
            "limit_s": m.limit_s, "cpu_bound": m.cpu_bound, "overhead_s": round(m.overhead_s, 2),
            "setup_s": round(m.setup_s, 3), "finish_s": round(m.finish_s, 3),
            "compressed": m.compressed}


def spec_of(move: dict[str, Any], source: str) -> MoveSpec:
    """A stored move back into the model's terms."""
    s = move["model"]
    wss = float(s["wss_bytes"]) if s["wss_bytes"] is not None else float("inf")
    guest = Guest(s["memory_mib"] * MIB, float(s["nonzero_bytes"]),
                  DirtyCurve(float(s["dirty_bytes_s"]), wss, None,
                             float(s.get("cold_bytes_s", 0)), float(s.get("cold_wss_bytes", 0)),
                             bool(s.get("streaming", False))),
                  tuple(float(x) for x in s.get("nonzero_profile", ())))
    return MoveSpec(move["vm"], move.get("source", source), move["to"], s["memory_mib"], guest,
                    float(s["limit_s"]), float(s["cpu_bound"]), float(s["overhead_s"]),
                    float(s["setup_s"]), float(s.get("finish_s", DEFAULT_FINISH_S)),
                    bool(s.get("compressed", False)))


class DrainPlanner:
    def __init__(self, db: Database, conns: HostConnections, store: MigrationStore,
                 queries: HostQueries, clock: Clock, limits: Limits, timeouts: Timeouts
                 ) -> None:
        self.db, self.conns, self.store, self.queries = db, conns, store, queries
        self.clock, self.limits = clock, limits
        self.timeout_per_gib_s, self.timeout_min_s = timeouts.per_gib_s, timeouts.min_s
        self.compress = timeouts.compress
        # each guest's measurement for the last plan, and when: a move started soon
        # after plans with it instead of measuring again (its preparation shrinks to
        # the prechecks and libvirt's start)
        self.measured: dict[str, tuple[Measurement, float]] = {}
        self._measuring = threading.BoundedSemaphore(MEASURE_AT_ONCE)

    def candidates(self, vms: list[str] | None = None, host: str | None = None
                   ) -> tuple[list[Candidate], list[Target], dict[str, str]]:
        """The VMs to place (those on `host`, or `vms`), every host as a target, and
        each host's URI."""
        with self.db.session() as s:
            hosts = list(s.scalars(select(HostRow).order_by(HostRow.name)))
            pools = {p.name: p for p in s.scalars(select(PoolRow))}
            q = select(VmRow).order_by(VmRow.name)
            q = q.where(VmRow.name.in_(vms)) if vms is not None else q.where(VmRow.host == host)
            rows = list(s.scalars(q))
            vols: dict[str, list[VolumeRow]] = {}
            for v in s.scalars(select(VolumeRow).where(VolumeRow.vm.in_([r.name
                                                                          for r in rows]))):
                vols.setdefault(str(v.vm), []).append(v)
            targets = [Target(h.name, h.state == HostState.UP, bool(h.maintenance),
                              h.memory_free_mib, convert.host_networks(h.networks))
                       for h in hosts]
            cands = []
            for r in rows:
                disks = tuple(Disk(v.name, v.pool, pools[v.pool].kind if v.pool in pools
                                   else "", tuple(pools[v.pool].hosts or ())
                                   if v.pool in pools else ()) for v in vols.get(r.name, []))
                cands.append(Candidate(r.name, r.host, r.memory_mib, str(r.state),
                                       dict(r.cpu_blocked or {}), disks,
                                       convert.nics(r.nics)))
            return cands, targets, {h.name: h.uri for h in hosts}

    def place(self, cands: list[Candidate], targets: list[Target],
              to: tuple[str, ...]) -> Placement:
        return place(cands, targets, set(to) if to else None, self.store.incoming_by_host())

    def specs(self, cands: list[Candidate], placement: Placement, uris: dict[str, str],
              link_mib_s: float | None, max_downtime_ms: int | None,
              on_measured: OnMeasured | None = None, tls: bool | None = None,
              compress: bool | None = None) -> tuple[list[MoveSpec], Model, dict[str, str]]:
        """Measure every placed guest at once and turn it into the model's terms; a
        guest that cannot be measured is blocked with the reason.  A host's link is
        `link_mib_s` if given, else what its last migration reached.
        `on_measured(spec, link, measurement)` hears of each guest as soon as
        its own measurement is in (the drain starts a quiet one at once); `tls`
        False: the moves go in clear (their history is that of plain streams).  What
        one stream from a host reaches comes from its latest migrations: where it
        is below the link, several moves at once fill it if the host has CPUs
        free for them (`streams_together`, from its load at the last reconcile)."""
        by_name = {c.vm: c for c in cands}
        placed = [by_name[v] for v in placement.to]
        hist: dict[str, History] = {}
        pairs: dict[tuple[str, str], History] = {}
        with self.db.session() as s:  # a move between these is encrypted (by default)
            certs = set(s.scalars(select(HostRow.name).where(HostRow.migration_tls)))
        modes: dict[str, set[bool]] = {}
        finish: dict[tuple[str, str], float] = {}
        for c in placed:
            key = (str(c.host), placement.to[c.vm])
            enc = tls is not False and key[0] in certs and key[1] in certs
            hist[c.vm] = self.store.history(c.vm, *key, pairs.get(key), encrypted=enc)
            if key not in pairs:
                finish[key] = self.store.finish_s(*key) or DEFAULT_FINISH_S
            pairs.setdefault(key, hist[c.vm])
            modes.setdefault(key[0], set()).add(enc)
        streams = {h: min(r) for h, ms in modes.items()
                   if (r := [x for e in ms if (x := self.store.stream_bytes_s(h, e))])}
        def spec(c: Candidate, m: Measurement) -> tuple[MoveSpec, float]:
            timeout = timeout_s(c.memory_mib, 0, self.timeout_per_gib_s, self.timeout_min_s)
            # the link as the move's pipeline takes it (`--link` given: that), so that
            # it decides compression alike (planning.compressed_inputs; a move's share
            # in the drain may be less: the schedule keeps each converging at its share)
            h = hist[c.vm] if not link_mib_s else replace(hist[c.vm],
                                                          link_bytes_s=link_mib_s * MIB)
            inp, _ = build_inputs(m, h, c.memory_mib, None, max_downtime_ms, timeout)
            squeezed = compressed_inputs(Policy.AUTO, inp, m, h, copies=False,
                                         allowed=self.compress, asked=compress)
            inp = squeezed or inp
            link = link_mib_s * MIB if link_mib_s else inp.link.final_bytes_s
            key = (str(c.host), placement.to[c.vm])
            return MoveSpec(c.vm, *key, c.memory_mib, inp.guest, inp.limit_s, inp.cpu_bound,
                            PRECHECK_AND_START_S, inp.setup_s, finish[key],
                            compressed=squeezed is not None), link

        taken: dict[str, float] = {}  # when each guest's measurement ended

        def reader(c: Candidate) -> Callable[[], PageSample | None]:
            def run() -> PageSample | None:
                with self._measuring:
                    return read_pages(self.conns.get(uris[str(c.host)]), c.vm)
            return run

        # every guest's pages first, then every guest's dirty windows: reads while the
        # windows run take the CPU the guests dirty with (lab, five TCG guests measured
        # at once: one dirtying 24 MiB/s over 96 MiB read at 13 with its own and the
        # others' pages read meanwhile, 20 with them read first, as alone; ~0.8 s more)
        read = self.queries.ask({c.vm: reader(c) for c in placed},
                                timeout_s=MEASURE_EACH_S * math.ceil(len(placed) /
                                                                     MEASURE_AT_ONCE))
        pages = {v: p for v, p in read.items() if isinstance(p, PageSample)}

        def measurer(c: Candidate) -> Callable[[], Measurement]:
            measure_it = _measurer(self.conns, uris[str(c.host)], c, self.clock,
                                   link_bytes_s(hist[c.vm], None)[0], pages.get(c.vm))

            def run() -> Measurement:
                with self._measuring:
                    m = measure_it()
                taken[c.vm] = self.clock.monotonic()
                if on_measured is not None:
                    on_measured(*spec(c, m), m)
                return m
            return run

        asked = self.queries.ask({f"measure:{c.vm}": measurer(c) for c in placed},
                                 timeout_s=MEASURE_WITHIN_S + MEASURE_EACH_S *
                                 math.ceil(len(placed) / MEASURE_AT_ONCE))
        specs: list[MoveSpec] = []
        links: dict[str, float] = {}
        failed: dict[str, str] = {}
        for c in placed:
            m = asked[f"measure:{c.vm}"]
            if isinstance(m, HypervisorError) or m is None:
                failed[c.vm] = f"cannot be measured: {m}"
                continue
            ms, link = spec(c, m)
            for h in (ms.source, ms.destination):
                links[h] = max(links.get(h, 0.0), link)
            specs.append(ms)
            self.measured[c.vm] = (m, taken.get(c.vm, self.clock.monotonic()))
        for h in uris:
            links.setdefault(h, (link_mib_s or ASSUMED_LINK_MIB_S) * MIB)
        with self.db.session() as s:
            cpu = {n: (c, b) for n, c, b in s.execute(
                select(HostRow.name, HostRow.cpus, HostRow.cpu_busy))}
        together = {h: streams_together(st, links[h], *cpu.get(h, (0, None)))
                    for h, st in streams.items()}
        return specs, Model(links, streams, together), failed

    def fresh(self, vm: str) -> tuple[Measurement, float] | None:
        """The plan's measurement of `vm` and its age, if recent enough (taken once)."""
        got = self.measured.pop(vm, None)
        if got is None:
            return None
        age = self.clock.monotonic() - got[1]
        return (got[0], age) if age <= REUSE_FOR_S else None

    def schedule(self, specs: list[MoveSpec], model: Model, max_parallel: int) -> Schedule:
        """The plan: moves in the schedule's order, none started yet."""
        return best_plan(specs, model, self.limits, max_parallel)[1]

    def best_from(self, specs: list[MoveSpec], model: Model, max_parallel: int,
                  active: list[Active], now: float) -> Schedule:
        """The plan from now, `specs` in the order that ends the drain soonest after
        what runs."""
        return best_plan(specs, model, self.limits, max_parallel, active, now)[1]

    def schedule_from(self, specs: list[MoveSpec], model: Model, max_parallel: int,
                      active: list[Active], now: float, transfers: int | None) -> Schedule:
        """The plan again, from now: `specs` still to start (in the plan's order), at
        most `transfers` on a link as the plan chose."""
        return plan(specs, model.links, self.limits, max_parallel, active, now, model=model,
                    transfers=transfers)


def model_of(moves: list[dict[str, Any]], default_host: str, link_mib_s: float | None,
             seen: dict[str, float] | None = None) -> Model:
    """The links a drain's stored moves were planned with, and what one stream from
    each source reaches: as `seen` in this drain's own moves, else as planned.  A move
    still being measured (no model yet; quiet ones already move) is not read."""
    links: dict[str, float] = {}
    streams: dict[str, float] = {}
    together: dict[str, float] = {}
    for m in moves:
        if "model" not in m:
            continue
        s = m["model"]
        rate = float(s.get("link_bytes_s") or 0.0) or (link_mib_s or ASSUMED_LINK_MIB_S) * MIB
        src = m.get("source", default_host)
        for h in (src, m["to"]):
            links[h] = max(links.get(h, 0.0), rate)
        if s.get("stream_bytes_s"):
            streams[src] = float(s["stream_bytes_s"])
        if s.get("together_bytes_s"):
            together[src] = float(s["together_bytes_s"])
    return Model(links, {**streams, **(seen or {})}, together)


def streams_seen(moves: list[dict[str, Any]], default_host: str) -> dict[str, float]:
    """What one stream reached in a drain's completed moves, per source: the best
    (a move that shared the link reached less)."""
    out: dict[str, float] = {}
    for m in moves:
        if m["state"] == "completed" and m.get("reached_bytes_s"):
            src = m.get("source", default_host)
            out[src] = max(out.get(src, 0.0), float(m["reached_bytes_s"]))
    return out


def _measurer(conns: HostConnections, uri: str, c: Candidate, clock: Clock, rate: float,
              pages: PageSample | None) -> Callable[[], Measurement]:
    def run() -> Measurement:
        try:
            return measure(conns.get(uri), c.vm, c.memory_mib, clock, bandwidth_bytes_s=rate,
                           before_move=True, pages=pages)
        except Exception as exc:  # e.g. Unavailable: reported as the VM's reason
            raise HypervisorError(str(getattr(exc, "message", exc))) from exc
    return run


def plan_dict(host: str, sched: Schedule, specs: list[MoveSpec], model: Model,
              blocked: dict[str, str], max_parallel: int) -> dict[str, Any]:
    """The plan as `ferry host drain --dry-run --json` shows it and the drain stores."""
    by_vm = {m.vm: m for m in specs}
    moves = []
    for i, s in enumerate(sched.slots):
        p = s.prediction
        moves.append({"vm": s.vm, "to": s.destination, "source": s.source, "order": i,
                      "start_ms": round(s.start_s * 1000), "end_ms": round(s.end_s * 1000),
                      "predicted_total_ms": round(s.total_s * 1000),
                      "predicted_transfer_ms": round((s.end_s - s.transfer_s) * 1000),
                      "predicted_downtime_ms": round(p.downtime_s * 1000),
                      "predicted_converges": p.converges,
                      "share_mib_s": round(s.share_bytes_s / MIB, 1), "alone": s.alone,
                      "model": spec_dict(by_vm[s.vm], model)})
    return {"host": host, "moves": moves,
            "blocked": [{"vm": v, "reason": r} for v, r in sorted(blocked.items())],
            "eta_ms": round(sched.eta_s * 1000), "max_parallel": max_parallel,
            "parallel": sched.max_parallel, "transfers_per_link": sched.transfers}
