"""Running one migration job: start it, sample it, stop it, settle it.

The libvirt call blocks, so it runs in its own thread while this loop samples
progress, honours cancel and timeout by aborting the job, and finally asks
both hosts where the guest really is (`outcome.resolve`) and cleans up.  The
loop never touches the database: it reports through a `Recorder`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from ferry.domain.models import Sample
from ferry.hypervisor.errors import DomainNotFound, HypervisorError, MigrationJobError
from ferry.hypervisor.libvirt_driver import LibvirtHost
from ferry.hypervisor.types import JobStats, MigrationOptions
from ferry.migration.outcome import Resolution, Verdict, resolve
from ferry.migration.policies import Action, ActionKind, Adapter

SAMPLE_INTERVAL_S = 0.25
SETTLE_GAP_S = 0.3  # two agreeing readings this far apart make a verdict
SETTLE_WAIT_S = 120.0  # after this, the last reading decides


class Recorder(Protocol):
    def sample(self, sample: Sample) -> None: ...
    def event(self, kind: str, message: str) -> None: ...


@dataclass(frozen=True)
class JobResult:
    resolution: Resolution
    stats: JobStats | None  # libvirt's completed-job statistics, when available
    error: str = ""
    cancelled: bool = False
    timed_out: bool = False
    job_ms: int | None = None  # wall time of our libvirt migrate call
    last_sample: Sample | None = None
    disk_bytes: int = 0  # copied by block migration (libvirt's completed stats omit it)


def to_sample(stats: JobStats) -> Sample:
    return Sample(
        t_ms=stats.elapsed_ms,
        iteration=stats.iteration,
        memory_total_bytes=stats.memory_total_bytes,
        memory_processed_bytes=stats.memory_processed_bytes,
        memory_remaining_bytes=stats.memory_remaining_bytes,
        dirty_rate_bytes_s=stats.dirty_rate_pages_s * stats.page_size,
        bandwidth_bytes_s=stats.bandwidth_bytes_s,
        expected_downtime_ms=stats.downtime_ms,
        throttle_pct=stats.throttle_pct,
    )


class _Watch:
    """Sample a job until `running()` says it ended; abort on cancel or a hard
    timeout; apply what the policy's adapter decides on each sample."""

    def __init__(self, vm: str, source: LibvirtHost, recorder: Recorder,
                 cancel: threading.Event, timeout_s: float,
                 adapter: Adapter | None = None) -> None:
        self.vm, self.source, self.recorder = vm, source, recorder
        self.cancel, self.timeout_s = cancel, timeout_s
        self.adapter = adapter
        self.aborted_for: str | None = None
        self.last_sample: Sample | None = None
        self.disk_bytes = 0

    def loop(self, running: Callable[[], bool],
             pause: Callable[[float], object] = time.sleep) -> None:
        """Sample until `running()` is false; `pause` may return early when it ends."""
        started = time.monotonic()
        while running():
            if self.aborted_for is None:
                if self.cancel.is_set():
                    self._abort("cancel", "cancel requested: aborting the job")
                elif time.monotonic() - started > self.timeout_s:
                    self._abort("timeout", f"no completion after {self.timeout_s:.0f}s: "
                                           "aborting the job")
            try:
                stats = self.source.job_stats(self.vm)
            except (DomainNotFound, HypervisorError):
                stats = None  # the source domain goes away at the very end of a success
            if stats is not None and stats.active:
                self.disk_bytes = max(self.disk_bytes, stats.disk_processed_bytes)
                sample = self.last_sample = to_sample(stats)
                self.recorder.sample(sample)
                if self.adapter is not None and self.aborted_for is None:
                    for action in self.adapter.decide(sample, time.monotonic() - started):
                        self._apply(action)
            pause(SAMPLE_INTERVAL_S)

    def _apply(self, action: Action) -> None:
        if action.kind == ActionKind.ABORT:
            self._abort("timeout", action.reason)
            return
        self.recorder.event(action.kind.value, action.reason)
        try:
            if action.kind == ActionKind.SET_DOWNTIME and action.downtime_ms is not None:
                self.source.set_max_downtime(self.vm, action.downtime_ms)
            elif action.kind == ActionKind.START_POSTCOPY:
                self.source.start_postcopy(self.vm)
        except HypervisorError as exc:
            self.recorder.event(f"{action.kind.value}_failed", str(exc))

    def _abort(self, kind: str, message: str) -> None:
        self.aborted_for = kind
        self.recorder.event(kind, message)
        try:
            self.source.abort_job(self.vm)
        except HypervisorError as exc:
            self.recorder.event("abort_failed", str(exc))


