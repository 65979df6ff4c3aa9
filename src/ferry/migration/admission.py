"""Which waiting migrations may start now, under the concurrency limits (pure).

Parallel migrations share links and CPUs: past a point each one slows down
the others until none converges.  Limits are per source (outbound), per
destination (inbound) and for the cluster.  Waiting migrations are taken
oldest first; one that would exceed a limit waits, and those behind it that
would not still go (a busy source does not hold up moves between other
hosts).

| waiting (oldest first)   | running          | limits 2/2/4 | decision               |
|--------------------------|------------------|--------------|------------------------|
| 7: a->b, 8: a->c, 9: d->b| 5: a->b, 6: a->c | src a full   | 9 starts; 7, 8 wait    |
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ferry.drain.schedule import Limits

__all__ = ["Limits", "Move", "admit"]


@dataclass(frozen=True)
class Move:
    id: int
    source: str
    destination: str


def admit(waiting: list[Move], running: list[Move], limits: Limits
          ) -> tuple[list[int], dict[int, str]]:
    """The ids that start now, and for each that waits, why.

    >>> admit([Move(7, "a", "b"), Move(8, "a", "c"), Move(9, "d", "b")],
    ...       [Move(5, "a", "b"), Move(6, "a", "c")], Limits(2, 2, 4))
    ([9], {7: 'a has 2 outbound migrations (limit 2)', 8: 'a has 2 outbound migrations (limit 2)'})
    """
    out = Counter(m.source for m in running)
    inc = Counter(m.destination for m in running)
    total = len(running)
    started: list[int] = []
    why: dict[int, str] = {}
    for m in sorted(waiting, key=lambda m: m.id):
        if total >= limits.cluster:
            why[m.id] = f"the cluster has {total} migrations running (limit {limits.cluster})"
        elif out[m.source] >= limits.per_source:
            why[m.id] = (f"{m.source} has {out[m.source]} outbound migrations "
                         f"(limit {limits.per_source})")
        elif inc[m.destination] >= limits.per_destination:
            why[m.id] = (f"{m.destination} has {inc[m.destination]} inbound migrations "
                         f"(limit {limits.per_destination})")
        else:
            started.append(m.id)
            out[m.source] += 1
            inc[m.destination] += 1
            total += 1
    return started, why
