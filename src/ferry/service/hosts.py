"""Hosts: registration, and reconciling Ferry's inventory with the hosts' libvirt.

libvirt on the hosts is the truth.  `reconcile` reads every host's domains
and moves each VM record to where its domain actually runs, so a VM moved,
started or stopped outside Ferry (say with `virsh migrate`) is seen where it
is.  VMs with a migration in flight are left to the migration worker.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ferry.db.models import HostRow, MigrationRow, VmRow, VolumeRow
from ferry.domain.models import Host, HostState, MigrationState, VmState
from ferry.domain.names import check_name, check_uri
from ferry.errors import Conflict, InvalidRequest, NotFound, Unavailable
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.libvirt_driver import LibvirtHost
from ferry.hypervisor.types import DomainInfo, DomainState
from ferry.service import convert
from ferry.service.controller import Controller
from ferry.service.pools import attach_pools

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
        vt = conn.info().virt_type if virt_type == "auto" else virt_type
        inventory = _inventory(conn, vt)
    except HypervisorError as exc:
        raise Unavailable(f"cannot reach host {name} at {uri}: {exc}") from exc
    with ctx.session() as s:
        row = HostRow(name=name, uri=uri, state=HostState.UP, virt_type=vt, **inventory)
        s.add(row)
    # the host is usable without them; the caller sees what it lacks
    storage_errors = attach_pools(ctx, name, conn)
    reconcile(ctx)
    return replace(get_host(ctx, name), warnings=storage_errors)


def _inventory(conn: LibvirtHost, virt_type: str) -> dict[str, Any]:
    """What Ferry stores about a host's hardware: CPU (host and host-model for the
    accelerator in use), usable CPU models, memory."""
    info = conn.info()
    return {"cpu_model": info.cpu_model, "cpu_vendor": info.cpu_vendor,
            "host_cpu_xml": conn.host_cpu_xml(), "cpu_xml": conn.host_model_cpu_xml(virt_type),
            "cpu_models": conn.usable_models(virt_type), "cpus": info.cpus,
            "memory_total_mib": info.memory_total_mib, "memory_free_mib": info.memory_free_mib}


def refresh_host(ctx: Controller, name: str) -> Host:
    """Re-read the host's CPU inventory and reconcile every VM's whereabouts."""
    host = get_host(ctx, name)
    try:
        inventory = _inventory(ctx.host(host.uri), host.virt_type)
    except HypervisorError as exc:
        raise Unavailable(f"cannot reach host {name}: {exc}") from exc
    with ctx.session() as s:
        row = s.scalar(select(HostRow).where(HostRow.name == name))
        assert row is not None
        for k, v in inventory.items():
            setattr(row, k, v)
    ctx.forget_cpu_verdicts(name)
    reconcile(ctx)
    return get_host(ctx, name)


def reconcile(ctx: Controller) -> None:
    """Refresh every host's state and every VM's whereabouts from libvirt."""
    with ctx.session() as s:
        host_rows = list(s.scalars(select(HostRow)))
        hosts = [(r.name, r.uri) for r in host_rows]
        virt = {r.name: (r.uri, r.virt_type) for r in host_rows}
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
                _follow_local_volumes(s, name, row.host)
            elif places:
                row.host, row.state = places[0][0], VmState.SHUTOFF
            elif row.host in seen:  # its host answered and does not have it
                row.state = VmState.MISSING
            row.cpu_blocked = _blocked(ctx, row.cpu_xml, row.host, seen, virt)
            row.updated_at = now


def _follow_local_volumes(s: Session, vm: str, host: str) -> None:
    """A running VM's local-pool volumes are on its host (it may have been moved by
    something other than Ferry, e.g. `virsh migrate --copy-storage-all`)."""
    for v in s.scalars(select(VolumeRow).where(VolumeRow.vm == vm, VolumeRow.host.is_not(None),
                                              VolumeRow.host != host)):
        v.host = host


def _blocked(ctx: Controller, cpu_xml: str, own: str | None, up: dict[str, list[DomainInfo]],
             virt: dict[str, tuple[str, str]]) -> dict[str, list[str]]:
    """Up hosts (other than its own) whose hypervisor cannot run this guest CPU."""
    if not cpu_xml:
        return {}
    blocked = {}
    for host_name in up:
        if host_name == own:
            continue
        uri, virt_type = virt[host_name]
        verdict = ctx.cpu_verdict(host_name, uri, cpu_xml, virt_type)
        if verdict is not None and not verdict.compatible:
            blocked[host_name] = verdict.missing_features or [verdict.message]
    return blocked


def _vm_state(d: DomainInfo) -> VmState:
    if d.state == DomainState.RUNNING:
        return VmState.RUNNING
    if d.state == DomainState.PAUSED:
        return VmState.PAUSED
    return VmState.SHUTOFF
