"""VMs: create (the guest image, a boot volume and data volumes), list, show, delete."""

from __future__ import annotations

import contextlib
import glob
import os
import time
import xml.etree.ElementTree as ET
from dataclasses import asdict
from pathlib import Path

from sqlalchemy import select, update

from ferry.db.models import HostRow, VmRow, VolumeRow
from ferry.domain.models import HostState, Vm, VmState, Volume
from ferry.domain.names import check_name
from ferry.domain.vocab import VolumeFate, WorkloadPattern
from ferry.errors import Conflict, FerryError, InvalidRequest, NotFound, Unavailable
from ferry.hypervisor import domxml
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import HostNetworks, NicInfo
from ferry.network.check import check_nic
from ferry.network.requests import next_address, parse_network
from ferry.service import convert
from ferry.service.connections import HostConnections
from ferry.service.cpu import CpuService
from ferry.service.database import Database
from ferry.service.inventory import Inventory
from ferry.service.pools import PoolService
from ferry.service.settings import Settings
from ferry.service.volumes import VolumeService, size_bytes
from ferry.storage.specs import disk_spec

BOOT_DISK_BYTES = 8 * 1024 * 1024
HEARTBEAT_TIMEOUT_S = 90
DATA_TARGETS = ("vdb", "vdc", "vdd", "vde")


def guest_reserve_mib(memory_mib: int, base_mib: int) -> int:
    """What the lab guest's kernel and initramfs keep of its memory.  Measured
    (bench/guest_memory.py): the workload was OOM-killed with 64 MiB left in 128 and
    256 MiB guests and 72 MiB left in a 512 MiB one; 72 / 72 / 80 MiB sufficed.

    >>> [guest_reserve_mib(m, 72) for m in (128, 256, 512, 4096)]
    [76, 80, 88, 200]
    """
    return base_mib + memory_mib // 32


