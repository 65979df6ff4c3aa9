"""One running migration job, looked at every SAMPLE_INTERVAL_S (`Watch.step`):
cancel and the hard timeout abort it (an abort libvirt refused is sent again),
each sample goes to the recorder and the policy's `Adapter`, a staged job is
released when its link frees, and `sent` is said once the source has sent
everything.  Split from engine.py, which starts, follows and settles the job."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace

from ferry.clock import Clock
from ferry.domain.models import Sample
from ferry.domain.vocab import AbortReason, EventKind
from ferry.hypervisor.base import Hypervisor
from ferry.hypervisor.errors import HostUnreachable, HypervisorError
from ferry.hypervisor.types import JobStats
from ferry.migration.policies import Action, ActionKind, Adapter
from ferry.migration.settling import Recorder
from ferry.predict.dirty import MIB
from ferry.predict.precopy import POSTCOPY_SHARE

SAMPLE_INTERVAL_S = 0.25
STAGE_MIB_S = 1  # a staged job's rate while it may not go (libvirt's smallest)
DRAIN_MIB_S = 1  # pre-copy's rate while the queues drain before the switch...
DRAIN_S = 0.5  # ...for this long (a 4 MiB socket buffer at 16 MiB/s: 0.25 s)
FULL_MIB_S = 8_796_093_022_207  # libvirt's largest rate for QEMU: no limit
ABORT_EVENT = {AbortReason.CANCEL: EventKind.CANCEL, AbortReason.TIMEOUT: EventKind.TIMEOUT,
               AbortReason.UNPLANNED: EventKind.ABANDONED,
               AbortReason.HOPELESS: EventKind.GAVE_UP}


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


def _setup_s(stats: JobStats) -> float:
    """libvirt's set-up of a staged job (the destination QEMU starting), from its first
    statistics in QEMU's round 1: its time less what it has sent at the trickle's rate
    as QEMU reports it (lab: 1.25 MiB/s at a 1 MiB/s cap) (its samples begin at its
    release, so history cannot read it from them)."""
    rate = stats.bandwidth_bytes_s or STAGE_MIB_S * MIB
    return max(0.0, stats.elapsed_ms / 1000 - stats.memory_processed_bytes / rate)


class Watch:
    """Samples one job; aborts it on cancel or at the hard timeout; applies the
    adapter's actions."""

    def __init__(self, vm: str, source: Hypervisor, destination: Hypervisor,
                 recorder: Recorder, cancel: threading.Event, timeout_s: float, clock: Clock,
                 adapter: Adapter | None = None, spent_s: float = 0.0,
                 bandwidth_mib_s: int | None = None) -> None:
        self.vm, self.source, self.recorder, self.clock = vm, source, recorder, clock
        self.destination = destination
        self.said_not_switching = False
        self.cancel, self.timeout_s, self.adapter = cancel, timeout_s, adapter
        self.started = clock.monotonic() - spent_s  # a followed job began before us
        self.opts_bandwidth_mib_s = bandwidth_mib_s  # the job's own cap, once released
        self.aborted_for: AbortReason | None = None
        self.abort_sent = False  # libvirt took the abort (refused before its job began)
        self.last_sample: Sample | None = None
        self.disk_bytes = 0
        self.staged_s = 0.0  # how long the job ran staged, waiting for its link
        self.hold: Callable[[], bool] | None = None  # set while staged: may it go now?
        self.count_staged = True  # the job's time counts from its release
        self.release_why = "its link is free"  # said at the release
        self.release_downtime_ms: int | None = None  # the plan's first limit, set then
        self.setup_s: float | None = None  # a staged job's set-up, seen in its trickle
        self.sent = False  # the source has sent everything (SENT recorded)
        self.on_sent: Callable[[], None] | None = None  # told once it has
        self.postcopy = False  # switched to post-copy
        self.postcopy_sampled = False  # a sample taken since: what post-copy has left
        self.stopped_at: float | None = None  # the source guest stopped for the switchover

    def elapsed_s(self) -> float:
        """The job's time since it started, or since its staging ended."""
        return self.clock.monotonic() - self.started

    def step(self) -> None:
        """One look at the job: stop it if asked to or out of time, else sample it.  A
        staged job goes at full speed once QEMU's own migration runs (a rate set
        earlier, while libvirt still sets the job up, is overwritten by the job's
        start parameters: seen on the lab, a staged job stayed at 1 MiB/s until its
        timeout) and its hold says so; until then it is neither sampled nor timed."""
        staged = self.hold is not None
        if self.aborted_for is None:
            if self.cancel.is_set():
                self._abort(AbortReason.CANCEL, "cancel requested: aborting the job")
            elif not staged and self.elapsed_s() > self.timeout_s:
                self._abort(AbortReason.TIMEOUT,
                            f"no completion after {self.timeout_s:.0f}s: aborting the job")
        if self.stopped_at is not None and self._after_switchover():
            return
        try:
            stats = self.source.job_stats(self.vm)
        except HostUnreachable:
            return
        except HypervisorError:  # the source domain stops, then goes, at the end
            self._sent_all(certain=False, postcopy_end=True)
            return
        if not stats.active:
            if self.postcopy:  # post-copy's job ended: its pages have all gone
                self._sent_all(certain=False, postcopy_end=True)
            return
        # (a sample with nothing remaining is no end: each round ends so, before the
        # bitmap sync adds what was dirtied meanwhile; seen on the lab, such a `sent`
        # let a drain's next move onto a link whose job then ran three more rounds)
        if self.aborted_for is not None and not self.abort_sent:
            self._send_abort(again=True)
        if self.hold is not None:
            if stats.iteration >= 1 and self.setup_s is None and self.count_staged:
                self.setup_s = _setup_s(stats)
            if self.aborted_for is not None or stats.iteration < 1 or not (
                    self.hold() or self.elapsed_s() > self.timeout_s):  # never trickle on
                return
            self._release()
            return  # the next sample is at the new rate
        self.disk_bytes = max(self.disk_bytes, stats.disk_processed_bytes)
        sample = to_sample(stats)
        if self.staged_s:  # on the clock of a job that started at its release
            sample = replace(sample, t_ms=max(0, sample.t_ms - round(self.staged_s * 1000)))
        self.last_sample = sample
        self.postcopy_sampled = self.postcopy
        self.recorder.sample(sample)
        if self.postcopy and sample.memory_remaining_bytes == 0:
            self._sent_all(certain=True, postcopy_end=True)  # post-copy re-sends nothing
        if self.adapter is not None and self.aborted_for is None:
            for action in self.adapter.decide(sample, self.elapsed_s()):
                self._apply(action)

    def stopped(self) -> None:
        """The source guest has stopped for pre-copy's switchover (from libvirt's event
        thread): what remains goes now, in the pause."""
        self.stopped_at = self.clock.monotonic()

    def ended(self) -> None:
        """The job's call returned without an error after the source guest stopped for
        the switchover: what remained has gone, said now if the pause's estimate had
        not said it yet (lab: libvirt's finish takes ~0.2 s since its hosts' QEMUs are
        reaped at once, less than the estimate of the last pages' time)."""
        if self.stopped_at is not None and not self.postcopy:
            self._sent_all(certain=True)

    def _after_switchover(self) -> bool:
        """The pause's last pages take what remained at the last sample over its rate
        (at most 1 s); then everything is sent, and the source's statistics are no
        longer asked for: libvirt answers them only after its finish (seen on the lab:
        a call blocked ~2 s)."""
        assert self.stopped_at is not None
        last = self.last_sample
        final_s = min(1.0, last.memory_remaining_bytes / last.bandwidth_bytes_s) \
            if last is not None and last.bandwidth_bytes_s > 0 else 0.0
        if not self.sent and self.clock.monotonic() >= self.stopped_at + final_s:
            self._sent_all(certain=True)
        return self.sent

    def _sent_all(self, certain: bool, postcopy_end: bool = False) -> None:
        """QEMU has sent the guest's memory: a sample says nothing remains, or the
        source's statistics fail ("domain is not running": the guest stopped for the
        switchover) right after one that had under two samples' worth left.  libvirt
        then starts the guest on the destination and ends the source's QEMU (~1.7 s on
        the loaded lab).  Said once: the link is free, so a drain's next move may use
        it, and the admission limits no longer count this one.  Not after an abort.
        In post-copy, once a sample taken since the switch says nothing remains (or
        had under two samples' worth before the job ended: `postcopy_end`, from the
        sampling only): its background copy re-sends nothing, so the link is free
        then, not once libvirt has finished (lab: a drain's next move waited 2.4 s
        for that).  Not from the source guest stopping: it stops at the switch too
        (lab: taken for the end, it let the next move onto the link 9 s early, and
        the post-copy guest waited 2.6 s for pages queued behind it)."""
        last = self.last_sample
        near_end = certain or (last is not None and last.memory_remaining_bytes <=
                               last.bandwidth_bytes_s * 2 * SAMPLE_INTERVAL_S)
        if self.sent or last is None or last.iteration < 1 or self.aborted_for is not None \
                or (self.postcopy and not (postcopy_end and self.postcopy_sampled)) \
                or not near_end:
            return
        self.sent = True
        self.recorder.event(EventKind.SENT, "memory sent: libvirt starts the guest on the "
                            "destination and ends the source's")
        if self.on_sent is not None:
            self.on_sent()

    def _release(self) -> None:
        """The link is free (and the job planned): its first downtime limit, full speed,
        and the job's time starts now.  The limit too is set only now, when QEMU's
        migration runs with the job's own parameters (a rate set earlier was lost:
        `step`)."""
        self.hold = None
        if self.count_staged:
            self.staged_s = self.elapsed_s()
            self.started += self.staged_s
        if self.release_downtime_ms is not None:
            try:
                self.source.set_max_downtime(self.vm, self.release_downtime_ms)
            except HypervisorError as exc:
                self.recorder.event(EventKind.SET_DOWNTIME_FAILED, f"the plan's first "
                                    f"limit: {exc}")
        rate = self.opts_bandwidth_mib_s or FULL_MIB_S
        try:
            self.source.set_bandwidth(self.vm, rate)
        except HypervisorError as exc:  # e.g. the job has just ended
            self.recorder.event(EventKind.SET_BANDWIDTH_FAILED, f"full speed: {exc}")
            return
        speed = "full speed" if rate == FULL_MIB_S else f"{rate} MiB/s (its cap)"
        self.recorder.event(EventKind.RELEASED, (
            f"{self.release_why} after {self.staged_s:.1f} s staged: {speed}"
            if self.count_staged else f"followed after a restart (its drain's gate went with "
            f"the earlier process): {speed}"))

    def _apply(self, action: Action) -> None:
        if action.kind == ActionKind.ABORT:
            self._abort(action.abort_for, action.reason)
            return
        if action.kind == ActionKind.START_POSTCOPY and not self._destination_ready():
            return
        self.recorder.event(action.kind.event, action.reason)
        try:
            if action.kind == ActionKind.SET_DOWNTIME and action.downtime_ms is not None:
                self.source.set_max_downtime(self.vm, action.downtime_ms)
            elif action.kind == ActionKind.START_POSTCOPY:
                self._quiet_link()
                self.postcopy = True
                self.source.start_postcopy(self.vm)
        except HypervisorError as exc:
            self.recorder.event(action.kind.failed_event, str(exc))

    def _quiet_link(self) -> None:
        """Post-copy's pause is the time the guest waits for pages it touches; they
        queue behind whatever fills the socket and the link (seen on the lab, 16 MiB/s
        link: 1.3-2.9 s guest-seen gaps with post-copy at full speed, 0.3-0.5 s at a
        quarter to a half of it).  So post-copy's background copy gets a share of
        the rate the job reached, and pre-copy is slowed for DRAIN_S just before the
        switch so that the switch itself does not queue either."""
        rate = self.last_sample.bandwidth_bytes_s if self.last_sample else 0
        if rate <= 0:
            return
        share = max(1, int(rate * POSTCOPY_SHARE / MIB))
        try:
            self.source.set_bandwidth(self.vm, share, postcopy=True)
            self.source.set_bandwidth(self.vm, DRAIN_MIB_S)
        except HypervisorError as exc:
            self.recorder.event(EventKind.SET_BANDWIDTH_FAILED, f"post-copy rate: {exc}")
            return
        self.recorder.event(EventKind.SET_BANDWIDTH, f"post-copy background copy at {share} MiB/s "
                            f"({POSTCOPY_SHARE:.0%} of the {rate / MIB:.0f} MiB/s reached); "
                            f"pre-copy slowed to {DRAIN_MIB_S} MiB/s for {DRAIN_S} s so that "
                            "the switch does not queue")
        self.clock.sleep(DRAIN_S)

    def _destination_ready(self) -> bool:
        """Post-copy hands the guest to the destination for good: switch only when its
        daemon answers (one that stopped answering cannot start the guest there; seen
        on the lab: the guest was lost on both hosts).  Otherwise pre-copy goes on and
        the adapter asks again at the next sample.  A host-wide call: the incoming
        domain itself is locked by its migration job on the destination."""
        try:
            self.destination.info()
            why = ""
        except HypervisorError as exc:
            why = f"it does not answer ({exc})"
        if not why:
            return True
        if self.adapter is not None:
            self.adapter.postcopy = False  # decided again at the next sample
        if not self.said_not_switching:
            self.recorder.event(EventKind.START_POSTCOPY_FAILED, "not switching to "
                                f"post-copy while the destination cannot take the guest: "
                                f"{why}; pre-copy goes on")
            self.said_not_switching = True
        return False

    def abandon(self, why: str) -> None:
        """A job started before its plan, which could not be made: aborted."""
        if self.aborted_for is None:
            self._abort(AbortReason.UNPLANNED, f"{why}: aborting its staged job; the VM "
                        "stays on the source")

    def _abort(self, reason: AbortReason, message: str) -> None:
        self.aborted_for = reason
        self.recorder.event(ABORT_EVENT[reason], message)
        self._send_abort(again=False)

    def _send_abort(self, again: bool) -> None:
        """Abort the job; one that libvirt refused is aborted again at each sample
        while the job runs.  libvirt's migration call runs in its own thread, so a
        cancel just after it was made can come before libvirt has begun the job
        ("no job is active on the domain"); the job then ran on, and a staged one
        trickled at 1 MiB/s with neither release nor timeout (the likely cause of a
        CI run whose drain, cancelled as its second move started, never ended).
        After a post-copy switch every try is refused, as it should be."""
        try:
            self.source.abort_job(self.vm)
        except HypervisorError as exc:
            if not again:
                self.recorder.event(EventKind.ABORT_FAILED, f"{exc}; tried again while "
                                    "the job runs")
            return
        self.abort_sent = True
        if again:
            assert self.aborted_for is not None
            self.recorder.event(ABORT_EVENT[self.aborted_for], "the job runs now: aborted")
