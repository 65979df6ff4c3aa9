"""From what was measured and what history taught to the model's inputs (pure).

A prediction needs four things the model cannot know by itself: the guest's
dirty-page curve and how CPU-bound it is (measured on the guest just before),
the bytes round 1 must really send (zero pages cost almost nothing), the
link's speed, and how long a job runs before its first byte moves.  The last
three come from earlier migrations when there are any (`History`), else from
the guest's resident memory and stated assumptions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from ferry.hypervisor.types import QEMU_OVERHEAD_MIB
from ferry.predict.dirty import MIB, DirtyCurve
from ferry.predict.pause import Switchover
from ferry.predict.precopy import Guest, Link
from ferry.predict.strategy import Inputs
from ferry.predict.uncertainty import spread

ASSUMED_LINK_MIB_S = 100.0
# what a switchover costs beyond the pages (stopping, device state, starting): QEMU's
# downtime figure exceeded the pages' share by a median 15-26 ms on the lab (TCG;
# bench/predict.py, two runs of the tune seeds, pages counted as a capped job sees them:
# half a rate window below its threshold); with the stream encrypted, by ~30 ms (least
# squares over the same 12 tune seeds moved with TLS: 30 ms + 1.05 x the pages' share;
# bench/results/predict-tune-tls.md)
SWITCHOVER_S = 0.02
SWITCHOVER_TLS_S = 0.03
DEFAULT_SETUP_S = 0.1  # before any history between two hosts
CPU_BOUND_BUSY = 0.9  # vCPU busy share from which throttling slows the dirtying


@dataclass(frozen=True)
class Measurement:
    """The guest, measured now (QEMU page sampling over several windows)."""

    points: list[tuple[float, float]]  # (window s, dirtied bytes)
    curve: DirtyCurve
    resident_mib: int  # the guest's QEMU process: an upper bound of its non-zero pages
    cpu_busy: float  # vCPU busy share over the measurement, 0..1
    pages_read: int = 0  # guest pages read (hypervisor/page_sample.py)...
    pages_nonzero: int = 0  # ...and how many of them were not zero
    nonzero_stderr: float = 1.0  # standard error of that share
    horizon_s: float = 0.0  # round 1's expected length: the curve was wanted up to here
    dirty_sample_pages: int = 0  # pages QEMU hashed per window (0: exact, e.g. simulated)
    spent_s: float = 0.0  # time the dirty-page windows took
    # short back-to-back windows (s, dirtied bytes) of a guest seen dirtying in bursts
    probe: list[tuple[float, float]] = field(default_factory=list)
    cpu_wait: float = 0.0  # share of the time its vCPU was ready but waited for a host CPU
    nonzero_profile: tuple[float, ...] = ()  # non-zero share per tenth of the RAM, in order
    wire_share: float = 1.0  # its non-zero pages through zstd: bytes out per byte in


@dataclass(frozen=True)
class History:
    """What earlier migrations taught; None where there is no such migration."""

    link_bytes_s: float | None = None
    link_how: str = ""
    setup_s: float | None = None
    setup_how: str = ""
    nonzero_bytes: float | None = None  # round 1 of the VM's last migration
    nonzero_how: str = ""
    tracking: float = 1.0  # dirtying during a migration relative to before it
    tracking_how: str = ""
    encrypted: bool = False  # the move's stream is TLS: its switchover costs more
    switchover: Switchover | None = None  # learnt from the pair's latest pauses
    setup_range_s: tuple[float, float] | None = None  # the latest jobs' shortest, longest
    source_busy: float | None = None  # the source's CPUs now: history read at a like load


def switchover_s(h: History) -> float:
    """The pause beyond the pages: the pair's, else assumed by the stream's mode."""
    if h.switchover is not None:
        return h.switchover.cost_s
    return SWITCHOVER_TLS_S if h.encrypted else SWITCHOVER_S


def final_bytes_s(h: History, link: float) -> float:
    """The stop-and-copy rate: the guest is paused, so QEMU sends faster than the
    link figure read while it ran, by what the pair's pauses showed."""
    return link * h.switchover.speedup if h.switchover is not None else link


MIN_PAGES = 256  # fewer pages read than this (16 reads): too uncertain to use


