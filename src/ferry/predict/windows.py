"""Which dirty-page window to measure next (pure).

The curve D(t) only matters up to the length of round 1 (the `horizon`):
later rounds are shorter.  Windows double from 0.25 s, so one more window
costs as much as all before it, and stop at the first of: the curve has
flattened (twice in a row, doubling the window changed what was dirtied by
under FLAT - 1: the working set is in view; once could be a bursty guest
between bursts), nothing was dirtied in a whole second (an idle
guest), the horizon is reached (the last window is cut to it), or the budget
would be overspent (the last window is cut to what is left, unless that
would add little).

| horizon | budget | windows (s)                 | spent  |
|---------|--------|-----------------------------|--------|
| 0.1 s   | 4 s    | 0.25                        | 0.25 s |
| 3 s     | 4 s    | 0.25, 0.5, 1, 2             | 3.75 s |
| 12 s    | 16 s   | 0.25, 0.5, 1, 2, 4, 8       | 15.75 s|
"""

from __future__ import annotations

from ferry.predict.bursts import MIN_SEEN

FIRST_S = 0.25
FLAT = 1.15
IDLE_AFTER_S = 1.0
WORTH = 1.25  # a cut window must be this much longer than the last to be worth it


def next_window_s(points: list[tuple[float, float]], horizon_s: float,
                  budget_s: float) -> float | None:
    """The next window's length in seconds, or None: measured enough.

    >>> grow = lambda h, b: _windows(lambda t: 10 * t, h, b)
    >>> grow(0.1, 4), grow(3, 4)
    ([0.25], [0.25, 0.5, 1.0, 2.0])
    >>> grow(12, 16), grow(6, 16)
    ([0.25, 0.5, 1.0, 2.0, 4.0, 8.0], [0.25, 0.5, 1.0, 2.0, 4.0, 6.0])
    >>> _windows(lambda t: min(10 * t, 4), 30, 16)  # flat from 0.5 s: the set is in view
    [0.25, 0.5, 1.0, 2.0]
    >>> _windows(lambda t: 10 * t if t < 0.4 else 0.5, 30, 16)  # a burst, then quiet
    [0.25, 0.5, 1.0, 2.0]
    >>> _windows(lambda t: 0.0, 30, 16)  # idle
    [0.25, 0.5, 1.0]
    >>> _windows(lambda t: 0.0 if t == 1 else 2**20 * 40 * t, 3, 16)  # a pause in bursts
    [0.25, 0.5, 1.0, 2.0, 3.0]
    """
    if not points:
        return FIRST_S
    t, d = points[-1]
    if len(points) >= 3 and _flat(points[-3:-1]) and _flat(points[-2:]):
        return None
    if d <= 0 and t >= IDLE_AFTER_S and max(dd for _, dd in points) < MIN_SEEN:
        return None  # (after a window that saw plenty: a pause between bursts)
    if t >= horizon_s:
        return None
    nxt = float(min(2 * t, horizon_s))
    left = budget_s - sum(w for w, _ in points)
    nxt = min(nxt, left)
    return nxt if nxt >= WORTH * t else None


def _flat(pair: list[tuple[float, float]]) -> bool:
    """Doubling the window changed what was dirtied by less than FLAT either way (a
    drop is a bursty guest between bursts, not a working set in view)."""
    (_, a), (_, b) = pair
    return a > 0 and a / FLAT <= b <= a * FLAT


def _windows(dirtied: object, horizon_s: float, budget_s: float) -> list[float]:
    """The windows chosen for a guest dirtying `dirtied(t)` bytes (for the examples)."""
    points: list[tuple[float, float]] = []
    nxt = next_window_s(points, horizon_s, budget_s)
    while nxt is not None:
        points.append((nxt, dirtied(nxt)))  # type: ignore[operator]
        nxt = next_window_s(points, horizon_s, budget_s)
    return [t for t, _ in points]
