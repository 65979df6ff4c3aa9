"""Prechecks: everything that must hold before any byte is transferred.

Each check raises MigrationRefused with a reason code and details, so the API
can answer precisely and the CLI can print what to fix.  The CPU check
compares the guest's own CPU definition (what the guest sees) with the
destination's hypervisor — never the source host with the destination host.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.errors import MigrationRefused
from ferry.hypervisor.base import Hypervisor
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import QEMU_OVERHEAD_MIB, DomainInfo, HostInfo
from ferry.network.check import check_nics, problems
from ferry.storage.sharing import StorageCatalog, StorageCheck, check_storage


@dataclass(frozen=True)
class PrecheckResult:
    domain: DomainInfo
    destination: HostInfo
    checks: list[str]
    storage: StorageCheck


def run_prechecks(vm: str, source: Hypervisor, destination: Hypervisor, *, source_name: str,
                  destination_name: str, dest_virt_type: str,
                  catalog: StorageCatalog, reserved_mib: int = 0) -> PrecheckResult:
    """Every check in order; the first that fails raises MigrationRefused.  A host
    that does not answer raises HostUnreachable (the caller decides what that means)."""
    checks: list[str] = []
    dom = source.find_domain(vm)
    if dom is None or not dom.active:
        raise MigrationRefused("vm_not_running", f"VM {vm} is not running on the source host")
    if dom.migrating:
        raise MigrationRefused("vm_busy", f"VM {vm} already has a job on its host")
    checks.append("vm runs on the source")

    try:
        dest = destination.info()
    except HypervisorError as exc:
        raise MigrationRefused("destination_unreachable",
                               f"destination host unreachable: {exc}") from exc
    if destination.find_domain(vm) is not None:
        raise MigrationRefused("name_taken",
                               f"a domain named {vm} already exists on the destination")
    checks.append("destination up, name free")

    # memory promised to migrations already coming in counts as used
    need = dom.memory_mib + QEMU_OVERHEAD_MIB
    free = dest.memory_free_mib - reserved_mib
    if free < need:
        held = f" ({reserved_mib} MiB held for incoming migrations)" if reserved_mib else ""
        raise MigrationRefused(
            "insufficient_memory",
            f"destination has {free} MiB free{held}, VM needs {need} MiB",
            {"free_mib": free, "reserved_mib": reserved_mib, "needed_mib": need})
    checks.append(f"memory: {free} MiB free >= {need} MiB"
                  + (f" ({reserved_mib} MiB held for incoming)" if reserved_mib else ""))

    if dom.cpu_xml:
        check_cpu(dom.cpu_xml, destination, dest_virt_type)
        checks.append("guest CPU accepted by the destination")

    if dom.nics:
        checks.extend(check_networks(dom, destination))

    storage = check_storage(dom.disk_targets, catalog, source=source, destination=destination,
                            source_name=source_name,
                            destination_name=destination_name)  # raises, per disk
    checks.extend(f"{d.target} ({d.pool}/{d.volume}): "
                  f"{'copy' if d.copy else 'shared'}: {d.reason}" for d in storage.disks)
    checks.extend(f"repaired: {r}" for r in storage.repairs)
    return PrecheckResult(dom, dest, checks, storage)


def stream_tls(source: str, source_tls: bool, destination: str, destination_tls: bool,
               requested: bool | None) -> bool:
    """Whether the migration stream is encrypted: by default when both hosts were
    registered with migration certificates; in clear only when asked (`--no-tls`)
    if either was; `--tls` between hosts that cannot is refused.

    >>> stream_tls("a", True, "b", True, None), stream_tls("a", True, "b", True, False)
    (True, False)
    """
    if requested is False:
        return False
    if source_tls and destination_tls:
        return True
    lacking = [h for h, ok in ((source, source_tls), (destination, destination_tls)) if not ok]
    if requested or len(lacking) == 1:
        raise MigrationRefused(
            "tls_unavailable",
            f"{' and '.join(lacking)} {'has' if len(lacking) == 1 else 'have'} no migration "
            "certificates registered: the stream cannot be encrypted"
            + ("" if requested else " (`--no-tls` moves the guest's memory in clear)"),
            {"without_tls": lacking})
    return False


def check_networks(dom: DomainInfo, destination: Hypervisor) -> list[str]:
    """Refuse unless the destination can plug in every interface of the guest (its
    network active, its bridge or device present); returns what was checked."""
    verdicts = check_nics(dom.nics, destination.host_networks())
    missing = problems(verdicts)
    if missing:
        raise MigrationRefused(
            "network_missing",
            "the destination cannot plug in the guest's network: " + "; ".join(missing),
            {"interfaces": [{"mac": v.nic.mac, "type": v.nic.kind, "source": v.nic.source,
                             "problem": v.problem} for v in verdicts if v.problem]})
    return [f"interface {v.nic.label}: "
            + (f"not verified ({v.unverified})" if v.unverified else "present")
            for v in verdicts]


def check_cpu(guest_cpu_xml: str, destination: Hypervisor, dest_virt_type: str) -> None:
    """Refuse unless the destination's hypervisor can give the guest exactly the CPU
    it has now (its live <cpu> definition); the refusal names the missing features."""
    verdict = destination.compare_cpu(guest_cpu_xml, dest_virt_type)
    if not verdict.compatible:
        feats = ", ".join(verdict.missing_features) or "see message"
        raise MigrationRefused(
            "cpu_incompatible",
            f"the guest's CPU cannot run on the destination (missing: {feats})",
            {"missing_features": verdict.missing_features, "libvirt": verdict.message})
