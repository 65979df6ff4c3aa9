"""What the pipeline is handed and what it reaches through: a migration's request and
claim, what a drain adds to one move (`Hooks`), the settings every migration runs
under (`Timeouts`), a migration an earlier process left (`Unfinished`), and the
port to the database the service implements (`MigrationRecords`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from ferry.domain.models import MigrationState
from ferry.domain.vocab import OnTimeout, Policy
from ferry.hypervisor.types import MigrationOptions
from ferry.migration.copies import CopiedVolume
from ferry.migration.figures import Final
from ferry.migration.policies import PolicyConfig
from ferry.migration.settling import Recorder
from ferry.predict.inputs import History, Measurement
from ferry.predict.precopy import Prediction
from ferry.storage.sharing import StorageCatalog


@dataclass(frozen=True)
class HostRef:
    name: str
    uri: str
    virt_type: str
    up: bool = True
    maintenance: bool = False
    migration_tls: bool = False  # registered with QEMU migration certificates


@dataclass(frozen=True)
class Request:
    vm: str
    destination: str
    policy: Policy = Policy.AUTO
    bandwidth_mib_s: int | None = None
    max_downtime_ms: int | None = None
    timeout_per_gib_s: float | None = None
    on_timeout: OnTimeout = OnTimeout.ABORT
    link_mib_s: float | None = None  # the link as the operator gave it (a drain's --link)
    tls: bool | None = None  # None: encrypted where both hosts can; False: in clear
    compress: bool | None = None  # None: where it pays (planning.compressed_inputs)


@dataclass(frozen=True)
class Hooks:
    """What a caller running many moves (a drain) adds to one, in this process only:
    `may_transfer` says whether the job may transfer now (its link is free): if not,
    the job is staged (started slowly, at full speed once it may); `measured` is a
    recent measurement of the guest to plan with instead of measuring again;
    `ended` hears that the migration has its final state (the drain starts the
    next move at once, not at its next look); `sent`, that the source has sent
    everything (libvirt finishes: the link and the admission slot are free)."""

    may_transfer: Callable[[], bool] | None = None
    measured: Measurement | None = None
    measured_age_s: float = 0.0
    ended: Callable[[], None] | None = None
    sent: Callable[[], None] | None = None


@dataclass(frozen=True)
class Claim:
    """A migration the service has recorded (queued), with the VM locked for it."""

    id: int
    request: Request
    memory_mib: int
    source: HostRef
    destination: HostRef


@dataclass(frozen=True)
class Unfinished:
    """A migration an earlier controller process left queued, prechecking or running."""

    id: int
    vm: str
    memory_mib: int
    state: MigrationState  # prechecking or running
    source: HostRef | None  # None: no longer registered
    destination: HostRef | None
    started_at: datetime | None
    timeout_s: float | None  # as planned (older rows: unknown)
    copies: list[CopiedVolume] = field(default_factory=list)
    policy: PolicyConfig | None = None  # as planned, resumed (older rows: the timeout only)
    options: MigrationOptions | None = None  # the job's, to resume a broken post-copy
    staged: bool = False  # a drain's job still at its trickle: released once followed


@dataclass(frozen=True)
class Timeouts:
    """How long things may take, whether a broken post-copy is resumed unasked, and
    whether a stream may be compressed (`planning.compressed_inputs`)."""

    per_gib_s: float = 300.0
    min_s: float = 30.0
    postcopy_auto_resume: bool = False
    compress: bool = True


class MigrationRecords(Protocol):
    """What the pipeline stores and reads; the service implements it on its database."""

    def recorder(self, mid: int) -> Recorder: ...

    def record_plan(self, mid: int, timeout_s: float, policy: PolicyConfig,
                    options: MigrationOptions, copies: list[CopiedVolume]) -> None: ...

    def transition(self, mid: int, to: MigrationState, **fields: object) -> bool: ...

    def incoming_mib(self, destination: str, excluding: int) -> int: ...

    def store_prediction(self, mid: int, prediction: Prediction, m: Measurement) -> None: ...

    def finish(self, mid: int, final: Final) -> bool: ...

    def storage_catalog(self) -> StorageCatalog: ...

    def history(self, vm: str, source: str, destination: str, *,
                encrypted: bool | None = None) -> History: ...

    def volumes_moved(self, moved: list[CopiedVolume], host: str) -> None: ...
