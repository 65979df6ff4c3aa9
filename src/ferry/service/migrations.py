"""Migrations: validate, precheck, run in a worker, record, cancel, recover.

One migration per VM at a time (409 otherwise).  Prechecks run inside the
request so a refusal comes back at once with its reason; the transfer runs
in a worker thread that records samples and events as it goes.  After a
controller restart, `recover` asks both hosts about every unfinished
migration: it follows a job still running, or records the true outcome.
"""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime

from sqlalchemy import select

from ferry.db.models import EventRow, HostRow, MigrationRow, SampleRow, VmRow
from ferry.domain.models import HostState, Migration, MigrationState, Sample, VmState
from ferry.domain.names import check_name
from ferry.errors import Conflict, FerryError, InvalidRequest, MigrationRefused, NotFound
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.libvirt_driver import LibvirtHost
from ferry.hypervisor.types import MigrationOptions
from ferry.migration.engine import SAMPLE_INTERVAL_S, JobResult, run_job, watch_existing
from ferry.migration.outcome import Verdict
from ferry.migration.policies import Adapter, Config
from ferry.migration.prechecks import run_prechecks
from ferry.predict.precopy import simulate
from ferry.predict.strategy import (
    QEMU_DEFAULT_DOWNTIME_S,
    Policy,
    plan_auto,
    schedule_for,
    stepped_downtimes,
)
from ferry.service import convert
from ferry.service.controller import Controller
from ferry.service.hosts import reconcile
from ferry.service.migration_storage import after_job, storage_planner
from ferry.service.predict import QUICK_WINDOWS_MS, build_inputs, measure
from ferry.storage.sharing import StoragePlan

_UNFINISHED = [MigrationState.QUEUED.value, MigrationState.PRECHECKING.value,
               MigrationState.RUNNING.value]


class DbRecorder:
    """Stores a job's samples and events as they happen (short transactions)."""

    def __init__(self, ctx: Controller, migration_id: int) -> None:
        self.ctx, self.id = ctx, migration_id

    def sample(self, sample: Sample) -> None:
        with self.ctx.session() as s:
            s.add(SampleRow(migration_id=self.id, **sample.__dict__))

    def event(self, kind: str, message: str) -> None:
        with self.ctx.session() as s:
            s.add(EventRow(migration_id=self.id, kind=kind, message=message))


def list_migrations(ctx: Controller, vm: str | None = None, limit: int = 100) -> list[Migration]:
    with ctx.session() as s:
        q = select(MigrationRow).order_by(MigrationRow.id.desc()).limit(limit)
        if vm:
            q = q.where(MigrationRow.vm == vm)
        return [convert.migration(r) for r in s.scalars(q)]


def get_migration(ctx: Controller, mid: int) -> Migration:
    with ctx.session() as s:
        row = s.get(MigrationRow, mid)
        if row is None:
            raise NotFound(f"no migration {mid}")
        events = list(s.scalars(select(EventRow).where(EventRow.migration_id == mid)
                                .order_by(EventRow.id)))
        return convert.migration(row, events)


def get_samples(ctx: Controller, mid: int, after_ms: int = -1) -> list[Sample]:
    get_migration(ctx, mid)
    with ctx.session() as s:
        q = (select(SampleRow).where(SampleRow.migration_id == mid, SampleRow.t_ms > after_ms)
             .order_by(SampleRow.id))
        return [convert.sample(r) for r in s.scalars(q)]


