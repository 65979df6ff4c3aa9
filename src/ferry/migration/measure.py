"""Measuring a guest just before it moves: its non-zero memory, its dirty-page curve
and its CPU use.

Guest pages read (while the first dirty windows run) say how much of
its memory is not zero (what round 1 will really send), and so how long round
1 will take at the link's speed: the dirty curve matters up to there.
Dirtying saturates at the guest's writable working set, so one rate would
mispredict: QEMU page
sampling over windows that double (0.25, 0.5, 1, 2 s, ...) gives points of
the curve until the curve flattens, the windows reach round 1's length, or
the measurement budget is spent (`predict.windows` decides, pure).
`predict.dirty.fit` turns the points into a rate and a working set.  Windows
that do not grow like one curve are a guest dirtying in bursts: the
doubling stops, and short windows back to back, in what is left of the
budget, show its bursts and pauses (`predict.bursts`), and a last window spanning
several bursts the working set they write on round 1's scale; so do they for a
guest whose windows look steady but dirty faster than the link (a steady
one would never converge: it may pause).  The vCPU time over
the same span says whether the dirtying is CPU-bound (only then can
auto-converge's throttling slow it); the time the vCPU waited for a host CPU is
reported (a host short of CPU: it did not tell which guests' dirtying it held
back, docs/drain.md).
"""

from __future__ import annotations

import math
import threading

from ferry.clock import Clock
from ferry.errors import Unavailable
from ferry.hypervisor.base import MeasureOps
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import PageSample
from ferry.predict import bursts
from ferry.predict.dirty import MIB, fit
from ferry.predict.inputs import Measurement
from ferry.predict.windows import next_window_s

PREDICT_BUDGET_S = 16.0  # `ferry predict`: the operator asked and waits
MIGRATE_BUDGET_S = 4.0  # before a migration: every second delays the move
# guest pages read for the non-zero share (reads of 16 contiguous pages, ~9 ms each
# on the lab, spread over the RAM), or as many as the time allows: 1-3 % off at 384
# reads, 2-5 % at 128 (bench/page_sampling.py, share of the true share)
SAMPLE_PAGES = {"predict": 6144, "migrate": 2048}
SAMPLE_BUDGET_S = {"predict": 3.0, "migrate": 1.0}
# QEMU's maximum; its default (512 per GiB) sees only ~128 pages of a small guest
SAMPLE_PAGES_PER_GIB = 16384
HORIZON_AFTER = 2  # windows measured before the horizon (from the page count) is needed
# windows measured before they can say the guest is in bursts; one more (a longer
# window shows its working set) if the budget leaves room for it and the probe
BURSTS_AFTER = 3


class _Sampling:
    """The guest's pages counted in a thread while the first dirty windows run: both
    only read the guest (libvirt interleaves the reads with QEMU's dirty-rate
    calculation, which runs in the background of its monitor), so the measurement
    takes the longer of the two instead of their sum (lab, 256 MiB guest: 0.3 s of
    page reads and 0.8 s of windows took 0.8 s together)."""

    def __init__(self, host: MeasureOps, vm: str, kind: str,
                 pages: PageSample | None = None) -> None:
        self._out: tuple[int, int, float] = (0, 0, 1.0)
        self.profile: tuple[float, ...] = ()
        self.wire_share = 1.0
        self._thread: threading.Thread | None = None
        if pages is not None:  # read before (`read_pages`): only its figures
            self._take(pages)
        else:
            self._thread = threading.Thread(target=self._run, args=(host, vm, kind),
                                            daemon=True)
            self._thread.start()

    def _run(self, host: MeasureOps, vm: str, kind: str) -> None:
        got = read_pages(host, vm, kind)
        if got is not None:
            self._take(got)

    def _take(self, pages: PageSample) -> None:
        self._out = (pages.pages, pages.nonzero, pages.stderr)
        self.profile, self.wire_share = pages.profile, pages.wire_share

    def result(self) -> tuple[int, int, float]:
        """Pages read, non-zero among them, the share's standard error."""
        if self._thread is not None:
            self._thread.join()
        return self._out

    def horizon_s(self, memory_mib: int, bandwidth_bytes_s: float) -> float:
        """How long round 1 takes: the non-zero memory at the expected rate (all of it
        when no page could be read)."""
        read, nonzero, _ = self.result()
        share = nonzero / read if read else 1.0
        return share * memory_mib * MIB / max(bandwidth_bytes_s, 1.0)


def read_pages(host: MeasureOps, vm: str, kind: str = "migrate") -> PageSample | None:
    """The guest's pages read for its non-zero share (None: no page reading here, the
    resident memory bounds it)."""
    try:
        return host.sample_pages(vm, SAMPLE_PAGES[kind], SAMPLE_BUDGET_S[kind])
    except HypervisorError:
        return None