def run_job(vm: str, source: LibvirtHost, destination: LibvirtHost, opts: MigrationOptions,
            recorder: Recorder, cancel: threading.Event, timeout_s: float,
            adapter: Adapter | None = None) -> JobResult:
    """Run the libvirt migration job to its end and settle where the guest is."""
    failure: list[MigrationJobError | HypervisorError] = []

    def job() -> None:
        try:
            source.migrate(vm, opts)
        except (MigrationJobError, HypervisorError) as exc:
            failure.append(exc)

    thread = threading.Thread(target=job, name=f"migrate-{vm}", daemon=True)
    recorder.event("started", f"libvirt p2p live migration to {opts.dest_uri}")
    job_start = time.monotonic()
    thread.start()
    watch = _Watch(vm, source, recorder, cancel, timeout_s, adapter)
    watch.loop(thread.is_alive, pause=thread.join)  # join wakes us when the job ends
    thread.join()
    job_ms = round((time.monotonic() - job_start) * 1000)
    error = str(failure[0]) if failure else ""
    if error:
        recorder.event("job_failed", error)
    res = settle(vm, source, destination, recorder, error=error,
                 aborted_for=watch.aborted_for, job_returned=True)
    return replace(res, job_ms=job_ms, last_sample=watch.last_sample,
                   disk_bytes=watch.disk_bytes)


def watch_existing(vm: str, source: LibvirtHost, destination: LibvirtHost, recorder: Recorder,
                   cancel: threading.Event, timeout_s: float) -> JobResult:
    """Follow a job started by an earlier controller process until it ends."""
    def running() -> bool:
        dom = source.find_domain(vm)
        return dom is not None and dom.migrating

    if running():
        recorder.event("reattached", "found the migration job still running; following it")
    watch = _Watch(vm, source, recorder, cancel, timeout_s)
    watch.loop(running)
    return settle(vm, source, destination, recorder, error="", aborted_for=watch.aborted_for)


def settle(vm: str, source: LibvirtHost, destination: LibvirtHost, recorder: Recorder, *,
           error: str, aborted_for: str | None, job_returned: bool = False,
           wait_s: float = SETTLE_WAIT_S) -> JobResult:
    """Ask both hosts where the guest is until the answer is stable, then clean up.

    When our own libvirt migrate call has returned (`job_returned`), libvirt's
    protocol is over and one non-transitional reading decides.  Otherwise (a
    job followed after a restart) a verdict is acted on only when two readings
    SETTLE_GAP_S apart agree.  After `wait_s` the last reading decides, with
    the ambiguous cases left to an operator (see outcome.py)."""
    deadline = time.monotonic() + wait_s
    previous: Resolution | None = None
    while True:
        late = time.monotonic() >= deadline
        res = resolve(source.find_domain(vm), destination.find_domain(vm), deadline_passed=late)
        if res.verdict != Verdict.IN_PROGRESS and (job_returned or res == previous or late):
            break
        previous = res if res.verdict != Verdict.IN_PROGRESS else None
        time.sleep(SETTLE_GAP_S)
    recorder.event("resolved", f"{res.verdict}: {res.reason}")
    if res.clean_destination:
        _cleanup(destination, vm, recorder, "destination")
    if res.resume_source:
        try:
            source.resume(vm)
            recorder.event("resumed", "resumed the paused guest on the source")
        except HypervisorError as exc:
            recorder.event("resume_failed", str(exc))
    if res.clean_source:
        _cleanup(source, vm, recorder, "source")
    stats = None
    if res.verdict == Verdict.COMPLETED:
        stats = destination.completed_job_stats(vm) or source.completed_job_stats(vm)
    return JobResult(res, stats, error=error, cancelled=aborted_for == "cancel",
                     timed_out=aborted_for == "timeout")


def _cleanup(host: LibvirtHost, vm: str, recorder: Recorder, side: str) -> None:
    try:
        dom = host.find_domain(vm)
        if dom is None:
            return
        if dom.active:
            host.destroy(vm)
        if dom.persistent:
            host.undefine(vm)
        recorder.event("cleaned", f"removed the leftover domain on the {side}")
    except HypervisorError as exc:
        recorder.event("cleanup_failed", f"{side}: {exc}")
