"""Running one migration job: start it (staged, for a drain whose link is busy),
sample it, stop it, settle it.

The job runs on its own on the source host; this loop looks at it every
SAMPLE_INTERVAL_S (`watch.Watch`: samples, cancel and the hard timeout, the
policy's `Adapter`, a staged job's release, `sent`), and finally settles
(`settling.settle`: where the guest really is, the losing side cleaned).
It never touches the database (it reports through a `Recorder`) and waits
only through its `Clock`, so the simulated cluster runs it on virtual time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from ferry.clock import Clock
from ferry.domain.vocab import EventKind
from ferry.hypervisor.base import Hypervisor
from ferry.hypervisor.errors import DomainNotFound, HostUnreachable, HypervisorError
from ferry.hypervisor.types import MigrationOptions, PostcopyState
from ferry.migration.outcome import Verdict
from ferry.migration.policies import Adapter
from ferry.migration.settling import JobResult, Recorder, settle
from ferry.migration.watch import SAMPLE_INTERVAL_S, STAGE_MIB_S, Watch

FOLLOW_GRACE_S = 60.0  # a job that outlives its hard stop this long is left to settling


@dataclass(frozen=True)
class Prepared:
    """What a job started before its plan learns once planned (`run_job(prepare=)`)."""

    adapter: Adapter | None
    downtime_ms: int | None  # the plan's first downtime limit, set at the release


def run_job(vm: str, source: Hypervisor, destination: Hypervisor, opts: MigrationOptions,
            recorder: Recorder, cancel: threading.Event, timeout_s: float, clock: Clock,
            adapter: Adapter | None = None, hold: Callable[[], bool] | None = None,
            sent: Callable[[], None] | None = None,
            prepare: Callable[[], Prepared] | None = None) -> JobResult:
    """Run the migration job to its end and settle where the guest is.

    `hold`: may the job transfer now?  If not, it is staged: started at
    STAGE_MIB_S, so that libvirt's set-up (the destination QEMU starting, ~1 s on
    the lab) overlaps what holds the link, and set to its own rate once `hold`
    says yes; its time, timeout and policy count from then.  `prepare`: the job
    is staged while this measures the guest and plans (the set-up overlaps the
    measurement: the job's options follow from the policy alone); its adapter and
    first downtime limit apply from the release; if it fails, the job is aborted
    and, unless the guest moved all the same, the error raised once settled.
    `sent` hears once that the source has sent everything (libvirt finishing:
    the link is free)."""
    # never a job that copies disks (the pipeline waits for its link instead): libvirt's
    # rate change reaches the memory migration, not the disk mirror
    stageable = not opts.postcopy_resume and not opts.copy_disks
    assert prepare is None or stageable
    staged = prepare is not None or (hold is not None and stageable and not hold())
    recorder.event(EventKind.STARTED, (
        f"resuming the broken post-copy to {opts.dest_uri}" if opts.postcopy_resume
        else f"libvirt p2p live migration to {opts.dest_uri}"))
    watch = Watch(vm, source, destination, recorder, cancel, timeout_s, clock, adapter,
                   bandwidth_mib_s=opts.bandwidth_mib_s)
    watch.on_sent = sent
    if staged:
        why = ("its link is busy", "the link is free") if prepare is None else \
            ("the guest is measured", "planned") if hold is None else \
            ("the guest is measured and its link may be busy", "planned and its link free")
        recorder.event(EventKind.STAGED, f"{why[0]}: the job starts at {STAGE_MIB_S} MiB/s "
                       "(libvirt starts the destination QEMU meanwhile) and goes at its "
                       f"own rate once {why[1]}")
        watch.hold = hold or (lambda: True)
        if prepare is not None:
            watch.release_why = why[1]
        opts = replace(opts, bandwidth_mib_s=STAGE_MIB_S)
    try:
        job = source.start_migration(vm, opts)
    except HypervisorError as exc:
        recorder.event(EventKind.JOB_FAILED, str(exc))
        res = settle(vm, source, destination, recorder, clock, error=str(exc), aborted_for=None,
                     job_returned=True)
        return replace(res, job_ms=0)
    job.when_stopped(watch.stopped)
    failure = _prepared(watch, prepare)
    while True:
        watch.step()
        if job.wait(SAMPLE_INTERVAL_S):  # returns early when the job ends
            break
    error = str(job.error) if job.error is not None else ""
    if not error:
        watch.ended()
    if error:
        recorder.event(EventKind.JOB_FAILED, error)
        # the call may have ended with its connection (libvirt says "internal error:
        # connection closed due to keepalive timeout"), not the job: follow it on the
        # source (policy, cancel and timeout still apply) until the source says it ended
        _follow(vm, source, watch, recorder, clock)
    job_ms = round(watch.elapsed_s() * 1000)
    res = settle(vm, source, destination, recorder, clock, error=error,
                 aborted_for=watch.aborted_for, job_returned=True)
    if failure is not None and res.resolution.verdict != Verdict.COMPLETED:
        raise failure
    return replace(res, job_ms=job_ms, last_sample=watch.last_sample,
                   disk_bytes=watch.disk_bytes, staged_ms=round(watch.staged_s * 1000),
                   setup_ms=None if watch.setup_s is None else round(watch.setup_s * 1000))


def _prepared(watch: Watch, prepare: Callable[[], Prepared] | None) -> Exception | None:
    """Plan the staged job (`run_job`'s `prepare`): its adapter and first limit go to the
    watch; a failure aborts the job and is returned, to be raised once it is settled."""
    if prepare is None:
        return None
    try:
        ready = prepare()
    except Exception as exc:  # never leave the job trickling: settle first, then raise
        watch.abandon(getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}")
        return exc
    watch.adapter, watch.release_downtime_ms = ready.adapter, ready.downtime_ms
    return None


def _job_running(source: Hypervisor, vm: str) -> bool | None:
    """Is a migration job still moving the guest?  None: the source cannot say now.

    Job statistics are asked first: libvirt answers them while the job holds the
    domain's state lock.  A post-copy that broke keeps its job active (paused, to be
    resumed), so an active job is over for us when the domain says its post-copy
    failed: settling then reports it (seen on the lab: followed forever otherwise).
    A domain that is not running has no job (its QEMU was killed: seen on the lab,
    followed until the hard stop otherwise)."""
    try:
        if not source.job_stats(vm).active:
            return False
    except DomainNotFound:
        return False
    except HostUnreachable:
        return None
    except HypervisorError:  # e.g. "domain is not running": its QEMU is gone, or not?
        try:
            dom = source.find_domain(vm)
        except HypervisorError:
            return None
        return None if dom is not None and dom.active else False
    try:
        dom = source.find_domain(vm)
    except HypervisorError:  # e.g. its state lock, held by the job: the job runs
        return True
    return dom is not None and dom.postcopy != PostcopyState.FAILED


def _past_hard_stop(watch: Watch) -> bool:
    """The hard stop was tried FOLLOW_GRACE_S ago and the job still runs: leave it
    to settling, which asks both hosts where the guest is (never wait forever)."""
    return watch.elapsed_s() > watch.timeout_s + FOLLOW_GRACE_S


def _follow(vm: str, source: Hypervisor, watch: Watch, recorder: Recorder,
            clock: Clock) -> None:
    """Watch a job whose call was lost until the source says it ended, or until
    FOLLOW_GRACE_S after its hard stop."""
    said_following = said_lost = False
    while not _past_hard_stop(watch):
        running = _job_running(source, vm)
        if running is False:
            return
        if running is None:
            if not said_lost:
                recorder.event(EventKind.UNREACHABLE, "cannot see the job on the source "
                                                      "now; asking again")
                said_lost = True
        elif not said_following:
            recorder.event(EventKind.REATTACHED, "the job runs on: following it")
            said_following = True
        watch.step()
        clock.sleep(SAMPLE_INTERVAL_S if running else 2.0)


def follow_job(vm: str, source: Hypervisor, destination: Hypervisor, recorder: Recorder,
               cancel: threading.Event, timeout_s: float, clock: Clock,
               adapter: Adapter | None = None, spent_s: float = 0.0, *, staged: bool = False,
               bandwidth_mib_s: int | None = None) -> JobResult:
    """Follow a job an earlier controller process started `spent_s` ago until it ends,
    applying its policy (`adapter`) and timeout as the first process would, then settle.
    A `staged` job (its drain's gate went with that process) goes at its own rate
    (`bandwidth_mib_s`, else full speed) as soon as QEMU's migration runs; its time
    still counts from its start."""
    def running() -> bool:
        # a source that cannot say now: settling asks again, patiently
        return bool(_job_running(source, vm)) and not _past_hard_stop(watch)

    watch = Watch(vm, source, destination, recorder, cancel, timeout_s, clock, adapter,
                   spent_s, bandwidth_mib_s)
    if staged:
        watch.hold, watch.count_staged = (lambda: True), False
    if running():
        recorder.event(EventKind.REATTACHED, "found the migration job still running; "
                                             "following it")
    while running():
        watch.step()
        clock.sleep(SAMPLE_INTERVAL_S)
    res = settle(vm, source, destination, recorder, clock, error="",
                 aborted_for=watch.aborted_for)
    return replace(res, last_sample=watch.last_sample, disk_bytes=watch.disk_bytes)
