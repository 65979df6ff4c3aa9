"""Request bodies.  Responses are the domain dataclasses, serialised by FastAPI.

Closed vocabularies are enums, so OpenAPI lists the allowed values and a
value outside them is answered 422 before any use case runs.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ferry.domain.models import PoolKind
from ferry.domain.vocab import OnTimeout, Policy, VirtType, WorkloadPattern


class Body(BaseModel):
    """Every request body: an unknown field (a typo such as `max_downtime`) or a
    NaN/Infinity is refused, never silently dropped or passed on."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class HostCreate(Body):
    name: str
    uri: str
    virt_type: VirtType = VirtType.AUTO
    migration_tls: bool = False  # it has QEMU migration certificates


class DiskRequest(Body):
    pool: str
    size_gib: float


class PoolCreate(Body):
    name: str
    kind: PoolKind
    path: str = ""
    hosts: list[str] = Field(default_factory=list)  # empty: every host
    monitors: list[str] = Field(default_factory=list)
    rbd_pool: str = ""
    user: str = ""
    key: str = Field("", repr=False)  # cephx key; stored, never returned


class VolumeCreate(Body):
    name: str
    size_gib: float | None = None
    host: str | None = None  # local pools: which host's directory
    from_volume: str | None = None  # copy of a volume of the same pool (an image)


class VmCreate(Body):
    name: str
    host: str
    memory_mib: int = Field(256)
    vcpus: int = 1
    workload_dirty_mib_s: int = 0
    workload_wss_mib: int | None = None
    workload_pattern: WorkloadPattern = WorkloadPattern.UNIFORM
    wait: bool = True
    boot_pool: str | None = None  # default: the controller's boot_pool setting
    disks: list[DiskRequest] = Field(default_factory=list)  # data disks (vdb, vdc, ...)
    workload_fill: bool = False  # the guest first fills its data disks with records
    network: str | None = None  # NAME, bridge:BR or none; default the controller's


class MigrationCreate(Body):
    vm: str
    to: str | None = None  # none, or "h2,h3": placement chooses (among those)
    bandwidth_mib_s: int | None = None
    max_downtime_ms: int | None = None
    policy: Policy = Policy.AUTO
    timeout_per_gib_s: float | None = None
    on_timeout: OnTimeout = OnTimeout.ABORT
    tls: bool | None = None  # None: encrypted where both hosts can; False: in clear
    compress: bool | None = None  # None: where it pays; True: wherever it can; False: never


class CpuModeSet(Body):
    mode: str  # baseline | host-model | host-passthrough | custom:MODEL[+f,...]


class CpuPolicySet(Body):
    """The older name of CpuModeSet (`PUT /cpu/policy`), kept for existing scripts."""

    policy: str


class DrainCreate(Body):
    to: list[str] = Field(default_factory=list)  # empty: any host placement accepts
    max_parallel: int = 2
    link_mib_s: float | None = None  # the host's link, when no migration measured it
    max_downtime_ms: int | None = None
    dry_run: bool = False
    tls: bool | None = None  # None: encrypted where both hosts can; False: in clear
    compress: bool | None = None  # None: where it pays; True: wherever it can; False: never


class HostActivate(Body):
    back: bool = False  # move the VMs the last drain moved away back here
    max_parallel: int = 2
