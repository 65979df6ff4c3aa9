"""Plain records a driver returns: what a host and its domains look like now."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

# What a QEMU process uses beyond its guest's RAM, measured here at ~60 MB.
QEMU_OVERHEAD_MIB = 60


class DomainState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    CRASHED = "crashed"
    OTHER = "other"


class PostcopyState(StrEnum):
    """Where a domain is in a post-copy migration (libvirt's state reasons)."""

    NONE = ""
    ACTIVE = "active"  # source paused / destination running while pages are pulled
    FAILED = "failed"  # the connection broke mid-way: neither side has the whole guest


@dataclass(frozen=True)
class HostInfo:
    hostname: str
    arch: str
    cpu_model: str
    cpu_vendor: str
    cpus: int
    memory_total_mib: int
    memory_free_mib: int
    virt_type: str  # "kvm" or "qemu" (TCG): what guests on this host run under
    # the host's CPU time so far, summed over its CPUs (ns): busy (user + kernel) and
    # all; two readings give how loaded it was between them (0, 0: not read)
    cpu_busy_ns: int = 0
    cpu_total_ns: int = 0


@dataclass(frozen=True)
class NicInfo:
    """One guest network interface as its domain XML says: `kind` is libvirt's
    interface type (network, bridge, direct, hostdev, user, ...), `source` what it
    plugs into on the host (network name, bridge, host device)."""

    kind: str
    source: str
    mac: str

    @property
    def label(self) -> str:
        return f"{self.mac or '?'} ({self.kind} {self.source})".replace(" )", ")")


@dataclass(frozen=True)
class HostNetworks:
    """What a host offers guests' interfaces; None: the host cannot tell (its
    libvirtd has no network or interface driver)."""

    networks: dict[str, bool] | None  # libvirt network -> active
    interfaces: dict[str, str] | None  # host interface -> its type (bridge, ethernet, ...)


@dataclass(frozen=True)
class DomainInfo:
    name: str
    uuid: str
    state: DomainState
    persistent: bool
    memory_mib: int
    vcpus: int
    cpu_xml: str  # the <cpu> element the guest actually sees (live definition)
    disks: list[str] = field(default_factory=list)  # file paths, or "pool/image" for rbd
    disk_targets: dict[str, str] = field(default_factory=dict)  # disk -> vda, vdb, ...
    migrating: bool = False  # an incoming or outgoing migration job is active
    postcopy: PostcopyState = PostcopyState.NONE
    nics: tuple[NicInfo, ...] = ()

    @property
    def active(self) -> bool:
        return self.state in (DomainState.RUNNING, DomainState.PAUSED)


@dataclass(frozen=True)
class PageSample:
    """Guest pages read, spread over its RAM: how many, how many held anything but
    zeros, and the standard error of that share."""

    pages: int
    nonzero: int
    stderr: float
    # the non-zero share in each tenth of the RAM, in address order (empty: not known):
    # pre-copy's round 1 walks the RAM in that order, so its tail is what is left last
    profile: tuple[float, ...] = ()
    # the non-zero pages read, compressed as a compressed stream sends them: bytes out
    # per byte in (1.0: not known, or they do not compress)
    wire_share: float = 1.0


@dataclass(frozen=True)
class JobStats:
    """One reading of a migration job (libvirt job stats, units normalised)."""

    active: bool
    elapsed_ms: int = 0
    memory_total_bytes: int = 0
    memory_processed_bytes: int = 0
    memory_remaining_bytes: int = 0
    data_total_bytes: int = 0
    data_processed_bytes: int = 0
    data_remaining_bytes: int = 0
    disk_total_bytes: int = 0  # block migration (copied disks)
    disk_processed_bytes: int = 0
    dirty_rate_pages_s: int = 0
    page_size: int = 4096
    iteration: int = 0
    bandwidth_bytes_s: int = 0
    downtime_ms: int | None = None  # expected while running, actual when completed
    setup_ms: int | None = None
    throttle_pct: int = 0
    postcopy_requests: int = 0


@dataclass(frozen=True)
class CpuVerdict:
    """Whether a CPU definition runs on a host, and what the host lacks."""

    compatible: bool
    missing_features: list[str]
    message: str


@dataclass(frozen=True)
class MigrationOptions:
    """What the engine asks of one migration job."""

    dest_uri: str
    bandwidth_mib_s: int | None = None
    max_downtime_ms: int | None = None
    persist_dest: bool = True
    undefine_source: bool = True
    auto_converge: bool = False
    postcopy: bool = False
    copy_disks: tuple[str, ...] = ()  # targets (vdb, ...) to copy to the destination
    postcopy_resume: bool = False  # take up a post-copy migration that broke
    tls: bool = False  # encrypt the stream (memory, post-copy pages, disks) with TLS
    # zstd over parallel streams (QEMU multifd): fewer bytes on the link for pages that
    # compress; QEMU 10.0 refuses it with post-copy ("not yet compatible with multifd")
    compress: bool = False


@dataclass(frozen=True)
class PoolSpec:
    """A libvirt storage pool as Ferry defines it on a host.

    kind "dir": a directory (`path`); kind "rbd": a Ceph pool (`source`) reached
    through `monitors` ("host:port") as cephx `user` with the libvirt secret
    `secret_uuid`."""

    name: str
    kind: str
    path: str = ""
    source: str = ""
    monitors: tuple[str, ...] = ()
    user: str = ""
    secret_uuid: str = ""


@dataclass(frozen=True)
class PoolState:
    """A pool as one host's libvirt sees it now."""

    defined: bool
    active: bool = False
    capacity_bytes: int = 0
    available_bytes: int = 0
    matches: bool = True  # same type and target/source as Ferry's definition


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    path: str  # what a domain's <source> names: a file path, or "pool/image" for rbd
    capacity_bytes: int
    allocation_bytes: int
