"""A post-copy that broke after the switch, taken up again (split from pipeline.py).

The guest's newest memory is on the destination, so the source is never
resumed: the job is started again with POSTCOPY_RESUME once both hosts say
the post-copy broke, at once when the operator asks (`ferry migration
recover`) and, with `postcopy_auto_resume`, by itself with attempts backing
off from 10 s to 5 min for an hour.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from typing import Protocol

from ferry.clock import Clock
from ferry.domain.models import MigrationState
from ferry.domain.vocab import EventKind
from ferry.hypervisor.base import Connector, Hypervisor
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import MigrationOptions, PostcopyState
from ferry.migration.engine import run_job
from ferry.migration.outcome import Verdict
from ferry.migration.settling import JobResult, Recorder

POSTCOPY_FIRST_GAP_S = 10.0
POSTCOPY_MAX_GAP_S = 300.0
POSTCOPY_RETRY_FOR_S = 3600.0


class ResumeRecords(Protocol):
    """What resuming stores: events and the migration's state."""

    def recorder(self, mid: int) -> Recorder: ...

    def transition(self, mid: int, to: MigrationState, **fields: object) -> bool: ...


class PostcopyResumer:
    def __init__(self, hosts: Connector, records: ResumeRecords, clock: Clock,
                 auto_resume: bool) -> None:
        self.hosts, self.records, self.clock = hosts, records, clock
        self.auto_resume = auto_resume

    def resume(self, mid: int, vm: str, source_uri: str, destination_uri: str,
               options: MigrationOptions | None, wake: threading.Event) -> JobResult | None:
        """Take the broken post-copy up again (POSTCOPY_RESUME, the original job's
        options): at once when asked (`wake`: `ferry migration recover`), and by itself
        when `auto_resume` is on, attempts backing off from 10 s to 5 min for an hour.
        An attempt is made only when both hosts can be read and both say the post-copy
        broke (libvirt 11.3 crashed a destination whose finish phase still hung)."""
        rec = self.records.recorder(mid)
        if self.records.transition(mid, MigrationState.POSTCOPY_PAUSED):
            rec.event(EventKind.POSTCOPY_PAUSED, "post-copy broke after the switch: the guest "
                      "waits on the destination for its last pages; the source is never "
                      "resumed; " + ("resuming it as soon as both hosts are ready"
                                     if self.auto_resume else
                                     f"resume it with `ferry migration recover {mid}`"))
        if options is None:
            rec.event(EventKind.RECOVER_FAILED, "the job's options were not stored (a "
                      "migration from an older Ferry): resume it with virsh")
            return None
        if not self.auto_resume and not wake.is_set():
            return None
        src, dst = self.hosts(source_uri), self.hosts(destination_uri)
        gap, give_up = POSTCOPY_FIRST_GAP_S, self.clock.monotonic() + POSTCOPY_RETRY_FOR_S
        while self.clock.monotonic() < give_up:
            if not wake.is_set():
                self._nap(gap, wake)
            asked = wake.is_set()
            wake.clear()
            gap = min(2 * gap, POSTCOPY_MAX_GAP_S)
            self._pause_both(vm, src, dst, rec)
            if not self._both_broken(vm, src, dst):
                if asked:
                    rec.event(EventKind.RECOVER_FAILED, "not resumed: both hosts must be "
                              "readable and say the post-copy broke (the destination's "
                              "libvirt may still hold the migration: see the README)")
                    if not self.auto_resume:
                        return None
                continue
            if not self.records.transition(mid, MigrationState.RUNNING):
                return None  # taken up elsewhere
            result = run_job(vm, src, dst, replace(options, postcopy_resume=True), rec,
                             threading.Event(), POSTCOPY_RETRY_FOR_S, self.clock)
            if result.resolution.verdict != Verdict.POSTCOPY_PAUSED:
                return result
            self.records.transition(mid, MigrationState.POSTCOPY_PAUSED)
            if not self.auto_resume:
                return None
        rec.event(EventKind.POSTCOPY_PAUSED, f"still broken after "
                  f"{POSTCOPY_RETRY_FOR_S / 60:.0f} min: run `ferry migration recover {mid}` "
                  "once the hosts reach each other")
        return None

    def _both_broken(self, vm: str, src: Hypervisor, dst: Hypervisor) -> bool:
        try:
            a, b = src.find_domain(vm), dst.find_domain(vm)
        except HypervisorError:
            return False
        return a is not None and b is not None and \
            a.postcopy == b.postcopy == PostcopyState.FAILED

    def _pause_both(self, vm: str, src: Hypervisor, dst: Hypervisor, rec: Recorder) -> None:
        """A side that still believes its post-copy runs (its socket hangs rather than
        breaks: seen on the lab's destination) is paused, so both can resume."""
        for side, host in (("source", src), ("destination", dst)):
            try:
                d = host.find_domain(vm)
                if d is not None and d.postcopy == PostcopyState.ACTIVE:
                    host.pause_postcopy(vm)
                    rec.event(EventKind.POSTCOPY_PAUSED, f"paused the {side}'s hanging "
                                                         "post-copy so that it can resume")
            except HypervisorError:
                pass  # asked again at the next attempt

    def _nap(self, seconds: float, wake: threading.Event) -> None:
        waited = 0.0
        while waited < seconds and not wake.is_set():
            self.clock.sleep(1.0)
            waited += 1.0
