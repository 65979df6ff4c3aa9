"""Deciding where a VM really is after (or during) a migration — pure.

Asked after every job and when the controller restarts: the two hosts'
views of the domain decide the outcome, never the job's return value alone.
A p2p migration passes through states that look like outcomes but are not:
the destination resumes the guest before the source's confirm phase stops
it (both active for a moment), and a paused destination is resumed a moment
after the source goes away.  Those are `transitional`: wait and ask again.

| source          | destination      | verdict      | cleanup                      |
|-----------------|------------------|--------------|------------------------------|
| in post-copy    | absent           | lost         | none: its memory is stale    |
| post-copy failed (either side)     | postcopy_paused | none: resume the post-copy |
| job running     | any              | in_progress  | — (transitional)             |
| paused          | present          | in_progress  | — (transitional)             |
| absent/inactive | paused           | in_progress  | — (transitional)             |
| absent/inactive | running          | completed    | undefine source leftovers    |
| running         | absent           | failed       | —                            |
| running         | paused/inactive  | failed       | destroy + undefine dest      |
| paused          | absent           | failed       | resume source                |
| running         | running          | split        | none: an operator decides    |
| absent/inactive | absent/inactive  | lost         | —                            |
| no answer       | any              | unknown      | none (settling.settle: asked |
| any             | no answer        | unknown      | again until its deadline)    |

`settled` applies this table once the state is no longer transitional (or a
deadline passed): then a paused source with a paused destination is `split`
(nobody can tell which copy is newest), never cleaned automatically.  After
the switch to post-copy the source is never resumed: the guest's newest
memory is on the destination.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from ferry.hypervisor.types import DomainInfo, DomainState, PostcopyState


class Verdict(StrEnum):
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"
    SPLIT = "split"
    LOST = "lost"
    UNKNOWN = "unknown"  # a host did not answer
    POSTCOPY_PAUSED = "postcopy_paused"  # post-copy broke: take it up again (RESUME)


@dataclass(frozen=True)
class Resolution:
    verdict: Verdict
    clean_destination: bool = False
    clean_source: bool = False
    resume_source: bool = False
    reason: str = ""


def resolve(src: DomainInfo | None, dst: DomainInfo | None, *, deadline_passed: bool = False
            ) -> Resolution:
    """Where the guest is, given each host's view (None: not defined there)."""
    src_active = src is not None and src.active
    src_paused = src is not None and src.state == DomainState.PAUSED
    dst_running = dst is not None and dst.state == DomainState.RUNNING
    dst_paused = dst is not None and dst.state == DomainState.PAUSED
    failed = PostcopyState.FAILED
    if src is not None and src.postcopy != PostcopyState.NONE and dst is None:
        return Resolution(Verdict.LOST, reason="the destination is gone after the switch to "
                          "post-copy: the source's memory is stale and is not resumed")
    if (src is not None and src.postcopy == failed) or (dst is not None and
                                                        dst.postcopy == failed):
        return Resolution(Verdict.POSTCOPY_PAUSED, reason="post-copy broke after the switch: "
                          "the guest's memory is split between the hosts until it is resumed")
    if src is not None and src.migrating:
        return Resolution(Verdict.IN_PROGRESS, reason="the source still has a migration job")
    if not deadline_passed:
        if src_paused and dst is not None:
            return Resolution(Verdict.IN_PROGRESS, reason="handover: source paused, "
                                                         "destination present")
        if not src_active and dst_paused:
            return Resolution(Verdict.IN_PROGRESS, reason="destination not resumed yet")
    if src_active and (dst_running or (src_paused and dst_paused)):
        return Resolution(Verdict.SPLIT, reason="the VM is active on both hosts")
    if dst_running:
        return Resolution(Verdict.COMPLETED, clean_source=src is not None,
                          reason="the VM runs on the destination only")
    if src_active:
        return Resolution(Verdict.FAILED, clean_destination=dst is not None,
                          resume_source=src_paused, reason="the VM still runs on the source")
    return Resolution(Verdict.LOST, reason="the VM runs on neither host")
