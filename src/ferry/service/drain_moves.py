"""One move of a drain: start it as an ordinary migration, follow it, and when it
fails try it once more on another destination (then report it and go on)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ferry.clock import Clock
from ferry.domain.models import MigrationState
from ferry.drain.schedule import Active
from ferry.errors import FerryError
from ferry.migration.requests import Hooks
from ferry.service.drain_gate import LinkGate
from ferry.service.drain_plan import DrainPlanner, spec_of
from ferry.service.drain_store import DrainStore
from ferry.service.hosts import HostService
from ferry.service.migration_service import MigrationService
from ferry.service.migration_store import MigrationStore

ATTEMPTS = 2  # a move that fails is tried once more, elsewhere


class DrainMoves:
    """`choose(vm, hosts)`: placement among `hosts`; `ended(drain id)`: one of the
    drain's migrations has its final state."""

    def __init__(self, drains: DrainStore, planner: DrainPlanner, migrations: MigrationService,
                 store: MigrationStore, hosts: HostService, gate: LinkGate, clock: Clock,
                 choose: Callable[[str, tuple[str, ...]], str],
                 ended: Callable[[int], None]) -> None:
        self.drains, self.planner, self.migrations = drains, planner, migrations
        self.store, self.hosts, self.gate, self.clock = store, hosts, gate, clock
        self.choose, self.ended = choose, ended

    def active(self, m: dict[str, Any], host: str, now: float) -> Active:
        spec = spec_of(m, host)
        elapsed = self.clock.now().timestamp() - float(m["started_at"])
        started = now - elapsed
        mid = int(m["migration"])
        last = self.store.last_sample(mid)
        if last is None:
            return Active(spec, started, max(now, started + spec.overhead_s))
        if self.store.get(mid).off_link:
            left = 0.0
        else:  # at a round's end nothing remains until the bitmap sync: the last known
            pending = last if last.memory_remaining_bytes > 0 else \
                self.store.last_sample(mid, pending=True)
            left = float(pending.memory_remaining_bytes if pending else last.memory_total_bytes)
            if pending is None or pending.iteration <= 1:  # round 1 counts zero pages too
                left = spec.guest.unsent_bytes(left)
        return Active(spec, started, min(now, started + spec.overhead_s), left)

    def start(self, m: dict[str, Any], d: dict[str, Any]) -> None:
        req = d["request"]
        m["started_at"] = self.clock.now().timestamp()
        m["tried"] = [*m["tried"], m["to"]]
        fresh = self.planner.fresh(m["vm"]) if len(m["tried"]) == 1 else None
        hooks = Hooks(self.gate.ready(d["id"], m["vm"], m.get("source", d["host"])),
                      fresh[0] if fresh else None, fresh[1] if fresh else 0.0,
                      ended=lambda: self.ended(d["id"]), sent=lambda: self.ended(d["id"]))
        try:
            mig = self.migrations.start(m["vm"], m["to"],
                                        max_downtime_ms=req.get("max_downtime_ms"),
                                        link_mib_s=req.get("link_mib_s"), hooks=hooks,
                                        tls=req.get("tls"),
                                        # (tried again: in clear, which may switch to
                                        # post-copy where a compressed stream gave up)
                                        compress=req.get("compress") if fresh else False)
        except FerryError as exc:
            self._failed(m, d, exc.message)
            return
        m["migration"], m["migrations"] = mig.id, [*m["migrations"], mig.id]
        m["state"] = "running"
        self.drains.event(d["id"], "started", f"{m['vm']} -> {m['to']}: migration {mig.id}")
        if mig.state.finished:  # refused in its prechecks, or ran inline (simulation)
            self.follow(m, d, False)

    def follow(self, m: dict[str, Any], d: dict[str, Any], cancelling: bool) -> None:
        mig = self.store.get(int(m["migration"]))
        if not mig.state.finished:
            if cancelling and not m.get("cancel_sent"):
                m["cancel_sent"] = True
                try:
                    self.migrations.cancel(mig.id)
                except FerryError as exc:  # e.g. past its post-copy switch: it finishes
                    m["error"] = f"not cancelled: {exc.message}"
            return
        alone = self.gate.release(m["vm"], m.get("source", d["host"]))
        m["total_ms"], m["downtime_ms"] = mig.total_ms, mig.downtime_ms
        # what one stream reaches is read only from a move that had its link alone
        m["reached_bytes_s"] = self.store.reached_bytes_s(mig.id) if alone else None
        if mig.state == MigrationState.COMPLETED:
            m["state"], m["to"], m["error"] = "completed", mig.destination, ""
        elif mig.state == MigrationState.CANCELLED or cancelling:
            m["state"], m["error"] = "cancelled", mig.error or "cancelled"
        else:
            self._failed(m, d, mig.error or str(mig.state))
        kind = "retry" if m["state"] == "pending" else m["state"]
        self.drains.event(d["id"], kind, f"{m['vm']}: migration {mig.id} {mig.state}"
                          + (f" ({m['error']})" if m["error"] else ""))

    def _failed(self, m: dict[str, Any], d: dict[str, Any], why: str) -> None:
        """Try once more on another destination, else report it and go on."""
        if len(m["tried"]) >= ATTEMPTS:
            m["state"], m["error"] = "failed", why
            return
        try:
            other = self.choose(m["vm"], tuple(h for h in self._allowed(d)
                                               if h not in m["tried"]))
        except FerryError as exc:
            m["state"], m["error"] = "failed", f"{why}; no other destination: {exc.message}"
            return
        m["state"], m["to"], m["error"] = "pending", other, f"retrying on {other}: {why}"

    def _allowed(self, d: dict[str, Any]) -> tuple[str, ...]:
        to = tuple(d["request"].get("to") or ())
        if to:
            return to
        return tuple(h.name for h in self.hosts.list_hosts() if h.name != d["host"])
