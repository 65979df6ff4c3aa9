"""Measuring a guest just before it moves: its dirty-page curve and CPU use.

Dirtying saturates at the guest's writable working set, so one rate would
mispredict: QEMU page sampling over several windows gives points of the
curve that `predict.dirty.fit` turns into a rate and a working set.  The
vCPU time over the same span says whether the dirtying is CPU-bound (only
then can auto-converge's throttling slow it).  Random guest pages read say
how much of its memory is not zero (what round 1 will really send).
"""

from __future__ import annotations

from ferry.clock import Clock
from ferry.errors import Unavailable
from ferry.hypervisor.base import MeasureOps
from ferry.hypervisor.errors import HypervisorError
from ferry.predict.dirty import MIB, fit
from ferry.predict.inputs import Measurement

FULL_WINDOWS_MS = (250, 500, 1000, 2000)  # `ferry predict`: about 4 s
QUICK_WINDOWS_MS = (250, 750)  # before a migration: about 1 s
SAMPLE_PAGES = 2048  # guest pages read for the non-zero share (128 reads of 16)...
SAMPLE_BUDGET_S = 1.0  # ...or as many as this allows (~100 reads on the lab)


def measure(host: MeasureOps, vm: str, memory_mib: int, clock: Clock,
            windows_ms: tuple[int, ...] = FULL_WINDOWS_MS) -> Measurement:
    try:
        cpu0, t0 = host.vcpu_time_ns(vm), clock.monotonic()
        points = [(ms / 1000, host.dirty_rate_mib_s(vm, ms) * MIB * ms / 1000)
                  for ms in windows_ms]
        busy = (host.vcpu_time_ns(vm) - cpu0) / 1e9 / max(clock.monotonic() - t0, 1e-3)
        rss = host.resident_mib(vm)
    except HypervisorError as exc:
        raise Unavailable(f"cannot measure {vm}: {exc}") from exc
    try:
        pages = host.sample_pages(vm, SAMPLE_PAGES, SAMPLE_BUDGET_S)
        read, nonzero, err = pages.pages, pages.nonzero, pages.stderr
    except HypervisorError:  # no page reading here: the resident memory bounds it
        read, nonzero, err = 0, 0, 1.0
    return Measurement(points, fit(points, memory_mib * MIB), rss, min(busy, 1.0),
                       read, nonzero, err)