def measure(host: MeasureOps, vm: str, memory_mib: int, clock: Clock, *,
            bandwidth_bytes_s: float, before_move: bool = False,
            move_now: bool = False, pages: PageSample | None = None) -> Measurement:
    """Measure `vm` for a move at `bandwidth_bytes_s` (the pre-copy rate expected);
    `before_move`: a migration waits for it, so look for less long; `move_now`: it
    starts as soon as this returns (a bursty guest's phase then is known); `pages`:
    its pages already read (`read_pages`), else they are read while the first dirty
    windows run."""
    kind = "migrate" if before_move else "predict"
    budget_s = MIGRATE_BUDGET_S if before_move else PREDICT_BUDGET_S
    sampling = _Sampling(host, vm, kind, pages)
    points: list[tuple[float, float]] = []
    horizon_s = math.inf  # until the pages are counted: only the third window needs it
    try:
        cpu0, wait0, t0 = host.vcpu_time_ns(vm), _wait_ns(host, vm), clock.monotonic()
        window = next_window_s(points, horizon_s, budget_s)
        done: list[bursts.Window] = []  # the same windows, with when they began
        while window is not None:
            ms = max(50, round(window * 1000))  # QEMU's shortest
            start = clock.monotonic() - t0
            rate = host.dirty_rate_mib_s(vm, ms, SAMPLE_PAGES_PER_GIB)
            points.append((ms / 1000, rate * MIB * ms / 1000))
            done.append(bursts.Window(start, ms / 1000, points[-1][1]))
            if len(points) >= HORIZON_AFTER:
                horizon_s = sampling.horizon_s(memory_mib, bandwidth_bytes_s)
            window = next_window_s(points, horizon_s, budget_s)
            if window is not None and len(points) >= BURSTS_AFTER and bursts.bursty(points) \
                    and (len(points) > BURSTS_AFTER or clock.monotonic() - t0 + window +
                         bursts.PROBE_SPAN_S > budget_s):
                break  # the rest of the budget goes to seeing its bursts
        probe = _probe(host, vm, clock, t0, budget_s) if bursts.bursty(points) or \
            bursts.outruns(points, bandwidth_bytes_s) else []
        horizon_s = sampling.horizon_s(memory_mib, bandwidth_bytes_s)
        span = bursts.span_window_s(budget_s - (clock.monotonic() - t0), horizon_s)
        if span is not None and bursts.seen(probe):
            # bursts seen: one window over several of them, on the scale of round 1
            ms = round(span * 1000)
            start = clock.monotonic() - t0
            rate = host.dirty_rate_mib_s(vm, ms, SAMPLE_PAGES_PER_GIB)
            points.append((ms / 1000, rate * MIB * ms / 1000))
            done.append(bursts.Window(start, ms / 1000, points[-1][1]))
        read, nonzero, err = sampling.result()
        spent = max(clock.monotonic() - t0, 1e-3)
        busy = (host.vcpu_time_ns(vm) - cpu0) / 1e9 / spent
        waited = (_wait_ns(host, vm) - wait0) / 1e9 / spent
        rss = host.resident_mib(vm)
    except HypervisorError as exc:
        raise Unavailable(f"cannot measure {vm}: {exc}") from exc
    hashed = max(128, round(SAMPLE_PAGES_PER_GIB * memory_mib / 1024))
    move_at = clock.monotonic() - t0 if move_now else None
    curve = bursts.describe(probe, done, memory_mib * MIB, move_at)
    if curve is None:  # steady: a probe's windows are more samples of the first one
        points = bursts.steady_points(points, probe)
        curve = fit(points, memory_mib * MIB)
    return Measurement(points, curve, rss, min(busy, 1.0), read, nonzero, err,
                       cpu_wait=max(0.0, min(waited, 1.0)), nonzero_profile=sampling.profile,
                       horizon_s=horizon_s, spent_s=spent, dirty_sample_pages=hashed,
                       probe=[(w.length_s, w.dirtied_bytes) for w in probe],
                       wire_share=sampling.wire_share)


def _wait_ns(host: MeasureOps, vm: str) -> int:
    """The vCPU's wait for a host CPU, 0 where it cannot be read (only reported: a
    measurement does not fail for it)."""
    try:
        return host.vcpu_wait_ns(vm)
    except HypervisorError:
        return 0


def _probe(host: MeasureOps, vm: str, clock: Clock, t0: float,
           budget_s: float) -> list[bursts.Window]:
    """Short windows back to back for up to PROBE_SPAN_S (of what the budget left,
    counted from t0, which their start times count from too): when the guest is in
    a burst and when it pauses."""
    begin = clock.monotonic()
    span = min(bursts.PROBE_SPAN_S, budget_s - (begin - t0))
    if span < bursts.MIN_PROBE_S:
        return []
    out: list[bursts.Window] = []
    ms = round(bursts.PROBE_S * 1000)
    while clock.monotonic() - begin + bursts.PROBE_S <= span:
        start = clock.monotonic() - t0
        rate = host.dirty_rate_mib_s(vm, ms, SAMPLE_PAGES_PER_GIB)
        out.append(bursts.Window(start, ms / 1000, rate * MIB * ms / 1000))
    return out
