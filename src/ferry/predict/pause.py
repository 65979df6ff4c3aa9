"""What a switchover costs, learnt from the pauses of earlier migrations (pure).

QEMU's downtime figure is the pages it sends paused over the stop-and-copy
rate, plus a cost of its own (stopping the vCPUs, device state, the last
flush).  Neither is the link's figure: with the guest stopped, QEMU sends
faster than the pre-copy rate seen while it ran (lab, TLS: ~1.35x), and the
fixed cost moved between 15 and 45 ms from one lab to the next (TCG on busy
CPUs).  A constant tuned on one day missed the next day's pauses by 20-40 ms,
so the pair's own latest migrations say it: each gives the bytes it sent
paused (read from its last sample before the pause) and the pause.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from ferry.predict.dirty import MIB

MAX_GAP_S = 0.6  # a last sample older than this before the pause: rest too uncertain
MIN_POINTS = 3  # fewer pauses than this: the assumed constants
MIN_SPREAD_BYTES = 4 * MIB  # the rests must differ this much to read a rate from them
MAX_SPEEDUP = 4.0  # the stop-and-copy rate is taken between 1x and 4x the link
MAX_SWITCHOVER_S = 0.3
# the rests' slope is the stop-and-copy rate only when its standard error is at most
# this share of it: rests 3.8-8.7 MiB with pauses +-10 ms read ~460 MiB/s on a 214 MiB/s
# link (error 66 %) and put a 75 ms pause at 51 (tls14)
MAX_SLOPE_ERROR = 0.3


@dataclass(frozen=True)
class Sample:
    t_s: float  # job time
    sent_bytes: float  # memory processed so far
    rate_bytes_s: float  # QEMU's transfer rate then


def paused_bytes(last: Sample | None, total_s: float, downtime_s: float,
                 transferred_bytes: float) -> float | None:
    """The bytes a finished migration sent while the guest was paused: all it sent,
    less what it had sent by its last sample before the pause and at its rate
    since.  None when that sample is missing or too old to say.

    >>> round(paused_bytes(Sample(3.0, 100 * MIB, 50 * MIB), 3.3, 0.1, 120 * MIB) / MIB, 3)
    10.0
    """
    pause_at = total_s - downtime_s
    if last is None or not 0 <= pause_at - last.t_s <= MAX_GAP_S:
        return None
    return max(0.0, transferred_bytes - last.sent_bytes - last.rate_bytes_s *
               (pause_at - last.t_s))


@dataclass(frozen=True)
class Switchover:
    cost_s: float  # the pause beyond the pages
    speedup: float  # the stop-and-copy rate over the link figure
    how: str


def fit(points: list[tuple[float, float]], link_bytes_s: float,
        what: str = "pauses") -> Switchover | None:
    """From (bytes sent paused, pause s) of earlier migrations: the pause's own cost
    and the stop-and-copy rate.  Rests that differ enough give the rate (least
    squares, kept between the link and MAX_SPEEDUP times it) when the pauses' noise
    lets the slope be read (_slope); else the link's.
    The cost is the median of what each pause left beyond its pages.  None with
    fewer than MIN_POINTS.  `what` names the points for people ("pauses at a like load").

    >>> pts = [(r * MIB, 0.02 + r / 300) for r in (2, 6, 12, 18)]
    >>> s = fit(pts, 200 * MIB)
    >>> round(s.cost_s, 3), round(s.speedup, 2)
    (0.02, 1.5)
    """
    if len(points) < MIN_POINTS or link_bytes_s <= 0:
        return None
    rests = [r for r, _ in points]
    per_byte = 1 / link_bytes_s
    if len(points) > MIN_POINTS and max(rests) - min(rests) >= MIN_SPREAD_BYTES:
        slope = _slope(points, 1 / (MAX_SPEEDUP * link_bytes_s))
        if slope is not None:
            per_byte = min(max(slope, 1 / (MAX_SPEEDUP * link_bytes_s)), 1 / link_bytes_s)
    cost = statistics.median(d - r * per_byte for r, d in points)
    cost = min(max(cost, 0.0), MAX_SWITCHOVER_S)
    rate = 1 / per_byte
    how = f"{cost * 1000:.0f} ms + pages at {rate / MIB:.0f} MiB/s (last {len(points)} {what})"
    return Switchover(cost, rate / link_bytes_s, how)


def _slope(points: list[tuple[float, float]], least: float) -> float | None:
    """Seconds of pause per byte sent paused (least squares), or None when its
    standard error is above MAX_SLOPE_ERROR of it (of `least`, the fastest rate's,
    if that is more): pauses vary by +-10 ms from one switchover to the next,
    which on rests a few MiB apart is as large as the slope itself.

    >>> clean = [(r * MIB, 0.02 + r / 250) for r in (2, 6, 12, 18)]
    >>> round(1 / _slope(clean, 0.0) / MIB)
    250
    >>> noisy = [(r * MIB, 0.02 + r / 250 + e) for r, e in
    ...          ((4, 0.006), (7.5, -0.014), (4, 0.006), (7.2, 0.0), (8.7, 0.0))]
    >>> _slope(noisy, 0.0) is None
    True
    """
    rests = [r for r, _ in points]
    mr, md = statistics.fmean(rests), statistics.fmean(d for _, d in points)
    var = sum((r - mr) ** 2 for r in rests)
    if var <= 0 or len(points) <= 2:
        return None
    slope = sum((r - mr) * (d - md) for r, d in points) / var
    resid = sum((d - md - slope * (r - mr)) ** 2 for r, d in points)
    error = (resid / (len(points) - 2) / var) ** 0.5
    return slope if error <= MAX_SLOPE_ERROR * max(slope, least) else None
