"""When pre-copy rounds are not worth going on with (pure): the rule a running `auto`
migration switches to post-copy by, which the model's `auto` schedule follows too.

After round 1 each round re-sends what the guest dirtied during the one before.
When the rounds shrink by a factor q each, pre-copy sends what is pending now
1 + q + q^2 + ... times before what is left fits the downtime limit; post-copy
sends it once. Worked example (48 MiB/s, 300 ms limit: QEMU stops at ~11.5 MiB):

| round 2 starts | round 3 starts | q    | pre-copy re-sends | switch |
|----------------|----------------|------|-------------------|--------|
| 113 MiB        | 89 MiB         | 0.79 | 4.1 x             | yes    |
| 120 MiB        | 60 MiB         | 0.50 | 1.6 x             | no     |
| 20 MiB         | 20 MiB         | 1.00 | endless           | no: a raised limit may end it |

The last row is left to raising the limit: what is pending is under HOPELESS
times what the limit lets QEMU send paused (a round dipping low may end it).
Lab drain (mixed mix): a guest dirtying 64 MiB/s over 128 MiB, measured among
five others as 21 MiB/s, ran four rounds of ~110-80 MiB before the three-round
rule saw it: 15.4 s where round 3 would have switched at ~7 s.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

RAISE_MARGIN = 1.25  # over pending / bandwidth: rounds vary
HOPELESS = 2.0  # pending over this many times what the limit sends paused
SLOW_RESEND = 3.0  # pre-copy re-sending over this many times what is pending: post-copy
ROUNDS_SEEN = 3  # the shrink is read over up to this many rounds after round 1


def need_s(pending_bytes: float, bandwidth_bytes_s: float) -> float:
    """The downtime limit under which QEMU would stop with `pending_bytes` left, with
    margin (it switches when pending / bandwidth fits the limit)."""
    return pending_bytes / bandwidth_bytes_s * RAISE_MARGIN


def resends(q: float, pending_bytes: float, target_bytes: float) -> float:
    """How many times pre-copy sends `pending_bytes` over while rounds shrink by `q`
    each until one fits `target_bytes` (inf if they do not shrink).

    >>> round(resends(0.5, 100, 12.5), 2)
    1.75
    >>> resends(1.0, 100, 10)
    inf
    """
    if pending_bytes <= target_bytes:
        return 0.0
    if q >= 1.0:
        return math.inf
    if q <= 0.0:
        return 1.0
    n = math.log(target_bytes / pending_bytes) / math.log(q)
    return float((1.0 - q ** n) / (1.0 - q))


def hopeless(round_starts: Mapping[int, float], bandwidth_bytes_s: float,
             limit_s: float) -> bool:
    """What was pending as rounds 2, 3, ... began (by QEMU's iteration counter, gaps
    allowed) says pre-copy would re-send the last over SLOW_RESEND times before the
    limit lets it stop, and that is over HOPELESS times what the limit sends paused.

    >>> M = 2**20
    >>> hopeless({1: 250 * M, 2: 113 * M, 3: 89 * M}, 48 * M, 0.3)
    True
    >>> hopeless({1: 250 * M, 2: 120 * M, 3: 60 * M}, 48 * M, 0.3)
    False
    >>> hopeless({1: 250 * M, 2: 44 * M, 3: 58 * M, 4: 39 * M}, 48 * M, 0.3)
    True
    >>> hopeless({1: 250 * M, 2: 20 * M, 3: 20 * M}, 48 * M, 0.3)
    False
    >>> hopeless({1: 250 * M, 2: 113 * M}, 48 * M, 0.3)  # one round says no shrink
    False
    """
    return resend_factor(round_starts, bandwidth_bytes_s, limit_s) > SLOW_RESEND


def resend_factor(round_starts: Mapping[int, float], bandwidth_bytes_s: float,
                  limit_s: float) -> float:
    """`resends` at the shrink the rounds after round 1 show (over up to ROUNDS_SEEN of
    them), 0 where it cannot tell (under two such rounds) or where the limit, raised,
    may end it (what is pending is under HOPELESS times what it sends paused)."""
    rounds = sorted(r for r in round_starts if r >= 2)[-ROUNDS_SEEN:]
    if len(rounds) < 2 or bandwidth_bytes_s <= 0:
        return 0.0
    first, last = round_starts[rounds[0]], round_starts[rounds[-1]]
    if need_s(last, bandwidth_bytes_s) <= HOPELESS * limit_s or first <= 0:
        return 0.0
    q = (last / first) ** (1.0 / (rounds[-1] - rounds[0]))
    return resends(q, last, limit_s * bandwidth_bytes_s / RAISE_MARGIN)
