"""A simulated guest: what runs in it (`Workload`) and the domain a host keeps
(`SimDomain`); split from host.py."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ferry.hypervisor.types import DomainInfo, DomainState, JobStats, NicInfo, PostcopyState
from ferry.predict.dirty import MIB, Bursts, DirtyCurve
from ferry.simulated.jobs import SimJob

GUEST_BASE_MIB = 40  # kernel, initramfs, page cache: non-zero pages of an idle guest
IDLE_BUSY = 0.12  # an idle TCG guest uses 12-16 % of a core (measured)
BURST_S = 2.0  # the lab guest's `burst` pattern: this long on, as long off (guest/workload.c)


@dataclass
class Workload:
    """What runs in a guest: how it dirties memory and how much of it is not zero."""

    dirty_mib_s: float = 0.0
    wss_mib: float = 64.0
    nonzero_mib: float | None = None  # None: GUEST_BASE_MIB + the working set
    cpu_bound: bool = False  # dirtying paced by the vCPU (auto-converge slows it)
    bursts: bool = False  # as the lab guest's `burst`: 2 s at twice the rate, 2 s idle
    hotcold: bool = False  # as the lab guest's `hotcold`: 9 in 10 writes to a hot eighth
    sequential: bool = False  # as the lab guest's `sequential`: its set written in order
    wire_share: float = 1.0  # its non-zero pages through zstd: bytes out per byte in

    @classmethod
    def from_cmdline(cls, cmdline: str) -> Workload:
        """The lab guest's own parameters (`ferry.wss=`, `ferry.dirty=`,
        `ferry.pattern=`)."""
        wss = re.search(r"ferry\.wss=(\d+)", cmdline)
        dirty = re.search(r"ferry\.dirty=(\d+)", cmdline)
        return cls(float(dirty.group(1)) if dirty else 0.0, float(wss.group(1)) if wss else 64.0,
                   bursts="ferry.pattern=burst" in cmdline,
                   hotcold="ferry.pattern=hotcold" in cmdline,
                   sequential="ferry.pattern=sequential" in cmdline)

    def curve(self, since_boot_s: float = 0.0) -> DirtyCurve:
        """Its dirtying from `since_boot_s` after the guest started (bursts keep time)."""
        rate, wss = self.dirty_mib_s * MIB, self.wss_mib * MIB
        if self.hotcold:  # the rest of the writes land anywhere in the set
            return DirtyCurve(0.9 * rate, wss / 8, None, 0.1 * rate, wss)
        if self.sequential:
            return DirtyCurve(rate, wss, streaming=True)
        if not self.bursts:
            return DirtyCurve(rate, wss)
        return DirtyCurve(2 * rate, wss, Bursts(BURST_S, BURST_S, since_boot_s))


@dataclass
class SimDomain:
    name: str
    uuid: str
    memory_mib: int
    vcpus: int
    cpu_xml: str
    disks: dict[str, str]  # source -> target (vda, ...)
    network_disks: set[str]
    workload: Workload
    started_at: float
    nics: tuple[NicInfo, ...] = ()
    state: DomainState = DomainState.RUNNING
    persistent: bool = True
    max_downtime_ms: int = 300
    job: SimJob | None = None  # outgoing migration (on the source)
    incoming: bool = False  # the destination side of a migration
    postcopy: PostcopyState = PostcopyState.NONE  # in post-copy, or broken in it
    completed: JobStats | None = None
    speeds: list[tuple[str, int]] = field(default_factory=list)  # set_bandwidth calls
    busy: float = IDLE_BUSY
    cpu_used_s: float = 0.0

    @property
    def nonzero_mib(self) -> float:
        w = self.workload
        return min(float(self.memory_mib),
                   w.nonzero_mib if w.nonzero_mib is not None else GUEST_BASE_MIB + w.wss_mib)

    def info(self) -> DomainInfo:
        return DomainInfo(name=self.name, uuid=self.uuid, state=self.state,
                          persistent=self.persistent, memory_mib=self.memory_mib,
                          vcpus=self.vcpus, cpu_xml=self.cpu_xml, disks=list(self.disks),
                          disk_targets=dict(self.disks),
                          migrating=self.job is not None and self.job.active,
                          postcopy=self.postcopy, nics=self.nics)
