"""When each move of a drain runs, and how many share a link: chosen from the model
(pure).

Migrations leaving one host share its link: n of them get a share of 1/n
each, and a move whose share is too small for its dirtying does not converge
(or needs post-copy).  Each move also spends time off the link first
(measuring the guest, prechecks, libvirt's start): that part can overlap
another move's transfer.  The heuristic, simulated forward on a fluid model
of the links:

- order: moves that need the whole link (they converge only alone) first,
  then of three orders (longest predicted first, for makespan: no long move
  left alone at the end; longest and shortest alternating, so that one move's
  fixed costs overlap another's transfer; shortest first) the one whose
  simulated drain ends soonest;
- a move starts when the limits allow (per source, per destination, the
  cluster, `max_parallel`) and, at the moment its transfer will begin, every
  transfer then on its links (itself included) still converges in pre-copy
  within its pause limit at its share: heavy dirtiers run alone, small idle
  guests side by side;
- a move whose transfer would have to wait starts its preparation and its job
  `overhead_s + setup_s` before the link frees (the job staged: started at a
  trickle, so that libvirt's set-up overlaps the transfers, at full speed once
  the link frees), so preparation overlaps transfers;
- a move that cannot start now does not hold up those behind it.

The same function plans a drain (`--dry-run`), decides live which moves start
now (from what is running, with what remains of it), and gives the ETA.

Worked example (link 48 MiB/s, overhead 2 s; a: 200 MiB idle, b: 100 MiB idle,
c: 100 MiB dirtying 30 MiB/s, which converges only alone):

| t      | what happens                                                   |
|--------|----------------------------------------------------------------|
| 0 s    | c starts (alone first), prepares until 2 s                     |
| ~2 s   | c transfers at 48 MiB/s; a prepares so as to follow it         |
| ~4.1 s | c ends; a transfers; b prepares and joins: a and b share       |
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from ferry.drain.model import EPS, Model, MoveSpec
from ferry.predict.dirty import MIB
from ferry.predict.precopy import Prediction

# a move held at its gate starts transferring this long after the transfer before it
# left the link: the runner sees `sent` at a sample (every 0.25 s), the gate releases
# the staged job at its next one, and libvirt raises its rate (lab, converging mix:
# 0.4-0.7 s from one move's `sent` to the next one's release, four times a drain)
HANDOFF_S = 0.5
SIDE_BY_SIDE_MARGIN_S = 1.0  # by how much sharing a link must end sooner than one at a time


@dataclass(frozen=True)
class Limits:
    """Concurrent migrations allowed (the admission limits of migration/admission.py)."""

    per_source: int = 2
    per_destination: int = 2
    cluster: int = 4


@dataclass(frozen=True)
class Active:
    """A move already under way: preparing (bytes_left None) or transferring
    (bytes_left: what it still has to send; its job's fixed costs count as bytes at
    its share)."""

    spec: MoveSpec
    started_s: float
    transfer_from_s: float
    bytes_left: float | None = None


@dataclass(frozen=True)
class Slot:
    """One move as planned: when it starts, transfers and ends, at which share."""

    vm: str
    source: str
    destination: str
    start_s: float
    transfer_s: float
    end_s: float
    share_bytes_s: float
    prediction: Prediction
    alone: bool  # converges only with the whole link

    @property
    def total_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Schedule:
    slots: list[Slot]
    eta_s: float  # from `now` to the last move's end
    max_parallel: dict[str, int] = field(default_factory=dict)  # transfers per source
    transfers: int | None = None  # at most this many on a source's link (None: the slots)


def order(moves: list[MoveSpec], model: Model) -> list[MoveSpec]:
    """Alone-only moves first, then longest predicted (alone on its link) first."""
    return sorted(moves, key=lambda m: (not model.alone(m),
                                        -model.predict(m, model.stream(m.source)).total_s))


def best_plan(moves: list[MoveSpec], model: Model, limits: Limits, max_parallel: int,
              active: list[Active] | None = None, now: float = 0.0,
              transfers: tuple[int | None, ...] | None = None
              ) -> tuple[list[MoveSpec], Schedule]:
    """The order and the number of transfers per link whose simulated drain ends
    soonest, and that drain, of three orders (alone-only moves first in each):
    longest first; longest and shortest alternating; shortest first; and of
    `transfers` (default: as many as the slots allow, or one at a time).

    One at a time leaves the other slots to moves that prepare (their jobs staged)
    while it transfers: where one stream fills the link, sharing it gains nothing
    but overlap of fixed costs, and two moves sharing hold both slots until both
    have settled, so the next pair's preparation and libvirt's set-up leave the
    link idle (lab, 6 guests, 48 MiB/s: 3-4 s idle between pairs, three times).

    Longest-first makes equal moves start and end together: with two at once,
    both wait for their destination QEMU to start and both finish with the link
    idle.  Alternating a long move with a short one lets one's fixed costs
    overlap the other's transfer; which wins depends on the sizes, the fixed
    costs and what one stream reaches, so the model decides (ties: longest
    first)."""
    lpt = order(moves, model)
    first = [m for m in lpt if model.alone(m)]
    rest = [m for m in lpt if not model.alone(m)]
    alternating: list[MoveSpec] = []
    lo, hi = 0, len(rest) - 1
    while lo <= hi:
        alternating.append(rest[lo])
        if lo != hi:
            alternating.append(rest[hi])
        lo, hi = lo + 1, hi - 1
    candidates = [lpt, first + alternating, first + rest[::-1]]
    ks = transfers if transfers is not None else (
        (None, 1) if min(limits.per_source, max_parallel) > 1 else (None,))
    planned = [(o, plan(o, model.links, limits, max_parallel, active, now, model=model,
                        transfers=k))
               for k in ks for o in candidates]
    # side by side must end sooner by a margin: its gain (fixed costs overlapped) is
    # sure, its cost (a dirtier's rounds re-sent at a smaller share) is what a dirty
    # rate read low hides (lab: a guest dirtying 24 MiB/s read at 17 shared the link
    # and sent 369 MiB where alone it sent ~290)
    return min(planned, key=lambda p: p[1].eta_s +
               (SIDE_BY_SIDE_MARGIN_S if p[1].transfers is None and 1 in ks else 0.0))


@dataclass
class _Run:
    spec: MoveSpec
    start: float
    transfer_from: float
    bytes_left: float | None = None
    share: float = 0.0
    prediction: Prediction | None = None
    end: float | None = None


def _rates(runs: list[_Run], model: Model, t: float) -> dict[int, float]:
    """Each transfer's rate now: an equal share of what its source's migrations reach
    (`Model.share`) and of its destination's link, whichever is smaller."""
    live = [r for r in runs if r.bytes_left is not None and r.end is None]
    out_n = Counter(r.spec.source for r in live)
    in_n = Counter(r.spec.destination for r in live)
    return {id(r): min(model.share(r.spec.source, out_n[r.spec.source]),
                       model.link(r.spec.destination) / in_n[r.spec.destination])
            for r in live}


