"""How many bytes a guest dirties within a window of t seconds (pure).

One dirty rate mispredicts: a guest rewrites its writable working set W over
and over, so what it dirties in t seconds grows like r*t at first and
saturates at W.  For writes spread uniformly over W the expected number of
distinct dirty bytes is

    D(t) = W * (1 - exp(-r*t / W))

which is what `fit` estimates from measured windows (e.g. 0.25, 0.5, 1, 2 s).

Worked example (r = 64 MiB/s, W = 64 MiB):

| window t | D(t)      | apparent rate D(t)/t |
|----------|-----------|----------------------|
| 0.25 s   | 14.2 MiB  | 56.6 MiB/s           |
| 1 s      | 40.5 MiB  | 40.5 MiB/s           |
| 4 s      | 62.8 MiB  | 15.7 MiB/s           |
"""

from __future__ import annotations

import math
from dataclasses import dataclass

MIB = 1024 * 1024


@dataclass(frozen=True)
class Bursts:
    """A guest that dirties in bursts: `on_s` seconds at the curve's rate, then
    `off_s` seconds of nothing, over and over; `phase_s` into its cycle at time 0
    (None: not known, a move at some later time; predict/precopy.py then
    predicts from places spread over the cycle).  Pre-copy can finish in a quiet
    phase what it never could at the burst's rate.

    >>> Bursts(2.0, 2.0).on_time(1.0, 5.0), Bursts(2.0, 2.0, phase_s=1.0).on_time(0.0, 4.0)
    (2.0, 2.0)
    """

    on_s: float
    off_s: float
    phase_s: float | None = 0.0

    @property
    def period_s(self) -> float:
        return self.on_s + self.off_s

    def at(self, phase_s: float) -> Bursts:
        """The same bursts, `phase_s` into their cycle at time 0."""
        return Bursts(self.on_s, self.off_s, phase_s % self.period_s)

    def on_time(self, a: float, b: float) -> float:
        """Seconds of bursts between times a and b."""
        return max(0.0, self._on_before(b) - self._on_before(a))

    def _on_before(self, t: float) -> float:
        x = t + (self.phase_s or 0.0)  # (unknown: taken as a burst beginning)
        cycles = math.floor(x / self.period_s)
        return cycles * self.on_s + min(x - cycles * self.period_s, self.on_s)


@dataclass(frozen=True)
class DirtyCurve:
    """D(t) = W*(1 - e^(-r*t/W)); W = inf means no saturation (D = r*t).  With
    `bursts`, t counts only the time the guest is in a burst."""

    rate_bytes_s: float
    wss_bytes: float = math.inf
    bursts: Bursts | None = None

    def bytes_in(self, t: float) -> float:
        """Dirtied within t seconds of dirtying (a bursty guest: t in its bursts)."""
        if t <= 0 or self.rate_bytes_s <= 0:
            return 0.0
        if math.isinf(self.wss_bytes):
            return self.rate_bytes_s * t
        return self.wss_bytes * (1.0 - math.exp(-self.rate_bytes_s * t / self.wss_bytes))

    @property
    def mean_rate_bytes_s(self) -> float:
        """The rate over bursts and pauses alike (what QEMU's per-round figure sees)."""
        b = self.bursts
        return self.rate_bytes_s * (b.on_s / b.period_s if b is not None else 1.0)

    def bytes_between(self, a: float, b: float) -> float:
        """Dirtied between times a and b: a bursty guest only in its bursts."""
        return self.bytes_in(b - a if self.bursts is None else self.bursts.on_time(a, b))

    def scaled(self, factor: float) -> DirtyCurve:
        """The same working set dirtied `factor` times as fast (e.g. a throttled vCPU)."""
        return DirtyCurve(self.rate_bytes_s * factor, self.wss_bytes, self.bursts)


def fit(points: list[tuple[float, float]], memory_bytes: float) -> DirtyCurve:
    """Fit r and W to measured (window seconds, dirty bytes) points.

    r comes from the shortest window that saw dirtying (nearest the true
    instantaneous rate, corrected for the curvature once W is known; a shorter
    one that saw nothing fell between a bursty guest's bursts: lab, a guest 2 s
    on / 2 s off read as dirtying 0 MiB/s); W by least squares over [largest
    measurement, memory size]; no saturation visible → W = memory.

    >>> c = fit([(0.25, 14.2 * MIB), (1, 40.5 * MIB), (4, 62.8 * MIB)], 256 * MIB)
    >>> round(c.rate_bytes_s / MIB), round(c.wss_bytes / MIB)
    (64, 64)
    """
    pts = sorted((t, d) for t, d in points if t > 0 and d >= 0)
    if not pts or max(d for _, d in pts) <= 0:
        return DirtyCurve(0.0, memory_bytes)
    while pts[0][1] <= 0:
        pts = pts[1:]
    lo = max(d for _, d in pts)
    best: tuple[float, float, float] | None = None
    steps = 200
    for i in range(steps + 1):
        w = lo * (memory_bytes / lo) ** (i / steps) if memory_bytes > lo else lo
        r = _rate_for(pts[0], w)
        err = sum((DirtyCurve(r, w).bytes_in(t) - d) ** 2 for t, d in pts)
        if best is None or err < best[0]:
            best = (err, r, w)
    assert best is not None
    return DirtyCurve(best[1], best[2])


def _rate_for(point: tuple[float, float], w: float) -> float:
    """The r for which D(t0) = d0 on a curve saturating at w."""
    t0, d0 = point
    if d0 >= w:
        d0 = w * 0.999
    return -w * math.log(1.0 - d0 / w) / t0


def tracking_factor(during_bytes_s: float, before: DirtyCurve, window_s: float = 0.5) -> float:
    """How much slower the guest dirtied while migrating than when measured before.

    QEMU reports a dirty rate per round during the migration; under TCG dirty
    tracking slows the guest's writes (measured here: 320-390 MiB/s before,
    130-155 MiB/s during).  Compared with the measured curve's apparent rate
    over `window_s`, clamped to [0.1, 1].

    >>> round(tracking_factor(140 * MIB, DirtyCurve(350 * MIB, 2048 * MIB)), 2)
    0.42
    """
    apparent = before.bytes_in(window_s) / window_s
    if apparent <= 0 or during_bytes_s <= 0:
        return 1.0
    return max(0.1, min(1.0, during_bytes_s / apparent))
