"""A simulated migration job, advanced on the pre-copy model of `predict/`.

Phases, in virtual seconds since the job started:

| phase        | until                          | source   | destination        |
|--------------|--------------------------------|----------|--------------------|
| set-up       | setup_s                        | running  | paused (incoming)  |
| disk copy    | + copied bytes / bandwidth     | running  | paused             |
| pre-copy     | the model's switchover         | running  | paused             |
| stop-and-copy| + what is left / link speed    | paused   | paused             |
| finish       | + finish_s (libvirt's Finish)  | paused   | paused             |
| post-copy    | (if switched) + pending / link | paused   | running            |
| done         |                                | removed  | running, persistent|

Faults end a job the way libvirt's do: an abort before post-copy, a dead
destination QEMU or a link down for longer than libvirt's keepalive leave
the guest running on the source and the incoming domain gone; a link lost
during post-copy leaves both sides paused (nobody has the whole guest).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import StrEnum

from ferry.hypervisor.errors import MigrationJobError
from ferry.hypervisor.types import JobStats, MigrationOptions
from ferry.predict.precopy import POSTCOPY_PAUSE_S, Guest, Link, PrecopyRun, Schedule

PAGE = 4096
# what the simulated QEMU's pause costs beyond its pages (stop, device state): not
# the predictions' assumed 20 ms, so a test tells a learnt figure from the assumed one
SWITCHOVER_S = 0.04
# libvirt's smallest rate: a job started at it is a drain's staged job (waiting for its
# link), kept in its set-up by the model (the trickle's bytes are not modelled) until
# its rate is raised
STAGED_MIB_S = 1


class Phase(StrEnum):
    SETUP = "setup"
    DISK = "disk"
    PRECOPY = "precopy"
    STOP_COPY = "stop_copy"
    FINISH = "finish"  # QEMU is done; libvirt starts the destination, ends the source
    POSTCOPY = "postcopy"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Outcome:
    """What the job did to the two domains when it ended (applied by the cluster)."""

    completed: bool
    error: MigrationJobError | None = None
    stats: JobStats | None = None  # libvirt's completed-job statistics (none after post-copy)
    both_paused: bool = False  # lost during post-copy


class SimJob:
    """One job from `source` to `destination`; `advance(t)` brings it to elapsed time t."""

    def __init__(self, vm: str, source: str, destination: str, opts: MigrationOptions,
                 guest: Guest, link_bytes_s: float, downtime_ms: int, cpu_bound: bool,
                 setup_s: float, disk_bytes: int, started_at: float) -> None:
        self.vm, self.source, self.destination, self.opts = vm, source, destination, opts
        self.started_at = started_at
        self.memory_bytes = guest.memory_bytes
        pre = min(opts.bandwidth_mib_s * 2**20, link_bytes_s) if opts.bandwidth_mib_s \
            else link_bytes_s
        self.staged = opts.bandwidth_mib_s == STAGED_MIB_S
        # when it began to transfer at its own rate (a staged one: once released)
        self.released_at: float | None = None if self.staged else started_at
        self.link_bytes_s, self.cpu_bound = link_bytes_s, cpu_bound
        self.disk_bytes = disk_bytes
        self._model_from(guest, pre, setup_s, downtime_ms / 1000)
        self.phase = Phase.SETUP
        self.elapsed = 0.0
        self.switch_at: float | None = None  # the source paused (stop-and-copy or post-copy)
        self.end_at: float | None = None
        self.final_bytes = 0.0
        self.downtime_s = 0.0
        self.frozen_since: float | None = None  # link down: nothing moves
        self.frozen_total = 0.0
        self.outcome: Outcome | None = None
        self.left_bytes = 0.0
        self.finish_s = 0.0  # libvirt's finish after QEMU's last byte (0: none modelled)
        self.stopped = False  # the source guest stopped for pre-copy's switchover
        self.on_stop: Callable[[], None] | None = None  # told once it has

    def _model_from(self, guest: Guest, pre: float, setup_s: float, limit_s: float) -> None:
        """The pre-copy model of the job at rate `pre`, its set-up ending at `setup_s`."""
        self.bandwidth_bytes_s = pre
        self.setup_s = setup_s
        self.disk_s = self.disk_bytes / pre if self.disk_bytes else 0.0
        sched = Schedule(limit_s, throttle=self.opts.auto_converge,
                         throttle_effect=1.0 if self.cpu_bound else 0.0,
                         setup_s=setup_s + self.disk_s, max_time_s=math.inf,
                         detect_stuck=False)
        self.model = PrecopyRun(guest, Link(pre, self.link_bytes_s, SWITCHOVER_S), sched)

    def set_rate(self, mib_s: int) -> None:
        """A staged job released at `mib_s`: it transfers from now.  Asked during its
        set-up the change is lost, as with libvirt, which starts QEMU's migration with
        the job's own rate (seen on the lab: a job released then stayed at 1 MiB/s)."""
        now = self.elapsed - self.frozen_total
        if not self.staged or self.outcome is not None or now < self.setup_s:
            return  # in its set-up libvirt starts QEMU's migration at the job's first rate
        self.staged = False
        self.released_at = self.started_at + self.elapsed
        limit = self.model.limit_s
        self._model_from(self.model.guest, min(mib_s * 2**20, self.link_bytes_s),
                         max(self.setup_s, now), self.model.limit_at(0))
        self.model.limit_s = limit  # a limit set meanwhile stays

    def resume_postcopy(self, started_at: float, setup_s: float) -> SimJob:
        """The same job taken up again (POSTCOPY_RESUME): the guest already runs on
        the destination; what was left is pulled, then it completes."""
        job = SimJob(self.vm, self.source, self.destination, self.opts, self.model.guest,
                     self.model.link.final_bytes_s, round(self.model.limit_at(0) * 1000),
                     False, setup_s, 0, started_at)
        job.phase = Phase.POSTCOPY
        job.switch_at = -POSTCOPY_PAUSE_S  # the destination runs from the start
        job.end_at = setup_s + self.left_bytes / self.model.link.bandwidth_bytes_s
        job.final_bytes = self.final_bytes
        job.downtime_s = self.downtime_s
        job.model = self.model
        return job

    # -- progress -----------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.outcome is None

    @property
    def postcopy(self) -> bool:
        return self.phase == Phase.POSTCOPY

    def advance(self, elapsed: float) -> Outcome | None:
        """Step the model up to `elapsed` (minus time the link was down); the outcome
        if the job ended on the way."""
        if self.outcome is not None:
            return None
        if self.frozen_since is not None:
            elapsed = min(elapsed, self.frozen_since)
        t = elapsed - self.frozen_total
        self.elapsed = max(self.elapsed, elapsed)
        while self.outcome is None:
            if self.phase in (Phase.SETUP, Phase.DISK):
                if self.staged or t < self.setup_s:
                    return None
                self.phase = Phase.DISK
                if t < self.setup_s + self.disk_s:
                    return None
                self.phase = Phase.PRECOPY
            if self.phase == Phase.PRECOPY:
                if self.model.t >= t:
                    return None
                pred = self.model.step()
                if pred is None:
                    continue
                self.switch_at = self.model.t
                self.end_at = pred.total_s
                self.final_bytes = pred.transferred_bytes
                self.downtime_s = pred.downtime_s
                self.phase = Phase.POSTCOPY if self.model.postcopy_requested or \
                    pred.note.startswith("post-copy") else Phase.STOP_COPY
                self.stopped = self.phase == Phase.STOP_COPY
            if self.phase in (Phase.STOP_COPY, Phase.POSTCOPY):
                assert self.end_at is not None
                if t < self.end_at:
                    return None
                if self.phase == Phase.STOP_COPY and self.finish_s > 0:
                    self.phase = Phase.FINISH
                else:
                    return self._complete()
            if self.phase == Phase.FINISH:
                assert self.end_at is not None
                if t < self.end_at + self.finish_s:
                    return None
                return self._complete()
        return None

    def _complete(self) -> Outcome:
        assert self.end_at is not None
        stats = None
        if self.phase in (Phase.STOP_COPY, Phase.FINISH):  # none after post-copy
            stats = JobStats(
                active=False, elapsed_ms=round(self.end_at * 1000),
                memory_total_bytes=int(self.memory_bytes),
                memory_processed_bytes=int(self.final_bytes),
                data_total_bytes=int(self.memory_bytes) + self.disk_bytes,
                data_processed_bytes=int(self.final_bytes) + self.disk_bytes,
                disk_total_bytes=self.disk_bytes, disk_processed_bytes=self.disk_bytes,
                iteration=len(self.model.rounds),
                bandwidth_bytes_s=int(self.bandwidth_bytes_s),
                downtime_ms=round(self.downtime_s * 1000))
        self.phase = Phase.DONE
        self.outcome = Outcome(True, stats=stats)
        return self.outcome

    def fail(self, message: str, *, cancelled: bool = False) -> Outcome:
        both = self.phase == Phase.POSTCOPY
        if both:  # what post-copy still had to pull when it broke
            assert self.end_at is not None
            t = self.elapsed - self.frozen_total
            self.left_bytes = max(0.0, (self.end_at - t) * self.model.link.bandwidth_bytes_s)
        self.phase = Phase.FAILED
        self.outcome = Outcome(False, MigrationJobError(message, cancelled=cancelled),
                               both_paused=both)
        return self.outcome

    # -- what the hosts report -------------------------------------------------------
    def source_paused(self) -> bool:
        return self.phase in (Phase.STOP_COPY, Phase.FINISH, Phase.POSTCOPY)

    def destination_running(self) -> bool:
        return self.phase == Phase.POSTCOPY and self.switch_at is not None and \
            self.elapsed - self.frozen_total >= self.switch_at + POSTCOPY_PAUSE_S

    def stats(self) -> JobStats:
        in_memory = self.phase not in (Phase.SETUP, Phase.DISK)
        if self.staged and self.elapsed - self.frozen_total >= self.setup_s:
            # past its set-up, a staged job is in QEMU's round 1; its trickle is shown
            # (what it sent since, at its rate) but not modelled (nothing left is sent)
            trickle = (self.elapsed - self.frozen_total - self.setup_s) * STAGED_MIB_S * 2**20
            return replace(self._stats(True), iteration=1, memory_processed_bytes=int(trickle),
                           bandwidth_bytes_s=STAGED_MIB_S * 2**20)
        return self._stats(in_memory)

    def _stats(self, in_memory: bool) -> JobStats:
        m = self.model
        disk_done = 0
        if self.phase == Phase.DISK:
            disk_done = int(min(self.disk_bytes, (self.elapsed - self.frozen_total
                                                  - self.setup_s) * self.bandwidth_bytes_s))
        elif in_memory:
            disk_done = self.disk_bytes
        remaining = int(m.remaining_bytes) if in_memory else int(self.memory_bytes)
        return JobStats(
            active=True, elapsed_ms=round(self.elapsed * 1000),
            memory_total_bytes=int(self.memory_bytes),
            memory_processed_bytes=int(m.sent) if in_memory else 0,
            memory_remaining_bytes=remaining,
            data_total_bytes=int(self.memory_bytes) + self.disk_bytes,
            data_processed_bytes=(int(m.sent) if in_memory else 0) + disk_done,
            data_remaining_bytes=remaining + self.disk_bytes - disk_done,
            disk_total_bytes=self.disk_bytes, disk_processed_bytes=disk_done,
            dirty_rate_pages_s=int(m.dirty_rate_bytes_s / PAGE), page_size=PAGE,
            iteration=len(m.rounds) if in_memory else 0,
            bandwidth_bytes_s=int(self.bandwidth_bytes_s) if self.frozen_since is None else 0,
            downtime_ms=round(remaining / m.link.final_bytes_s * 1000) if in_memory else None,
            throttle_pct=round(m.throttle * 100))
