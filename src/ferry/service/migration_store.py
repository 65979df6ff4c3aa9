"""Migrations in the database: claiming one, its progress and events, its end (what
earlier migrations teach the next prediction: history_store.py).

`MigrationStore` is the pipeline's `MigrationRecords` port on SQLAlchemy.
Writes are short transactions, so a sample or an event is visible to
`ferry migration show` the moment it happens.  While the database does not
answer, the pipeline's calls wait for it (`durable`: the migration never
ends half-recorded) except samples and events, which wait in memory, in
order, so that watching a job never holds the job up.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import deque
from typing import Any, ParamSpec, TypeVar

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

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
from ferry.migration.policies import PolicyConfig
from ferry.migration.requests import Claim, HostRef, Request, Unfinished
from ferry.migration.settling import Recorder
from ferry.predict.dirty import MIB
from ferry.predict.inputs import Measurement
from ferry.predict.precopy import Prediction
from ferry.service import convert
from ferry.service.database import Database
from ferry.service.history_store import HistoryReads, _aware, _with, durable, host_load
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


class _DbRecorder:
    """Stores a job's samples and events as they happen (through the store's queue)."""

    def __init__(self, store: MigrationStore, migration_id: int) -> None:
        self.store, self.id = store, migration_id

    def sample(self, sample: Sample) -> None:
        self.store.write(SampleRow, migration_id=self.id, **sample.__dict__)

    def event(self, kind: EventKind, message: str) -> None:
        self.store.write(EventRow, migration_id=self.id, kind=kind.value, message=message,
                         at=self.store.clock.now())


class MigrationStore(HistoryReads):
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

    def last_sample(self, mid: int, pending: bool = False) -> Sample | None:
        """The newest sample with memory figures (the job's set-up samples have none);
        with `pending`, the newest that had memory left to send."""
        least = SampleRow.memory_remaining_bytes > 0 if pending else \
            SampleRow.memory_total_bytes > 0
        with self.db.session() as s:
            row = s.scalar(select(SampleRow).where(SampleRow.migration_id == mid, least)
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
                               tls_requested=req.tls, compress_requested=req.compress,
                               created_at=self.clock.now())
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
                          r.link_mib_s, r.tls_requested, r.compress_requested)
            missing = HostRef("?", "", "", up=False)
            return Claim(r.id, req, int(memory or 1024), hosts.get(r.source, missing),
                         hosts.get(r.destination, missing))

    @durable
    def moves(self, state: MigrationState, sending: bool = False) -> list[Move]:
        """The migrations in `state`; with `sending`, not those whose source has sent
        everything (libvirt finishing: their link is free)."""
        with self.db.session() as s:
            q = select(MigrationRow).where(MigrationRow.state == state)
            if sending:
                q = q.where(MigrationRow.id.not_in(_with(EventKind.SENT)))
            return [Move(r.id, r.source, r.destination)
                    for r in s.scalars(q.order_by(MigrationRow.id))]

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
            row.encrypted, row.compressed = options.tls, options.compress
            row.copies = [{"pool": c.pool, "volume": c.volume} for c in copies]
            # the load its history is later read at (predict/load.py)
            row.source_busy = host_load(s, row.source)

    @durable
    def store_prediction(self, mid: int, prediction: Prediction, m: Measurement) -> None:
        with self.db.session() as s:
            row = s.get(MigrationRow, mid)
            assert row is not None
            ok = prediction.converges
            row.predicted_converges = ok
            row.predicted_total_ms = round(prediction.total_s * 1000) if ok else None
            row.predicted_downtime_ms = round(prediction.downtime_s * 1000) if ok else None
            # a bursty guest's mean: a later move compares QEMU's per-round rate with it
            row.measured_rate_mib_s = m.curve.mean_rate_bytes_s / MIB
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
            transferred_bytes=final.transferred_bytes, disk_bytes=final.disk_bytes,
            setup_ms=final.setup_ms)
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


def _options(plan: dict[str, Any] | None) -> MigrationOptions | None:
    if not plan or "options" not in plan:
        return None
    o = dict(plan["options"])
    o["copy_disks"] = tuple(o.get("copy_disks") or ())
    return MigrationOptions(**o)


def _ref(row: HostRow) -> HostRef:
    return HostRef(row.name, row.uri, row.virt_type, row.state == HostState.UP,
                   bool(row.maintenance), bool(row.migration_tls))
