"""A job's result as the final record of its migration (pure).

libvirt's completed-job statistics give the figures when it kept them; after
post-copy it keeps none, and the figures come from the last sample instead,
on libvirt's clock like every other total.  A drain's staged job (started
slowly while its link was busy) counts its time from its release.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferry.domain.models import MigrationState
from ferry.domain.vocab import EventKind
from ferry.migration.outcome import Verdict
from ferry.migration.settling import JobResult
from ferry.migration.watch import SAMPLE_INTERVAL_S

NO_STATS = ("libvirt kept no completed-job statistics (as after post-copy): total is "
            "libvirt's elapsed time at the last reading plus one sampling interval (on "
            "libvirt's clock, like every other total), bytes and rounds from that reading, "
            "downtime unknown (see the guest's heartbeat gap in the lab)")


@dataclass(frozen=True)
class Final:
    """How a migration ended: its state, and figures when it completed."""

    state: MigrationState
    error: str = ""
    total_ms: int | None = None
    downtime_ms: int | None = None
    transferred_bytes: int | None = None  # memory + copied disks
    disk_bytes: int | None = None
    rounds: int | None = None
    setup_ms: int | None = None  # a staged job's set-up (history of set-ups)
    note: tuple[EventKind, str] | None = None  # an event to record with it


def final_of(result: JobResult) -> Final:
    verdict = result.resolution.verdict
    if verdict == Verdict.COMPLETED:
        st = result.stats
        if st is not None:
            disk = st.disk_processed_bytes or result.disk_bytes
            memory = st.data_processed_bytes - st.disk_processed_bytes
            return Final(MigrationState.COMPLETED, total_ms=st.elapsed_ms - result.staged_ms,
                         downtime_ms=st.downtime_ms, transferred_bytes=memory + disk,
                         disk_bytes=disk, rounds=st.iteration, setup_ms=result.setup_ms)
        last = result.last_sample
        total = (last.t_ms + round(SAMPLE_INTERVAL_S * 1000) if last and last.t_ms
                 else result.job_ms)
        return Final(MigrationState.COMPLETED, total_ms=total,
                     transferred_bytes=(last.memory_processed_bytes + result.disk_bytes
                                        if last else None),
                     disk_bytes=result.disk_bytes, rounds=last.iteration if last else None,
                     setup_ms=result.setup_ms,
                     note=(EventKind.FIGURES, NO_STATS))
    if result.cancelled and verdict == Verdict.FAILED:
        return Final(MigrationState.CANCELLED, error="cancelled; the VM runs on the source")
    why = "timed out; " if result.timed_out else ""
    return Final(MigrationState.FAILED,
                 error=f"{why}{result.error or result.resolution.reason} "
                       f"({verdict}: {result.resolution.reason})")
