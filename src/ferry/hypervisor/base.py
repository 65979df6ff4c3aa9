"""What Ferry needs from a hypervisor host, as a typed interface.

Two drivers implement it: `LibvirtHost` (libvirt_driver.py, the real one,
reached by URI) and the in-memory hosts of `ferry.simulated` (fast tests and
large-scale simulation).  Everything above this package is typed against
`Hypervisor` and receives hosts from a `Connector`; it never names a driver.

Callers may rely on:
- records from `types.py` and errors from `errors.py` only (no driver types);
- `HostUnreachable` when the host's daemon cannot be reached, `DomainNotFound`
  for a missing domain, `HypervisorError` for anything else the host refused;
- a migration job runs on its own once started: its handle only waits for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ferry.hypervisor.errors import MigrationJobError
from ferry.hypervisor.types import (
    CpuVerdict,
    DomainInfo,
    HostInfo,
    HostNetworks,
    JobStats,
    MigrationOptions,
    PageSample,
    PoolSpec,
    PoolState,
    VolumeInfo,
)


class MigrationJob(Protocol):
    """A migration job started on the source host."""

    def wait(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for the job to end; True once it has ended."""
        ...

    @property
    def error(self) -> MigrationJobError | None:
        """Why the job failed (None while running and after success)."""
        ...

    def when_stopped(self, fn: Callable[[], None]) -> None:
        """Call `fn` once the source guest stops for pre-copy's switchover (its last
        pages: libvirt's suspended-for-migration event), from whichever thread
        hears it; at once if it already has."""
        ...


class HostOps(Protocol):
    uri: str

    def close(self) -> None: ...

    def info(self) -> HostInfo: ...

    def host_cpu_xml(self) -> str:
        """The host CPU as `virsh capabilities` shows it (a <cpu> element)."""
        ...

    def host_model_cpu_xml(self, virt_type: str) -> str:
        """The host-model CPU the hypervisor offers for `virt_type`, as a custom <cpu>."""
        ...

    def usable_models(self, virt_type: str) -> list[str]: ...

    def baseline_cpu(self, cpu_xmls: list[str], virt_type: str, *,
                     expand: bool = False) -> str:
        """The newest CPU every one of `cpu_xmls` can run (libvirt's baselineHypervisorCPU)."""
        ...

    def compare_cpu(self, cpu_xml: str, virt_type: str) -> CpuVerdict:
        """Can this host run a guest with exactly this CPU?  Lists what it lacks."""
        ...

    def host_networks(self) -> HostNetworks:
        """The libvirt networks (active or not) and host interfaces guests can use."""
        ...


class DomainOps(Protocol):
    def list_domains(self) -> list[DomainInfo]: ...

    def domain(self, name: str) -> DomainInfo: ...

    def find_domain(self, name: str) -> DomainInfo | None: ...

    def define_and_start(self, xml: str) -> DomainInfo: ...

    def destroy(self, name: str) -> None:
        """Power off now; a domain already off is fine."""
        ...

    def resume(self, name: str) -> None: ...

    def undefine(self, name: str) -> None: ...


class MigrationOps(Protocol):
    def start_migration(self, name: str, opts: MigrationOptions) -> MigrationJob:
        """Start a peer-to-peer live migration of `name` to `opts.dest_uri`."""
        ...

    def job_stats(self, name: str) -> JobStats: ...

    def completed_job_stats(self, name: str) -> JobStats | None:
        """The figures of the last completed job, if the host still has them."""
        ...

    def abort_job(self, name: str) -> None: ...

    def set_max_downtime(self, name: str, downtime_ms: int) -> None: ...

    def set_bandwidth(self, name: str, mib_s: int, *, postcopy: bool = False) -> None:
        """Cap the running job's pre-copy (or, with `postcopy`, its post-copy) rate."""
        ...

    def start_postcopy(self, name: str) -> None:
        """Switch a job started with `postcopy=True` to post-copy now."""
        ...

    def pause_postcopy(self, name: str) -> None:
        """Interrupt a post-copy whose connection hangs, so that it can be resumed."""
        ...


class MeasureOps(Protocol):
    def dirty_rate_mib_s(self, name: str, window_ms: int, sample_pages: int = 4096) -> float:
        """How fast the guest dirties memory, sampled over one window (blocks that long)."""
        ...

    def vcpu_time_ns(self, name: str) -> int:
        """CPU time the guest's vCPUs have used, per vCPU."""
        ...

    def vcpu_wait_ns(self, name: str) -> int:
        """Time the guest's vCPUs were ready to run but waited for a host CPU, per
        vCPU (0 where the host does not say)."""
        ...

    def resident_mib(self, name: str) -> int:
        """Resident memory of the guest's QEMU process."""
        ...

    def sample_pages(self, name: str, pages: int, budget_s: float) -> PageSample:
        """Read guest pages spread over its RAM (at most `pages`, for at most `budget_s`) and count
        those that are not zero."""
        ...


class StorageOps(Protocol):
    def pool_state(self, spec: PoolSpec) -> PoolState: ...

    def ensure_pool(self, spec: PoolSpec) -> bool:
        """Define (if missing) and start the pool; True if it was defined now."""
        ...

    def remove_pool(self, name: str) -> None: ...

    def volume(self, pool: str, name: str) -> VolumeInfo | None: ...

    def create_volume(self, pool: str, name: str, capacity_bytes: int,
                      clone_of: str | None = None) -> str:
        """Create a raw volume; return its path as domains name it."""
        ...

    def delete_volume(self, pool: str, name: str) -> bool:
        """Delete the volume; False if it was not there."""
        ...

    def secret_present(self, secret_uuid: str) -> bool: ...

    def ensure_ceph_secret(self, secret_uuid: str, user: str, key_b64: str) -> None: ...

    def remove_secret(self, secret_uuid: str) -> None: ...


class Hypervisor(HostOps, DomainOps, MigrationOps, MeasureOps, StorageOps, Protocol):
    """One hypervisor host: everything Ferry asks of it."""


Connector = Callable[[str], Hypervisor]
"""Opens a host by URI (the object graph gets one: libvirt's, or a simulated cluster's)."""
