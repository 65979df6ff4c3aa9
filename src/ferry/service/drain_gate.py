"""Which drain move's job may use its source's link now: moves prepare while others
transfer, and a job transfers only when the model says every transfer then on the
link still converges (usually: when it is free, or when what runs there is about
to leave it).  A job that may not transfer yet is staged (engine.run_job): it
starts at a trickle, so that libvirt's set-up (the destination QEMU starting)
overlaps the transfers on the link, and goes at full speed when the gate says so."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from typing import Any

from ferry.clock import Clock
from ferry.drain.model import Model
from ferry.drain.model import quiet as drain_quiet
from ferry.drain.schedule import may_share
from ferry.service.drain_plan import model_of, spec_of, streams_seen
from ferry.service.drain_store import DrainStore
from ferry.service.migration_store import MigrationStore

HANDOVER_S = 1.0


class LinkGate:
    def __init__(self, drains: DrainStore, store: MigrationStore, clock: Clock) -> None:
        self.drains, self.store, self.clock = drains, store, clock
        self._lock = threading.Lock()
        # per source host: VMs of drains whose job was let through and has not ended
        self._on_link: dict[str, set[str]] = {}
        # VMs whose job shared its link with another's transfer (what their stream
        # reached says less about one stream alone)
        self._shared: set[str] = set()
        # per source host: VMs whose job asked and waits, with their drain
        self._waiting: dict[str, dict[str, int]] = {}

    def ready(self, did: int, vm: str, source: str) -> Callable[[], bool]:
        """A move's hook: may its job (measured, planned) transfer now?  Asked before
        the job starts and, while it is staged (started slowly: libvirt starts the
        destination QEMU meanwhile), at every sample; once it says yes the move is
        on its link.  Moves take the link in their plan's order: one whose job is ready
        first does not pass an earlier one that waits and may go (seen on the lab: a
        move started a second later, not staged, took the link while the earlier one's
        libvirt still set up; the earlier one then waited 10 s)."""
        def ask() -> bool:
            with self._lock:
                on = self._on_link.setdefault(source, set())
                if vm in on:
                    return True
                waiting = self._waiting.setdefault(source, {})
                d = self.drains.get(did)  # read once per question
                takes, sharing = self._takes(d, vm, on - {vm})
                if takes and self._behind(d, vm, on, waiting):
                    takes = False
                if takes:
                    on.add(vm)
                    waiting.pop(vm, None)
                    self._shared.discard(vm)
                    if sharing:
                        self._shared |= sharing | {vm}
                else:
                    waiting[vm] = did
                return takes
        return ask

    def _behind(self, d: dict[str, Any], vm: str, on: set[str], waiting: dict[str, int]
                ) -> bool:
        """Does an earlier move of the same drain wait for this link, and may it go?"""
        by_vm = {m["vm"]: m for m in d["moves"]}
        order = by_vm.get(vm, {}).get("order")
        if order is None:
            return False
        for w, wdid in waiting.items():
            m = by_vm.get(w)
            if w == vm or wdid != d["id"] or m is None or m.get("order") is None \
                    or m["state"] not in ("running", "pending") or m["order"] >= order:
                continue
            if self._takes(d, w, on - {w})[0]:
                return True
        return False

    def release(self, vm: str, source: str) -> bool:
        """The move's job has ended: it no longer uses the link.  Returns whether it
        had the link to itself all along (not known after a controller restart:
        False)."""
        with self._lock:
            on = self._on_link.get(source, set())
            known = vm in on
            on.discard(vm)
            self._waiting.get(source, {}).pop(vm, None)
            alone = known and vm not in self._shared
            self._shared.discard(vm)
            return alone

    def _takes(self, d: dict[str, Any], vm: str, others: set[str]) -> tuple[bool, set[str]]:
        """May `vm`'s job (a move of drain `d`) transfer now, and beside which
        transfers (not leaving)."""
        if not others:
            return True, set()
        by_vm = {m["vm"]: m for m in d["moves"]}
        others = {o for o in others if not self._leaving(by_vm.get(o))}
        if not others:
            return True, set()
        specs = {m["vm"]: spec_of(m, d["host"]) for m in d["moves"] if "model" in m}
        if vm not in specs or not others <= set(specs):
            return False, others  # another drain's move: not shared with what we cannot model
        model = model_of(d["moves"], d["host"], d["request"].get("link_mib_s"),
                         streams_seen(d["moves"], d["host"]))  # as the runner's
        if len(others) >= self._transfers(d, model, specs[vm].source):
            return False, others
        return may_share(specs[vm], [specs[o] for o in others], model), others

    @staticmethod
    def _transfers(d: dict[str, Any], model: Model, source: str) -> float:
        """How many of the drain's moves may transfer at once on `source`'s link: as
        its plan chose; while it is still being planned (quiet guests already move),
        one where one stream reaches what several would (it fills the link, or the
        host's CPUs are busy; the next one prepares meanwhile)."""
        if "transfers" in d["request"]:
            k = d["request"]["transfers"]
            return math.inf if k is None else int(k)
        return 1 if model.fills(source) else math.inf

    def _leaving(self, m: dict[str, Any] | None) -> bool:
        """Is this move's job about to leave the link: off it (ended, or its `sent`
        event: libvirt finishing, ~1.7 s on the lab), or a guest that hardly dirties in
        its first round with less than HANDOVER_S of it left (it then ends; the next
        job's start, ~1 s before its first byte, overlaps it).  Any other is left alone:
        sharing could keep it from converging.  A sample saying nothing remains is not
        leaving: every round ends so before the bitmap sync (a dirtier taken for
        leaving would share the link with the next move)."""
        if m is None or m.get("migration") is None:
            return False
        mid = int(m["migration"])
        if self.store.get(mid).off_link:
            return True
        # (not a job in post-copy: its guest waits for each page it touches, and those
        # queued behind the next move's stream on the link: lab, a 2.7 s pause)
        last = self.store.last_sample(mid)
        if last is None or last.iteration != 1 or last.bandwidth_bytes_s <= 0:
            return False
        return drain_quiet(spec_of(m, "").guest, last.bandwidth_bytes_s) and \
            last.memory_remaining_bytes <= last.bandwidth_bytes_s * HANDOVER_S
