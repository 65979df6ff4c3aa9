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


def streams_together(stream: float, link: float, cpus: int, busy: float | None) -> float:
    """What all migrations leaving a host reach at once, when one reaches `stream`
    (bytes/s) on a `link` it does not fill.  Each stream is a QEMU thread (and its
    encryption): a second one adds only on a CPU the host has free; where the CPUs
    are busy, more streams split what one reaches (lab, encrypted, six TCG guests on
    two CPUs 98 % busy: two streams reached ~25 MiB/s together, one alone ~40).
    Unknown load: they add up to the link.

    >>> mib = 2**20
    >>> streams_together(40 * mib, 48 * mib, 2, 0.98) / mib  # busy: no more than one
    41.6
    >>> streams_together(20 * mib, 48 * mib, 2, 0.5) / mib   # one CPU free: two streams
    40.0
    >>> streams_together(20 * mib, 48 * mib, 8, 0.1) / mib   # plenty free: the link
    48.0
    >>> streams_together(20 * mib, 48 * mib, 2, None) / mib
    48.0
    """
    if busy is None or cpus <= 0:
        return link
    free = max(0.0, 1.0 - busy) * cpus
    return min(link, stream * (1.0 + free))
