"""How busy a host's CPUs were, and which earlier migrations ran at a like load (pure).

A switchover's own cost and a job's set-up are learnt from the pair's latest
migrations (pause.py, history).  Learnt while the source was short of CPU (a
drain: six TCG guests on two CPUs), they said 130 ms and 1.1-1.4 s where the
same pair, quiet, gave 25-35 ms and 0.5-0.9 s, and the next lone moves were
predicted from them (tls13: pauses off by up to 98 ms).  So each migration
keeps how busy its source was when its job started, and history is read from
those within LOAD_BAND of the load now.
"""

from __future__ import annotations

MIN_SPAN_CPU_S = 2.0  # readings closer than this (CPU-seconds over all CPUs) say too little
# a migration whose source load differs more than this is not like now: one lab run of
# lone moves read 0.28-0.59 (guests booting and measured between them); a drain of six
# TCG guests on its two CPUs keeps them saturated
LOAD_BAND = 0.35


def busy_share(before: tuple[int, int], now: tuple[int, int]) -> float | None:
    """The share of the host's CPU time that was busy between two readings of its
    (busy ns, total ns) counters; None when they span too little, or went back (the
    host restarted, or a simulated guest left with its share).

    >>> busy_share((1_000_000_000, 4_000_000_000), (3_000_000_000, 8_000_000_000))
    0.5
    >>> busy_share((0, 0), (3_000_000_000, 8_000_000_000)) is None  # the first reading
    True
    """
    d_busy, d_total = now[0] - before[0], now[1] - before[1]
    if before[1] <= 0 or d_total < MIN_SPAN_CPU_S * 1e9 or d_busy < 0:
        return None
    return min(d_busy / d_total, 1.0)

