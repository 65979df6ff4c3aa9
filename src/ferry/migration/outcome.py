"""Deciding where a VM really is after (or during) a migration — pure.

Asked after every job and when the controller restarts: the two hosts'
views of the domain decide the outcome, never the job's return value alone.

| source          | destination      | verdict      | cleanup                      |
|-----------------|------------------|--------------|------------------------------|
| job running     | any              | in_progress  | —                            |
| absent/inactive | running          | completed    | undefine source leftovers    |
| running         | absent           | failed       | —                            |
| running         | paused/inactive  | failed       | destroy + undefine dest      |
| paused          | absent/inactive  | failed       | resume source (+ clean dest) |
| running/paused  | running          | split        | none: an operator decides    |
| absent          | absent/inactive  | lost         | —                            |
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ferry.hypervisor.types import DomainInfo, DomainState


class Verdict(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SPLIT = "split"
    LOST = "lost"


@dataclass(frozen=True)
class Resolution:
    verdict: Verdict
    clean_destination: bool = False
    clean_source: bool = False
    resume_source: bool = False
    reason: str = ""


def resolve(src: DomainInfo | None, dst: DomainInfo | None) -> Resolution:
    """Where the guest is, given each host's view (None: not defined there)."""
    src_active = src is not None and src.active
    dst_running = dst is not None and dst.state == DomainState.RUNNING
    if src is not None and src.migrating:
        return Resolution(Verdict.IN_PROGRESS, reason="the source still has a migration job")
    if dst_running and src_active:
        return Resolution(Verdict.SPLIT, reason="the VM is active on both hosts")
    if dst_running:
        return Resolution(Verdict.COMPLETED, clean_source=src is not None,
                          reason="the VM runs on the destination only")
    if src_active:
        assert src is not None
        return Resolution(Verdict.FAILED, clean_destination=dst is not None,
                          resume_source=src.state == DomainState.PAUSED,
                          reason="the VM still runs on the source")
    return Resolution(Verdict.LOST, reason="the VM runs on neither host")