class VmService:
    def __init__(self, db: Database, conns: HostConnections, settings: Settings,
                 inventory: Inventory, pools: PoolService, volumes: VolumeService,
                 cpu: CpuService) -> None:
        self.db, self.conns, self.settings = db, conns, settings
        self.inventory, self.pools, self.volumes, self.cpu = inventory, pools, volumes, cpu

    def list_vms(self) -> list[Vm]:
        with self.db.session() as s:
            return [convert.vm(r) for r in s.scalars(select(VmRow).order_by(VmRow.name))]

    def get(self, name: str) -> Vm:
        with self.db.session() as s:
            row = s.scalar(select(VmRow).where(VmRow.name == name))
            if row is None:
                raise NotFound(f"no VM named {name!r}")
            return convert.vm(row)

    def create(self, name: str, host: str, memory_mib: int, vcpus: int = 1,
               workload_dirty_mib_s: int = 0, workload_wss_mib: int | None = None,
               wait: bool = True, boot_pool: str | None = None,
               disks: list[tuple[str, float]] | None = None, workload_fill: bool = False,
               workload_pattern: WorkloadPattern = WorkloadPattern.UNIFORM,
               network: str | None = None) -> Vm:
        """Create the VM's volumes (boot disk + `disks` as (pool, GiB)), define and start it.

        The guest writes checksummed records to every data disk and verifies them.
        `network` (NAME, bridge:BR or none; default the controller's guest_network)
        gives it a virtio NIC, with an address of guest_subnet if one is set."""
        check_name("vm", name)
        if not 128 <= memory_mib <= 65536:  # below, the guest's kernel has no room left
            raise InvalidRequest("memory must be between 128 and 65536 MiB")
        if not 1 <= vcpus <= 16:
            raise InvalidRequest("vcpus must be between 1 and 16")
        wss = workload_wss_mib if workload_wss_mib is not None else min(64, memory_mib // 4)
        kept = guest_reserve_mib(memory_mib, self.settings.guest_reserved_mib)
        if not 1 <= wss <= memory_mib - kept:
            raise InvalidRequest(f"workload working set must be 1..{memory_mib - kept} MiB "
                                 f"for a {memory_mib} MiB VM (its kernel keeps {kept} MiB)")
        if not 0 <= workload_dirty_mib_s <= 4096:
            raise InvalidRequest("workload dirty rate must be between 0 and 4096 MiB/s")
        disks = list(disks or [])
        if len(disks) > len(DATA_TARGETS):
            raise InvalidRequest(f"at most {len(DATA_TARGETS)} data disks")
        nic = parse_network(network if network is not None
                            else self.settings.guest_network or "none")
        image = self.settings.guest_image
        if image is None:
            raise InvalidRequest("this controller has no guest image configured")
        wanted = [(boot_pool or self.settings.boot_pool, BOOT_DISK_BYTES / 2**30, "vda", "boot")]
        wanted += [(p, gib, DATA_TARGETS[i], f"data{i + 1}") for i, (p, gib) in enumerate(disks)]
        pools_by_name = {p.name: p for p in self.pools.list_pools()}
        for pname, gib, _t, _s in wanted:
            check_name("pool", pname)
            if pname not in pools_by_name:
                raise NotFound(f"no pool named {pname!r}")
            size_bytes(gib)
        with self.db.session() as s:
            hrow = s.scalar(select(HostRow).where(HostRow.name == host))
            if hrow is None:
                raise NotFound(f"no host named {host!r}")
            if hrow.state != HostState.UP:
                raise Unavailable(f"host {host} is unreachable: {hrow.error}")
            if hrow.maintenance:
                raise Conflict(f"host {host} is in maintenance: it takes no new VMs until "
                               f"`ferry host activate {host}`")
            if s.scalar(select(VmRow).where(VmRow.name == name)) is not None:
                raise Conflict(f"VM {name!r} already exists")
            uri, virt_type = hrow.uri, hrow.virt_type
            address = ""
            if nic is not None and self.settings.guest_subnet:
                used = set(s.scalars(select(VmRow.address).where(VmRow.address != "")))
                address = next_address(self.settings.guest_subnet, used)
            s.add(VmRow(name=name, host=host, state=VmState.SHUTOFF, memory_mib=memory_mib,
                        vcpus=vcpus, workload_dirty_mib_s=workload_dirty_mib_s,
                        workload_wss_mib=wss, workload_pattern=workload_pattern,
                        managed=True, address=address))
        made: list[tuple[str, str]] = []
        try:
            if nic is not None:
                _check_nic(nic, host, self.conns.get(uri).host_networks())
            cpu_xml = self.cpu.guest_cpu_for_new_vm()
            specs = []
            for pname, gib, target, suffix in wanted:
                pool = pools_by_name[pname]
                vol = self.volumes.create(pname, f"{name}-{suffix}", gib,
                                          host=host if not pool.shared else None, vm=name,
                                          target=target, internal_name=True)
                made.append((pname, vol.name))
                specs.append(disk_spec(pool, vol.path, target))
            spec = domxml.DomainSpec(
                name=name, memory_mib=memory_mib, vcpus=vcpus, kernel=image.kernel,
                initrd=image.initrd,
                cmdline=domxml.guest_cmdline(wss, workload_dirty_mib_s,
                                             tuple(t for _p, _g, t, _s in wanted[1:]),
                                             workload_fill, workload_pattern, address),
                cpu_xml=cpu_xml, virt_type=virt_type, disks=specs,
                console_dir=self.settings.console_dir,
                nics=[domxml.NicSpec(*nic)] if nic is not None else [])
            started = time.time()
            dom = self.conns.get(uri).define_and_start(domxml.build(spec))
        except (HypervisorError, FerryError) as exc:
            for pname, vname in made:
                with contextlib.suppress(FerryError):
                    self.volumes.delete(pname, vname, detached_only=False)
            with self.db.session() as s:
                row = s.scalar(select(VmRow).where(VmRow.name == name))
                if row is not None:
                    s.delete(row)
            if isinstance(exc, FerryError):
                raise
            raise Unavailable(f"could not start VM {name} on {host}: {exc}") from exc
        with self.db.session() as s:
            row = s.scalar(select(VmRow).where(VmRow.name == name))
            assert row is not None
            row.state, row.cpu_xml, row.disks = VmState.RUNNING, dom.cpu_xml, dom.disks
            row.uuid = dom.uuid
            row.cpu_model = _cpu_model(dom.cpu_xml)
            row.nics = [asdict(n) for n in dom.nics]
        if wait and self.settings.heartbeat_glob:
            _wait_heartbeat(self.settings.heartbeat_glob, name, started)
        return self.get(name)

    def delete(self, name: str, volumes: VolumeFate | str | None = None) -> None:
        """Power off and undefine the VM everywhere; its volumes are deleted or kept
        (detached) as `volumes` says.  Without an answer a VM that has volumes is
        refused, listing them: nothing is deleted by surprise."""
        try:
            fate = VolumeFate(volumes) if volumes is not None else None
        except ValueError:
            raise InvalidRequest("volumes must be delete or keep", {"field": "volumes"}) from None
        self.get(name)  # NotFound first
        attached = [v for v in self.volumes.list_volumes() if v.vm == name]
        if attached and fate is None:
            names = [f"{v.pool}/{v.name}" for v in attached]
            raise Conflict(f"VM {name} has volumes {', '.join(names)}: say whether to delete "
                           "or keep them", {"volumes": names})
        before = self._mark_deleting(name)
        try:
            self._delete(name, attached, fate)
        except BaseException:
            with self.db.session() as s:  # still there: as it was
                s.execute(update(VmRow).where(VmRow.name == name,
                                              VmRow.state == VmState.DELETING)
                          .values(state=before))
            raise

    def _mark_deleting(self, name: str) -> str:
        """Take the VM for deletion in one statement: a migration cannot claim it
        now, and a migrating VM cannot be taken.  Returns its state before."""
        with self.db.session() as s:
            before = s.scalar(select(VmRow.state).where(VmRow.name == name))
            res = s.execute(update(VmRow).where(
                VmRow.name == name,
                VmRow.state.not_in([VmState.MIGRATING.value, VmState.DELETING.value]))
                .values(state=VmState.DELETING.value))
            if getattr(res, "rowcount", 0) != 1:
                raise Conflict(f"VM {name} is migrating or being deleted; cancel the "
                               "migration first")
        return str(before)

    def _delete(self, name: str, attached: list[Volume], fate: VolumeFate | None) -> None:
        self.inventory.reconcile()
        vm = self.get(name)
        with self.db.session() as s:
            hosts = {r.name: r.uri for r in s.scalars(select(HostRow))}
        for host_name, uri in hosts.items():
            conn = self.conns.get(uri)
            try:
                if conn.find_domain(name) is not None:
                    conn.destroy(name)
                    conn.undefine(name)
            except HypervisorError as exc:
                if host_name == vm.host:
                    raise Unavailable(f"could not remove VM {name} from {host_name}: "
                                      f"{exc}") from exc
        failed = []
        for v in attached:
            if fate == VolumeFate.DELETE:
                try:
                    self.volumes.delete(v.pool, v.name, detached_only=False)
                    continue
                except FerryError as exc:  # kept, detached: `volume delete` can retry
                    failed.append(f"{v.pool}/{v.name}: {exc.message}")
            with self.db.session() as s:
                vrow = s.scalar(select(VolumeRow).where(VolumeRow.pool == v.pool,
                                                        VolumeRow.name == v.name))
                if vrow is not None:
                    vrow.vm, vrow.target = None, ""
        with self.db.session() as s:
            row = s.scalar(select(VmRow).where(VmRow.name == name))
            if row is not None:
                s.delete(row)
        if failed:
            raise Unavailable(f"VM {name} removed but not all its volumes: {'; '.join(failed)}")


def _check_nic(nic: tuple[str, str], host: str, nets: HostNetworks) -> None:
    """Refuse a NIC the host cannot plug in, before anything is created on it."""
    v = check_nic(NicInfo(nic[0], nic[1], ""), nets)
    if v.problem:
        raise Conflict(f"host {host} cannot give the VM its NIC: {v.problem}",
                       {"network": f"{nic[0]} {nic[1]}"})


def _cpu_model(cpu_xml: str) -> str:
    if not cpu_xml:
        return ""
    return ET.fromstring(cpu_xml).findtext("model", "") or ""


def _wait_heartbeat(pattern: str, name: str, since: float) -> None:
    """Return once the guest's workload has booted and sent a heartbeat."""
    deadline = time.monotonic() + HEARTBEAT_TIMEOUT_S
    while time.monotonic() < deadline:
        for path in glob.glob(os.path.join(pattern, f"{name}.hb")):
            p = Path(path)
            if p.stat().st_mtime >= since and " HB " in _tail(p):
                return
        time.sleep(0.2)
    raise Unavailable(f"VM {name} started but sent no heartbeat within {HEARTBEAT_TIMEOUT_S}s")


def _tail(p: Path, size: int = 4096) -> str:
    with p.open("rb") as f:
        f.seek(max(0, p.stat().st_size - size))
        return f.read().decode(errors="replace")
