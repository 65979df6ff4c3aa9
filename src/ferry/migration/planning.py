"""The plan of one migration: its prediction and the parameters chosen (pure).

A policy becomes libvirt options (the first downtime limit, auto-converge,
whether post-copy may be switched to) and the configuration of the
`Adapter` that changes them while the job runs.  `precopy` promises
libvirt/QEMU's defaults untouched, so it is neither measured nor predicted.

Timeouts: the adapter acts at `timeout_s` (abort, or force post-copy, which
then still has to pull the remaining pages); the engine's own hard stop is a
backstop for a job that the adapter's action did not end, at
BACKSTOP_FACTOR x timeout + BACKSTOP_MARGIN_S:

| guest RAM (+ copied disks) | timeout (300 s/GiB, >= 30 s) | hard stop |
|----------------------------|------------------------------|-----------|
| 256 MiB                    | 75 s                         | 142 s     |
| 4 GiB                      | 1200 s                       | 1830 s    |
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ferry.domain.vocab import EventKind, OnTimeout, Policy
from ferry.hypervisor.types import MigrationOptions
from ferry.migration.policies import PolicyConfig
from ferry.predict.inputs import History, Measurement, squeezed_inputs
from ferry.predict.precopy import Prediction, simulate
from ferry.predict.strategy import (
    COMPRESS_MAX_BUSY,
    COMPRESS_MAX_SHARE,
    QEMU_DEFAULT_DOWNTIME_S,
    Inputs,
    choose_auto,
    compressible,
    schedule_for,
    stepped_downtimes,
)

POSTCOPY_CAPABLE = (Policy.AUTO, Policy.POSTCOPY)  # jobs started able to switch to post-copy
BACKSTOP_FACTOR = 1.5
BACKSTOP_MARGIN_S = 30.0


def timeout_s(memory_mib: int, copy_mib: int, per_gib_s: float, min_s: float) -> float:
    """Copied disks move at link speed too: they count like memory.

    >>> timeout_s(256, 0, 300, 30), timeout_s(64, 0, 300, 30)
    (75.0, 30)
    """
    return max(min_s, per_gib_s * (memory_mib + copy_mib) / 1024)


def hard_stop_s(timeout: float) -> float:
    """The engine's own stop, behind the policy's timeout.

    >>> hard_stop_s(75.0)
    142.5
    """
    return timeout * BACKSTOP_FACTOR + BACKSTOP_MARGIN_S


@dataclass(frozen=True)
class Plan:
    options: MigrationOptions
    policy: PolicyConfig
    hard_stop_s: float
    prediction: Prediction | None = None  # None: precopy (defaults, not predicted)
    events: list[tuple[EventKind, str]] = field(default_factory=list)  # why, for people


def first_options(policy: Policy, dest_uri: str, *, bandwidth_mib_s: int | None,
                  max_downtime_ms: int | None, copy_disks: tuple[str, ...] = ()
                  ) -> MigrationOptions:
    """The job's options before it is planned: its flags follow from the policy alone,
    so the job can start (staged) while the guest is measured; the plan then sets
    only the first downtime limit and the adapter's settings.

    >>> o = first_options(Policy.AUTO, "qemu+tls://h2/system", bandwidth_mib_s=None,
    ...                   max_downtime_ms=None)
    >>> o.postcopy, o.auto_converge, o.max_downtime_ms
    (True, False, None)
    """
    return MigrationOptions(dest_uri=dest_uri, bandwidth_mib_s=bandwidth_mib_s,
                            max_downtime_ms=max_downtime_ms,
                            auto_converge=policy == Policy.AUTOCONVERGE,
                            postcopy=policy in POSTCOPY_CAPABLE, copy_disks=copy_disks)


def compressed_inputs(policy: Policy, inp: Inputs, m: Measurement, h: History, *,
                      copies: bool, allowed: bool = True, asked: bool | None = None
                      ) -> Inputs | None:
    """`inp` (the move's inputs, built from `m` and `h`) with the stream compressed,
    where it should be (`auto`, no disks copied, a source with CPU to spare,
    `compressible`); None: it goes as it is.  `asked` (the operator's --compress /
    --no-compress): True compresses whatever the setting (`allowed`) and the source's
    load say, False never; None: they decide.

    >>> from ferry.predict.dirty import MIB, DirtyCurve
    >>> from ferry.predict.inputs import build_inputs
    >>> m = Measurement([], DirtyCurve(0.0, 16 * MIB), 160, 0.1, pages_read=400,
    ...                 pages_nonzero=160, nonzero_stderr=0.02, wire_share=0.5)
    >>> h = History(link_bytes_s=48 * MIB, source_busy=0.2)
    >>> plain, _ = build_inputs(m, h, 256, None, None, 75.0)
    >>> inp = compressed_inputs(Policy.AUTO, plain, m, h, copies=False)
    >>> round(inp.guest.nonzero_bytes / MIB)
    51
    >>> [compressed_inputs(p, plain, m, replace(h, source_busy=b), copies=False) is None
    ...  for p, b in ((Policy.STEPPED, 0.2), (Policy.AUTO, 0.9), (Policy.AUTO, None))]
    [True, True, True]
    >>> compressed_inputs(Policy.AUTO, plain, m, replace(h, source_busy=0.9), asked=True,
    ...                   copies=False) is None
    False
    """
    if asked is False or policy != Policy.AUTO or copies:
        return None
    if asked is None and (not allowed or h.source_busy is None or
                          h.source_busy > COMPRESS_MAX_BUSY):
        return None
    squeezed = squeezed_inputs(inp, m.wire_share)
    return squeezed if compressible(squeezed, m.wire_share) else None


def why_in_clear(m: Measurement, copies: bool) -> str:
    """Why a move asked to compress (policy `auto`) goes in clear: the rule of
    `compressed_inputs` it failed, for people."""
    if copies:
        return "its disks are copied"
    if m.wire_share > COMPRESS_MAX_SHARE:
        return f"its pages compress to {m.wire_share:.0%} (no gain over " \
            f"{COMPRESS_MAX_SHARE:.0%})"
    return "pre-copy alone would not finish at the first limit (a compressed stream " \
        "cannot switch to post-copy)"


def make_plan(policy: Policy, dest_uri: str, memory_mib: int, *, bandwidth_mib_s: int | None,
              max_downtime_ms: int | None, timeout: float, on_timeout: OnTimeout,
              inputs: Inputs | None, copy_disks: tuple[str, ...] = (),
              copy_mib: int = 0, compress: bool = False) -> Plan:
    """`inputs` is None exactly for `precopy`; `compress` (`auto` only, `inputs` as
    compressed: `compressed_inputs`): the stream goes through zstd and cannot switch to
    post-copy, so the adapter aborts where it would have switched."""
    limit_ms = max_downtime_ms or round(QEMU_DEFAULT_DOWNTIME_S * 1000)
    events: list[tuple[EventKind, str]] = []
    if copy_disks:
        events.append((EventKind.PLAN, f"block migration copies {', '.join(copy_disks)} "
                                       f"({copy_mib} MiB) before the memory"))
    cfg = PolicyConfig(policy=policy, max_downtime_ms=limit_ms, timeout_s=timeout,
                       on_timeout=on_timeout)
    if inputs is None:
        assert policy == Policy.PRECOPY
        events.insert(0, (EventKind.PLAN, "precopy: libvirt/QEMU defaults, no measurement or "
                                          "prediction"))
        opts = MigrationOptions(dest_uri=dest_uri, bandwidth_mib_s=bandwidth_mib_s,
                                max_downtime_ms=max_downtime_ms, copy_disks=copy_disks)
        return Plan(opts, cfg, hard_stop_s(timeout), None, events)
    auto = choose_auto(inputs) if policy == Policy.AUTO else None
    pred = simulate(inputs.guest, inputs.link, schedule_for(policy, inputs, auto))
    events.insert(0, (EventKind.PREDICTED, f"{policy.value}: " + (
        f"completes in ~{pred.total_s:.1f} s with a ~{pred.downtime_s * 1000:.0f} ms pause"
        if pred.converges else f"does not converge ({pred.note})")))
    steps: tuple[tuple[float, float], ...] = ()
    start_ms = max_downtime_ms
    if auto is not None:
        events.insert(1, (EventKind.PLAN, auto.reason))
        start_ms = round(auto.start_downtime_s * 1000)
    elif policy == Policy.STEPPED:
        steps = tuple(stepped_downtimes(memory_mib / 1024, limit_ms / 1000))
        start_ms = round(steps[0][1] * 1000)
    opts = replace(first_options(policy, dest_uri, bandwidth_mib_s=bandwidth_mib_s,
                                 max_downtime_ms=max_downtime_ms, copy_disks=copy_disks),
                   max_downtime_ms=start_ms)
    if compress:
        assert policy == Policy.AUTO and not copy_disks
        opts = replace(opts, compress=True, postcopy=False)
        events.append((EventKind.PLAN, "the stream is compressed (zstd over "
                       "parallel channels): pre-copy finishes at the first limit, so "
                       "post-copy is not armed (QEMU cannot have both)"))
    cfg = PolicyConfig(policy=policy, max_downtime_ms=limit_ms, timeout_s=timeout,
                       on_timeout=on_timeout, auto=auto, steps=steps, compressed=compress)
    return Plan(opts, cfg, hard_stop_s(timeout), pred, events)