def nonzero_source(m: Measurement, h: History) -> str:
    """Where round 1's bytes come from: "history", "measured" or "bound" (RSS)."""
    if h.nonzero_bytes is not None:
        return "history"
    return "measured" if m.pages_read >= MIN_PAGES else "bound"


def nonzero_bytes(m: Measurement, h: History, memory_mib: int) -> tuple[float, str]:
    """What round 1 will send: the last migration's round 1 (what QEMU really sent),
    else the share of non-zero pages read from the guest, else the resident memory
    less QEMU's own (an upper bound, raised to what the guest dirties in an hour).

    >>> m = Measurement([], DirtyCurve(0.0, 64 * MIB), resident_mib=160, cpu_busy=0.1)
    >>> nonzero_bytes(m, History(), 256)[0] / MIB
    100.0
    >>> m = Measurement([], DirtyCurve(0.0, 64 * MIB), 160, 0.1, pages_read=400,
    ...                 pages_nonzero=100, nonzero_stderr=0.03)
    >>> est, how = nonzero_bytes(m, History(), 256)
    >>> est / MIB, how
    (64.0, 'sampled: 100 of 400 guest pages non-zero (25% +- 3%)')
    """
    if h.nonzero_bytes is not None:
        return h.nonzero_bytes, h.nonzero_how
    mem = memory_mib * MIB
    if nonzero_source(m, h) == "measured":  # what was read counts the dirtied pages too
        share = m.pages_nonzero / m.pages_read
        return max(share * mem, MIB), (f"sampled: {m.pages_nonzero} of {m.pages_read} "
                                         f"guest pages non-zero ({share:.0%} +- "
                                         f"{m.nonzero_stderr:.0%})")
    est = max(min(mem, (m.resident_mib - QEMU_OVERHEAD_MIB) * MIB), m.curve.bytes_in(3600),
              MIB)
    return est, "QEMU resident memory (an upper bound)"


def link_bytes_s(h: History, bandwidth_mib_s: int | None) -> tuple[float, float]:
    """(pre-copy rate, link rate): the link from history or assumed; a cap limits
    pre-copy only (the final copy runs at link speed)."""
    link = h.link_bytes_s if h.link_bytes_s is not None else ASSUMED_LINK_MIB_S * MIB
    pre = min(bandwidth_mib_s * MIB, link) if bandwidth_mib_s else link
    return pre, link


def build_inputs(m: Measurement, h: History, memory_mib: int, bandwidth_mib_s: int | None,
                 max_downtime_ms: int | None, timeout_s: float) -> tuple[Inputs, str]:
    """The model's inputs and, for people, where the link figures came from."""
    pre, link = link_bytes_s(h, bandwidth_mib_s)
    how = h.link_how if h.link_bytes_s is not None else \
        f"assumed {ASSUMED_LINK_MIB_S:.0f} MiB/s (no history)"
    if h.setup_s is not None and h.setup_how:
        how += f"; {h.setup_how}"
    if h.tracking < 1.0:
        how += f"; {h.tracking_how}"
    nonzero, _ = nonzero_bytes(m, h, memory_mib)
    inp = Inputs(Guest(memory_mib * MIB, nonzero, m.curve.scaled(h.tracking),
                       m.nonzero_profile),
                 Link(pre, final_bytes_s(h, link), switchover_s(h)),
                 max_downtime_ms / 1000 if max_downtime_ms else None,
                 cpu_bound=1.0 if m.cpu_busy >= CPU_BOUND_BUSY else 0.0, timeout_s=timeout_s,
                 setup_s=h.setup_s if h.setup_s is not None else DEFAULT_SETUP_S)
    return inp, how


def squeezed_inputs(inp: Inputs, wire_share: float) -> Inputs:
    """`inp` with the stream through zstd: round 1 sends its non-zero pages at the
    share the sampled ones compressed to (history's round 1 is that of a stream in
    clear, `HistoryStore`); what the guest dirties meanwhile counts whole."""
    return replace(inp, guest=replace(inp.guest,
                                      nonzero_bytes=inp.guest.nonzero_bytes * wire_share))


HISTORY_NONZERO_SD = 0.05  # round 1 of the last move: QEMU's own figure, but it ages
BOUND_NONZERO_SD = 0.25  # the resident memory: an upper bound, not a reading


