"""Hosts: registration, and reconciling Ferry's inventory with the hosts' libvirt.

libvirt on the hosts is the truth.  `reconcile` reads every host's domains
and moves each VM record to where its domain actually runs, so a VM moved,
started or stopped outside Ferry (say with `virsh migrate`) is seen where it
is.  VMs with a migration in flight are left to the migration worker.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from ferry.db.models import HostRow, MigrationRow, VmRow
from ferry.domain.models import Host, HostState, MigrationState, VmState
from ferry.domain.names import check_name, check_uri
from ferry.errors import Conflict, InvalidRequest, NotFound, Unavailable
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import DomainInfo, DomainState
from ferry.service import convert
from ferry.service.controller import Controller

VIRT_TYPES = ("auto", "kvm", "qemu")
_ACTIVE_MIGRATION = (MigrationState.QUEUED, MigrationState.PRECHECKING, MigrationState.RUNNING)


def list_hosts(ctx: Controller) -> list[Host]:
    with ctx.session() as s:
        return [convert.host(r) for r in s.scalars(select(HostRow).order_by(HostRow.name))]


def get_host(ctx: Controller, name: str) -> Host:
    with ctx.session() as s:
        row = s.scalar(select(HostRow).where(HostRow.name == name))
        if row is None:
            raise NotFound(f"no host named {name!r}")
        return convert.host(row)


def add_host(ctx: Controller, name: str, uri: str, virt_type: str = "auto") -> Host:
    check_name("host", name)
    check_uri(uri)
    if virt_type not in VIRT_TYPES:
        raise InvalidRequest(f"virt_type must be one of {', '.join(VIRT_TYPES)}")
    with ctx.session() as s:
        if s.scalar(select(HostRow).where(HostRow.name == name)) is not None:
            raise Conflict(f"host {name!r} already exists")
        if s.scalar(select(HostRow).where(HostRow.uri == uri)) is not None:
            raise Conflict(f"a host with URI {uri} already exists")
    conn = ctx.host(uri)
    try:
        info = conn.info()
        vt = info.virt_type if virt_type == "auto" else virt_type
        cpu_xml = conn.host_model_cpu_xml(vt)
        pool = ctx.settings.shared_pool
        if pool is not None:
            conn.ensure_dir_pool(pool.name, pool.path)
    except HypervisorError as exc:
        raise Unavailable(f"cannot reach host {name} at {uri}: {exc}") from exc
    with ctx.session() as s:
        row = HostRow(name=name, uri=uri, state=HostState.UP, virt_type=vt,
                      cpu_model=info.cpu_model, cpu_vendor=info.cpu_vendor, cpu_xml=cpu_xml,
                      cpus=info.cpus, memory_total_mib=info.memory_total_mib,
                      memory_free_mib=info.memory_free_mib)
        s.add(row)
        s.flush()
        host = convert.host(row)
    reconcile(ctx)
    return host


def refresh_host(ctx: Controller, name: str) -> Host:
    get_host(ctx, name)
    reconcile(ctx)
    return get_host(ctx, name)


def reconcile(ctx: Controller) -> None:
    """Refresh every host's state and every VM's whereabouts from libvirt."""
    with ctx.session() as s:
        hosts = [(r.name, r.uri) for r in s.scalars(select(HostRow))]
    seen: dict[str, list[DomainInfo]] = {}
    updates: dict[str, dict[str, object]] = {}
    for name, uri in hosts:
        conn = ctx.host(uri)
        try:
            info = conn.info()
            seen[name] = conn.list_domains()
            updates[name] = {"state": HostState.UP, "error": "",
                             "memory_free_mib": info.memory_free_mib,
                             "memory_total_mib": info.memory_total_mib}
        except HypervisorError as exc:
            updates[name] = {"state": HostState.DOWN, "error": str(exc)}
    now = datetime.now(UTC)
    with ctx.session() as s:
        for hrow in s.scalars(select(HostRow)):
            for k, v in updates.get(hrow.name, {}).items():
                setattr(hrow, k, v)
            hrow.updated_at = now
        busy = set(s.scalars(select(MigrationRow.vm).where(
            MigrationRow.state.in_([m.value for m in _ACTIVE_MIGRATION]))))
        rows = {r.name: r for r in s.scalars(select(VmRow))}
        by_vm: dict[str, list[tuple[str, DomainInfo]]] = {}
        for host_name, doms in seen.items():
            for d in doms:
                by_vm.setdefault(d.name, []).append((host_name, d))
        for vm_name, places in by_vm.items():
            if vm_name not in rows:
                host_name, d = places[0]
                s.add(VmRow(name=vm_name, host=host_name, state=_vm_state(d),
                            memory_mib=d.memory_mib, vcpus=d.vcpus, cpu_xml=d.cpu_xml,
                            disks=d.disks, managed=False))
        for name, row in rows.items():
            if name in busy:
                continue
            places = by_vm.get(name, [])
            active = [(h, d) for h, d in places if d.active]
            if len(active) > 1:
                row.state = VmState.SPLIT
            elif active:
                row.host, row.state = active[0][0], _vm_state(active[0][1])
                row.cpu_xml = active[0][1].cpu_xml
            elif places:
                row.host, row.state = places[0][0], VmState.SHUTOFF
            elif row.host in seen:  # its host answered and does not have it
                row.state = VmState.MISSING
            row.updated_at = now


def _vm_state(d: DomainInfo) -> VmState:
    if d.state == DomainState.RUNNING:
        return VmState.RUNNING
    if d.state == DomainState.PAUSED:
        return VmState.PAUSED
    return VmState.SHUTOFF
