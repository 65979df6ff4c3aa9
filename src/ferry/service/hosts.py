"""Hosts: registration, inventory of their hardware, and refresh."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select

from ferry.db.models import HostRow
from ferry.domain.models import Host, HostState
from ferry.domain.names import check_name, check_uri
from ferry.domain.vocab import VirtType
from ferry.errors import Conflict, InvalidRequest, NotFound, Unavailable
from ferry.hypervisor.base import HostOps
from ferry.hypervisor.errors import HypervisorError
from ferry.service import convert
from ferry.service.connections import HostConnections
from ferry.service.cpu_verdicts import CpuVerdicts
from ferry.service.database import Database
from ferry.service.inventory import Inventory
from ferry.service.pools import PoolService


def _inventory(host: HostOps, virt_type: str) -> dict[str, Any]:
    """What Ferry stores about a host's hardware: CPU (host and host-model for the
    accelerator in use), usable CPU models, memory."""
    info = host.info()
    return {"cpu_model": info.cpu_model, "cpu_vendor": info.cpu_vendor,
            "host_cpu_xml": host.host_cpu_xml(), "cpu_xml": host.host_model_cpu_xml(virt_type),
            "cpu_models": host.usable_models(virt_type), "cpus": info.cpus,
            "memory_total_mib": info.memory_total_mib, "memory_free_mib": info.memory_free_mib}


class HostService:
    def __init__(self, db: Database, conns: HostConnections, inventory: Inventory,
                 pools: PoolService, verdicts: CpuVerdicts) -> None:
        self.db, self.conns, self.inventory = db, conns, inventory
        self.pools, self.verdicts = pools, verdicts

    def list_hosts(self) -> list[Host]:
        with self.db.session() as s:
            return [convert.host(r) for r in s.scalars(select(HostRow).order_by(HostRow.name))]

    def get(self, name: str) -> Host:
        with self.db.session() as s:
            row = s.scalar(select(HostRow).where(HostRow.name == name))
            if row is None:
                raise NotFound(f"no host named {name!r}")
            return convert.host(row)

    def add(self, name: str, uri: str, virt_type: VirtType | str = VirtType.AUTO,
            migration_tls: bool = False) -> Host:
        """Register a host; `migration_tls`: it has QEMU's migration certificates (its
        qemu.conf x509 directory), so streams to and from it are encrypted."""
        check_name("host", name)
        check_uri(uri)
        try:
            vt_wanted = VirtType(virt_type)
        except ValueError:
            raise InvalidRequest("virt_type must be one of "
                                 f"{', '.join(v.value for v in VirtType)}") from None
        with self.db.session() as s:
            if s.scalar(select(HostRow).where(HostRow.name == name)) is not None:
                raise Conflict(f"host {name!r} already exists")
            if s.scalar(select(HostRow).where(HostRow.uri == uri)) is not None:
                raise Conflict(f"a host with URI {uri} already exists")
        host = self.conns.get(uri)
        try:
            vt = host.info().virt_type if vt_wanted == VirtType.AUTO else vt_wanted.value
            inventory = _inventory(host, vt)
        except HypervisorError as exc:
            raise Unavailable(f"cannot reach host {name} at {uri}: {exc}") from exc
        with self.db.session() as s:
            s.add(HostRow(name=name, uri=uri, state=HostState.UP, virt_type=vt,
                          migration_tls=migration_tls, **inventory))
        # the host is usable without them; the caller sees what it lacks
        storage_errors = self.pools.attach(name, host)
        self.inventory.reconcile()
        return replace(self.get(name), warnings=storage_errors)

    def refresh(self, name: str) -> Host:
        """Re-read the host's CPU inventory, define and start its pools again where
        they are missing or stopped (e.g. an rbd pool whose autostart failed when its
        libvirtd restarted), and reconcile every VM's whereabouts."""
        host = self.get(name)
        conn = self.conns.get(host.uri)
        try:
            inventory = _inventory(conn, host.virt_type)
        except HypervisorError as exc:
            raise Unavailable(f"cannot reach host {name}: {exc}") from exc
        storage_errors = self.pools.attach(name, conn)
        with self.db.session() as s:
            row = s.scalar(select(HostRow).where(HostRow.name == name))
            assert row is not None
            for k, v in inventory.items():
                setattr(row, k, v)
        self.verdicts.forget(name)
        self.inventory.reconcile()
        return replace(self.get(name), warnings=storage_errors)
