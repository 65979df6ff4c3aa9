"""Migration policies as schedules, their predictions, and the recommendation (pure).

| policy        | what it does                                                      |
|---------------|-------------------------------------------------------------------|
| precopy       | libvirt/QEMU defaults: 300 ms downtime limit (or --max-downtime)  |
| stepped       | OpenStack Nova's way: the limit rises in steps over time          |
| autoconverge  | QEMU throttles the vCPUs while dirtying outpaces the transfer      |
| postcopy      | one pre-copy round, then the guest runs on the destination         |
| auto          | Ferry: a small limit first; more only if progress stalls; post-copy|
|               | after round 1 when the model says pre-copy cannot finish           |
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

from ferry.domain.vocab import Policy
from ferry.predict.precopy import (
    Guest,
    Link,
    Prediction,
    Schedule,
    median_run,
    simulate,
    simulate_places,
)

QEMU_DEFAULT_DOWNTIME_S = 0.3
AUTO_START_DOWNTIME_S = 0.05
# a smaller first limit where the model says it costs almost nothing in time
AUTO_SMALL_DOWNTIME_S = 0.025
AUTO_SMALL_MAX_SLOWER = 1.1


@dataclass(frozen=True)
class Inputs:
    guest: Guest
    link: Link
    max_downtime_s: float | None  # the operator's limit; None = QEMU's default
    cpu_bound: float = 0.0  # how much throttling vCPUs slows the dirtying (0..1)
    timeout_s: float = 120.0
    setup_s: float = 0.1

    @property
    def limit_s(self) -> float:
        return self.max_downtime_s if self.max_downtime_s is not None else \
            QEMU_DEFAULT_DOWNTIME_S


def stepped_downtimes(memory_gib: float, max_downtime_s: float, steps: int = 10,
                      delay_per_gib_s: float = 75.0) -> Iterator[tuple[float, float]]:
    """Nova's `downtime_steps`: (from time s, limit s), configuration passed in.

    Worked example (1 GiB guest, 500 ms, 10 steps, 75 s per GiB):

    | from  | limit  |
    |-------|--------|
    | 0 s   | 50 ms  |
    | 75 s  | 95 ms  |
    | 150 s | 140 ms |
    | ...   | ...    |
    | 750 s | 500 ms |

    >>> [(t, round(d * 1000)) for t, d in stepped_downtimes(1, 0.5)][:3]
    [(0.0, 50), (75.0, 95), (150.0, 140)]
    """
    delay = delay_per_gib_s * memory_gib
    base = max_downtime_s / steps
    offset = (max_downtime_s - base) / steps
    for i in range(steps + 1):
        yield delay * i, base + offset * i


@dataclass(frozen=True)
class AutoSettings:
    start_downtime_s: float
    raise_to_s: float
    postcopy_after_round: int | None
    reason: str


def choose_auto(inp: Inputs) -> AutoSettings:
    """The limits `auto` starts with and may raise to, and whether it switches to
    post-copy, decided from the model."""
    limit = inp.limit_s
    start = min(AUTO_START_DOWNTIME_S, limit)
    base = Schedule(start, setup_s=inp.setup_s, max_time_s=inp.timeout_s)
    at_start = simulate(inp.guest, inp.link, base)
    if at_start.converges:
        small = min(AUTO_SMALL_DOWNTIME_S, limit)
        at_small = simulate(inp.guest, inp.link, replace(base, downtime_s=small))
        if at_small.converges and at_small.total_s <= AUTO_SMALL_MAX_SLOWER * at_start.total_s:
            start = small
        return AutoSettings(start, limit, None, f"converges with a {start * 1000:.0f} ms limit")
    if simulate(inp.guest, inp.link, replace(base, downtime_s=limit)).converges:
        return AutoSettings(start, limit, None, f"needs up to {limit * 1000:.0f} ms: start at "
                        f"{start * 1000:.0f} ms, raise when progress stalls")
    return AutoSettings(start, limit, 1, "pre-copy cannot finish within the limit: post-copy "
                                     "after the first round")


# compress a stream only where it sends a fifth less of round 1: below that its CPU
# (zstd on each channel, TCG guests beside it) buys little
COMPRESS_MAX_SHARE = 0.8
# ...and only from a source with CPU to spare for its channels.  Lab, idle 256 MiB
# guest at a 25 ms limit over 48 MiB/s: two guests on the machine (4 moves each),
# compressed pauses 67-96 ms vs 72-89 in clear; with four more dirtying (load 7-8 on
# two CPUs, 6 each) 146-440 ms vs 95-115 (multifd alone 102-203), the channels' threads
# waiting for a CPU at the switchover; in a drain of six from a 98 % busy host,
# compressed moves paused up to 1.0 s (bench/results/drain-run8.md)
COMPRESS_MAX_BUSY = 0.5


def compressible(inp: Inputs, wire_share: float) -> bool:
    """Is a compressed stream worth it, and safe?  `inp` as compressed (round 1's
    bytes at `wire_share`).  Safe: pre-copy finishes at `auto`'s first limit, because
    a compressed stream cannot switch to post-copy (QEMU 10.0: "Postcopy is not yet
    compatible with multifd"); the pages a guest dirties count uncompressed (a
    workload's fresh data may not compress: the lab guest's does not).

    >>> from ferry.predict.dirty import DirtyCurve
    >>> quiet = Inputs(Guest(256 * 2**20, 100 * 2**20, DirtyCurve(0.0)),
    ...                Link(48 * 2**20, 48 * 2**20, 0.02), None)
    >>> compressible(quiet, 0.57), compressible(quiet, 0.9)
    (True, False)
    >>> busy = replace(quiet, guest=Guest(256 * 2**20, 100 * 2**20,
    ...                                   DirtyCurve(60 * 2**20, 64 * 2**20)))
    >>> compressible(busy, 0.57)
    False
    """
    if wire_share > COMPRESS_MAX_SHARE:
        return False
    start = Schedule(min(AUTO_START_DOWNTIME_S, inp.limit_s), setup_s=inp.setup_s,
                     max_time_s=inp.timeout_s)
    return simulate(inp.guest, inp.link, start).converges


def schedule_for(policy: Policy, inp: Inputs, auto: AutoSettings | None = None) -> Schedule:
    """The schedule a policy follows; `auto` uses `auto` if given (else chooses now)."""
    base = Schedule(inp.limit_s, setup_s=inp.setup_s, max_time_s=inp.timeout_s)
    if policy == Policy.PRECOPY:
        return base
    if policy == Policy.AUTOCONVERGE:
        return replace(base, throttle=True, throttle_effect=inp.cpu_bound)
    if policy == Policy.POSTCOPY:
        return replace(base, postcopy_after_round=1)
    if policy == Policy.STEPPED:
        steps = tuple(stepped_downtimes(inp.guest.memory_bytes / 2**30, inp.limit_s))
        return replace(base, downtime_s=steps[0][1], downtime_steps=steps[1:])
    chosen = auto if auto is not None else choose_auto(inp)
    if chosen.postcopy_after_round is not None:
        return replace(base, downtime_s=chosen.start_downtime_s,
                       postcopy_after_round=chosen.postcopy_after_round)
    # the running policy also switches once rounds shrink too slowly (`rounds.hopeless`)
    base = replace(base, downtime_s=chosen.start_downtime_s,
                   postcopy_when_hopeless_s=chosen.raise_to_s)
    stall_at = simulate(inp.guest, inp.link, base)
    if stall_at.converges:
        return base
    return replace(base, downtime_steps=((stall_at.total_s, chosen.raise_to_s),))


def schedules(inp: Inputs) -> dict[Policy, Schedule]:
    return {p: schedule_for(p, inp) for p in Policy}


def predict_all(inp: Inputs, scheds: dict[Policy, Schedule] | None = None
                ) -> dict[Policy, Prediction]:
    scheds = scheds if scheds is not None else schedules(inp)
    return {p: simulate(inp.guest, inp.link, s) for p, s in scheds.items()}


def report(inp: Inputs, spread: tuple[Inputs, Inputs] | None = None) -> dict[str, Any]:
    """Every policy's prediction and the recommendation, as `ferry predict` shows them;
    with `spread` (the inputs with every reading low, and high) each gets the range
    the model gives between them, on the same schedule, widened to hold the
    prediction itself (the model is not monotonic in its inputs: a bursty guest's
    low and high ends both came out above its prediction on the lab) and, for a
    bursty guest whose phase is not known, what every place in its cycle gives."""
    scheds = schedules(inp)  # `auto`'s is chosen by simulating: once, not per guest
    runs = {p: simulate_places(inp.guest, inp.link, s) for p, s in scheds.items()}
    preds = {p: median_run(r) for p, r in runs.items()}
    out = {p.value: r.as_dict() for p, r in preds.items()}
    if spread is not None:
        for p, sched in scheds.items():
            ends = [*(simulate(i.guest, i.link, replace(sched, setup_s=i.setup_s))
                      for i in spread), *runs[p]]

            def span(values: list[int]) -> list[int]:
                return [min(values), max(values)]
            out[p.value]["range"] = {
                "total_ms": span([round(e.total_s * 1000) for e in ends]),
                "downtime_ms": span([round(e.downtime_s * 1000) for e in ends]),
                "transferred_bytes": span([round(e.transferred_bytes) for e in ends]),
                "converges": sorted({e.converges for e in ends}),
            }
    return {"strategies": out, "recommended": recommend(preds, inp.limit_s).value}


def recommend(preds: dict[Policy, Prediction], limit_s: float) -> Policy:
    """Shortest pause within the limit, unless it costs over 1.5x the fastest total;
    `auto` wins ties.  Nothing converges: post-copy."""
    ok = {p: r for p, r in preds.items() if r.converges and r.downtime_s <= limit_s + 1e-9}
    if not ok:
        return Policy.POSTCOPY
    fastest = min(r.total_s for r in ok.values())
    near = {p: r for p, r in ok.items() if r.total_s <= 1.5 * fastest}
    best = min(r.downtime_s for r in near.values())
    return Policy.AUTO if Policy.AUTO in near and near[Policy.AUTO].downtime_s <= best + 1e-3 \
        else min(near, key=lambda p: (near[p].downtime_s, near[p].total_s))