def input_spread(m: Measurement, h: History, memory_mib: int, inp: Inputs
                 ) -> tuple[Inputs, Inputs]:
    """`inp` with every measured reading low, and high (predict/uncertainty.py), and the
    set-up as short and as long as the pair's latest jobs' (it varies by up to 1 s
    from one job to the next: with the page count read closely, it was what put
    6 of 14 held-out moves outside their range)."""
    nonzero, _ = nonzero_bytes(m, h, memory_mib)
    sd = {"history": HISTORY_NONZERO_SD * nonzero,
          "measured": m.nonzero_stderr * memory_mib * MIB,
          "bound": BOUND_NONZERO_SD * nonzero}[nonzero_source(m, h)]
    sd *= inp.guest.nonzero_bytes / nonzero  # (a compressed stream's, as its bytes)
    s = spread(inp.guest, m.points, m.dirty_sample_pages or 1 << 30, sd, h.tracking)
    lo, hi = h.setup_range_s or (inp.setup_s, inp.setup_s)
    return replace(inp, guest=s.low, setup_s=min(lo, inp.setup_s)), \
        replace(inp, guest=s.high, setup_s=max(hi, inp.setup_s))


def sources(m: Measurement, h: History, bandwidth_mib_s: int | None) -> dict[str, str]:
    """Which inputs were measured now, taken from history, or assumed."""
    return {
        "nonzero_memory": {"history": "history", "measured": "measured",
                           "bound": "assumed (upper bound)"}[nonzero_source(m, h)],
        "dirty_curve": "measured" if m.points else "assumed (idle)",
        "link": "history" if h.link_bytes_s is not None else
        "capped" if bandwidth_mib_s else "assumed",
        "setup": "history" if h.setup_s is not None else "assumed",
        "switchover": f"history ({h.switchover.how})" if h.switchover is not None else
        f"assumed ({switchover_s(h) * 1000:.0f} ms beyond the pages"
        + (", TLS)" if h.encrypted else ")"),
        "dirtying_while_migrating": "history" if h.tracking < 1.0 else "assumed (as measured)",
    }


def describe(m: Measurement, h: History, memory_mib: int) -> dict[str, Any]:
    """The measurement as `ferry predict --json` shows it under `inputs`."""
    nonzero, source = nonzero_bytes(m, h, memory_mib)
    return {
        "dirty_windows": [{"window_ms": round(t * 1000), "dirtied_mib": round(d / MIB, 1),
                           "rate_mib_s": round(d / MIB / t, 1)} for t, d in m.points],
        "dirty_rate_mib_s": round(m.curve.rate_bytes_s / MIB, 1),
        "bursts": None if m.curve.bursts is None else {
            "on_s": round(m.curve.bursts.on_s, 2), "off_s": round(m.curve.bursts.off_s, 2),
            "phase_s": None if m.curve.bursts.phase_s is None
            else round(m.curve.bursts.phase_s, 2), "probe_windows": len(m.probe)},
        "working_set_mib": round(m.curve.wss_bytes / MIB, 1),
        "streaming": m.curve.streaming,
        "cold_set": None if not m.curve.cold_rate_bytes_s else {
            "rate_mib_s": round(m.curve.cold_rate_bytes_s / MIB, 1),
            "working_set_mib": round(m.curve.cold_wss_bytes / MIB, 1)},
        "zero_share": round(1 - nonzero / (memory_mib * MIB), 3),
        "nonzero_source": source,
        "pages_read": m.pages_read, "pages_nonzero": m.pages_nonzero,
        "nonzero_stderr": round(m.nonzero_stderr, 3),
        "nonzero_profile": [round(x, 2) for x in m.nonzero_profile],
        "compressed_share": round(m.wire_share, 3),
        "dirty_wanted_up_to_s": round(m.horizon_s, 2),
        "dirty_measured_s": round(m.spent_s, 2),
        "cpu_busy": round(m.cpu_busy, 2),
        "cpu_wait": round(m.cpu_wait, 2),
        "dirty_during_migration": round(h.tracking, 2),
        "source_busy": None if h.source_busy is None else round(h.source_busy, 2),
    }
