"""After a block migration: a copied disk exists on both hosts; delete the one the
guest does not use.  Never when the outcome is unclear: then an operator decides."""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry.domain.vocab import EventKind
from ferry.hypervisor.base import StorageOps
from ferry.hypervisor.errors import HypervisorError
from ferry.migration.outcome import Verdict


@dataclass(frozen=True)
class CopiedVolume:
    pool: str
    volume: str


@dataclass
class Tidied:
    events: list[tuple[EventKind, str]] = field(default_factory=list)
    moved: list[CopiedVolume] = field(default_factory=list)  # now on the destination


def tidy_copies(copies: list[CopiedVolume], verdict: Verdict, source: StorageOps,
                destination: StorageOps) -> Tidied:
    """Delete the source's copies after success, the destination's after a failure."""
    out = Tidied()
    if not copies:
        return out
    if verdict == Verdict.COMPLETED:
        stale, where = source, "source"
    elif verdict == Verdict.FAILED:
        stale, where = destination, "destination"
    else:  # split, lost or unknown: never delete a disk then
        out.events.append((EventKind.STORAGE, "left both copies of the copied disks: the "
                                              "outcome is unclear"))
        return out
    for c in copies:
        try:
            if stale.delete_volume(c.pool, c.volume):
                out.events.append((EventKind.STORAGE, f"deleted the {where}'s copy of "
                                                      f"{c.pool}/{c.volume}"))
        except HypervisorError as exc:
            out.events.append((EventKind.STORAGE_CLEANUP_FAILED,
                               f"{where} copy of {c.pool}/{c.volume}: {exc}"))
        if verdict == Verdict.COMPLETED:
            out.moved.append(c)
    return out