def _projected_end(r: _Run, rates: dict[int, float], t: float, model: Model) -> float:
    """When a run leaves the link at the rates of now (one still preparing: when it
    would, transferring alone)."""
    if r.end is not None:
        return r.end
    if r.bytes_left is None:
        alone = model.stream(r.spec.source)
        return max(r.transfer_from, t) + \
            model.predict(r.spec, alone).transferred_bytes / alone
    return t + r.bytes_left / max(rates[id(r)], EPS)


def _transfer_from(m: MoveSpec, runs: list[_Run], model: Model, t: float) -> float:
    """When a move starting at `t` begins to transfer: after its preparation and
    set-up, and, if it waits at its gate for a transfer on its link that ends first,
    HANDOFF_S after that one leaves."""
    at = t + m.overhead_s + m.setup_s
    rates = _rates(runs, model, t)
    before = [e for r in runs if r.spec.source == m.source and r.bytes_left is not None
              and (e := _projected_end(r, rates, t, model)) <= at + EPS]
    return max(at, max(before, default=-math.inf) + HANDOFF_S)


def _join(runs: list[_Run], model: Model, t: float, transfers: int | None = None) -> None:
    """Preparations that end by `t` become transfers, with their bytes from the model at
    the share they get; with `transfers`, only while fewer than that transfer on
    their source's link (as the drain's gate lets them: a move under way when the
    plan is made, staged, waits HANDOFF_S after the transfer before it leaves; lab:
    an early move planned beside the first at half the link waited for it, and the
    ETA came out ~3 s short)."""
    joining = [r for r in runs if r.bytes_left is None and r.transfer_from <= t + EPS
               and r.end is None]
    held: list[_Run] = []
    if transfers is not None:
        on = Counter(r.spec.source for r in runs if r.bytes_left is not None and r.end is None)
        for r in sorted(joining, key=lambda x: x.start):
            if on[r.spec.source] >= transfers:
                held.append(r)
            else:
                on[r.spec.source] += 1
        joining = [r for r in joining if r not in held]
    for r in joining:
        r.bytes_left = 0.0  # on the link now, so the shares count it
    rates = _rates(runs, model, t)
    for r in joining:
        r.share = rates[id(r)]
        r.prediction = model.predict(r.spec, r.share)
        r.bytes_left = r.prediction.transferred_bytes
    if held:
        rates = _rates(runs, model, t)
        for r in held:
            r.transfer_from = min(_projected_end(x, rates, t, model) for x in runs
                                  if x.spec.source == r.spec.source and x.end is None
                                  and x.bytes_left is not None) + HANDOFF_S


