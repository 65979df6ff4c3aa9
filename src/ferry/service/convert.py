"""Database rows to domain records (one place, so every use case agrees)."""

from __future__ import annotations

from typing import Any

from ferry.db.models import EventRow, HostRow, MigrationRow, PoolRow, SampleRow, VmRow, VolumeRow
from ferry.domain.models import (
    Event,
    Host,
    HostState,
    Migration,
    MigrationState,
    Pool,
    PoolKind,
    Sample,
    Vm,
    VmState,
    Volume,
)
from ferry.domain.vocab import EventKind, Policy, WorkloadPattern
from ferry.hypervisor.types import HostNetworks, NicInfo

RESTART_NEEDED = "restart needed for full mobility"


def host_state(row: HostRow) -> HostState:
    """What the API says of a host: a host that is up but drained is in maintenance."""
    state = HostState(row.state)
    return HostState.MAINTENANCE if row.maintenance and state == HostState.UP else state


def host(row: HostRow) -> Host:
    return Host(name=row.name, uri=row.uri, state=host_state(row), virt_type=row.virt_type,
                cpu_model=row.cpu_model, cpu_vendor=row.cpu_vendor, cpus=row.cpus,
                cpu_models=list(row.cpu_models or []),
                memory_total_mib=row.memory_total_mib, memory_free_mib=row.memory_free_mib,
                error=row.error, updated_at=row.updated_at,
                maintenance=bool(row.maintenance), migration_tls=bool(row.migration_tls),
                networks=(row.networks or {}).get("networks"),
                interfaces=(row.networks or {}).get("interfaces"),
                cpu_busy=None if row.cpu_busy is None else round(row.cpu_busy, 3))


def vm(row: VmRow) -> Vm:
    return Vm(name=row.name, host=row.host, state=VmState(row.state), memory_mib=row.memory_mib,
              vcpus=row.vcpus, cpu_model=row.cpu_model, cpu_xml=row.cpu_xml,
              disks=list(row.disks or []), cpu_blocked=dict(row.cpu_blocked or {}),
              mobility=RESTART_NEEDED if row.cpu_blocked else "full",
              workload_dirty_mib_s=row.workload_dirty_mib_s,
              workload_wss_mib=row.workload_wss_mib,
              workload_pattern=WorkloadPattern(row.workload_pattern or "uniform"),
              managed=row.managed,
              updated_at=row.updated_at, uuid=row.uuid,
              nics=[dict(n) for n in row.nics or []], address=row.address or "")


def nics(stored: list[dict[str, str]] | None) -> tuple[NicInfo, ...]:
    """A VM's stored interfaces as the hypervisor's records."""
    return tuple(NicInfo(n.get("kind", ""), n.get("source", ""), n.get("mac", ""))
                 for n in stored or [])


def host_networks(stored: dict[str, Any] | None) -> HostNetworks | None:
    """What a host offers guests' interfaces as last read; None: never read."""
    if stored is None:
        return None
    return HostNetworks(stored.get("networks"), stored.get("interfaces"))


def migration(row: MigrationRow, events: list[EventRow] | None = None) -> Migration:
    return Migration(
        id=row.id, vm=row.vm, source=row.source, destination=row.destination,
        state=MigrationState(row.state), bandwidth_mib_s=row.bandwidth_mib_s,
        max_downtime_ms=row.max_downtime_ms, created_at=row.created_at,
        started_at=row.started_at, finished_at=row.finished_at, total_ms=row.total_ms,
        downtime_ms=row.downtime_ms, transferred_bytes=row.transferred_bytes,
        disk_bytes=row.disk_bytes, rounds=row.rounds, setup_ms=row.setup_ms,
        wall_ms=row.wall_ms, error=row.error, policy=Policy(row.policy),
        encrypted=row.encrypted, compressed=row.compressed,
        predicted_converges=row.predicted_converges, predicted_total_ms=row.predicted_total_ms,
        predicted_downtime_ms=row.predicted_downtime_ms,
        events=[Event(at=e.at, kind=EventKind(e.kind), message=e.message) for e in events or []])


def sample(row: SampleRow) -> Sample:
    return Sample(t_ms=row.t_ms, iteration=row.iteration,
                  memory_total_bytes=row.memory_total_bytes,
                  memory_processed_bytes=row.memory_processed_bytes,
                  memory_remaining_bytes=row.memory_remaining_bytes,
                  dirty_rate_bytes_s=row.dirty_rate_bytes_s,
                  bandwidth_bytes_s=row.bandwidth_bytes_s,
                  expected_downtime_ms=row.expected_downtime_ms, throttle_pct=row.throttle_pct)


def pool(row: PoolRow) -> Pool:
    return Pool(name=row.name, kind=PoolKind(row.kind), path=row.path,
                hosts=list(row.hosts or []), monitors=list(row.monitors or []),
                rbd_pool=row.rbd_pool, user=row.user, secret_uuid=row.secret_uuid,
                has_key=bool(row.key), created_at=row.created_at)


def volume(row: VolumeRow) -> Volume:
    return Volume(name=row.name, pool=row.pool, capacity_bytes=row.capacity_bytes,
                  path=row.path, host=row.host, vm=row.vm, target=row.target,
                  created_at=row.created_at)