def start_migration(ctx: Controller, vm: str, to: str, bandwidth_mib_s: int | None = None,
                    max_downtime_ms: int | None = None, policy: str = "auto",
                    timeout_per_gib_s: float | None = None,
                    on_timeout: str = "abort") -> Migration:
    """Validate, precheck, predict and start a migration; raise on refusal."""
    check_name("vm", vm)
    check_name("host", to)
    try:
        pol = Policy(policy)
    except ValueError:
        raise InvalidRequest(
            f"policy must be one of {', '.join(p.value for p in Policy)}") from None
    if on_timeout not in ("abort", "force"):
        raise InvalidRequest("on_timeout must be abort or force")
    if timeout_per_gib_s is not None and not 1 <= timeout_per_gib_s <= 86_400:
        raise InvalidRequest("timeout per GiB must be between 1 and 86400 s")
    if bandwidth_mib_s is not None and not 1 <= bandwidth_mib_s <= 100_000:
        raise InvalidRequest("bandwidth must be between 1 and 100000 MiB/s")
    if max_downtime_ms is not None and not 1 <= max_downtime_ms <= 60_000:
        raise InvalidRequest("max downtime must be between 1 and 60000 ms")
    reconcile(ctx)  # where the VM really is, right now
    with ctx.migration_lock, ctx.session() as s:
        vrow = s.scalar(select(VmRow).where(VmRow.name == vm))
        if vrow is None:
            raise NotFound(f"no VM named {vm!r}")
        dest = s.scalar(select(HostRow).where(HostRow.name == to))
        if dest is None:
            raise NotFound(f"no host named {to!r}")
        busy = s.scalar(select(MigrationRow).where(MigrationRow.vm == vm,
                                                   MigrationRow.state.in_(_UNFINISHED)))
        if busy is not None:
            raise Conflict(f"VM {vm} is already migrating (migration {busy.id})",
                           {"migration": busy.id})
        if vrow.host == to:
            raise InvalidRequest(f"VM {vm} already runs on {to}: source and destination are "
                                 "the same host")
        if vrow.host is None or vrow.state != VmState.RUNNING:
            raise Conflict(f"VM {vm} is not running (state {vrow.state})")
        src = s.scalar(select(HostRow).where(HostRow.name == vrow.host))
        assert src is not None
        row = MigrationRow(vm=vm, source=src.name, destination=to,
                           state=MigrationState.QUEUED, bandwidth_mib_s=bandwidth_mib_s,
                           max_downtime_ms=max_downtime_ms, policy=pol.value)
        s.add(row)
        s.flush()
        mid, src_name, src_uri, dst_uri = row.id, src.name, src.uri, dest.uri
        dest_up, dest_virt = dest.state == HostState.UP, dest.virt_type
        memory_mib = vrow.memory_mib
        vrow.state = VmState.MIGRATING
    rec = DbRecorder(ctx, mid)
    rec.event("queued", f"{vm}: {src_name} -> {to}")
    _set_state(ctx, mid, MigrationState.PRECHECKING)
    try:
        if not dest_up:
            raise MigrationRefused("destination_down", f"destination host {to} is down")
        source, destination = ctx.host(src_uri), ctx.host(dst_uri)
        result = run_prechecks(vm, source, destination, dest_virt_type=dest_virt,
                               plan_storage=storage_planner(ctx, source, destination,
                                                            src_name, to))
    except FerryError as exc:
        _finish(ctx, mid, MigrationState.FAILED, error=exc.message)
        rec.event("refused", exc.message)
        _restore_vm_state(ctx, vm)
        raise
    for line in result.checks:
        rec.event("precheck", line)
    storage = result.storage
    # copied disks move at link speed too: they count like memory for the timeout
    timeout = ctx.settings.migration_timeout_s(memory_mib + storage.copy_bytes // 2**20,
                                               timeout_per_gib_s)
    try:
        opts, adapter = _plan(ctx, mid, rec, vm, src_name, to, src_uri, dst_uri, memory_mib,
                              bandwidth_mib_s, max_downtime_ms, pol, timeout, on_timeout)
    except FerryError as exc:
        _finish(ctx, mid, MigrationState.FAILED, error=exc.message)
        _restore_vm_state(ctx, vm)
        raise
    if storage.copy_targets:
        opts = replace(opts, copy_disks=storage.copy_targets)
        rec.event("plan", f"block migration copies {', '.join(storage.copy_targets)} "
                          f"({storage.copy_bytes / 2**20:.0f} MiB) before the memory")
    cancel = ctx.cancel_events[mid] = threading.Event()
    _set_state(ctx, mid, MigrationState.RUNNING, started_at=datetime.now(UTC))
    # the adapter's timeout acts first (abort or force); the engine's is a backstop
    ctx.workers.submit(_run, ctx, mid, vm, (src_uri, dst_uri, to), opts, cancel,
                       timeout * 1.5 + 30, adapter, storage)
    return get_migration(ctx, mid)


