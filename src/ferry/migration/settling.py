"""Settling a migration job: asking both hosts where the guest really is until the
answer is stable (`outcome.resolve`), cleaning the losing side, and the job's
result.  Split from engine.py, which runs and watches the job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ferry.clock import Clock
from ferry.domain.models import Sample
from ferry.domain.vocab import AbortReason, EventKind
from ferry.hypervisor.base import Hypervisor
from ferry.hypervisor.errors import HostUnreachable, HypervisorError
from ferry.hypervisor.types import DomainInfo, JobStats, PostcopyState
from ferry.migration.outcome import Resolution, Verdict, resolve

SETTLE_GAP_S = 0.3  # two agreeing readings this far apart make a verdict
SETTLE_WAIT_S = 120.0  # after this, the last reading decides
UNREACHABLE_WAIT_S = 3600.0  # a host that does not answer is asked again this long,
UNREACHABLE_GAP_S = 30.0  # this often once SETTLE_WAIT_S has passed


class Recorder(Protocol):
    def sample(self, sample: Sample) -> None: ...
    def event(self, kind: EventKind, message: str) -> None: ...


@dataclass(frozen=True)
class JobResult:
    resolution: Resolution
    stats: JobStats | None  # libvirt's completed-job statistics, when available
    error: str = ""
    aborted_for: AbortReason | None = None
    job_ms: int | None = None  # wall time of the job as this loop saw it
    last_sample: Sample | None = None
    disk_bytes: int = 0  # copied by block migration (libvirt's completed stats omit it)
    staged_ms: int = 0  # started slowly this long, waiting for its link (not job time)
    setup_ms: int | None = None  # a staged job's set-up, seen in its trickle

    @property
    def cancelled(self) -> bool:
        return self.aborted_for == AbortReason.CANCEL

    @property
    def timed_out(self) -> bool:
        return self.aborted_for == AbortReason.TIMEOUT


def _read(host: Hypervisor, vm: str) -> DomainInfo | HostUnreachable | None:
    """The domain as the host sees it; a host that cannot say now (no answer, or a
    call that failed: e.g. its job lock held by a hung finish phase) is asked again."""
    try:
        return host.find_domain(vm)
    except HostUnreachable as exc:
        return exc
    except HypervisorError as exc:
        return HostUnreachable(f"cannot read the domain now: {exc}")


def settle(vm: str, source: Hypervisor, destination: Hypervisor, recorder: Recorder,
           clock: Clock, *, error: str, aborted_for: AbortReason | None,
           job_returned: bool = False, wait_s: float = SETTLE_WAIT_S,
           unreachable_wait_s: float = UNREACHABLE_WAIT_S) -> JobResult:
    """Ask both hosts where the guest is until the answer is stable, then clean up.

    When our own job has ended (`job_returned`), libvirt's protocol is over
    and one non-transitional reading decides.  Otherwise (a job followed
    after a restart) a verdict is acted on only when two readings
    SETTLE_GAP_S apart agree.  After `wait_s` the last reading decides, with
    the ambiguous cases left to an operator (see outcome.py).  A host that
    does not answer is asked again (every UNREACHABLE_GAP_S after `wait_s`)
    for up to `unreachable_wait_s`, the VM still locked; if it never
    answers, the verdict is `unknown` and nothing is touched."""
    started = clock.monotonic()
    deadline = started + wait_s
    previous: Resolution | None = None
    said_unreachable = False
    while True:
        now = clock.monotonic()
        late = now >= deadline
        src, dst = _read(source, vm), _read(destination, vm)
        broken = [d for d in (src, dst) if isinstance(d, DomainInfo)
                  and d.postcopy == PostcopyState.FAILED]
        unreadable = isinstance(src, HostUnreachable) or isinstance(dst, HostUnreachable)
        if broken and unreadable:  # one side says so: enough (the other may hang in its
            # finish phase for minutes: seen with libvirt 11.3)
            res = Resolution(Verdict.POSTCOPY_PAUSED, reason="post-copy broke after the "
                             "switch: the guest's memory is split between the hosts")
            break
        if isinstance(src, HostUnreachable) or isinstance(dst, HostUnreachable):
            down = src if isinstance(src, HostUnreachable) else dst
            if not said_unreachable:
                recorder.event(EventKind.UNREACHABLE,
                               f"cannot ask where the VM is: {down}; asking again for up to "
                               f"{unreachable_wait_s / 60:.0f} min")
                said_unreachable = True
            res = Resolution(Verdict.UNKNOWN, reason=f"a host does not answer: {down}")
            if now - started >= unreachable_wait_s:
                break
            previous = None
            clock.sleep(UNREACHABLE_GAP_S if late else SETTLE_GAP_S)
            continue
        if said_unreachable and previous is None and late:
            deadline, late = now + wait_s, False  # both answer again: a fresh look
        res = resolve(src, dst, deadline_passed=late)
        if res.verdict != Verdict.IN_PROGRESS and (job_returned or res == previous or late):
            break
        previous = res if res.verdict != Verdict.IN_PROGRESS else None
        clock.sleep(SETTLE_GAP_S)
    recorder.event(EventKind.RESOLVED, f"{res.verdict}: {res.reason}")
    if res.clean_destination:
        _cleanup(destination, vm, recorder, "destination")
    if res.resume_source:
        try:
            source.resume(vm)
            recorder.event(EventKind.RESUMED, "resumed the paused guest on the source")
        except HypervisorError as exc:
            recorder.event(EventKind.RESUME_FAILED, str(exc))
    if res.clean_source:
        _cleanup(source, vm, recorder, "source")
    stats = None
    if res.verdict == Verdict.COMPLETED:
        stats = _completed_stats(destination, vm) or _completed_stats(source, vm)
    return JobResult(res, stats, error=error, aborted_for=aborted_for)


def _completed_stats(host: Hypervisor, vm: str) -> JobStats | None:
    try:
        return host.completed_job_stats(vm)
    except HypervisorError:
        return None


def _cleanup(host: Hypervisor, vm: str, recorder: Recorder, side: str) -> None:
    try:
        dom = host.find_domain(vm)
        if dom is None:
            return
        if dom.active:
            host.destroy(vm)
        if dom.persistent:
            host.undefine(vm)
        recorder.event(EventKind.CLEANED, f"removed the leftover domain on the {side}")
    except HypervisorError as exc:
        recorder.event(EventKind.CLEANUP_FAILED, f"{side}: {exc}")
