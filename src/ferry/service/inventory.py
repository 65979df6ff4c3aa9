"""Reconciling Ferry's inventory with the hosts: libvirt on the hosts is the truth.

`reconcile` reads every host's domains and moves each VM record to where
its domain actually runs, so a VM moved, started or stopped outside Ferry
(say with `virsh migrate`) is seen where it is.  VMs with a migration in
flight are left to the migration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime

from sqlalchemy import select

from ferry.db.models import HostRow, MigrationRow, VmRow, VolumeRow
from ferry.domain.models import UNFINISHED, HostState, VmState
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import CpuVerdict, DomainInfo, DomainState, HostInfo, HostNetworks
from ferry.predict.load import MIN_SPAN_CPU_S, busy_share
from ferry.service.connections import HostConnections
from ferry.service.cpu_verdicts import CpuVerdicts
from ferry.service.database import Database
from ferry.service.host_queries import HostQueries


class Inventory:
    def __init__(self, db: Database, conns: HostConnections, verdicts: CpuVerdicts,
                 queries: HostQueries) -> None:
        self.db, self.conns, self.verdicts, self.queries = db, conns, verdicts, queries

    def locate(self, vm: str) -> None:
        """Make sure the VM record says where the VM runs, asking only its recorded host
        (a full `reconcile` waits on every host, and a host whose domain is migrating
        answers its domain list slowly: requests started side by side would queue
        behind each other).  Reconciles everything when the recorded host says no."""
        with self.db.session() as s:
            row = s.scalar(select(VmRow).where(VmRow.name == vm))
            if row is None or row.host is None:
                found = None
            else:
                host = s.scalar(select(HostRow).where(HostRow.name == row.host))
                found = (host.uri, row.state) if host is not None else None
        if found is not None and found[1] in (VmState.RUNNING, VmState.MIGRATING):
            uri = found[0]
            answer = self.queries.ask({f"{uri}:find:{vm}":
                                       lambda: self.conns.get(uri).find_domain(vm)})
            d = next(iter(answer.values()))
            if isinstance(d, DomainInfo) and d.active:
                return
        self.reconcile()

    def reconcile(self) -> None:
        """Refresh every host's state and every VM's whereabouts from the hosts, asked
        all at once.  A host whose daemon does not answer in time is `unreachable`;
        one that answers but cannot list its domains in time (a domain's job lock is
        held, e.g. by a migration's finish phase) stays up, with its VMs left as
        recorded this round."""
        with self.db.session() as s:
            host_rows = list(s.scalars(select(HostRow)))
            hosts = [(r.name, r.uri) for r in host_rows]
            virt = {r.name: (r.uri, r.virt_type) for r in host_rows}
        infos = self.queries.ask({f"{name}:info": self.conns.get(uri).info
                                  for name, uri in hosts})
        up = [(name, uri) for name, uri in hosts
              if not isinstance(infos[f"{name}:info"], HypervisorError)]
        asks: dict[str, Callable[[], object]] = {}
        for name, uri in up:
            asks[f"{name}:domains"] = self.conns.get(uri).list_domains
            asks[f"{name}:networks"] = self.conns.get(uri).host_networks
        lists = self.queries.ask(asks)
        seen: dict[str, list[DomainInfo]] = {}
        updates: dict[str, dict[str, object]] = {}
        times: dict[str, tuple[int, int]] = {}  # CPU counters, for the load
        for name, _uri in hosts:
            info = infos[f"{name}:info"]
            if isinstance(info, HypervisorError):
                updates[name] = {"state": HostState.UNREACHABLE, "error": str(info)}
                continue
            assert isinstance(info, HostInfo)
            times[name] = (info.cpu_busy_ns, info.cpu_total_ns)
            domains = lists[f"{name}:domains"]
            updates[name] = {"state": HostState.UP, "memory_free_mib": info.memory_free_mib,
                             "memory_total_mib": info.memory_total_mib,
                             "error": f"domains not read this round: {domains}"
                             if isinstance(domains, HypervisorError) else ""}
            if isinstance(domains, list):
                seen[name] = domains
            nets = lists[f"{name}:networks"]
            if isinstance(nets, HostNetworks):
                updates[name]["networks"] = {"networks": nets.networks,
                                             "interfaces": nets.interfaces}
        now = datetime.now(UTC)
        with self.db.session() as s:
            for hrow in s.scalars(select(HostRow)):
                for k, v in updates.get(hrow.name, {}).items():
                    setattr(hrow, k, v)
                if hrow.name in times:
                    _read_load(hrow, times[hrow.name])
                hrow.updated_at = now
            busy = set(s.scalars(select(MigrationRow.vm).where(
                MigrationRow.state.in_([m.value for m in UNFINISHED]))))
            rows = {r.name: r for r in s.scalars(select(VmRow))}
            by_vm: dict[str, list[tuple[str, DomainInfo]]] = {}
            for host_name, doms in seen.items():
                for d in doms:
                    by_vm.setdefault(d.name, []).append((host_name, d))
            for vm_name, places in by_vm.items():
                if vm_name not in rows:
                    host_name, d = places[0]
                    s.add(VmRow(name=vm_name, uuid=d.uuid, host=host_name,
                                state=vm_state(d), memory_mib=d.memory_mib, vcpus=d.vcpus,
                                cpu_xml=d.cpu_xml, disks=d.disks, managed=False,
                                nics=[asdict(n) for n in d.nics]))
            by_cpu: dict[str, dict[str, list[str]]] = {}
            local: dict[str, list[VolumeRow]] = {}  # one query, not one per VM
            for vol in s.scalars(select(VolumeRow).where(VolumeRow.host.is_not(None),
                                                         VolumeRow.vm.is_not(None))):
                local.setdefault(str(vol.vm), []).append(vol)
            for name, row in rows.items():
                if name in busy or row.state == VmState.DELETING:
                    continue
                places = by_vm.get(name, [])
                active = [(h, d) for h, d in places if d.active]
                if len(active) > 1:
                    row.state = VmState.SPLIT
                elif active:
                    row.host, row.state = active[0][0], vm_state(active[0][1])
                    row.cpu_xml, row.uuid = active[0][1].cpu_xml, active[0][1].uuid
                    row.nics = [asdict(n) for n in active[0][1].nics]
                    _follow_local_volumes(local.get(name, []), row.host)
                elif places:
                    row.host, row.state = places[0][0], VmState.SHUTOFF
                elif row.host in seen:  # its host answered and does not have it
                    row.state = VmState.MISSING
                if row.cpu_xml not in by_cpu:  # guests share few CPU definitions
                    by_cpu[row.cpu_xml] = blocked(self.verdicts.verdict, row.cpu_xml, None,
                                                  seen, virt)
                row.cpu_blocked = {h: v for h, v in by_cpu[row.cpu_xml].items()
                                   if h != row.host}
                row.updated_at = now


def _read_load(row: HostRow, times: tuple[int, int]) -> None:
    """How busy the host was since its last kept reading; a reading too close to the
    last to say is not kept (a `locate` may reconcile a second after the last round)."""
    if times[1] <= 0:
        return
    span_ns = times[1] - row.cpu_total_ns
    if row.cpu_total_ns > 0 and 0 <= span_ns < MIN_SPAN_CPU_S * 1e9:
        return
    row.cpu_busy = busy_share((row.cpu_busy_ns, row.cpu_total_ns), times)
    row.cpu_busy_ns, row.cpu_total_ns = times


def blocked(verdict: Callable[[str, str, str, str], CpuVerdict | None], cpu_xml: str,
            own: str | None, up: dict[str, list[DomainInfo]],
            virt: dict[str, tuple[str, str]]) -> dict[str, list[str]]:
    """Up hosts (other than its own) whose hypervisor cannot run this guest CPU;
    `verdict(host, uri, cpu_xml, virt_type)` is None when a host cannot say."""
    if not cpu_xml:
        return {}
    out = {}
    for host_name in up:
        if host_name == own:
            continue
        uri, virt_type = virt[host_name]
        v = verdict(host_name, uri, cpu_xml, virt_type)
        if v is not None and not v.compatible:
            out[host_name] = v.missing_features or [v.message]
    return out


def _follow_local_volumes(volumes: list[VolumeRow], host: str | None) -> None:
    """A running VM's local-pool volumes are on its host (it may have been moved by
    something other than Ferry, e.g. `virsh migrate --copy-storage-all`)."""
    for v in volumes:
        if host is not None and v.host != host:
            v.host = host


def vm_state(d: DomainInfo) -> VmState:
    if d.state == DomainState.RUNNING:
        return VmState.RUNNING
    if d.state == DomainState.PAUSED:
        return VmState.PAUSED
    return VmState.SHUTOFF
