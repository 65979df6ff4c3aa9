"""Migrations in the database: claiming one, its progress and events, its end, and
what earlier migrations teach the next prediction.

`MigrationStore` is the pipeline's `MigrationRecords` port on SQLAlchemy.
Writes are short transactions, so a sample or an event is visible to
`ferry migration show` the moment it happens.  While the database does not
answer, the pipeline's calls wait for it (`durable`: the migration never
ends half-recorded) except samples and events, which wait in memory, in
order, so that watching a job never holds the job up.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import statistics
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, func, or_, select, true, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ferry.clock import Clock
from ferry.db.models import EventRow, HostRow, MigrationRow, PoolRow, SampleRow, VmRow, VolumeRow
from ferry.domain.models import (
    UNFINISHED,
    HostState,
    Migration,
    MigrationState,
    Sample,
    VmState,
    sources_of,
)
from ferry.domain.vocab import EventKind, OnTimeout, Policy
from ferry.errors import Conflict, DatabaseUnavailable, InvalidRequest, NotFound
from ferry.hypervisor.types import MigrationOptions
from ferry.migration.admission import Move
from ferry.migration.copies import CopiedVolume
from ferry.migration.figures import Final
from ferry.migration.pipeline import Claim, HostRef, Request, Unfinished
from ferry.migration.policies import PolicyConfig
from ferry.migration.settling import Recorder
from ferry.predict.dirty import MIB, DirtyCurve, tracking_factor
from ferry.predict.inputs import ASSUMED_LINK_MIB_S, History, Measurement
from ferry.predict.precopy import Prediction
from ferry.service import convert
from ferry.service.database import Database
from ferry.service.secrets import SecretBox
from ferry.storage.sharing import StorageCatalog

SETUP_HISTORY = 5
STREAM_HISTORY = 5  # latest migrations from a host read for what one stream reaches
CAP_REACHED = 0.9  # a capped migration whose median rate is this close to its cap reached it
_UNFINISHED = [s.value for s in UNFINISHED]


P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("ferry.migration_store")
PENDING_MAX = 50_000  # samples and events kept while the database is away (oldest dropped)
RETRY_WRITES_S = 5.0  # while it is away, a write is tried at most this often


def durable(method: Callable[P, T]) -> Callable[P, T]:
    """A pipeline call that waits for a database that does not answer (see Database)."""
    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        store = args[0]
        assert isinstance(store, MigrationStore)
        return store.db.durably(lambda: method(*args, **kwargs), store.clock,
                                method.__name__)
    return wrapper


class _DbRecorder:
    """Stores a job's samples and events as they happen (through the store's queue)."""

    def __init__(self, store: MigrationStore, migration_id: int) -> None:
        self.store, self.id = store, migration_id

    def sample(self, sample: Sample) -> None:
        self.store.write(SampleRow, migration_id=self.id, **sample.__dict__)

    def event(self, kind: EventKind, message: str) -> None:
        self.store.write(EventRow, migration_id=self.id, kind=kind.value, message=message,
                         at=self.store.clock.now())


class MigrationStore:
    def __init__(self, db: Database, clock: Clock, box: SecretBox) -> None:
        self.db, self.clock, self.box = db, clock, box
        self._claim_lock = threading.Lock()  # check-then-insert of one migration per VM
        self._pending: deque[tuple[type[SampleRow] | type[EventRow], dict[str, Any]]] = \
            deque(maxlen=PENDING_MAX)
        self._writing = threading.Lock()
        self._failing_since: float | None = None
        self.dropped = 0  # samples and events lost to a very long outage

    # -- samples and events: queued, written in order, never blocking a job ----------
    def write(self, row: type[SampleRow] | type[EventRow], **values: Any) -> None:
        with self._writing:
            if len(self._pending) == PENDING_MAX:
                self.dropped += 1
            self._pending.append((row, values))
            if self._failing_since is not None and \
                    self.clock.monotonic() - self._failing_since < RETRY_WRITES_S:
                return  # it was away a moment ago: try again a little later
            self._flush()

    def flush(self) -> None:
        """Write what waits; raises DatabaseUnavailable if the database is still away."""
        with self._writing:
            self._flush()
            if self._pending:
                raise DatabaseUnavailable("the database does not answer")

    def _flush(self) -> None:
        try:
            with self.db.session() as s:
                s.add_all([row(**values) for row, values in self._pending])
        except DatabaseUnavailable as exc:
            if self._failing_since is None:
                log.warning("%s: %d samples/events wait in memory", exc.message,
                            len(self._pending))
            self._failing_since = self.clock.monotonic()
            return
        if self._failing_since is not None:
            log.warning("database back: %d samples/events written (%d dropped)",
                        len(self._pending), self.dropped)
        self._pending.clear()
        self._failing_since = None

    # -- reading ----------------------------------------------------------------
    def list_migrations(self, vm: str | None = None, limit: int = 100) -> list[Migration]:
        with self.db.session() as s:
            q = select(MigrationRow).order_by(MigrationRow.id.desc()).limit(limit)
            if vm:
                q = q.where(MigrationRow.vm == vm)
            return [convert.migration(r) for r in s.scalars(q)]

    def get(self, mid: int) -> Migration:
        with self.db.session() as s:
            row = s.get(MigrationRow, mid)
            if row is None:
                raise NotFound(f"no migration {mid}")
            events = list(s.scalars(select(EventRow).where(EventRow.migration_id == mid)
                                    .order_by(EventRow.id)))
            return convert.migration(row, events)

    def samples(self, mid: int, after_ms: int = -1) -> list[Sample]:
        self.get(mid)
        with self.db.session() as s:
            q = (select(SampleRow).where(SampleRow.migration_id == mid,
                                         SampleRow.t_ms > after_ms).order_by(SampleRow.id))
            return [convert.sample(r) for r in s.scalars(q)]

    def last_sample(self, mid: int) -> Sample | None:
        """The newest sample with memory figures (the job's set-up samples have none)."""
        with self.db.session() as s:
            row = s.scalar(select(SampleRow).where(SampleRow.migration_id == mid,
                                                   SampleRow.memory_total_bytes > 0)
                           .order_by(SampleRow.id.desc()).limit(1))
            return convert.sample(row) if row is not None else None

    # -- claiming and releasing the VM ----------------------------------------------
    def claim(self, req: Request) -> Claim:
        """Record the migration (prechecking) and mark the VM migrating, or refuse: one
        migration per VM, a running VM, a real destination other than its host."""
        with self._claim_lock, self.db.session() as s:
            vrow = s.scalar(select(VmRow).where(VmRow.name == req.vm))
            if vrow is None:
                raise NotFound(f"no VM named {req.vm!r}")
            dest = s.scalar(select(HostRow).where(HostRow.name == req.destination))
            if dest is None:
                raise NotFound(f"no host named {req.destination!r}")
            busy = s.scalar(select(MigrationRow).where(MigrationRow.vm == req.vm,
                                                       MigrationRow.state.in_(_UNFINISHED)))
            if busy is not None:
                raise Conflict(f"VM {req.vm} is already migrating (migration {busy.id})",
                               {"migration": busy.id})
            if vrow.host == req.destination:
                raise InvalidRequest(f"VM {req.vm} already runs on {req.destination}: source "
                                     "and destination are the same host")
            if vrow.host is None or vrow.state != VmState.RUNNING:
                raise Conflict(f"VM {req.vm} is not running (state {vrow.state})")
            src = s.scalar(select(HostRow).where(HostRow.name == vrow.host))
            assert src is not None
            row = MigrationRow(vm=req.vm, vm_uuid=vrow.uuid, memory_mib=vrow.memory_mib,
                               source=src.name, destination=dest.name,
                               state=MigrationState.PRECHECKING,
                               bandwidth_mib_s=req.bandwidth_mib_s,
                               link_mib_s=req.link_mib_s,
                               max_downtime_ms=req.max_downtime_ms, policy=req.policy.value,
                               on_timeout=req.on_timeout.value,
                               timeout_per_gib_s=req.timeout_per_gib_s,
                               tls_requested=req.tls, created_at=self.clock.now())
            s.add(row)
            try:
                s.flush()
            except IntegrityError:  # another controller claimed it between our check and now
                raise Conflict(f"VM {req.vm} is already migrating") from None
            # conditional: a delete that took the VM since we read it wins
            res = s.execute(update(VmRow).where(VmRow.name == req.vm,
                                                VmRow.state == VmState.RUNNING)
                            .values(state=VmState.MIGRATING.value))
            if getattr(res, "rowcount", 0) != 1:
                raise Conflict(f"VM {req.vm} is not running (being deleted?)")
            return Claim(row.id, req, vrow.memory_mib, _ref(src), _ref(dest))

    @durable
    def release(self, vm: str) -> None:
        """The VM leaves MIGRATING once no migration of it is unfinished (a post-copy
        that broke keeps it); reconciling then says where it really is."""
        with self.db.session() as s:
            if s.scalar(select(MigrationRow.id).where(MigrationRow.vm == vm,
                                                      MigrationRow.state.in_(_UNFINISHED))):
                return
            row = s.scalar(select(VmRow).where(VmRow.name == vm))
            if row is not None and row.state == VmState.MIGRATING:
                row.state = VmState.RUNNING

    @durable
    def unfinished(self) -> list[Unfinished]:
        """What an earlier process was doing: prechecking or running (queued ones
        simply wait for admission again)."""
        with self.db.session() as s:
            hosts = {h.name: _ref(h) for h in s.scalars(select(HostRow))}
            out = []
            for r in s.scalars(select(MigrationRow).where(MigrationRow.state.in_(
                    [MigrationState.PRECHECKING.value, MigrationState.RUNNING.value,
                     MigrationState.POSTCOPY_PAUSED.value]))):
                memory = s.scalar(select(VmRow.memory_mib).where(VmRow.name == r.vm))
                kinds = set(s.scalars(select(EventRow.kind).where(
                    EventRow.migration_id == r.id, EventRow.kind.in_(
                        (EventKind.STAGED.value, EventKind.RELEASED.value)))))
                out.append(Unfinished(
                    r.id, r.vm, int(memory or 1024), MigrationState(r.state),
                    hosts.get(r.source), hosts.get(r.destination), _aware(r.started_at),
                    r.timeout_s, [CopiedVolume(c["pool"], c["volume"]) for c in r.copies or []],
                    PolicyConfig.from_dict(r.plan) if r.plan else None,
                    _options(r.plan), staged=kinds == {EventKind.STAGED.value}))
            return out

    @durable
    def claim_of(self, mid: int) -> Claim:
        """A stored migration as the pipeline's claim (to start one that waited)."""
        with self.db.session() as s:
            r = s.get(MigrationRow, mid)
            if r is None:
                raise NotFound(f"no migration {mid}")
            hosts = {h.name: _ref(h) for h in s.scalars(select(HostRow).where(
                HostRow.name.in_([r.source, r.destination])))}
            memory = s.scalar(select(VmRow.memory_mib).where(VmRow.name == r.vm))
            req = Request(r.vm, r.destination, Policy(r.policy), r.bandwidth_mib_s,
                          r.max_downtime_ms, r.timeout_per_gib_s, OnTimeout(r.on_timeout),
                          r.link_mib_s, r.tls_requested)
            missing = HostRef("?", "", "", up=False)
            return Claim(r.id, req, int(memory or 1024), hosts.get(r.source, missing),
                         hosts.get(r.destination, missing))

    @durable
    def moves(self, state: MigrationState) -> list[Move]:
        with self.db.session() as s:
            return [Move(r.id, r.source, r.destination) for r in s.scalars(
                select(MigrationRow).where(MigrationRow.state == state)
                .order_by(MigrationRow.id))]

    def request_cancel(self, mid: int) -> None:
        """Stored, so that whichever controller runs the job sees it (`cancels_asked`)."""
        with self.db.session() as s:
            s.execute(update(MigrationRow).where(MigrationRow.id == mid)
                      .values(cancel_requested=True))

    def cancels_asked(self) -> list[int]:
        """Unfinished migrations somebody asked to cancel."""
        with self.db.session() as s:
            return list(s.scalars(select(MigrationRow.id).where(
                MigrationRow.cancel_requested, MigrationRow.state.in_(_UNFINISHED))))

    @durable
    def incoming_mib(self, destination: str, excluding: int) -> int:
        """Guest memory of the migrations running into `destination` (reserved there)."""
        with self.db.session() as s:
            total = s.scalar(select(func.sum(VmRow.memory_mib)).join(
                MigrationRow, MigrationRow.vm == VmRow.name).where(
                MigrationRow.destination == destination, MigrationRow.id != excluding,
                MigrationRow.state == MigrationState.RUNNING))
        return int(total or 0)

    @durable
    def incoming_by_host(self) -> dict[str, int]:
        """Guest memory of the migrations running into each host (one query)."""
        with self.db.session() as s:
            rows = s.execute(select(MigrationRow.destination, func.sum(VmRow.memory_mib))
                             .join(VmRow, MigrationRow.vm == VmRow.name)
                             .where(MigrationRow.state == MigrationState.RUNNING)
                             .group_by(MigrationRow.destination))
            return {str(d): int(n or 0) for d, n in rows}

    # -- the pipeline's records (MigrationRecords) -----------------------------------
    def recorder(self, mid: int) -> Recorder:
        return _DbRecorder(self, mid)

    @durable
    def transition(self, mid: int, to: MigrationState, **fields: object) -> bool:
        """Move the migration to `to` if its state allows it (TRANSITIONS), atomically
        in the database; False when it does not (another path got there first: e.g. a
        cancel of a queued migration and its admission)."""
        with self.db.session() as s:
            res = s.execute(update(MigrationRow).where(
                MigrationRow.id == mid,
                MigrationRow.state.in_([f.value for f in sources_of(to)]))
                .values(state=to.value, **fields))
            return bool(getattr(res, "rowcount", 0) == 1)

    def admitted(self, mid: int) -> bool:
        return self.transition(mid, MigrationState.RUNNING, started_at=self.clock.now())

    @durable
    def record_plan(self, mid: int, timeout_s: float, policy: PolicyConfig,
                    options: MigrationOptions, copies: list[CopiedVolume]) -> None:
        with self.db.session() as s:
            row = s.get(MigrationRow, mid)
            assert row is not None
            row.timeout_s, row.on_timeout = timeout_s, policy.on_timeout.value
            row.plan = {**policy.as_dict(), "options": dataclasses.asdict(options)}
            row.encrypted = options.tls
            row.copies = [{"pool": c.pool, "volume": c.volume} for c in copies]

    @durable
    def store_prediction(self, mid: int, prediction: Prediction, m: Measurement) -> None:
        with self.db.session() as s:
            row = s.get(MigrationRow, mid)
            assert row is not None
            ok = prediction.converges
            row.predicted_converges = ok
            row.predicted_total_ms = round(prediction.total_s * 1000) if ok else None
            row.predicted_downtime_ms = round(prediction.downtime_s * 1000) if ok else None
            row.measured_rate_mib_s = m.curve.rate_bytes_s / MIB
            row.measured_wss_mib = m.curve.wss_bytes / MIB

    @durable
    def finish(self, mid: int, final: Final) -> bool:
        """End the migration with its figures (its events first); False if it had
        already ended.  A completed one moves the VM's record to the destination at
        once: both hosts said so, and a reconcile while one of them does not answer
        must not leave the VM where it was."""
        self.flush()
        now = self.clock.now()
        with self.db.session() as s:
            row = s.get(MigrationRow, mid)
            created = _aware(row.created_at) if row is not None else None
            vm, destination = (row.vm, row.destination) if row is not None else ("", "")
        created = created or now
        ended = self.transition(
            mid, final.state, error=final.error, finished_at=now,
            wall_ms=int((now - created).total_seconds() * 1000), total_ms=final.total_ms,
            downtime_ms=final.downtime_ms, rounds=final.rounds,
            transferred_bytes=final.transferred_bytes, disk_bytes=final.disk_bytes)
        if ended and final.state == MigrationState.COMPLETED:
            with self.db.session() as s:
                s.execute(update(VmRow).where(VmRow.name == vm).values(host=destination))
        return ended

    @durable
    def storage_catalog(self) -> StorageCatalog:
        with self.db.session() as s:
            pools = list(s.scalars(select(PoolRow)))
            return StorageCatalog([convert.pool(p) for p in pools],
                                  [convert.volume(v) for v in s.scalars(select(VolumeRow))],
                                  {p.name: self.box.open(p.key) for p in pools if p.key})

    @durable
    def volumes_moved(self, moved: list[CopiedVolume], host: str) -> None:
        with self.db.session() as s:
            for c in moved:
                row = s.scalar(select(VolumeRow).where(VolumeRow.pool == c.pool,
                                                       VolumeRow.name == c.volume))
                if row is not None:
                    row.host = host

    # -- history: what earlier migrations teach ----------------------------------------
    @durable
    def history(self, vm: str, source: str, destination: str,
                pair: History | None = None, *, encrypted: bool | None = None) -> History:
        """What earlier migrations teach about moving `vm` from `source` to
        `destination`; `pair`: the link figures of that pair already read (a drain
        asks for many VMs over few pairs); `encrypted`: the link as streams of that
        mode reached it (TLS costs CPU: an encrypted stream may be slower)."""
        if pair is None:
            link, link_how = self._link_bytes_s(source, destination, encrypted)
            setup, setup_how = self._setup_s(source, destination)
            pair = History(link, link_how, setup, setup_how, encrypted=bool(encrypted))
        nonzero, nonzero_how = self._nonzero(vm)
        tracking, tracking_how = self._tracking(vm)
        return replace(pair, nonzero_bytes=nonzero, nonzero_how=nonzero_how,
                       tracking=tracking, tracking_how=tracking_how)

    def _same_vm(self, s: Session, vm: str) -> ColumnElement[bool]:
        """Migrations of this very VM at its present size: its libvirt UUID, not its
        name (a VM deleted and created again under the name starts afresh); rows of
        an older Ferry, which stored no UUID, are not used."""
        row = s.scalar(select(VmRow).where(VmRow.name == vm))
        if row is None or row.uuid is None:
            return false()
        return and_(MigrationRow.vm_uuid == row.uuid, MigrationRow.memory_mib == row.memory_mib)

    def _nonzero(self, vm: str) -> tuple[float | None, str]:
        """Round 1 of the VM's last completed migration sent its non-zero pages."""
        with self.db.session() as s:
            last = s.scalar(select(MigrationRow.id).where(
                self._same_vm(s, vm), MigrationRow.state == MigrationState.COMPLETED)
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
        mode_ok = true() if encrypted is None else \
            func.coalesce(MigrationRow.encrypted, false()) == encrypted
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
            or_(and_(MigrationRow.source == source, MigrationRow.destination == destination),
                and_(MigrationRow.source == destination, MigrationRow.destination == source)),
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
                                    func.coalesce(MigrationRow.encrypted, false()) == encrypted,
                                    MigrationRow.total_ms > 0)
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
                or_(and_(MigrationRow.source == source, MigrationRow.destination == destination),
                    and_(MigrationRow.source == destination,
                         MigrationRow.destination == source)),
                MigrationRow.bandwidth_mib_s.is_(None),
                func.coalesce(MigrationRow.encrypted, false()) == encrypted).limit(1)) \
                is not None

    def _setup_s(self, source: str, destination: str) -> tuple[float | None, str]:
        """How long a job between these hosts runs before its first byte moves (libvirt's
        begin/prepare phases: the destination QEMU starts), which the model cannot know.

        From the first transferring sample of each of the latest memory-only
        migrations: elapsed minus what was sent at the rate seen; the median of up
        to five.  A drain's staged jobs are left out: their set-up overlapped another's
        transfer, and their samples start at their release."""
        with self.db.session() as s:
            mids = list(s.scalars(select(MigrationRow.id).where(
                MigrationRow.source == source, MigrationRow.destination == destination,
                MigrationRow.state == MigrationState.COMPLETED,
                func.coalesce(MigrationRow.disk_bytes, 0) == 0,
                MigrationRow.id.not_in(_staged()))
                .order_by(MigrationRow.id.desc()).limit(SETUP_HISTORY)))
            est = [x for mid in mids if (x := _job_setup_s(s, mid)) is not None]
        if not est:
            return None, ""
        setup = statistics.median(est)
        return setup, f"set-up {setup:.2f} s (last {len(est)} migrations)"

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


def _first(s: Session, mid: int, kind: EventKind) -> datetime | None:
    """When migration `mid` first recorded an event of this kind."""
    return s.scalar(select(func.min(EventRow.at)).where(EventRow.migration_id == mid,
                                                        EventRow.kind == kind.value))


def _staged() -> Select[int]:
    """The migrations whose job was staged (a drain's, started slowly while its link
    was busy)."""
    return select(EventRow.migration_id).where(EventRow.kind == EventKind.STAGED.value)


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


def _options(plan: dict[str, Any] | None) -> MigrationOptions | None:
    if not plan or "options" not in plan:
        return None
    o = dict(plan["options"])
    o["copy_disks"] = tuple(o.get("copy_disks") or ())
    return MigrationOptions(**o)


def _ref(row: HostRow) -> HostRef:
    return HostRef(row.name, row.uri, row.virt_type, row.state == HostState.UP,
                   bool(row.maintenance), bool(row.migration_tls))


def _aware(t: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored as UTC."""
    if t is None:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)
