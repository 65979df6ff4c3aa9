"""Telling a guest that dirties in bursts from a steady one, and describing it (pure).

The doubling windows (predict/windows.py) run back to back.  A steady guest's
dirtied bytes grow with the window and flatten at its working set; a longer
window that dirtied far less than a shorter one, or a window that saw nothing
beside windows that saw plenty, is a guest in bursts (lab: 2 s on, 2 s off;
three back-to-back measurements of one read 91, 0 and 1.5 MiB/s as a steady
curve, and pre-copy finished in an off phase where the steady model said it
never would).  Then short windows back to back (`PROBE_S`) show when it is on
and off; runs between two others give the bursts' and pauses' lengths, a run
cut by the probe's ends only a lower bound.  The rate is the probe's windows
inside a burst; the working set is fitted to what each doubling window
dirtied over its own time in bursts (located from where the probe saw a
burst begin), and a last window spanning several bursts after the probe
(`span_window_s`), on the scale that decides round 2.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from ferry.predict.dirty import MIB, Bursts, DirtyCurve

DROP = 1.2  # a longer window dirtying this many times less than a shorter one
QUIET = 0.05  # a window dirtying under this share of the most any did saw nothing
MIN_SEEN = 1 * MIB  # below this at most, the guest is idle, not bursty
PROBE_S = 0.25
PROBE_SPAN_S = 5.0  # about one cycle and a quarter of the lab's bursts
MIN_PROBE_S = 1.5  # less budget than this left: no probe, the steady fit stands
ON = 0.5  # a probe window dirtying over this share of the busiest is in a burst
MIN_TAU_S = 0.2  # a doubling window with less time in bursts says little of the set
MIN_PAUSE_S = 2 * PROBE_S  # shorter pauses are not told from noise


@dataclass(frozen=True)
class Window:
    start_s: float  # when it began (the measurement's clock)
    length_s: float
    dirtied_bytes: float


def bursty(points: list[tuple[float, float]]) -> bool:
    """Do the doubling windows (in the order measured) look like bursts?

    >>> bursty([(0.25, 10 * MIB), (0.5, 18 * MIB), (1, 30 * MIB), (2, 31 * MIB)])
    False
    >>> bursty([(0.25, 19.6 * MIB), (0.5, 32.8 * MIB), (1, 41.5 * MIB), (2, 21 * MIB)])
    True
    >>> bursty([(0.25, 0.0), (0.5, 21.2 * MIB), (1, 55.5 * MIB)])
    True
    >>> bursty([(0.25, 0.0), (0.5, 0.2 * MIB), (1, 0.0)])  # idle
    False
    """
    top = max((d for _, d in points), default=0.0)
    if top < MIN_SEEN:
        return False
    if any(d < QUIET * top for _, d in points):
        return True
    return any(tj >= ti and dj * DROP < di
               for i, (ti, di) in enumerate(points) for tj, dj in points[i + 1:])


MIN_SPAN_S = 3.0  # a window over bursts shorter than this adds little to the doubling ones


def span_window_s(left_s: float, horizon_s: float) -> float | None:
    """How long a last window over several bursts should be: up to round 1's length
    (what dirtying over it decides the next round) in what the budget has left;
    None if that is too short to span more than one burst.  Windows that each see
    one burst barely tell its working set: lab, a burst guest writing 14 MiB/s over
    184 MiB read as 19 MiB from windows up to 2 s (predicted 24 % short).

    >>> span_window_s(7.2, 16.5), span_window_s(7.2, 4.0), span_window_s(2.0, 16.5)
    (7.2, 4.0, None)
    """
    span = min(left_s, horizon_s)
    return span if span >= MIN_SPAN_S else None


def outruns(points: list[tuple[float, float]], bandwidth_bytes_s: float) -> bool:
    """Does the shortest window that saw dirtying dirty faster than pre-copy sends?
    A steady guest that does never converges, so such a guest is probed for pauses
    before it is said to: a burst that saturates its working set within each window
    shows no drop (lab: three held-out burst guests, 20-45 MiB/s in bursts over
    40-104 MiB, read as steady and predicted never to converge, finished in a pause).

    >>> outruns([(0.25, 10.5 * MIB), (0.5, 16 * MIB)], 32 * MIB)
    True
    >>> outruns([(0.25, 0.0), (0.5, 4 * MIB)], 32 * MIB)
    False
    """
    seen = sorted((t, d) for t, d in points if t > 0 and d > 0)
    return bool(seen) and seen[0][1] / seen[0][0] > bandwidth_bytes_s


def steady_points(points: list[tuple[float, float]], probe: list[Window]
                  ) -> list[tuple[float, float]]:
    """The doubling windows with the probe's windows of a guest found steady folded
    into the one of the same length (their mean: repeated samples of the short
    window, which sets the rate, read closer than one).

    >>> steady_points([(0.25, 8 * MIB), (0.5, 12 * MIB)],
    ...               [Window(1, 0.25, 10 * MIB), Window(1.3, 0.25, 12 * MIB)])[0][1] / MIB
    10.0
    """
    same = [w.dirtied_bytes for w in probe]
    out = []
    for t, d in points:
        if same and abs(t - PROBE_S) < 1e-6:
            d = statistics.mean([d, *same])
        out.append((t, d))
    return out


def _runs(on: list[bool], windows: list[Window]) -> list[tuple[bool, float, bool]]:
    """(in a burst, seconds, whole: between two other runs) per run of like windows."""
    out: list[tuple[bool, float, bool]] = []
    i = 0
    while i < len(on):
        j = i
        while j + 1 < len(on) and on[j + 1] == on[i]:
            j += 1
        span = windows[j].start_s + windows[j].length_s - windows[i].start_s
        out.append((on[i], span, i > 0 and j < len(on) - 1))
        i = j + 1
    return out


def _length(runs: list[tuple[bool, float, bool]], state: bool) -> float | None:
    whole = [s for st, s, w in runs if st == state and w]
    if whole:
        return statistics.median(whole)
    cut = [s for st, s, _ in runs if st == state]
    return max(cut) if cut else None


def describe(probe: list[Window], windows: list[Window], memory_bytes: float,
             move_at_s: float | None = None) -> DirtyCurve | None:
    """The bursts seen in `probe` (back-to-back short windows) as a curve: the rate in
    a burst, the working set, the bursts' and pauses' lengths, and where in its
    cycle a move starting at `move_at_s` finds the guest (None, a move at some
    later time: the phase is not known).  `windows`: the doubling ones
    before the probe; all times on the same clock.  None: no burst and no pause
    both seen.

    >>> probe = [Window(4 + 0.25 * i, 0.25, (18 if (i // 8) % 2 == 0 else 0) * MIB)
    ...          for i in range(20)]
    >>> c = describe(probe, [Window(0.0, 2.0, 80 * MIB)], 512 * MIB)
    >>> c.bursts.on_s, c.bursts.off_s, round(c.rate_bytes_s / MIB), round(c.wss_bytes / MIB)
    (2.0, 2.0, 79, 101)
    """
    found = _cycle(probe)
    if found is None:
        return None
    on, on_s, off_s = found
    # windows inside a burst (a burst's first and last overlap a pause)
    inside = [w for i, w in enumerate(probe) if 0 < i < len(probe) - 1 and on[i - 1] and on[i]
              and on[i + 1]] or [max(probe, key=lambda w: w.dirtied_bytes)]
    seen = statistics.median(w.dirtied_bytes for w in inside)
    # the doubling windows' time in bursts, from where the probe saw one begin
    cycle = Bursts(on_s, off_s, -_burst_start(probe, on, on_s) % (on_s + off_s))
    pts = [(tau, w.dirtied_bytes) for w in windows if w.dirtied_bytes > 0
           and (tau := cycle.on_time(w.start_s, w.start_s + w.length_s)) >= MIN_TAU_S]
    rate, wss = seen / PROBE_S, memory_bytes
    for _ in range(3):  # a short window already saturates over a small working set
        wss = _working_set(rate, pts, memory_bytes)
        rate = _rate_over(PROBE_S, seen, wss)
    phase = None if move_at_s is None else (cycle.phase_s or 0.0) + move_at_s
    return DirtyCurve(rate, wss, Bursts(on_s, off_s, None) if phase is None
                      else cycle.at(phase))


def seen(probe: list[Window]) -> bool:
    """Did the probe see both a burst and a pause (what `describe` needs)?"""
    return _cycle(probe) is not None


def _cycle(probe: list[Window]) -> tuple[list[bool], float, float] | None:
    """Which probe windows were in a burst, and the bursts' and pauses' lengths; None
    without a burst and a pause both seen."""
    if not probe:
        return None
    top = max(w.dirtied_bytes for w in probe)
    if top <= 0:
        return None
    on = [w.dirtied_bytes > ON * top for w in probe]
    runs = _runs(on, probe)
    on_s, off_s = _length(runs, True), _length(runs, False)
    if on_s is None or off_s is None or off_s < MIN_PAUSE_S:
        return None  # (one quiet window is a slow dirtier's noise: lab, 3 MiB/s hot/cold)
    return on, on_s, off_s


def _burst_start(probe: list[Window], on: list[bool], on_s: float) -> float:
    """When (on the probe's clock) a burst began: the first window of one that follows
    a pause, else a burst's end less its length."""
    for i in range(1, len(on)):
        if on[i] and not on[i - 1]:
            return probe[i].start_s
    for i in range(1, len(on)):
        if on[i - 1] and not on[i]:
            return probe[i].start_s - on_s
    return probe[0].start_s


def _rate_over(t: float, dirtied: float, wss: float) -> float:
    """The rate at which a curve saturating at `wss` dirties `dirtied` in t seconds."""
    if math.isinf(wss):
        return dirtied / t
    return -wss * math.log(1.0 - min(dirtied, 0.999 * wss) / wss) / t


def _working_set(rate: float, pts: list[tuple[float, float]], memory_bytes: float) -> float:
    """The W that best explains what each doubling window dirtied over its time in
    bursts, at `rate` (least squares; the memory without such a window).  Taking a
    window as all burst read a small working set from ones partly in a pause (lab:
    19-33 MiB for 104-136; one such guest was then predicted to converge)."""
    if not pts:
        return memory_bytes
    lo = max(d for _, d in pts)
    if lo >= memory_bytes:
        return memory_bytes
    best = (math.inf, memory_bytes)
    for i in range(201):
        w = lo * (memory_bytes / lo) ** (i / 200)
        err = sum((DirtyCurve(rate, w).bytes_in(tau) - d) ** 2 for tau, d in pts)
        best = min(best, (err, w))
    return best[1]
