"""Host, VM, Pool, Volume, Migration, Sample, Event: what the controller knows and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from ferry.domain.vocab import EventKind, Policy, WorkloadPattern


class HostState(StrEnum):
    UP = "up"
    UNREACHABLE = "unreachable"  # its daemon did not answer (refused, or not in time)
    MAINTENANCE = "maintenance"  # up, but takes no new VMs and no incoming migrations


class VmState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SHUTOFF = "shutoff"
    MIGRATING = "migrating"
    DELETING = "deleting"
    MISSING = "missing"  # defined in Ferry, found on no host
    SPLIT = "split"  # active on more than one host: needs an operator


class MigrationState(StrEnum):
    """A migration's life; only the transitions in TRANSITIONS happen.

    prechecking (in the request) -> queued (waiting for admission under the
    concurrency limits) -> running (plan, job, settle) -> completed | failed |
    cancelled; failed and cancelled can also end the earlier states."""

    PRECHECKING = "prechecking"
    QUEUED = "queued"
    RUNNING = "running"
    POSTCOPY_PAUSED = "postcopy-paused"  # post-copy broke: resumed when the link is back
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self not in UNFINISHED


UNFINISHED = (MigrationState.PRECHECKING, MigrationState.QUEUED, MigrationState.RUNNING,
              MigrationState.POSTCOPY_PAUSED)
TRANSITIONS: dict[MigrationState, frozenset[MigrationState]] = {
    MigrationState.PRECHECKING: frozenset({MigrationState.QUEUED, MigrationState.FAILED,
                                           MigrationState.CANCELLED}),
    MigrationState.QUEUED: frozenset({MigrationState.RUNNING, MigrationState.FAILED,
                                      MigrationState.CANCELLED}),
    MigrationState.RUNNING: frozenset({MigrationState.COMPLETED, MigrationState.FAILED,
                                       MigrationState.CANCELLED,
                                       MigrationState.POSTCOPY_PAUSED}),
    MigrationState.POSTCOPY_PAUSED: frozenset({MigrationState.RUNNING,
                                               MigrationState.COMPLETED,
                                               MigrationState.FAILED}),
}


def sources_of(state: MigrationState) -> list[MigrationState]:
    """The states a migration may reach `state` from.

    >>> [s.value for s in sources_of(MigrationState.RUNNING)]
    ['queued', 'postcopy-paused']
    """
    return [a for a, targets in TRANSITIONS.items() if state in targets]


@dataclass
class Host:
    name: str
    uri: str
    state: HostState
    virt_type: str
    cpu_model: str = ""
    cpu_vendor: str = ""
    cpus: int = 0
    cpu_models: list[str] = field(default_factory=list)
    memory_total_mib: int = 0
    memory_free_mib: int = 0
    error: str = ""
    updated_at: datetime | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. pools it could not define
    maintenance: bool = False  # set by a drain; `ferry host activate` ends it
    migration_tls: bool = False  # registered with QEMU migration certificates
    # libvirt networks (name -> active) and host interfaces (name -> type) guests can
    # use, as last read; None: not read, or the host cannot tell
    networks: dict[str, bool] | None = None
    interfaces: dict[str, str] | None = None
    cpu_busy: float | None = None  # its CPUs' busy share between the last two reads


@dataclass
class Vm:
    name: str
    host: str | None
    state: VmState
    memory_mib: int
    vcpus: int
    cpu_model: str = ""
    cpu_xml: str = ""
    disks: list[str] = field(default_factory=list)
    cpu_blocked: dict[str, list[str]] = field(default_factory=dict)
    mobility: str = "full"
    workload_dirty_mib_s: int = 0
    workload_wss_mib: int = 0
    workload_pattern: WorkloadPattern = WorkloadPattern.UNIFORM
    managed: bool = True  # created by Ferry (False: found on a host)
    updated_at: datetime | None = None
    uuid: str | None = None  # libvirt's: what its history is kept by
    nics: list[dict[str, str]] = field(default_factory=list)  # kind, source, mac
    address: str = ""  # the address the lab gave its NIC (ADDR/PREFIX)


class PoolKind(StrEnum):
    DIR_SHARED = "dir-shared"  # one directory every host mounts (NFS, CephFS)
    LOCAL = "local"  # a directory of each host's own: disks move by block migration
    RBD = "rbd"  # a Ceph RBD pool


@dataclass
class Pool:
    name: str
    kind: PoolKind
    path: str = ""
    hosts: list[str] = field(default_factory=list)  # [] = every host
    monitors: list[str] = field(default_factory=list)
    rbd_pool: str = ""
    user: str = ""
    secret_uuid: str = ""
    has_key: bool = False
    created_at: datetime | None = None

    @property
    def shared(self) -> bool:
        return self.kind != PoolKind.LOCAL


@dataclass
class Volume:
    name: str
    pool: str
    capacity_bytes: int
    path: str
    host: str | None = None  # local pools: the host that holds it
    vm: str | None = None
    target: str = ""  # the VM's device (vda, vdb, ...)
    created_at: datetime | None = None


@dataclass
class Sample:
    """One progress reading of a running migration."""

    t_ms: int
    iteration: int
    memory_total_bytes: int
    memory_processed_bytes: int
    memory_remaining_bytes: int
    dirty_rate_bytes_s: int
    bandwidth_bytes_s: int
    expected_downtime_ms: int | None = None
    throttle_pct: int = 0


@dataclass
class Event:
    at: datetime
    kind: EventKind
    message: str


@dataclass
class Migration:
    id: int
    vm: str
    source: str
    destination: str
    state: MigrationState
    bandwidth_mib_s: int | None = None
    max_downtime_ms: int | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    total_ms: int | None = None
    downtime_ms: int | None = None
    transferred_bytes: int | None = None  # memory + copied disks
    disk_bytes: int | None = None  # of which copied disks (block migration)
    rounds: int | None = None
    setup_ms: int | None = None  # a staged job's set-up, overlapped (not in total_ms)
    wall_ms: int | None = None  # request to final verdict, as Ferry saw it
    error: str = ""
    policy: Policy = Policy.PRECOPY
    encrypted: bool | None = None  # the stream went over TLS (None: no job started)
    compressed: bool | None = None  # the stream went through zstd (None: no job started)
    predicted_converges: bool | None = None
    predicted_total_ms: int | None = None
    predicted_downtime_ms: int | None = None
    events: list[Event] = field(default_factory=list)

    @property
    def off_link(self) -> bool:
        """Its job no longer uses the link: ended, or the source has sent all memory
        (`sent`: libvirt is finishing).  A sample saying nothing remains is not this:
        every pre-copy round ends so, before the bitmap sync adds what was dirtied."""
        return self.state.finished or any(e.kind == EventKind.SENT for e in self.events)
