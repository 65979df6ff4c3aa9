"""The pre-copy model: simulate QEMU's rounds to predict a migration (pure).

QEMU sends every page once (round 1; zero pages cost almost nothing), then
the pages dirtied meanwhile, and so on.  Its switchover rule (QEMU >= 8):
while sending it keeps an *estimate* of what is pending (the unsent part of
the dirty bitmap); when the estimate fits in bandwidth x downtime limit it
syncs the bitmap to get the *exact* figure (unsent + dirtied since the last
sync).  If that fits too it pauses the guest and sends the rest; if not, the
sync starts a new round.  The final copy ignores a configured bandwidth cap:
it runs at link speed.  The simulation advances in STEP_S steps (longer
when the horizon is long: at most MAX_STEPS per run), checking the rule
after each, as QEMU checks after each chunk it sends.

Worked example (256 MiB guest, all of it non-zero, idle, 32 MiB/s, 300 ms):

| t       | what happens                                                |
|---------|-------------------------------------------------------------|
| 0.1 s   | setup done, round 1 starts, 256 MiB pending                 |
| 7.8 s   | estimate 9.6 MiB = 32 MiB/s x 0.3 s; exact also 9.6: pause  |
| 8.1 s   | 9.6 MiB sent paused: total 8.1 s, downtime 300 ms           |
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

from ferry.predict.dirty import DirtyCurve
from ferry.predict.rounds import ROUNDS_SEEN, hopeless


@dataclass(frozen=True)
class Guest:
    memory_bytes: float
    nonzero_bytes: float  # what round 1 really has to send
    curve: DirtyCurve
    # the non-zero share per equal part of the RAM in address order (empty: even);
    # round 1 walks the RAM in that order, so it says what its tail holds
    profile: tuple[float, ...] = ()

    def tail_bytes(self, unsent: float) -> float:
        """The RAM still ahead of round 1 (zero pages too) when `unsent` non-zero bytes
        are left: the tail of the RAM that holds them.  Linux guests keep much of
        their non-zero memory at the top of the RAM (lab: the last 14 MiB of a
        512 MiB guest's round 1 were non-zero; predicted as 71 % zero, its pause
        was taken for 46 ms and was 113).

        >>> g = Guest(100.0, 50.0, DirtyCurve(0.0), (0.0, 1.0))
        >>> g.tail_bytes(25.0), Guest(100.0, 50.0, DirtyCurve(0.0)).tail_bytes(25.0)
        (25.0, 50.0)
        """
        per = self._from_the_top
        if not per:
            return unsent * self.memory_bytes / self.nonzero_bytes if self.nonzero_bytes \
                else unsent
        part = self.memory_bytes / len(per)
        tail, left = 0.0, unsent
        for nz in per:
            if left <= nz:
                return tail + (part * left / nz if nz > 0 else 0.0)
            tail, left = tail + part, left - nz
        return self.memory_bytes

    def unsent_bytes(self, tail: float) -> float:
        """The inverse of `tail_bytes`: the non-zero bytes round 1 still has to send when
        `tail` bytes of RAM (zero pages too: QEMU's "remaining" in round 1) lie ahead.
        A drain read a 320 MiB guest's remaining as its bytes to send, when only ~100
        MiB of it were not zero, and prepared the next move ~2 s late.

        >>> g = Guest(100.0, 50.0, DirtyCurve(0.0), (0.0, 1.0))
        >>> g.unsent_bytes(25.0), Guest(100.0, 50.0, DirtyCurve(0.0)).unsent_bytes(50.0)
        (25.0, 25.0)
        >>> g.unsent_bytes(g.tail_bytes(10.0))
        10.0
        """
        per = self._from_the_top
        if not per:
            return min(tail, self.memory_bytes) * self.nonzero_bytes / self.memory_bytes \
                if self.memory_bytes else tail
        part = self.memory_bytes / len(per)
        out, left = 0.0, tail
        for nz in per:
            if left <= part:
                return out + nz * left / part
            out, left = out + nz, left - part
        return self.nonzero_bytes

    @functools.cached_property
    def _from_the_top(self) -> list[float]:
        """The non-zero bytes of each part of the RAM, the top part first (none: even;
        worked out once: every step of round 1 asks)."""
        total = sum(self.profile)
        return [d * self.nonzero_bytes / total for d in reversed(self.profile)] \
            if total > 0 else []


@dataclass(frozen=True)
class Link:
    bandwidth_bytes_s: float  # pre-copy rate (a configured cap, or the link)
    final_bytes_s: float  # stop-and-copy rate (the link: caps do not apply)
    switchover_s: float = 0.0  # the pause beyond the pages: stop, device state, start


@dataclass(frozen=True)
class Round:
    start_s: float
    pending_bytes: float  # what the round had to send when it began


@dataclass(frozen=True)
class Prediction:
    converges: bool
    total_s: float
    downtime_s: float
    transferred_bytes: float
    rounds: int
    detail: list[Round] = field(default_factory=list)
    note: str = ""
    postcopy: bool = False  # ended by post-copy (the pages follow the guest)

    def as_dict(self) -> dict[str, object]:
        return {"converges": self.converges, "total_ms": round(self.total_s * 1000),
                "downtime_ms": round(self.downtime_s * 1000),
                "transferred_bytes": round(self.transferred_bytes), "rounds": self.rounds,
                "note": self.note}


@dataclass(frozen=True)
class Schedule:
    """What the migration policy does over time: downtime limit, throttle, post-copy."""

    downtime_s: float
    # (from time s, downtime limit s) steps, e.g. Nova-style stepping; sorted
    downtime_steps: tuple[tuple[float, float], ...] = ()
    # auto-converge: throttle fraction per round once it engages (QEMU: 20 % + 10 %/round)
    throttle: bool = False
    throttle_effect: float = 1.0  # 1: dirtying is CPU-bound; 0: paced by the guest clock
    postcopy_after_round: int | None = None
    # auto: post-copy once the rounds after round 1 shrink too slowly for this limit
    # (`rounds.hopeless`, the rule the running migration follows)
    postcopy_when_hopeless_s: float | None = None
    setup_s: float = 0.1
    max_time_s: float = 120.0
    detect_stuck: bool = True  # give up once rounds stop shrinking (QEMU itself never does)

    def limit_at(self, t: float) -> float:
        limit = self.downtime_s
        for start, value in self.downtime_steps:
            if t >= start:
                limit = value
        return limit


STEP_S = 0.005
RATE_WINDOW_S = 0.1  # QEMU's rate limiter (BUFFER_DELAY): a capped job's budget period
MAX_STEPS = 40_000  # a long horizon takes longer steps: every prediction is bounded


class PrecopyRun:
    """One pre-copy migration, advanced STEP_S at a time.

    `simulate` runs it to its end for a prediction; the simulated hypervisor
    (`ferry.simulated`) advances it on its clock and, as a policy would, may
    change the downtime limit or switch to post-copy midway.  The fields are
    what QEMU would report: bytes sent, bytes still pending, the round."""

    def __init__(self, guest: Guest, link: Link, sched: Schedule) -> None:
        self.guest, self.link, self.sched = guest, link, sched
        self.t = sched.setup_s
        self.sent = 0.0
        self.unsent = guest.nonzero_bytes
        self.first = True  # in round 1, the estimate counts zero pages too
        self.rounds = [Round(self.t, self.unsent)]
        self.dirty_rate_bytes_s = 0.0  # over the last finished round, as QEMU reports it
        self.limit_s: float | None = None  # a limit set midway overrides the schedule
        self.postcopy_requested = False
        self._throttle = 0.0
        self._curve = guest.curve
        self._since_sync = 0.0
        self._sent_in_round = 0.0
        self._syncs: list[float] = []
        # after round 1, each set's share of the pending bytes: sending takes pages in
        # bitmap order, every set's alike, so the shares change only at a sync
        self._shares = [0.0 for _ in guest.curve.parts()]
        # a capped job sends in rate-limit windows and looks again only in the next
        # one (seen on the lab: ~10 rounds a second at an equilibrium, never finishing)
        self._min_gap = RATE_WINDOW_S if link.bandwidth_bytes_s < link.final_bytes_s else 0.0
        horizon = sched.max_time_s - sched.setup_s
        self._step = max(STEP_S, horizon / MAX_STEPS) if math.isfinite(horizon) else STEP_S

    @property
    def remaining_bytes(self) -> float:
        """QEMU's "remaining": in round 1 it still counts the zero pages."""
        return self.guest.tail_bytes(self.unsent) if self.first else self.unsent

    @property
    def throttle(self) -> float:
        return self._throttle

    def limit_at(self, t: float) -> float:
        return self.limit_s if self.limit_s is not None else self.sched.limit_at(t)

    def step(self) -> Prediction | None:
        """Advance one step; the final prediction once the run has ended."""
        g, sched, b = self.guest, self.sched, self.link.bandwidth_bytes_s
        step = min(self._step, self.unsent / b) if self.unsent > 0 else self._step
        self.unsent = self.unsent - b * step
        if self.unsent < 1.0:  # under a byte is nothing: a step of unsent / b would
            self.unsent = 0.0  # underflow to 0 s and the run stand still (seen: 8e-317)
        self.sent += b * step
        self._sent_in_round += b * step
        self._since_sync += step
        self.t += step
        threshold = b * self.limit_at(self.t)
        estimate = self.remaining_bytes
        # a capped job looks once per rate window, whose budget it sent at once: it
        # first sees the estimate under the threshold anywhere up to a window's bytes
        # below it, half a window on average (lab, 64 MiB/s cap: the pages sent paused
        # were 0.55-0.8 of the threshold, not all of it)
        due = estimate <= threshold - b * self._min_gap / 2 or self.unsent <= 0 \
            or self.postcopy_requested
        if due and self._since_sync >= self._min_gap:
            per_set = self._dirtied()
            dirtied = sum(per_set)
            exact = estimate + dirtied
            if exact <= threshold and not self.postcopy_requested:
                rest = self.unsent + dirtied
                pause = self.link.switchover_s + rest / self.link.final_bytes_s
                return Prediction(True, self.t + pause, pause, self.sent + rest,
                                  len(self.rounds), self.rounds)
            # sync: the dirtied pages join the bitmap and a new round starts
            if sched.throttle and not self.first and dirtied > 0.5 * self._sent_in_round:
                self._throttle = min(0.99, 0.2 if self._throttle == 0 else self._throttle + 0.1)
                self._curve = g.curve.scaled(1.0 - self._throttle * sched.throttle_effect)
            if self._since_sync > 0:
                self.dirty_rate_bytes_s = dirtied / self._since_sync
            pending = [p + d for p, d in zip(self._pending(), per_set, strict=True)] \
                if not self.first else [self.unsent + per_set[0], *per_set[1:]]
            self.unsent, self.first = self.unsent + dirtied, False
            self._shares = [p / self.unsent if self.unsent > 0 else 0.0 for p in pending]
            self._syncs.append(self.unsent - threshold)  # progress: the excess over it
            self._since_sync = self._sent_in_round = 0.0
            self.rounds.append(Round(self.t, self.unsent))
            slow = self._hopeless()
            if self.postcopy_requested or (sched.postcopy_after_round is not None
                                           and len(self.rounds) > sched.postcopy_after_round) \
                    or slow:
                pause = POSTCOPY_PAUSE_S  # device state only; the pages follow
                why = "rounds shrink slowly: " if slow else ""
                # the pages follow at post-copy's share of the rate (lab: 80 MiB
                # took 6.5 s after a switch at 43 MiB/s, 1.9 s at the full rate)
                return Prediction(True, self.t + pause + self.unsent / (b * POSTCOPY_SHARE),
                                  pause,
                                  self.sent + self.unsent, len(self.rounds), self.rounds,
                                  f"{why}post-copy: the guest runs on the destination while "
                                  f"the last {self.unsent / 2**20:.0f} MiB follow",
                                  postcopy=True)
            if sched.detect_stuck and _stuck(self._syncs, sched) and not self._may_calm():
                return Prediction(False, self.t, 0.0, self.sent, len(self.rounds), self.rounds,
                                  f"no progress: {self.unsent / 2**20:.1f} MiB dirtied per "
                                  "round is not shrinking")
        if self.t > sched.max_time_s:
            return Prediction(False, self.t, 0.0, self.sent, len(self.rounds), self.rounds,
                              f"still copying after {sched.max_time_s:.0f} s")
        return None


    def _dirtied(self) -> list[float]:
        """Per set, the bytes dirtied since the last sync that were not pending already
        (a page dirtied while still pending is one bitmap bit, not two): in round 1
        any page is pending as long as it is unsent; later a set's pages are pending
        as far as they were dirtied and not sent since (pages no set dirties count
        with the first, as its pool)."""
        g = self.guest
        got = self._curve.parts_between(self.t - self._since_sync, self.t)
        if self.first:
            return [d * max(0.0, 1.0 - self.unsent / g.nonzero_bytes) for d in got]
        new = []
        for i, (d, p, (_, w)) in enumerate(zip(got, self._pending(), self._curve.parts(),
                                               strict=True)):
            ws = min(w, g.memory_bytes)
            if i == 0 and self._curve.streaming:  # a stream meets its pending pages
                new.append(max(0.0, min(d, ws - p)))  # only once it wraps
            else:  # random writes hit pending pages in proportion
                new.append(d * max(0.0, 1.0 - p / ws))
        return new

    def _hopeless(self) -> bool:
        limit = self.sched.postcopy_when_hopeless_s
        if limit is None or len(self.rounds) < 3:
            return False
        n = len(self.rounds)  # only the last rounds count: a long run has thousands
        return hopeless({i + 1: self.rounds[i].pending_bytes
                         for i in range(max(1, n - ROUNDS_SEEN), n)},
                        self.link.bandwidth_bytes_s, limit)

    def _pending(self) -> list[float]:
        """Each set's bytes pending now (after round 1)."""
        return [share * self.unsent for share in self._shares]

    def _may_calm(self) -> bool:
        """A bursty guest's rounds stop shrinking in its bursts and may finish in a
        quiet phase: no progress is judged over less than two of its cycles."""
        b = self._curve.bursts
        return b is not None and len(self.rounds) > 1 and \
            self.t - self.rounds[1].start_s < 2 * b.period_s


POSTCOPY_PAUSE_S = 0.05
# post-copy's background copy runs at this share of the rate pre-copy reached: the
# pages the guest touches queue behind whatever fills the link (lab, 16 MiB/s: 1.3-2.9 s
# guest-seen gaps at full speed, 0.3-0.5 s at a quarter to a half); the engine sets it
POSTCOPY_SHARE = 0.25
PHASES = 9  # places in a burst cycle a prediction is made from when its phase is unknown


def simulate(guest: Guest, link: Link, sched: Schedule) -> Prediction:
    """Simulate pre-copy (optionally stepped, throttled, or finished by post-copy).

    A bursty guest whose phase is not known (a move at some later time): the
    median of runs started at PHASES places spread over its cycle, saying how
    many converge.  Where in the cycle round 1 ends moves the result by up to a
    cycle, and a burst's start, taken before, was among the most optimistic
    places (held-out lab guests, 7.5-11.8 s over the cycle for one that took
    10.4 s; 7.3-8.3 s for one that took 9.8 s)."""
    return median_run(simulate_places(guest, link, sched))


def simulate_places(guest: Guest, link: Link, sched: Schedule) -> list[Prediction]:
    """A run from each place `at_phases` gives (one for a guest whose phase is known)."""
    return [_simulate(g, link, sched) for g in at_phases(guest)]


def median_run(runs: list[Prediction]) -> Prediction:
    """The one run, or the median of runs from places over a burst cycle (those that
    do not converge last), saying how many converge."""
    if len(runs) == 1:
        return runs[0]
    mid = sorted(runs, key=lambda p: (not p.converges, p.total_s))[len(runs) // 2]
    ok = sum(p.converges for p in runs)
    said = f"phase in its burst cycle unknown: the median of {len(runs)} places " \
           f"in it ({ok} converge)"
    return replace(mid, note=f"{said}; {mid.note}" if mid.note else said)


def at_phases(guest: Guest) -> list[Guest]:
    """The guest at PHASES places spread over its burst cycle if that phase is not
    known, else the guest alone."""
    b = guest.curve.bursts
    if b is None or b.phase_s is not None:
        return [guest]
    return [replace(guest, curve=replace(guest.curve, bursts=b.at(b.period_s * k / PHASES)))
            for k in range(PHASES)]


def _simulate(guest: Guest, link: Link, sched: Schedule) -> Prediction:
    run = PrecopyRun(guest, link, sched)
    while True:
        done = run.step()
        if done is not None:
            return done


def _stuck(syncs: list[float], sched: Schedule) -> bool:
    """The excess over the threshold stopped shrinking, and nothing in the schedule
    (a rising limit, a throttle, post-copy) can change that."""
    if sched.throttle or sched.downtime_steps or sched.postcopy_after_round is not None:
        return False
    return len(syncs) >= 6 and syncs[-1] >= 0.98 * syncs[-4]
