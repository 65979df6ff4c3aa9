"""What earlier migrations teach the next prediction, read from the database.

Per VM identity: what its round 1 sent, how its dirtying slowed while it
moved.  Per pair of hosts and stream mode: the link's speed, a job's set-up
and finish, what one stream reaches, what a switchover costs.  Mixed into
`MigrationStore` (which holds `db` and `clock`).
"""

from __future__ import annotations

import functools
import statistics
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true
from sqlalchemy.orm import Session

from ferry.clock import Clock
from ferry.db.models import EventRow, HostRow, MigrationRow, SampleRow, VmRow
from ferry.domain.models import MigrationState
from ferry.domain.vocab import EventKind
from ferry.predict import pause
from ferry.predict.dirty import MIB, DirtyCurve, tracking_factor
from ferry.predict.inputs import ASSUMED_LINK_MIB_S, History
from ferry.predict.load import LOAD_BAND
from ferry.service.database import Database

SETUP_HISTORY = 5
SETUP_RANGE_HISTORY = 9  # a prediction's range spans their set-ups
MIN_SETUPS_FOR_RANGE = 3
STREAM_HISTORY = 5  # latest migrations from a host read for what one stream reaches
PAUSE_HISTORY = 8  # latest pauses between two hosts read for what a switchover costs
CAP_REACHED = 0.9  # a capped migration whose median rate is this close to its cap reached it

P = ParamSpec("P")
T = TypeVar("T")


def durable(method: Callable[P, T]) -> Callable[P, T]:
    """A pipeline call that waits for a database that does not answer (see Database)."""
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        assert isinstance(store, HistoryReads)
        return store.db.durably(lambda: method(*args, **kwargs), store.clock,
                                method.__name__)
    return wrapper


