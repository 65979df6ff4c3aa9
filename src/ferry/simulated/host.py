"""A simulated hypervisor host: the `Hypervisor` interface over the cluster's state.

Every call first brings running migrations up to the clock's time, then
answers from memory.  Faults a test sets on a host:
- `unreachable`: its daemon does not answer (every call raises
  HostUnreachable; migrations between hosts go on);
- `hangs`: calls block until the caller's timeout (the clock advances by
  `call_timeout_s`), then raise HostUnreachable.
"""

from __future__ import annotations

import functools
import uuid as uuidlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

from ferry.hypervisor.base import MigrationJob
from ferry.hypervisor.domxml import parse_nics
from ferry.hypervisor.errors import (
    DomainNotFound,
    HostUnreachable,
    HypervisorError,
    MigrationJobError,
)
from ferry.hypervisor.types import (
    QEMU_OVERHEAD_MIB,
    CpuVerdict,
    DomainInfo,
    DomainState,
    HostInfo,
    HostNetworks,
    JobStats,
    MigrationOptions,
    PageSample,
    PoolSpec,
    PoolState,
    PostcopyState,
    VolumeInfo,
)
from ferry.predict.dirty import MIB
from ferry.simulated import cpus
from ferry.simulated.clock import SimClock
from ferry.simulated.domain import IDLE_BUSY, SimDomain, Workload
from ferry.simulated.jobs import Outcome, Phase, SimJob
from ferry.simulated.storage import Ceph, Files, HostStorage, StorageView

F = TypeVar("F", bound=Callable[..., Any])


class ClusterView(Protocol):
    """What a host needs of its cluster (cluster.py implements it)."""

    clock: SimClock
    files: Files
    ceph: Ceph
    workloads: dict[str, Workload]
    call_timeout_s: float
    call_latency_s: float
    begin_s: float

    def tick(self) -> None: ...

    def start_job(self, source: SimHost, d: SimDomain, opts: MigrationOptions
                  ) -> MigrationJob: ...

    def end_job(self, job: SimJob, outcome: Outcome) -> None: ...

    def incoming_died(self, host: str, vm: str) -> None: ...


def _mac() -> str:
    """What libvirt gives an interface that has no MAC: 52:54:00 and three random bytes."""
    return "52:54:00:" + ":".join(f"{b:02x}" for b in uuidlib.uuid4().bytes[:3])


def _reachable(fn: F) -> F:
    """Every driver call: fail as an unreachable host would, else catch up the cluster."""
    @functools.wraps(fn)
    def call(self: SimHost, *args: Any, **kwargs: Any) -> Any:
        self.check_reachable()
        if self.cluster.call_latency_s:
            self.cluster.clock.sleep(self.cluster.call_latency_s)
        self.cluster.tick()
        return fn(self, *args, **kwargs)
    return call  # type: ignore[return-value]


@dataclass
class _Faults:
    unreachable: bool = False
    hangs: bool = False
    domains_locked: bool = False  # domain calls time out on a job lock; the daemon answers