def _plan(ctx: Controller, mid: int, rec: DbRecorder, vm: str, src: str, dst: str,
          src_uri: str, dst_uri: str, memory_mib: int, bandwidth_mib_s: int | None,
          max_downtime_ms: int | None, pol: Policy, timeout: float, on_timeout: str,
          ) -> tuple[MigrationOptions, Adapter]:
    """Measure the guest, predict, and turn the policy into libvirt options + an adapter.

    `precopy` promises libvirt/QEMU's defaults untouched: no measurement pause
    before it either (`ferry predict` still predicts it)."""
    limit_ms = max_downtime_ms or round(QEMU_DEFAULT_DOWNTIME_S * 1000)
    if pol == Policy.PRECOPY:
        rec.event("plan", "precopy: libvirt/QEMU defaults, no measurement or prediction")
        return (MigrationOptions(dest_uri=dst_uri, bandwidth_mib_s=bandwidth_mib_s,
                                 max_downtime_ms=max_downtime_ms),
                Adapter(Config(policy=pol, max_downtime_ms=limit_ms, timeout_s=timeout,
                               on_timeout=on_timeout)))
    m = measure(ctx, vm, ctx.host(src_uri), memory_mib, QUICK_WINDOWS_MS)
    inp, link_how = build_inputs(ctx, m, memory_mib, src, dst, bandwidth_mib_s,
                                 max_downtime_ms, timeout)
    rec.event("measured", f"dirty {m.curve.rate_bytes_s / 2**20:.1f} MiB/s over "
                          f"{m.curve.wss_bytes / 2**20:.0f} MiB; {m.nonzero_bytes / 2**20:.0f} MiB"
                          f" non-zero ({m.nonzero_source}); link {link_how}")
    plan = plan_auto(inp) if pol == Policy.AUTO else None
    pred = simulate(inp.guest, inp.link, schedule_for(pol, inp, plan))
    with ctx.session() as s:
        row = s.get(MigrationRow, mid)
        assert row is not None
        row.predicted_converges = pred.converges
        row.predicted_total_ms = round(pred.total_s * 1000) if pred.converges else None
        row.predicted_downtime_ms = round(pred.downtime_s * 1000) if pred.converges else None
        row.measured_rate_mib_s = m.curve.rate_bytes_s / 2**20
        row.measured_wss_mib = m.curve.wss_bytes / 2**20
    rec.event("predicted", f"{pol.value}: " + (
        f"completes in ~{pred.total_s:.1f} s with a ~{pred.downtime_s * 1000:.0f} ms pause"
        if pred.converges else f"does not converge ({pred.note})"))
    steps: tuple[tuple[float, float], ...] = ()
    start_ms = max_downtime_ms
    if plan is not None:
        rec.event("plan", plan.reason)
        start_ms = round(plan.start_downtime_s * 1000)
    elif pol == Policy.STEPPED:
        steps = tuple(stepped_downtimes(memory_mib / 1024, limit_ms / 1000))
        start_ms = round(steps[0][1] * 1000)
    opts = MigrationOptions(dest_uri=dst_uri, bandwidth_mib_s=bandwidth_mib_s,
                            max_downtime_ms=start_ms,
                            auto_converge=pol == Policy.AUTOCONVERGE,
                            postcopy=pol in (Policy.AUTO, Policy.POSTCOPY))
    cfg = Config(policy=pol, max_downtime_ms=limit_ms, timeout_s=timeout,
                 on_timeout=on_timeout, plan=plan, steps=steps)
    return opts, Adapter(cfg)


def _run(ctx: Controller, mid: int, vm: str, where: tuple[str, str, str],
         opts: MigrationOptions, cancel: threading.Event, timeout_s: float,
         adapter: Adapter | None, storage: StoragePlan) -> None:
    rec = DbRecorder(ctx, mid)
    src_uri, dst_uri, dst_name = where
    try:
        source, destination = ctx.host(src_uri), ctx.host(dst_uri)
        result = run_job(vm, source, destination, opts, rec, cancel, timeout_s, adapter)
        after_job(ctx, storage, result.resolution.verdict, source, destination, dst_name,
                  rec.event)
        _record_result(ctx, mid, result)
    except Exception as exc:  # never leave a migration "running" because of a bug
        rec.event("error", f"{type(exc).__name__}: {exc}")
        _finish(ctx, mid, MigrationState.FAILED, error=f"internal error: {exc}")
    finally:
        ctx.cancel_events.pop(mid, None)
        _restore_vm_state(ctx, vm)


