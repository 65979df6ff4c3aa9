"""How many bytes a guest dirties within a window of t seconds (pure).

One dirty rate mispredicts: a guest rewrites its writable working set W over
and over, so what it dirties in t seconds grows like r*t at first and
saturates at W.  For writes spread uniformly over W the expected number of
distinct dirty bytes is

    D(t) = W * (1 - exp(-r*t / W))

which is what `fit` estimates from measured windows (e.g. 0.25, 0.5, 1, 2 s).
A guest that writes its set in order (streaming through a buffer) dirties
min(r*t, W) instead, and one with a hot and a cold set is the sum of two such
curves; `fit` takes either where it misses the windows by under half as much.

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
    `bursts`, t counts only the time the guest is in a burst.  With a cold set
    (`cold_rate_bytes_s` > 0), a second such term: a guest that rewrites a small hot
    set often and a larger cold one seldom, which one W cannot describe (lab,
    hot/cold at 115 MiB/s: one W read 62 MiB and put 50 MiB in a 1 s round that
    dirtied 27 MiB; pre-copy was predicted never to finish and finished)."""

    rate_bytes_s: float
    wss_bytes: float = math.inf
    bursts: Bursts | None = None
    cold_rate_bytes_s: float = 0.0
    cold_wss_bytes: float = 0.0
    # the (hot or only) set is written in order, over and over: D(t) = min(r*t, W)
    # (a guest streaming through a buffer, a log); the cold slot then holds what else
    # it dirties (its kernel's few hot pages)
    streaming: bool = False

    def parts(self) -> list[tuple[float, float]]:
        """(rate, working set) of the hot (or only) set, then of the cold one."""
        if self.cold_rate_bytes_s > 0:
            return [(self.rate_bytes_s, self.wss_bytes),
                    (self.cold_rate_bytes_s, self.cold_wss_bytes)]
        return [(self.rate_bytes_s, self.wss_bytes)]

    def bytes_in(self, t: float) -> float:
        """Dirtied within t seconds of dirtying (a bursty guest: t in its bursts)."""
        return sum(self._parts_in(t))

    def parts_between(self, a: float, b: float) -> list[float]:
        """Dirtied between times a and b, per set (`parts`)."""
        return self._parts_in(b - a if self.bursts is None else self.bursts.on_time(a, b))

    def _parts_in(self, t: float) -> list[float]:
        return [_streamed(r, w, t) if i == 0 and self.streaming else _saturating(r, w, t)
                for i, (r, w) in enumerate(self.parts())]

    @property
    def total_rate_bytes_s(self) -> float:
        return self.rate_bytes_s + self.cold_rate_bytes_s

    @property
    def mean_rate_bytes_s(self) -> float:
        """The rate over bursts and pauses alike (what QEMU's per-round figure sees)."""
        b = self.bursts
        return self.total_rate_bytes_s * (b.on_s / b.period_s if b is not None else 1.0)

    def bytes_between(self, a: float, b: float) -> float:
        """Dirtied between times a and b: a bursty guest only in its bursts."""
        return sum(self.parts_between(a, b))

    def said(self) -> str:
        """For people: "dirty 12.0 MiB/s over 64 MiB" (and the cold set's, if any)."""
        text = f"dirty {self.rate_bytes_s / MIB:.1f} MiB/s " + \
            ("streaming through" if self.streaming else "over") + \
            f" {self.wss_bytes / MIB:.0f} MiB"
        if self.cold_rate_bytes_s:
            text += f" and {self.cold_rate_bytes_s / MIB:.1f} MiB/s over " \
                    f"{self.cold_wss_bytes / MIB:.0f} MiB"
        return text

    def scaled(self, factor: float) -> DirtyCurve:
        """The same working set dirtied `factor` times as fast (e.g. a throttled vCPU)."""
        return DirtyCurve(self.rate_bytes_s * factor, self.wss_bytes, self.bursts,
                          self.cold_rate_bytes_s * factor, self.cold_wss_bytes, self.streaming)


def _saturating(r: float, w: float, t: float) -> float:
    if t <= 0 or r <= 0:
        return 0.0
    if math.isinf(w):
        return r * t
    return w * (1.0 - math.exp(-r * t / w))


def _streamed(r: float, w: float, t: float) -> float:
    return 0.0 if t <= 0 or r <= 0 else min(r * t, w)


def fit(points: list[tuple[float, float]], memory_bytes: float) -> DirtyCurve:
    """Fit the curve to measured (window seconds, dirty bytes) points: one working
    set (`one_set`), or a hot and a cold one where one set misses the windows by
    more than their sampling noise and two sets miss by under half as much.

    >>> c = fit([(0.25, 14.2 * MIB), (1, 40.5 * MIB), (4, 62.8 * MIB)], 256 * MIB)
    >>> round(c.rate_bytes_s / MIB), round(c.wss_bytes / MIB), c.cold_rate_bytes_s
    (64, 64, 0.0)
    >>> hc = [(0.25, 20.4 * MIB), (0.5, 27.2 * MIB), (1, 33.5 * MIB), (2, 43 * MIB),
    ...       (4, 62 * MIB)]  # lab, hot/cold: 9 of 10 writes to 24 of 192 MiB
    >>> c = fit(hc, 512 * MIB)
    >>> round(c.wss_bytes / MIB), round(c.cold_rate_bytes_s / MIB)
    (24, 10)
    """
    one = one_set(points, memory_bytes)
    pts = sorted((t, d) for t, d in points if t > 0 and d > 0)
    if len(pts) < TWO_SETS_AFTER or len(pts) < len(points):
        return one
    e1 = _rel_rms(one, pts)
    others = [c for c in (_two_sets(pts, memory_bytes) if e1 > NOISE else None,
                          _streaming(pts, memory_bytes)) if c is not None]
    best_e, best = min(((_rel_rms(c, pts), c) for c in others), key=lambda f: f[0],
                       default=(e1, one))
    return best if best_e <= e1 / 2 else one