class HistoryReads:
    """The history half of `MigrationStore`."""

    db: Database
    clock: Clock

    @durable
    def history(self, vm: str, source: str, destination: str,
                pair: History | None = None, *, encrypted: bool | None = None) -> History:
        """What earlier migrations teach about moving `vm` from `source` to
        `destination`; `pair`: the link figures of that pair already read (a drain
        asks for many VMs over few pairs); `encrypted`: the link as streams of that
        mode reached it (TLS costs CPU: an encrypted stream may be slower)."""
        if pair is None:
            link, link_how = self._link_bytes_s(source, destination, encrypted)
            load = self._load(source)
            setup, setup_how, setups = self._setup_s(source, destination, load)
            switch = self._switchover(source, destination, encrypted,
                                      link if link is not None else ASSUMED_LINK_MIB_S * MIB,
                                      load)
            pair = History(link, link_how, setup, setup_how, encrypted=bool(encrypted),
                           switchover=switch, source_busy=load,
                           setup_range_s=(min(setups), max(setups))
                           if len(setups) >= MIN_SETUPS_FOR_RANGE else None)
        nonzero, nonzero_how = self._nonzero(vm)
        tracking, tracking_how = self._tracking(vm)
        return replace(pair, nonzero_bytes=nonzero, nonzero_how=nonzero_how,
                       tracking=tracking, tracking_how=tracking_how)

    def _load(self, source: str) -> float | None:
        with self.db.session() as s:
            return host_load(s, source)

    def _switchover(self, source: str, destination: str, encrypted: bool | None,
                    link_bytes_s: float, load: float | None = None
                    ) -> pause.Switchover | None:
        """What a pause costs between these hosts (either way) in this stream mode: from
        the latest PAUSE_HISTORY completed memory-only pre-copy migrations whose source
        was about as busy as `load` (predict/load.py), the bytes each sent paused and
        its QEMU downtime (predict/pause.py).  One that switched to post-copy is not
        one: its few-ms downtime (libvirt's job-completed event) sits beside the pages
        the destination pulled after it; nor is a compressed one (multifd's channels
        at the switchover cost more on a busy host: docs/drain.md)."""
        mode_ok = _in_mode(encrypted)
        points: list[tuple[float, float]] = []
        with self.db.session() as s:
            rows = s.execute(select(MigrationRow.id, MigrationRow.total_ms,
                                    MigrationRow.downtime_ms, MigrationRow.transferred_bytes)
                             .where(_between(source, destination),
                                    mode_ok, MigrationRow.state == MigrationState.COMPLETED,
                                    func.coalesce(MigrationRow.disk_bytes, 0) == 0,
                                    MigrationRow.downtime_ms > 0, MigrationRow.total_ms > 0,
                                    MigrationRow.transferred_bytes > 0, _at_load(load),
                                    MigrationRow.compressed.is_not(True),
                                    MigrationRow.id.not_in(_with(EventKind.START_POSTCOPY)))
                             .order_by(MigrationRow.id.desc()).limit(PAUSE_HISTORY)).all()
            for mid, total_ms, down_ms, sent in rows:
                if not (total_ms and down_ms and sent):
                    continue
                last = s.scalars(select(SampleRow).where(
                    SampleRow.migration_id == mid, SampleRow.iteration >= 1,
                    SampleRow.t_ms < total_ms - down_ms)
                    .order_by(SampleRow.t_ms.desc()).limit(1)).first()
                seen = None if last is None else pause.Sample(
                    last.t_ms / 1000, last.memory_processed_bytes, last.bandwidth_bytes_s)
                rest = pause.paused_bytes(seen, total_ms / 1000, down_ms / 1000, sent)
                if rest is not None:
                    points.append((rest, down_ms / 1000))
        return pause.fit(points, link_bytes_s,
                         "pauses" if load is None else "pauses at a like load")

    def _same_vm(self, s: Session, vm: str) -> ColumnElement[bool]:
        """Migrations of this very VM at its present size: its libvirt UUID, not its
        name (a VM deleted and created again under the name starts afresh); rows of
        an older Ferry, which stored no UUID, are not used."""
        row = s.scalar(select(VmRow).where(VmRow.name == vm))
        if row is None or row.uuid is None:
            return false()
        return and_(MigrationRow.vm_uuid == row.uuid, MigrationRow.memory_mib == row.memory_mib)

    def _nonzero(self, vm: str) -> tuple[float | None, str]:
        """Round 1 of the VM's last completed migration in clear sent its non-zero pages
        (a compressed one sent them squeezed)."""
        with self.db.session() as s:
            last = s.scalar(select(MigrationRow.id).where(
                self._same_vm(s, vm), MigrationRow.state == MigrationState.COMPLETED,
                MigrationRow.compressed.is_not(True))
                .order_by(MigrationRow.id.desc()).limit(1))
            if last is None:
                return None, ""
            rounds = s.scalar(select(func.max(SampleRow.iteration))
                              .where(SampleRow.migration_id == last))
            sent = s.scalar(select(func.max(SampleRow.memory_processed_bytes)).where(
                SampleRow.migration_id == last, SampleRow.iteration == 1))
        if not sent or not rounds or rounds < 2:
            return None, ""
        return float(sent), f"round 1 of migration {last}"

    def _tracking(self, vm: str) -> tuple[float, str]:
        """How the VM's dirtying slowed during its last migration (1.0 without history)."""
        with self.db.session() as s:
            row = s.scalar(select(MigrationRow).where(
                self._same_vm(s, vm), MigrationRow.measured_rate_mib_s.is_not(None),
                MigrationRow.state == MigrationState.COMPLETED)
                .order_by(MigrationRow.id.desc()).limit(1))
            if row is None or not row.measured_rate_mib_s:
                return 1.0, ""
            during = s.scalar(select(func.max(SampleRow.dirty_rate_bytes_s)).where(
                SampleRow.migration_id == row.id, SampleRow.iteration >= 2))
            before = DirtyCurve(row.measured_rate_mib_s * MIB,
                                (row.measured_wss_mib or 0) * MIB or float("inf"))
            mid = row.id
        if not during:
            return 1.0, ""
        f = tracking_factor(float(during), before)
        return f, f"dirtying ran at {f:.0%} of the measured rate during migration {mid}"

    def _link_bytes_s(self, source: str, destination: str, encrypted: bool | None = None
                      ) -> tuple[float | None, str]:
        """The steady transfer rate (median of its samples) of the latest uncapped
        migration between these hosts (in the mode `encrypted` says, if it says);
        links change, so only the newest counts, and peaks (a shaper's burst) would
        overstate it.  Without one in this direction, the other direction's (links
        are mostly symmetric) beats a guess; without one in this mode, the other
        mode's, said so."""
        if encrypted is not None and not self._any_in_mode(source, destination, encrypted):
            rate, how = self._link_bytes_s(source, destination, None)
            mode = "encrypted" if encrypted else "plain"
            return (rate, f"{how} (no {mode} migration between these hosts yet)") \
                if rate is not None else (None, "")
        rates: list[int] = []
        latest = None
        mode_ok = _in_mode(encrypted)
        with self.db.session() as s:
            for src, dst in ((source, destination), (destination, source)):
                latest = s.scalar(select(func.max(SampleRow.migration_id)).join(
                    MigrationRow, MigrationRow.id == SampleRow.migration_id).where(
                    MigrationRow.source == src, MigrationRow.destination == dst, mode_ok,
                    MigrationRow.bandwidth_mib_s.is_(None), SampleRow.iteration >= 1))
                if latest:
                    rates = sorted(r for r in s.scalars(select(SampleRow.bandwidth_bytes_s)
                                                        .where(SampleRow.migration_id == latest,
                                                               SampleRow.iteration >= 1))
                                   if r > 0)
                if rates:
                    break
            reached, at_cap, capped = self._capped(s, source, destination, mode_ok, latest or 0)
        rate = float(rates[len(rates) // 2]) if rates else None
        if capped is not None and not at_cap:  # held back by the link: it measured it
            return reached, f"measured on migration {capped} (below its cap)"
        if capped is not None and reached > (rate or ASSUMED_LINK_MIB_S * MIB):
            return reached, (f"at least {reached / MIB:.0f} MiB/s: migration {capped}, capped "
                             "there, reached it" + (f" (newer than migration {latest}'s "
                                                    f"{rate / MIB:.0f} MiB/s)" if rate else ""))
        if rate is not None:
            return rate, f"measured on migration {latest}"
        return None, ""

    @staticmethod
    def _capped(s: Session, source: str, destination: str, mode_ok: ColumnElement[bool],
                after: int) -> tuple[float, bool, int | None]:
        """What the newest capped migration between these hosts (either way, newer than
        migration `after`) reached, whether that was its cap (CAP_REACHED of it), and
        its id (None: none).  At its cap, the link carries at least that; below it,
        the link held it back, so that is the link.  A link learnt while busy (a
        loaded drain) would otherwise stand until the next uncapped migration,
        however fast capped ones went since."""
        mid, cap = s.execute(select(MigrationRow.id, MigrationRow.bandwidth_mib_s).where(
            _between(source, destination),
            mode_ok, MigrationRow.bandwidth_mib_s.is_not(None), MigrationRow.id > after,
            MigrationRow.state == MigrationState.COMPLETED)
            .order_by(MigrationRow.id.desc()).limit(1)).first() or (None, None)
        if mid is None or not cap:
            return 0.0, False, None
        rates = sorted(r for r in s.scalars(select(SampleRow.bandwidth_bytes_s).where(
            SampleRow.migration_id == mid, SampleRow.iteration >= 1)) if r > 0)
        if not rates:
            return 0.0, False, None
        reached = float(rates[len(rates) // 2])
        return reached, reached >= CAP_REACHED * cap * MIB, mid

    @durable
    def stream_bytes_s(self, source: str, encrypted: bool) -> float | None:
        """What one migration leaving `source` reaches (its QEMU thread, TCP, the CPU
        left for encryption), as bytes sent over the job's time after its set-up
        (the destination QEMU starting sends nothing): the best of its latest
        STREAM_HISTORY memory-only migrations in this mode that nobody capped.  One
        that shared the link reached less; the best is the nearest to one alone.
        A drain runs several at once where one stream does not fill the link.
        Without one in this mode, the other mode's (a plain stream is the faster:
        a bound still below a link it cannot fill)."""
        rate = self._stream_bytes_s(source, encrypted)
        return rate if rate is not None else self._stream_bytes_s(source, not encrypted)

    def _stream_bytes_s(self, source: str, encrypted: bool) -> float | None:
        with self.db.session() as s:
            rows = s.execute(select(MigrationRow.id, MigrationRow.transferred_bytes,
                                    MigrationRow.total_ms)
                             .where(MigrationRow.source == source,
                                    MigrationRow.state == MigrationState.COMPLETED,
                                    MigrationRow.bandwidth_mib_s.is_(None),
                                    func.coalesce(MigrationRow.disk_bytes, 0) == 0,
                                    _in_mode(encrypted), MigrationRow.total_ms > 0)
                             .order_by(MigrationRow.id.desc()).limit(STREAM_HISTORY)).all()
            rates = [r for mid, b, t in rows if (r := _reached(s, mid, b, t)) is not None]
        return max(rates) if rates else None

    def reached_bytes_s(self, mid: int) -> float | None:
        """What migration `mid`'s stream reached: bytes over its job time after set-up."""
        with self.db.session() as s:
            row = s.get(MigrationRow, mid)
            return None if row is None else \
                _reached(s, mid, row.transferred_bytes, row.total_ms)

    def _any_in_mode(self, source: str, destination: str, encrypted: bool) -> bool:
        """Has an uncapped migration between these hosts (either way) run in this mode?"""
        with self.db.session() as s:
            return s.scalar(select(MigrationRow.id).where(
                _between(source, destination),
                MigrationRow.bandwidth_mib_s.is_(None), _in_mode(encrypted)).limit(1)) is not None

    def _setup_s(self, source: str, destination: str, load: float | None = None
                 ) -> tuple[float | None, str, list[float]]:
        """How long a job between these hosts runs before its first byte moves (libvirt's
        begin/prepare phases: the destination QEMU starts), which the model cannot know,
        and the latest SETUP_RANGE_HISTORY such times (their spread: 0.2-1.2 s on the
        lab, one job to the next, whatever its size).

        From the first transferring sample of each of the latest memory-only
        migrations: elapsed minus what was sent at the rate seen; the median of up
        to five, of those whose source was about as busy as `load` (a loaded host
        starts the destination QEMU slower).  A staged job's samples start at its
        release: its set-up is the one its trickle showed (`setup_ms`), and one without
        it is left out."""
        with self.db.session() as s:
            rows = s.execute(select(MigrationRow.id, MigrationRow.setup_ms).where(
                MigrationRow.source == source, MigrationRow.destination == destination,
                MigrationRow.state == MigrationState.COMPLETED,
                func.coalesce(MigrationRow.disk_bytes, 0) == 0, _at_load(load),
                or_(MigrationRow.setup_ms.is_not(None),
                    MigrationRow.id.not_in(_with(EventKind.STAGED))))
                .order_by(MigrationRow.id.desc()).limit(SETUP_RANGE_HISTORY)).all()
            seen = [x for mid, ms in rows
                    if (x := ms / 1000 if ms is not None else _job_setup_s(s, mid)) is not None]
        est = seen[:SETUP_HISTORY]
        if not est:
            return None, "", []
        setup = statistics.median(est)
        like = " at a like load" if load is not None else ""
        return setup, f"set-up {setup:.2f} s (last {len(est)} migrations{like})", seen

    @durable
    def finish_s(self, source: str, destination: str) -> float | None:
        """How long a move between these hosts takes after QEMU's job time: libvirt's
        finish (the destination resumes the guest, the source's QEMU ends) and
        Ferry settling where the guest is, which hold the move's admission slot
        (lab under load: ~2 s).  The median over the latest SETUP_HISTORY completed
        memory-only migrations of: end recorded - job started - job time."""
        est = []
        with self.db.session() as s:
            rows = s.execute(select(MigrationRow.id, MigrationRow.finished_at,
                                    MigrationRow.total_ms).where(
                MigrationRow.source == source, MigrationRow.destination == destination,
                MigrationRow.state == MigrationState.COMPLETED,
                func.coalesce(MigrationRow.disk_bytes, 0) == 0,
                MigrationRow.total_ms.is_not(None), MigrationRow.finished_at.is_not(None))
                .order_by(MigrationRow.id.desc()).limit(SETUP_HISTORY)).all()
            for mid, finished, total_ms in rows:
                # a staged job's time counts from its release
                started = _first(s, mid, EventKind.RELEASED) or _first(s, mid,
                                                                       EventKind.STARTED)
                end, begin = _aware(finished), _aware(started)
                if end is not None and begin is not None:
                    est.append(max(0.0, (end - begin).total_seconds() - (total_ms or 0) / 1000))
        return statistics.median(est) if est else None


def _between(source: str, destination: str) -> ColumnElement[bool]:
    """Migrations between these two hosts, either way (links are mostly symmetric)."""
    return or_(and_(MigrationRow.source == source, MigrationRow.destination == destination),
               and_(MigrationRow.source == destination, MigrationRow.destination == source))


def host_load(s: Session, host: str) -> float | None:
    """How busy the host's CPUs were at the last reconcile (None: not read yet)."""
    return s.scalar(select(HostRow.cpu_busy).where(HostRow.name == host))


def _at_load(load: float | None) -> ColumnElement[bool]:
    """Migrations whose source was within LOAD_BAND as busy as `load`; where either
    is unknown (an older Ferry's rows, a host not read yet), they count."""
    if load is None:
        return true()
    return or_(MigrationRow.source_busy.is_(None),
               func.abs(MigrationRow.source_busy - load) <= LOAD_BAND)


def _in_mode(encrypted: bool | None) -> ColumnElement[bool]:
    """Migrations whose stream was encrypted (True), plain (False), or any (None)."""
    if encrypted is None:
        return true()
    return func.coalesce(MigrationRow.encrypted, false()) == encrypted


def _first(s: Session, mid: int, kind: EventKind) -> datetime | None:
    """When migration `mid` first recorded an event of this kind."""
    return s.scalar(select(func.min(EventRow.at)).where(EventRow.migration_id == mid,
                                                        EventRow.kind == kind.value))


def _with(kind: EventKind) -> Select[int]:
    """The migrations that recorded an event of this kind."""
    return select(EventRow.migration_id).where(EventRow.kind == kind.value)


def _reached(s: Session, mid: int, sent: int | None, total_ms: int | None) -> float | None:
    """Bytes sent over the job's time after its set-up (the destination QEMU starting
    sends nothing); None without figures or with under 0.1 s of moving."""
    if not sent or not total_ms:
        return None
    moving = total_ms / 1000 - (_job_setup_s(s, mid) or 0.0)
    return sent / moving if moving > 0.1 else None


def _job_setup_s(s: Session, mid: int) -> float | None:
    """From a migration's first transferring sample: its elapsed time minus what it had
    sent at the rate it showed (None: no such sample)."""
    first = s.scalar(select(SampleRow).where(
        SampleRow.migration_id == mid, SampleRow.memory_processed_bytes > 0,
        SampleRow.bandwidth_bytes_s > 0).order_by(SampleRow.t_ms).limit(1))
    if first is None:
        return None
    return max(0.0, first.t_ms / 1000 - first.memory_processed_bytes / first.bandwidth_bytes_s)


def _aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
