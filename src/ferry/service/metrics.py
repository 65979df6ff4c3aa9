"""What Prometheus scrapes, read from the database at each scrape.

The database is the truth every controller shares (a restarted controller,
or a second one, reports the same figures), so nothing is counted in
memory: migrations by state and policy, histograms of what finished
migrations took (time, guest pause, bytes) and of how far their prediction
was off, the running migrations' last sample (remaining bytes, dirty and
transfer rates, round), drains in progress with their ETA, hosts by state
and the admission queue.  `api/metrics.py` renders a `Snapshot` in
Prometheus' text format.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ferry.db.models import DrainRow, HostRow, MigrationRow, SampleRow
from ferry.domain.models import HostState, MigrationState
from ferry.service.convert import host_state
from ferry.service.database import Database
from ferry.service.drain_store import UNFINISHED

# upper bounds of the histograms' buckets (Prometheus adds +Inf)
DURATION_BUCKETS_S = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
PAUSE_BUCKETS_S = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5)
BYTES_BUCKETS = tuple(2**p for p in range(24, 38, 2))  # 16 MiB .. 64 GiB
ERROR_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1, 2)  # |predicted - actual| / actual
LIVE = (MigrationState.RUNNING, MigrationState.POSTCOPY_PAUSED)


@dataclass(frozen=True)
class Histogram:
    """Cumulative counts per upper bound (the last is +Inf), and the sum."""

    bounds: tuple[float, ...]
    cumulative: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return self.cumulative[-1]


def histogram(values: Iterable[float], bounds: Sequence[float]) -> Histogram:
    """Prometheus' cumulative buckets of `values` (a value on a bound counts in it).

    >>> h = histogram([0.5, 1, 3, 100], (1, 2, 5))
    >>> h.cumulative, h.total
    ((2, 2, 3, 4), 104.5)
    """
    per = [0] * (len(bounds) + 1)
    total = 0.0
    for v in values:
        per[bisect_left(bounds, v)] += 1
        total += v
    cumulative, run = [], 0
    for n in per:
        run += n
        cumulative.append(run)
    return Histogram(tuple(float(b) for b in bounds), tuple(cumulative), total)


def prediction_error(predicted_ms: int | None, actual_ms: int | None) -> float | None:
    """How far a prediction of the total time was off, relative to what happened.

    >>> prediction_error(12000, 10000), prediction_error(None, 10000)
    (0.2, None)
    """
    if predicted_ms is None or not actual_ms:
        return None
    return abs(predicted_ms - actual_ms) / actual_ms


@dataclass(frozen=True)
class LiveMigration:
    id: int
    vm: str
    source: str
    destination: str
    policy: str
    state: str
    remaining_bytes: int | None = None
    processed_bytes: int | None = None
    total_bytes: int | None = None
    dirty_rate_bytes_s: int | None = None
    transfer_rate_bytes_s: int | None = None
    iteration: int | None = None
    elapsed_s: float | None = None
    predicted_total_s: float | None = None


@dataclass(frozen=True)
class LiveDrain:
    id: int
    host: str
    eta_s: float | None
    moves: dict[str, int]  # by state: pending, running, completed, ...


@dataclass(frozen=True)
class Snapshot:
    migrations: dict[tuple[str, str], int]  # (state, policy) -> count
    duration_s: Histogram
    pause_s: Histogram
    transferred_bytes: Histogram
    prediction_error: Histogram
    live: list[LiveMigration] = field(default_factory=list)
    drains: list[LiveDrain] = field(default_factory=list)
    hosts: dict[str, int] = field(default_factory=dict)  # state -> count
    queued: int = 0


class MetricsService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def snapshot(self) -> Snapshot:
        with self.db.session() as s:
            counts = {(str(st), str(pol)): int(n) for st, pol, n in s.execute(
                select(MigrationRow.state, MigrationRow.policy, func.count())
                .group_by(MigrationRow.state, MigrationRow.policy))}
            done = s.execute(select(MigrationRow.total_ms, MigrationRow.downtime_ms,
                                    MigrationRow.transferred_bytes,
                                    MigrationRow.predicted_total_ms)
                             .where(MigrationRow.state == MigrationState.COMPLETED)).all()
            live = [self._live(s, r) for r in s.scalars(
                select(MigrationRow).where(MigrationRow.state.in_(LIVE))
                .order_by(MigrationRow.id))]
            drains = [LiveDrain(r.id, r.host, None if r.eta_ms is None else r.eta_ms / 1000,
                                dict(Counter(str(m.get("state")) for m in r.moves)))
                      for r in s.scalars(select(DrainRow).where(DrainRow.state.in_(UNFINISHED))
                                         .order_by(DrainRow.id))]
            hosts = Counter(host_state(h) for h in s.scalars(select(HostRow)))
        errors = [e for r in done if (e := prediction_error(r[3], r[0])) is not None]
        return Snapshot(
            migrations=counts,
            duration_s=histogram((r[0] / 1000 for r in done if r[0] is not None),
                                 DURATION_BUCKETS_S),
            pause_s=histogram((r[1] / 1000 for r in done if r[1] is not None),
                              PAUSE_BUCKETS_S),
            transferred_bytes=histogram((r[2] for r in done if r[2] is not None),
                                        BYTES_BUCKETS),
            prediction_error=histogram(errors, ERROR_BUCKETS),
            live=live, drains=drains,
            hosts={str(st): hosts.get(st, 0) for st in HostState},
            queued=sum(n for (st, _), n in counts.items() if st == MigrationState.QUEUED))

    @staticmethod
    def _live(s: Session, r: MigrationRow) -> LiveMigration:
        sample = s.scalar(select(SampleRow).where(SampleRow.migration_id == r.id)
                          .order_by(SampleRow.t_ms.desc()).limit(1))
        base = LiveMigration(r.id, r.vm, r.source, r.destination, r.policy, r.state,
                             predicted_total_s=None if r.predicted_total_ms is None
                             else r.predicted_total_ms / 1000)
        if sample is None:
            return base
        return replace(base, remaining_bytes=sample.memory_remaining_bytes,
                       processed_bytes=sample.memory_processed_bytes,
                       total_bytes=sample.memory_total_bytes,
                       dirty_rate_bytes_s=sample.dirty_rate_bytes_s,
                       transfer_rate_bytes_s=sample.bandwidth_bytes_s,
                       iteration=sample.iteration, elapsed_s=sample.t_ms / 1000)
