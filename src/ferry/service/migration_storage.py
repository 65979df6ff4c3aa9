"""The storage side of a migration: decide per disk before, tidy up after.

Before: `storage_planner` gives the precheck a function that decides, for the
VM's disks, which are shared with the destination and which are copied.
After: copied (local) disks exist twice; the copy on the host where the VM no
longer runs is deleted, and Ferry's record follows the VM.  A copy is only
ever deleted on the host the guest is not running on.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import select

from ferry.db.models import VolumeRow
from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.libvirt_driver import LibvirtHost
from ferry.hypervisor.types import DomainInfo
from ferry.migration.outcome import Verdict
from ferry.service.controller import Controller
from ferry.service.pools import list_pools, pool_key
from ferry.service.volumes import list_volumes
from ferry.storage.sharing import StoragePlan, plan_storage


def storage_planner(ctx: Controller, source: LibvirtHost, destination: LibvirtHost,
                    source_name: str, destination_name: str,
                    ) -> Callable[[DomainInfo], StoragePlan]:
    def plan(dom: DomainInfo) -> StoragePlan:
        return plan_storage(dom.disk_targets, list_pools(ctx), list_volumes(ctx),
                            source=source, destination=destination, source_name=source_name,
                            destination_name=destination_name,
                            key_of=lambda name: pool_key(ctx, name))
    return plan


def after_job(ctx: Controller, plan: StoragePlan, verdict: Verdict, source: LibvirtHost,
              destination: LibvirtHost, destination_name: str,
              event: Callable[[str, str], None]) -> None:
    """Delete the copy the guest does not use; record where local volumes are now."""
    copied = [d for d in plan.disks if d.copy]
    if not copied:
        return
    if verdict == Verdict.COMPLETED:
        stale, where = source, "source"
    elif verdict == Verdict.FAILED:
        stale, where = destination, "destination"
    else:  # split or unknown: an operator decides; never delete a disk then
        event("storage", "left both copies of the copied disks: the outcome is unclear")
        return
    for d in copied:
        try:
            if stale.delete_volume(d.pool, d.volume):
                event("storage", f"deleted the {where}'s copy of {d.pool}/{d.volume}")
        except HypervisorError as exc:
            event("storage_cleanup_failed", f"{where} copy of {d.pool}/{d.volume}: {exc}")
        if verdict == Verdict.COMPLETED:
            with ctx.session() as s:
                row = s.scalar(select(VolumeRow).where(VolumeRow.pool == d.pool,
                                                       VolumeRow.name == d.volume))
                if row is not None:
                    row.host = destination_name
