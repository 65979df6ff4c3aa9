"""Measuring a guest and its link, and predicting each migration policy.

Inputs for the model come from the real hosts: the guest's dirty-page curve
(QEMU page sampling over several windows), the bytes round 1 must really
send (the VM's last completed migration, else its QEMU's resident memory),
whether its dirtying is CPU-bound (vCPU time over the window, which decides
if auto-converge can help), and the link's speed (the best rate seen on
earlier migrations, else an assumed 100 MiB/s, said so).
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from ferry.db.models import MigrationRow, SampleRow
from ferry.domain.models import MigrationState
from ferry.errors import Unavailable
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.libvirt_driver import LibvirtHost
from ferry.hypervisor.types import QEMU_OVERHEAD_MIB
from ferry.predict.dirty import MIB, DirtyCurve, fit, tracking_factor
from ferry.predict.precopy import Guest, Link
from ferry.predict.strategy import Inputs, predict_all, recommend
from ferry.service.controller import Controller

FULL_WINDOWS_MS = (250, 500, 1000, 2000)
QUICK_WINDOWS_MS = (250, 750)
ASSUMED_LINK_MIB_S = 100.0
DEFAULT_SETUP_S = 0.1  # before any history between two hosts
SETUP_HISTORY = 5


@dataclass
class Measurement:
    points: list[tuple[float, float]]  # (window s, dirtied bytes)
    curve: DirtyCurve
    nonzero_bytes: float
    nonzero_source: str
    cpu_busy: float
    tracking: float = 1.0  # dirtying during a migration relative to before (learned)
    tracking_note: str = ""
    notes: list[str] = field(default_factory=list)

    def as_dict(self, memory_bytes: float) -> dict[str, Any]:
        return {
            "dirty_windows": [{"window_ms": round(t * 1000), "dirtied_mib": round(d / MIB, 1),
                               "rate_mib_s": round(d / MIB / t, 1)} for t, d in self.points],
            "dirty_rate_mib_s": round(self.curve.rate_bytes_s / MIB, 1),
            "working_set_mib": round(self.curve.wss_bytes / MIB, 1),
            "zero_share": round(1 - self.nonzero_bytes / memory_bytes, 3),
            "nonzero_source": self.nonzero_source,
            "cpu_busy": round(self.cpu_busy, 2),
            "dirty_during_migration": round(self.tracking, 2),
        }


def measure(ctx: Controller, vm: str, host: LibvirtHost, memory_mib: int,
            windows_ms: tuple[int, ...] = FULL_WINDOWS_MS) -> Measurement:
    mem = memory_mib * MIB
    try:
        cpu0, t0 = host.vcpu_time_ns(vm), time.monotonic()
        points = [(ms / 1000, host.dirty_rate_mib_s(vm, ms) * MIB * ms / 1000)
                  for ms in windows_ms]
        busy = (host.vcpu_time_ns(vm) - cpu0) / 1e9 / max(time.monotonic() - t0, 1e-3)
        rss = host.resident_mib(vm)
    except HypervisorError as exc:
        raise Unavailable(f"cannot measure {vm}: {exc}") from exc
    curve = fit(points, mem)
    nonzero, source = _nonzero_from_history(ctx, vm)
    if nonzero is None:
        nonzero = max(min(mem, (rss - QEMU_OVERHEAD_MIB) * MIB), curve.bytes_in(3600), MIB)
        source = "QEMU resident memory (an upper bound)"
    tracking, note = learned_tracking(ctx, vm)
    return Measurement(points, curve, nonzero, source, min(busy, 1.0), tracking, note)


def _nonzero_from_history(ctx: Controller, vm: str) -> tuple[float | None, str]:
    """Round 1 of the VM's last completed migration sent its non-zero pages."""
    with ctx.session() as s:
        last = s.scalar(select(MigrationRow.id).where(
            MigrationRow.vm == vm, MigrationRow.state == MigrationState.COMPLETED)
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


def learned_tracking(ctx: Controller, vm: str) -> tuple[float, str]:
    """How the VM's dirtying slowed during its last migration (1.0 without history)."""
    with ctx.session() as s:
        row = s.scalar(select(MigrationRow).where(
            MigrationRow.vm == vm, MigrationRow.measured_rate_mib_s.is_not(None),
            MigrationRow.state == MigrationState.COMPLETED)
            .order_by(MigrationRow.id.desc()).limit(1))
        if row is None or not row.measured_rate_mib_s:
            return 1.0, ""
        during = s.scalar(select(func.max(SampleRow.dirty_rate_bytes_s)).where(
            SampleRow.migration_id == row.id, SampleRow.iteration >= 2))
        before = DirtyCurve(row.measured_rate_mib_s * MIB, (row.measured_wss_mib or 0) * MIB
                            or float("inf"))
        mid = row.id
    if not during:
        return 1.0, ""
    f = tracking_factor(float(during), before)
    return f, f"dirtying ran at {f:.0%} of the measured rate during migration {mid}"


def link_bytes_s(ctx: Controller, source: str, destination: str) -> tuple[float, str]:
    """The steady transfer rate (median of its samples) of the latest uncapped
    migration between these hosts; links change, so only the newest counts, and
    peaks (a shaper's burst) would overstate it.  Without one in this direction,
    the other direction's (links are mostly symmetric) beats a guess."""
    rates: list[int] = []
    latest = None
    with ctx.session() as s:
        for src, dst in ((source, destination), (destination, source)):
            latest = s.scalar(select(func.max(SampleRow.migration_id)).join(
                MigrationRow, MigrationRow.id == SampleRow.migration_id).where(
                MigrationRow.source == src, MigrationRow.destination == dst,
                MigrationRow.bandwidth_mib_s.is_(None), SampleRow.iteration >= 1))
            if latest:
                rates = sorted(r for r in s.scalars(select(SampleRow.bandwidth_bytes_s).where(
                    SampleRow.migration_id == latest, SampleRow.iteration >= 1)) if r > 0)
            if rates:
                break
    if rates:
        return float(rates[len(rates) // 2]), f"measured on migration {latest}"
    return ASSUMED_LINK_MIB_S * MIB, f"assumed {ASSUMED_LINK_MIB_S:.0f} MiB/s (no history)"


def learned_setup_s(ctx: Controller, source: str, destination: str) -> tuple[float, str]:
    """How long a job between these hosts runs before its first byte moves (libvirt's
    begin/prepare phases: the destination QEMU starts), which the model cannot know.

    From the first transferring sample of each of the latest memory-only migrations:
    elapsed minus what was sent at the rate seen; the median of up to five."""
    est = []
    with ctx.session() as s:
        mids = list(s.scalars(select(MigrationRow.id).where(
            MigrationRow.source == source, MigrationRow.destination == destination,
            MigrationRow.state == MigrationState.COMPLETED,
            func.coalesce(MigrationRow.disk_bytes, 0) == 0)
            .order_by(MigrationRow.id.desc()).limit(SETUP_HISTORY)))
        for mid in mids:
            first = s.scalar(select(SampleRow).where(
                SampleRow.migration_id == mid, SampleRow.memory_processed_bytes > 0,
                SampleRow.bandwidth_bytes_s > 0).order_by(SampleRow.t_ms).limit(1))
            if first is not None:
                sent_s = first.memory_processed_bytes / first.bandwidth_bytes_s
                est.append(max(0.0, first.t_ms / 1000 - sent_s))
    if not est:
        return DEFAULT_SETUP_S, ""
    setup = statistics.median(est)
    return setup, f"set-up {setup:.2f} s (last {len(est)} migrations)"


def build_inputs(ctx: Controller, m: Measurement, memory_mib: int, source: str,
                 destination: str, bandwidth_mib_s: int | None, max_downtime_ms: int | None,
                 timeout_s: float) -> tuple[Inputs, str]:
    link, how = link_bytes_s(ctx, source, destination)
    setup, setup_how = learned_setup_s(ctx, source, destination)
    if setup_how:
        how += f"; {setup_how}"
    if m.tracking < 1.0:
        how += f"; {m.tracking_note}"
    pre = bandwidth_mib_s * MIB if bandwidth_mib_s else link
    inp = Inputs(Guest(memory_mib * MIB, m.nonzero_bytes, m.curve.scaled(m.tracking)),
                 Link(min(pre, link) if bandwidth_mib_s else pre, link),
                 max_downtime_ms / 1000 if max_downtime_ms else None,
                 cpu_bound=1.0 if m.cpu_busy >= 0.9 else 0.0, timeout_s=timeout_s,
                 setup_s=setup)
    return inp, how


def predictions(inp: Inputs) -> dict[str, Any]:
    preds = predict_all(inp)
    return {"strategies": {p.value: r.as_dict() for p, r in preds.items()},
            "recommended": recommend(preds, inp.limit_s).value}


def predict(ctx: Controller, vm: str, to: str, bandwidth_mib_s: int | None = None,
            max_downtime_ms: int | None = None) -> dict[str, Any]:
    """`ferry predict`: measure the guest now, then predict every policy."""
    from ferry.domain.names import check_name
    from ferry.service.hosts import get_host, reconcile
    from ferry.service.vms import get_vm

    check_name("vm", vm)
    check_name("host", to)
    reconcile(ctx)
    v = get_vm(ctx, vm)
    dest = get_host(ctx, to)
    if v.host is None or v.host == to:
        from ferry.errors import InvalidRequest

        raise InvalidRequest(f"VM {vm} runs on {v.host}: pick another destination")
    src = get_host(ctx, v.host)
    m = measure(ctx, vm, ctx.host(src.uri), v.memory_mib)
    timeout = ctx.settings.migration_timeout_s(v.memory_mib)
    inp, link_how = build_inputs(ctx, m, v.memory_mib, src.name, dest.name, bandwidth_mib_s,
                                 max_downtime_ms, timeout)
    return {**predictions(inp), "vm": vm, "source": src.name, "destination": dest.name,
            "inputs": {**m.as_dict(v.memory_mib * MIB), "memory_mib": v.memory_mib,
                       "link_mib_s": round(inp.link.final_bytes_s / MIB, 1), "link": link_how,
                       "bandwidth_mib_s": bandwidth_mib_s,
                       "max_downtime_ms": round(inp.limit_s * 1000)}}