def _may_start(m: MoveSpec, runs: list[_Run], model: Model, limits: Limits,
               max_parallel: int, t: float, transfers: int | None) -> bool:
    # a move holds its admission slot until its last byte: in libvirt's finish and
    # settling after it (`finish_s`) the link is free, and the limits no longer count it
    busy = [r for r in runs if r.end is None or r.end > t + EPS]
    if len(busy) >= limits.cluster:
        return False
    if sum(r.spec.source == m.source for r in busy) >= min(limits.per_source, max_parallel):
        return False
    if sum(r.spec.destination == m.destination for r in busy) >= limits.per_destination:
        return False
    # transfers on this move's source link when its own would begin
    at = t + m.overhead_s + m.setup_s
    rates = _rates(runs, model, t)
    sharing = [r for r in busy if r.spec.source == m.source and
               _projected_end(r, rates, t, model) > at + EPS]
    if transfers is not None and len(sharing) >= transfers:
        return False
    return may_share(m, [r.spec for r in sharing], model)


def may_share(m: MoveSpec, sharing: list[MoveSpec], model: Model) -> bool:
    """May `m` transfer while `sharing` transfer from the same host: only if nobody
    among them converges only alone and every one still converges at its share.
    Sharing lets one job's fixed costs (libvirt starting the destination QEMU,
    its finish) overlap another's transfer; what it costs is the bytes a dirtier
    re-sends as its rounds stretch at a smaller share: it pays only while those
    take the link less time than the fixed costs it overlaps (`costs_little`).
    Near its convergence edge a move re-sends many times its memory, and there
    predictions miss most (lab: a guest dirtying 25 MB/s over 78 MB, predicted to
    converge at half of a 48 MiB/s link, took 1.5x as long and sent 2.5x its
    memory sharing): such a move goes alone."""
    n = len(sharing) + 1
    if n == 1:
        return True
    if model.alone(m) or any(model.alone(x) for x in sharing):
        return False
    share = model.share(m.source, n)
    return all(model.fits(x, share) and model.costs_little(x, share) for x in [m, *sharing])


def plan(moves: list[MoveSpec], links: dict[str, float], limits: Limits,
         max_parallel: int = 2, active: list[Active] | None = None, now: float = 0.0,
         model: Model | None = None, streams: dict[str, float] | None = None,
         transfers: int | None = None) -> Schedule:
    """Simulate the drain forward from `now`: `moves` not yet started (in the order
    they should go), `active` those under way; at most `transfers` on a source's link
    at once (None: as the slots and `may_share` allow).  Returns every move's slot
    (active ones included) and the ETA."""
    model = model or Model(links, streams)
    runs = [_Run(a.spec, a.started_s, a.transfer_from_s, a.bytes_left,
                 model.stream(a.spec.source),
                 None if a.bytes_left is None else
                 model.predict(a.spec, model.stream(a.spec.source)))
            for a in active or []]
    pending = list(moves)
    t = now
    peak: Counter[str] = Counter()
    guard = 0
    while pending or any(r.end is None for r in runs):
        guard += 1
        if guard > 100_000:
            raise RuntimeError("drain schedule did not advance")
        _join(runs, model, t, transfers)
        for r in runs:  # an active move that has sent everything is off the link now
            if r.end is None and r.bytes_left is not None and r.bytes_left <= 1.0:
                r.end = t
        for m in list(pending):
            if _may_start(m, runs, model, limits, max_parallel, t, transfers):
                runs.append(_Run(m, t, _transfer_from(m, runs, model, t)))
                pending.remove(m)
        _join(runs, model, t, transfers)
        rates = _rates(runs, model, t)
        live = [r for r in runs if r.bytes_left is not None and r.end is None]
        peak_now = Counter(r.spec.source for r in live)
        for k, v in peak_now.items():
            peak[k] = max(peak[k], v)
        # the next event: a transfer ends, a preparation ends, or a pending move could
        # start ahead of a transfer's end
        preparing = [r for r in runs if r.bytes_left is None and r.end is None]
        ends = [_projected_end(r, rates, t, model) for r in [*live, *preparing]]
        nxt = ends[:len(live)] + [r.transfer_from for r in preparing]
        if pending:
            nxt += [e - m.overhead_s - m.setup_s for e in ends for m in pending[:1]]
        nxt += [r.end + r.spec.finish_s for r in runs if r.end is not None]
        nxt = [x for x in nxt if x > t + EPS]
        if not nxt:
            if pending:  # nothing will change and nothing can start: the next goes alone
                m = pending.pop(0)
                runs.append(_Run(m, t, t + m.overhead_s + m.setup_s))
                continue
            break
        t2 = min(nxt)
        for r in live:
            r.bytes_left = max(0.0, (r.bytes_left or 0.0) - rates[id(r)] * (t2 - t))
            if r.bytes_left <= rates[id(r)] * EPS + 1.0:
                r.end = t2
        t = t2
    slots = [Slot(r.spec.vm, r.spec.source, r.spec.destination, r.start, r.transfer_from,
                  (r.end if r.end is not None else r.transfer_from) + r.spec.finish_s,
                  r.share, r.prediction or model.predict(r.spec, model.stream(r.spec.source)),
                  model.alone(r.spec)) for r in runs]
    eta = max((s.end_s for s in slots), default=now) - now
    return Schedule(sorted(slots, key=lambda s: (s.start_s, s.vm)), eta, dict(peak),
                    transfers)


def bytes_per_s(mib_s: float) -> float:
    return mib_s * MIB
