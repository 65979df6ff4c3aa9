"""How sure a prediction is: the model run on low and high readings of what was
measured (pure).

Two measured inputs carry a known error:
- the non-zero share of the guest's memory (pages read spread over the RAM:
  its standard error comes with the sample), and
- each point of the dirty curve: QEMU hashes `n` random pages per window and
  counts those that changed (binomial error), then reports the rate in whole
  MiB/s rounded down (the driver adds half back; +-0.5 MiB/s is left, a
  uniform error of 0.29 MiB/s standard deviation times the window).

The interval is the model's answer at Z standard errors below and above every
reading (a low and a high guest: all readings low together, all high
together, so the interval is wide rather than optimistic), and with the
job's set-up as short and as long as the pair's latest (predict/inputs.py).
A bursty guest's high end also takes the whole memory as its working set when
no window could have seen the set (each saw at most one burst, writing less
than UNSEEN times the set fitted).  Inputs that were assumed, not measured (a
link without history), are not in it: `inputs.sources` lists them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from ferry.predict.dirty import MIB, DirtyCurve, fit
from ferry.predict.precopy import Guest

Z = 2.0  # about 95 % for each reading
TRUNCATION_SD_MIB_S = 0.5 / math.sqrt(3)  # uniform over +-0.5 MiB/s
# a bursty guest's working set counts as seen only if a window could have written this
# many times it in one burst; else the range's high end takes the whole memory (lab:
# a guest writing 22 MiB/s in 2 s bursts over 152 MiB read as 39-222 MiB in repeated
# measurements, and one read as 36 MiB took 29.4 s for 18.5 s predicted)
UNSEEN = 2.0


def point_sd(t: float, dirtied: float, memory_bytes: float, sampled_pages: int) -> float:
    """Standard error (bytes) of one window's dirtied bytes.

    >>> round(point_sd(1.0, 16 * MIB, 256 * MIB, 4096) / MIB, 2)  # p = 1/16
    1.01
    """
    p = min(max(dirtied / memory_bytes, 0.0), 1.0) if memory_bytes > 0 else 0.0
    sampling = memory_bytes * math.sqrt(p * (1 - p) / max(sampled_pages, 1))
    truncation = TRUNCATION_SD_MIB_S * MIB * t
    return math.hypot(sampling, truncation)


@dataclass(frozen=True)
class Spread:
    """A guest as measured, and as low and as high as its readings allow."""

    low: Guest
    high: Guest


def spread(guest: Guest, points: list[tuple[float, float]], sampled_pages: int,
           nonzero_sd_bytes: float, tracking: float = 1.0) -> Spread:
    """`guest` with every reading Z standard errors lower and higher (its curve was
    fitted to `points` and scaled by `tracking`, as inputs.build_inputs does).

    >>> g = Guest(256 * MIB, 64 * MIB, DirtyCurve(8 * MIB, 256 * MIB))
    >>> s = spread(g, [(1.0, 8 * MIB)], 4096, 2 * MIB)
    >>> round(s.low.nonzero_bytes / MIB), round(s.high.nonzero_bytes / MIB)
    (60, 68)
    >>> s.low.curve.bytes_in(1) < 8 * MIB < s.high.curve.bytes_in(1)
    True
    """
    mem = guest.memory_bytes
    low_pts = [(t, max(d - Z * point_sd(t, d, mem, sampled_pages), 0.0)) for t, d in points]
    high_pts = [(t, d + Z * point_sd(t, d, mem, sampled_pages)) for t, d in points]

    def curve(pts: list[tuple[float, float]]) -> DirtyCurve:
        return fit(pts, mem).scaled(tracking) if pts else guest.curve

    nz = guest.nonzero_bytes
    b = guest.curve.bursts
    if b is not None:  # what matters most is where in its cycle the move begins
        lo_curve = replace(guest.curve, bursts=replace(b, phase_s=b.on_s))  # a pause
        hi_curve = guest.curve  # as the prediction assumes
        longest = min(max((t for t, _ in points), default=0.0), b.on_s)
        if guest.curve.rate_bytes_s * longest < UNSEEN * guest.curve.wss_bytes:
            hi_curve = replace(hi_curve, wss_bytes=mem)  # its working set was not seen
    else:
        lo_curve, hi_curve = curve(low_pts), curve(high_pts)
    low = replace(guest, nonzero_bytes=max(nz - Z * nonzero_sd_bytes, MIB), curve=lo_curve)
    high = replace(guest, nonzero_bytes=min(nz + Z * nonzero_sd_bytes, mem), curve=hi_curve)
    return Spread(low, high)