def _record_result(ctx: Controller, mid: int, result: JobResult) -> None:
    verdict = result.resolution.verdict
    if verdict == Verdict.COMPLETED:
        st = result.stats
        if st is not None:
            disk = st.disk_processed_bytes or result.disk_bytes
            memory = st.data_processed_bytes - st.disk_processed_bytes
            _finish(ctx, mid, MigrationState.COMPLETED, total_ms=st.elapsed_ms,
                    downtime_ms=st.downtime_ms, transferred_bytes=memory + disk,
                    disk_bytes=disk, rounds=st.iteration)
            return
        last = result.last_sample
        DbRecorder(ctx, mid).event(
            "figures", "libvirt kept no completed-job statistics (as after post-copy): total is "
                       "libvirt's elapsed time at the last reading plus one sampling interval "
                       "(on libvirt's clock, like every other total), bytes and rounds from "
                       "that reading, downtime unknown (see the guest's heartbeat gap in the "
                       "lab)")
        total = (last.t_ms + round(SAMPLE_INTERVAL_S * 1000) if last and last.t_ms
                 else result.job_ms)
        _finish(ctx, mid, MigrationState.COMPLETED, total_ms=total,
                transferred_bytes=(last.memory_processed_bytes + result.disk_bytes
                                   if last else None),
                disk_bytes=result.disk_bytes, rounds=last.iteration if last else None)
    elif result.cancelled and verdict == Verdict.FAILED:
        _finish(ctx, mid, MigrationState.CANCELLED, error="cancelled; the VM runs on the source")
    else:
        why = "timed out; " if result.timed_out else ""
        _finish(ctx, mid, MigrationState.FAILED,
                error=f"{why}{result.error or result.resolution.reason} "
                      f"({result.resolution.verdict}: {result.resolution.reason})")


def _set_state(ctx: Controller, mid: int, state: MigrationState, **fields: object) -> None:
    with ctx.session() as s:
        row = s.get(MigrationRow, mid)
        assert row is not None
        row.state = state
        for k, v in fields.items():
            setattr(row, k, v)


def _finish(ctx: Controller, mid: int, state: MigrationState, **figures: object) -> None:
    with ctx.session() as s:
        row = s.get(MigrationRow, mid)
        assert row is not None
        created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
    now = datetime.now(UTC)
    _set_state(ctx, mid, state, finished_at=now,
               wall_ms=int((now - created).total_seconds() * 1000), **figures)


def _restore_vm_state(ctx: Controller, vm: str) -> None:
    """Leave MIGRATING and let reconcile set where the VM really is."""
    with ctx.session() as s:
        row = s.scalar(select(VmRow).where(VmRow.name == vm))
        if row is not None and row.state == VmState.MIGRATING:
            row.state = VmState.RUNNING
    reconcile(ctx)


def cancel_migration(ctx: Controller, mid: int) -> Migration:
    m = get_migration(ctx, mid)
    if m.state.finished:
        raise Conflict(f"migration {mid} already {m.state}")
    ev = ctx.cancel_events.get(mid)
    if ev is None:
        raise Conflict(f"migration {mid} is not running in this controller")
    ev.set()
    DbRecorder(ctx, mid).event("cancel_requested", "cancel requested through the API")
    return get_migration(ctx, mid)


def recover(ctx: Controller) -> None:
    """Settle migrations left unfinished by an earlier controller process."""
    with ctx.session() as s:
        rows = list(s.scalars(select(MigrationRow).where(MigrationRow.state.in_(_UNFINISHED))))
        hosts = {h.name: h.uri for h in s.scalars(select(HostRow))}
        todo = [(r.id, r.vm, hosts.get(r.source), hosts.get(r.destination)) for r in rows]
    for mid, vm, src_uri, dst_uri in todo:
        rec = DbRecorder(ctx, mid)
        rec.event("recovering", "controller restarted; asking both hosts")
        if not src_uri or not dst_uri:
            _finish(ctx, mid, MigrationState.FAILED, error="host no longer registered")
            continue
        cancel = ctx.cancel_events[mid] = threading.Event()
        ctx.workers.submit(_follow, ctx, mid, vm, ctx.host(src_uri), ctx.host(dst_uri), cancel)


def _memory_mib(ctx: Controller, vm: str) -> int:
    with ctx.session() as s:
        return int(s.scalar(select(VmRow.memory_mib).where(VmRow.name == vm)) or 1024)


def _follow(ctx: Controller, mid: int, vm: str, src: LibvirtHost, dst: LibvirtHost,
            cancel: threading.Event) -> None:
    """Follow a job an earlier controller started (if still running), then settle."""
    rec = DbRecorder(ctx, mid)
    try:
        result = watch_existing(vm, src, dst, rec, cancel, ctx.settings.migration_timeout_s(
            _memory_mib(ctx, vm)))
        _record_result(ctx, mid, result)
    except HypervisorError as exc:
        rec.event("recover_failed", str(exc))
        _finish(ctx, mid, MigrationState.FAILED,
                error=f"controller restarted and a host is unreachable: {exc}")
    except Exception as exc:
        _finish(ctx, mid, MigrationState.FAILED, error=f"internal error: {exc}")
    finally:
        ctx.cancel_events.pop(mid, None)
        _restore_vm_state(ctx, vm)