class SimHost:
    """One simulated host; `SimCluster.add_host` makes them."""

    def __init__(self, cluster: ClusterView, name: str, *, cpu_model: str, vendor: str,
                 extra_features: set[str], cpus_n: int, memory_mib: int, virt_type: str,
                 storage: HostStorage) -> None:
        self.cluster, self.name = cluster, name
        self.uri = f"qemu+tcp://{name}.sim/system"
        self.cpu_model, self.vendor, self.cpus, self.memory_mib = (cpu_model, vendor, cpus_n,
                                                                   memory_mib)
        self.features = cpus.model_features(cpu_model) | extra_features
        self.virt_type = virt_type
        self.domains: dict[str, SimDomain] = {}
        self.own_storage = storage
        self.storage = StorageView(name, cluster.files, cluster.ceph, storage)
        self.faults = _Faults()
        self.alive = True  # False once crashed
        # what guests' interfaces can plug into (`add_host(networks=, bridges=)`)
        self.networks: dict[str, bool] = {}
        self.interfaces: dict[str, str] = {}
        self._cpu_busy_s, self._cpu_read_at = 0.0, cluster.clock.monotonic()

    # -- faults -------------------------------------------------------------------
    @property
    def unreachable(self) -> bool:
        return self.faults.unreachable

    @unreachable.setter
    def unreachable(self, value: bool) -> None:
        self.faults.unreachable = value

    @property
    def hangs(self) -> bool:
        return self.faults.hangs

    @hangs.setter
    def hangs(self, value: bool) -> None:
        self.faults.hangs = value

    def check_reachable(self) -> None:
        if self.faults.hangs:
            self.cluster.clock.sleep(self.cluster.call_timeout_s)
            raise HostUnreachable(f"{self.uri}: no answer within "
                                  f"{self.cluster.call_timeout_s:.0f} s")
        if self.faults.unreachable or not self.alive:
            raise HostUnreachable(f"{self.uri}: unable to connect to server: "
                                  "Connection refused")

    def close(self) -> None:
        return None

    # -- host ---------------------------------------------------------------------
    def memory_free_mib(self) -> int:
        used = sum(d.memory_mib + QEMU_OVERHEAD_MIB for d in self.domains.values()
                   if d.state in (DomainState.RUNNING, DomainState.PAUSED))
        return self.memory_mib - used

    @_reachable
    def info(self) -> HostInfo:
        return HostInfo(hostname=self.name, arch="x86_64", cpu_model=self.cpu_model,
                        cpu_vendor=self.vendor, cpus=self.cpus,
                        memory_total_mib=self.memory_mib,
                        memory_free_mib=self.memory_free_mib(), virt_type=self.virt_type,
                        cpu_busy_ns=self._cpu_busy_ns(), cpu_total_ns=self._cpu_total_ns())

    def _cpu_busy_ns(self) -> int:
        """The guests' CPU so far, as if each read's load had held since the last read."""
        now = self.cluster.clock.monotonic()
        load = min(sum(d.busy * d.vcpus for d in self.domains.values()
                       if d.state == DomainState.RUNNING), self.cpus)
        self._cpu_busy_s += load * max(now - self._cpu_read_at, 0.0)
        self._cpu_read_at = now
        return int(self._cpu_busy_s * 1e9)

    def _cpu_total_ns(self) -> int:
        return int(self.cluster.clock.monotonic() * self.cpus * 1e9)

    @_reachable
    def host_cpu_xml(self) -> str:
        return cpus.host_cpu_xml(self.cpu_model, self.vendor, self.features)

    @_reachable
    def host_model_cpu_xml(self, virt_type: str) -> str:
        return cpus.custom_cpu_xml(self.cpu_model, self.vendor, self.features)

    @_reachable
    def usable_models(self, virt_type: str) -> list[str]:
        return cpus.usable_models(self.features)

    @_reachable
    def baseline_cpu(self, cpu_xmls: list[str], virt_type: str, *,
                     expand: bool = False) -> str:
        return cpus.baseline(cpu_xmls, expand=expand)

    @_reachable
    def host_networks(self) -> HostNetworks:
        return HostNetworks(dict(self.networks), dict(self.interfaces))

    @_reachable
    def compare_cpu(self, cpu_xml: str, virt_type: str) -> CpuVerdict:
        return cpus.compare(cpu_xml, self.features, self.vendor)

    # -- domains --------------------------------------------------------------------
    def _get(self, name: str) -> SimDomain:
        d = self.domains.get(name)
        if d is None:
            raise DomainNotFound(f"Domain not found: no domain with matching name '{name}'")
        return d

    @_reachable
    def list_domains(self) -> list[DomainInfo]:
        if self.faults.domains_locked:
            self.cluster.clock.sleep(30.0)  # libvirt's wait for a domain's job lock
            raise HypervisorError("Timed out during operation: cannot acquire state change "
                                  "lock (held by monitor=remoteDispatchDomainMigrateFinish3)")
        return [d.info() for d in self.domains.values()]

    @_reachable
    def domain(self, name: str) -> DomainInfo:
        return self._get(name).info()

    def find_domain(self, name: str) -> DomainInfo | None:
        try:
            return self.domain(name)
        except DomainNotFound:
            return None

    @_reachable
    def define_and_start(self, xml: str) -> DomainInfo:
        dom = self._parse(xml)
        problem = self.cannot_run(dom)
        if problem:
            raise HypervisorError(problem)
        if ET.fromstring(dom.cpu_xml).get("mode") in ("host-model", "host-passthrough"):
            dom.cpu_xml = cpus.custom_cpu_xml(self.cpu_model, self.vendor, self.features)
        self.domains[dom.name] = dom
        return dom.info()

    def cannot_run(self, dom: SimDomain, copied: frozenset[str] = frozenset()) -> str:
        """Why this host cannot start (or receive) the domain; "" if it can.  Disks in
        `copied` arrive with it (block migration)."""
        if dom.name in self.domains:
            return f"operation failed: domain '{dom.name}' already exists"
        for src in dom.disks:
            if src not in copied and not self.storage.disk_reachable(
                    src, src in dom.network_disks):
                return f"Cannot access storage file '{src}' on {self.name}: No such file"
        for nic in dom.nics:
            if nic.kind == "network" and not self.networks.get(nic.source):
                return f"Network not found: no network with matching name '{nic.source}'"
            if nic.kind in ("bridge", "direct") and nic.source not in self.interfaces:
                return f"Cannot get interface MTU on '{nic.source}': No such device"
        if self.memory_free_mib() < dom.memory_mib + QEMU_OVERHEAD_MIB:
            return f"cannot allocate memory for the guest on {self.name}"
        verdict = cpus.compare(dom.cpu_xml, self.features, self.vendor)
        return "" if verdict.compatible else verdict.message

    def _parse(self, xml: str) -> SimDomain:
        root = ET.fromstring(xml)
        mem = root.find("memory")
        unit = mem.get("unit", "KiB") if mem is not None else "KiB"
        value = int((mem.text or "0") if mem is not None else "0")
        memory_mib = value if unit == "MiB" else value // 1024
        cpu = root.find("cpu")
        disks: dict[str, str] = {}
        network: set[str] = set()
        for d in root.findall("./devices/disk"):
            src, tgt = d.find("source"), d.find("target")
            if src is None or tgt is None:
                continue
            path = src.get("file") or src.get("name") or ""
            disks[path] = tgt.get("dev", "")
            if d.get("type") == "network":
                network.add(path)
        name = root.findtext("name", "")
        workload = self.cluster.workloads.get(name) or \
            Workload.from_cmdline(root.findtext("./os/cmdline", "") or "")
        return SimDomain(
            name=name, uuid=str(uuidlib.uuid4()), memory_mib=memory_mib,
            vcpus=int(root.findtext("vcpu", "1")),
            cpu_xml=ET.tostring(cpu, encoding="unicode") if cpu is not None
            else cpus.custom_cpu_xml("qemu64", self.vendor, set()),
            disks=disks, network_disks=network, workload=workload,
            nics=tuple(replace(n, mac=n.mac or _mac()) for n in parse_nics(root)),
            started_at=self.cluster.clock.monotonic(),
            busy=1.0 if workload.cpu_bound and workload.dirty_mib_s else IDLE_BUSY)

    @_reachable
    def destroy(self, name: str) -> None:
        d = self._get(name)
        if d.job is not None and d.job.active:
            self.cluster.end_job(d.job, d.job.fail("domain is not running"))
        if d.incoming:
            self.cluster.incoming_died(self.name, name)
            return
        d.state = DomainState.SHUTOFF
        if not d.persistent:
            del self.domains[name]

    @_reachable
    def resume(self, name: str) -> None:
        d = self._get(name)
        if d.postcopy != PostcopyState.NONE:
            raise HypervisorError("Requested operation is not valid: resuming failed "
                                  "post-copy migration is not supported")
        if d.state != DomainState.PAUSED:
            raise HypervisorError("Requested operation is not valid: domain is not paused")
        d.state = DomainState.RUNNING

    @_reachable
    def undefine(self, name: str) -> None:
        d = self._get(name)
        if d.state in (DomainState.RUNNING, DomainState.PAUSED):
            d.persistent = False
        else:
            del self.domains[name]

    # -- migration --------------------------------------------------------------------
    @_reachable
    def start_migration(self, name: str, opts: MigrationOptions) -> MigrationJob:
        d = self._get(name)
        return self.cluster.start_job(self, d, opts)

    @_reachable
    def job_stats(self, name: str) -> JobStats:
        d = self._get(name)
        if d.state == DomainState.SHUTOFF:
            raise HypervisorError("Requested operation is not valid: domain is not running")
        if d.job is not None and not d.job.active and d.postcopy == PostcopyState.FAILED:
            return JobStats(active=True)  # libvirt keeps a broken post-copy's job, paused
        if d.job is None or not d.job.active or self._beginning(d.job):
            return JobStats(active=False)
        if d.job.phase == Phase.FINISH:  # as libvirt 11 answers in its finish phase
            raise HypervisorError("Requested operation is not valid: domain is not running")
        return d.job.stats()

    def _beginning(self, job: SimJob) -> bool:
        """Is the job's libvirt call still to begin it (`SimCluster.begin_s`)?"""
        return self.cluster.clock.monotonic() - job.started_at < self.cluster.begin_s

    @_reachable
    def completed_job_stats(self, name: str) -> JobStats | None:
        return self._get(name).completed

    @_reachable
    def abort_job(self, name: str) -> None:
        d = self._get(name)
        if d.job is None or not d.job.active or self._beginning(d.job):
            raise HypervisorError("Requested operation is not valid: no job is active on "
                                  "the domain")
        if d.job.postcopy:
            raise HypervisorError("Requested operation is not valid: cannot abort migration "
                                  "in post-copy mode")
        self.cluster.end_job(d.job, d.job.fail("operation aborted: migration out job: "
                                               "canceled by client", cancelled=True))

    @_reachable
    def set_max_downtime(self, name: str, downtime_ms: int) -> None:
        d = self._get(name)
        d.max_downtime_ms = int(downtime_ms)
        if d.job is not None and d.job.active:
            d.job.model.limit_s = downtime_ms / 1000

    @_reachable
    def set_bandwidth(self, name: str, mib_s: int, *, postcopy: bool = False) -> None:
        """Recorded; modelled only as a staged job's release (the model has no socket
        queue to drain)."""
        d = self._get(name)
        if d.job is None or not d.job.active:
            raise HypervisorError("Requested operation is not valid: no job is active")
        d.speeds.append(("postcopy" if postcopy else "precopy", int(mib_s)))
        if not postcopy:
            d.job.set_rate(int(mib_s))

    @_reachable
    def start_postcopy(self, name: str) -> None:
        d = self._get(name)
        if d.job is None or not d.job.active:
            raise HypervisorError("Requested operation is not valid: no job is active")
        if not d.job.opts.postcopy:
            raise HypervisorError("Requested operation is not valid: switching to post-copy "
                                  "requires migration to be started with the POSTCOPY flag")
        d.job.model.postcopy_requested = True

    @_reachable
    def pause_postcopy(self, name: str) -> None:
        d = self._get(name)
        if d.postcopy == PostcopyState.NONE:
            raise HypervisorError("Requested operation is not valid: no post-copy migration "
                                  "to pause")
        job = d.job
        if job is not None and job.active and job.postcopy:
            self.cluster.end_job(job, job.fail("post-copy paused by request"))

    # -- measuring ----------------------------------------------------------------------
    def dirty_rate_mib_s(self, name: str, window_ms: int, sample_pages: int = 4096) -> float:
        self.check_reachable()
        d = self._get(name)
        if d.state != DomainState.RUNNING:
            raise HypervisorError(f"{name}: domain is not running")
        self.cluster.clock.sleep(window_ms / 1000)
        self.cluster.tick()
        t, now = window_ms / 1000, self.cluster.clock.monotonic() - d.started_at
        return d.workload.curve().bytes_between(now - t, now) / t / MIB

    @_reachable
    def vcpu_time_ns(self, name: str) -> int:
        d = self._get(name)
        return int((self.cluster.clock.monotonic() - d.started_at) * d.busy * 1e9)

    @_reachable
    def vcpu_wait_ns(self, name: str) -> int:
        self._get(name)
        return 0  # the simulated host has CPU for every guest

    @_reachable
    def resident_mib(self, name: str) -> int:
        return round(self._get(name).nonzero_mib) + QEMU_OVERHEAD_MIB

    @_reachable
    def sample_pages(self, name: str, pages: int, budget_s: float) -> PageSample:
        """The exact share (a sample without sampling error)."""
        d = self._get(name)
        return PageSample(pages, round(pages * min(1.0, d.nonzero_mib / d.memory_mib)), 0.0,
                          wire_share=d.workload.wire_share)

    # -- storage --------------------------------------------------------------------------
    @_reachable
    def pool_state(self, spec: PoolSpec) -> PoolState:
        return self.storage.pool_state(spec)

    @_reachable
    def ensure_pool(self, spec: PoolSpec) -> bool:
        return self.storage.ensure_pool(spec)

    @_reachable
    def remove_pool(self, name: str) -> None:
        self.storage.remove_pool(name)

    @_reachable
    def volume(self, pool: str, name: str) -> VolumeInfo | None:
        return self.storage.volume(pool, name)

    @_reachable
    def create_volume(self, pool: str, name: str, capacity_bytes: int,
                      clone_of: str | None = None) -> str:
        return self.storage.create_volume(pool, name, capacity_bytes, clone_of)

    @_reachable
    def delete_volume(self, pool: str, name: str) -> bool:
        return self.storage.delete_volume(pool, name)

    @_reachable
    def secret_present(self, secret_uuid: str) -> bool:
        return self.storage.secret_present(secret_uuid)

    @_reachable
    def ensure_ceph_secret(self, secret_uuid: str, user: str, key_b64: str) -> None:
        self.storage.ensure_ceph_secret(secret_uuid, user, key_b64)

    @_reachable
    def remove_secret(self, secret_uuid: str) -> None:
        self.storage.remove_secret(secret_uuid)


@dataclass
class JobHandle:
    """What the engine holds: waits on the clock; a source it cannot reach ends the call
    (as a dropped libvirt connection ends migrateToURI3) while the job goes on."""

    cluster: ClusterView
    job: SimJob | None
    source: SimHost
    early_error: MigrationJobError | None = None
    lost: bool = field(default=False)

    def wait(self, timeout_s: float) -> bool:
        if self._ended():
            return True
        self.cluster.clock.sleep(timeout_s)
        self.cluster.tick()
        return self._ended()

    def _ended(self) -> bool:
        if self.early_error is not None or self.job is None or not self.job.active:
            return True
        if self.source.unreachable or self.source.hangs or not self.source.alive:
            self.lost = True
            return True
        return False

    def when_stopped(self, fn: Callable[[], None]) -> None:
        if self.job is None:
            return
        if self.job.stopped:
            fn()
        else:
            self.job.on_stop = fn

    @property
    def error(self) -> MigrationJobError | None:
        if self.early_error is not None:
            return self.early_error
        if self.lost:
            return MigrationJobError(f"{self.source.uri}: connection to the host lost "
                                     "while the job ran")
        if self.job is not None and self.job.outcome is not None:
            return self.job.outcome.error
        return None