NOISE = 0.08  # windows' relative sampling error (QEMU's hashed pages): one set is enough
TWO_SETS_AFTER = 4  # windows needed before two sets (four numbers) are fitted
TAUS = [0.02 * (2000.0 / 0.02) ** (i / 79) for i in range(80)]  # a set's time constant, s


def _rel_rms(c: DirtyCurve, pts: list[tuple[float, float]]) -> float:
    return math.sqrt(sum(((c.bytes_in(t) - d) / d) ** 2 for t, d in pts) / len(pts))


def _two_sets(pts: list[tuple[float, float]], memory_bytes: float) -> DirtyCurve | None:
    """Two saturating sets, D(t) = W1(1-e^(-t/T1)) + W2(1-e^(-t/T2)): for each pair of
    time constants T1 < T2 the sizes are a linear least-squares fit (relative
    errors, so the short windows, which decide the last rounds, weigh as much as
    the long ones); the pair that fits best, both sizes positive and together
    within the memory."""
    cols = [[1.0 - math.exp(-t / tau) for t, _ in pts] for tau in TAUS]
    ds = [d for _, d in pts]
    best: tuple[float, DirtyCurve] | None = None
    for i, f1 in enumerate(cols):
        u = [a / d for a, d in zip(f1, ds, strict=True)]
        s11, b1 = sum(x * x for x in u), sum(u)
        for j in range(i + 1, len(TAUS)):
            v = [a / d for a, d in zip(cols[j], ds, strict=True)]
            s12, s22, b2 = sum(x * y for x, y in zip(u, v, strict=True)), \
                sum(y * y for y in v), sum(v)
            det = s11 * s22 - s12 * s12
            if det <= 1e-12 * s11 * s22:
                continue
            w1, w2 = (b1 * s22 - b2 * s12) / det, (s11 * b2 - s12 * b1) / det
            if w1 < MIB or w2 < MIB or w1 + w2 > memory_bytes:
                continue
            err = sum((w1 * x + w2 * y - 1.0) ** 2 for x, y in zip(u, v, strict=True))
            if best is None or err < best[0]:
                best = (err, DirtyCurve(w1 / TAUS[i], w1, None, w2 / TAUS[j], w2))
    return None if best is None else best[1]


KERNEL_MAX_BYTES = 2 * MIB  # what else a streaming guest dirties at once (its kernel)
KERNEL_TAU_S = 0.02  # ... within this long
STREAM_GRID = 120


def _streaming(pts: list[tuple[float, float]], memory_bytes: float) -> DirtyCurve | None:
    """A guest that writes its working set in order, D(t) = c + min(r*t, W), c at most
    KERNEL_MAX_BYTES (its kernel's hot pages, dirtied within any window): least
    squares on relative errors over a grid of r and W, c in closed form.  A saturating
    curve bends such a line (lab, 12.5 MiB/s streaming through 64 MiB at a 16 MiB/s
    cap: read as 15.8 MiB/s over 94 MiB, pre-copy was predicted to take 33 s and 43
    rounds; it took 23 s and 18)."""
    top = max(d / t for t, d in pts)
    lo_w = max(d for _, d in pts) / 2
    if top <= 0 or memory_bytes <= lo_w:
        return None
    inv2 = [1.0 / (d * d) for _, d in pts]
    best: tuple[float, float, float, float] | None = None
    for i in range(STREAM_GRID):
        r = top * 0.05 ** (i / (STREAM_GRID - 1))
        for j in reversed(range(STREAM_GRID)):  # a wrap no window saw: the largest W
            w = lo_w * (memory_bytes / lo_w) ** (j / (STREAM_GRID - 1))
            m = [min(r * t, w) for t, _ in pts]
            c = sum((d - x) * k for (_, d), x, k in zip(pts, m, inv2, strict=True)) / sum(inv2)
            c = min(max(c, 0.0), KERNEL_MAX_BYTES)
            err = sum(((c + x - d) / d) ** 2 for (_, d), x in zip(pts, m, strict=True))
            if best is None or err < best[0]:
                best = (err, r, w, c)
    assert best is not None
    _, r, w, c = best
    return DirtyCurve(r, w, None, c / KERNEL_TAU_S if c > 0 else 0.0, c, streaming=True)


def one_set(points: list[tuple[float, float]], memory_bytes: float) -> DirtyCurve:
    """Fit r and W of one working set to measured (window seconds, dirty bytes) points.

    r comes from the shortest window that saw dirtying (nearest the true
    instantaneous rate, corrected for the curvature once W is known; a shorter
    one that saw nothing fell between a bursty guest's bursts: lab, a guest 2 s
    on / 2 s off read as dirtying 0 MiB/s); W by least squares over [largest
    measurement, memory size]; no saturation visible → W = memory.
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
