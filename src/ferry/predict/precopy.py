"""The pre-copy model: simulate QEMU's rounds to predict a migration (pure).

QEMU sends every page once (round 1; zero pages cost almost nothing), then
the pages dirtied meanwhile, and so on.  Its switchover rule (QEMU >= 8):
while sending it keeps an *estimate* of what is pending (the unsent part of
the dirty bitmap); when the estimate fits in bandwidth x downtime limit it
syncs the bitmap to get the *exact* figure (unsent + dirtied since the last
sync).  If that fits too it pauses the guest and sends the rest; if not, the
sync starts a new round.  The final copy ignores a configured bandwidth cap:
it runs at link speed.  The simulation advances in STEP_S steps, checking
the rule after each, as QEMU checks after each chunk it sends.

Worked example (256 MiB guest, all of it non-zero, idle, 32 MiB/s, 300 ms):

| t       | what happens                                                |
|---------|-------------------------------------------------------------|
| 0.1 s   | setup done, round 1 starts, 256 MiB pending                 |
| 7.8 s   | estimate 9.6 MiB = 32 MiB/s x 0.3 s; exact also 9.6: pause  |
| 8.1 s   | 9.6 MiB sent paused: total 8.1 s, downtime 300 ms           |
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ferry.predict.dirty import DirtyCurve


@dataclass(frozen=True)
class Guest:
    memory_bytes: float
    nonzero_bytes: float  # what round 1 really has to send
    curve: DirtyCurve


@dataclass(frozen=True)
class Link:
    bandwidth_bytes_s: float  # pre-copy rate (a configured cap, or the link)
    final_bytes_s: float  # stop-and-copy rate (the link: caps do not apply)


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
    setup_s: float = 0.1
    max_time_s: float = 120.0

    def limit_at(self, t: float) -> float:
        limit = self.downtime_s
        for start, value in self.downtime_steps:
            if t >= start:
                limit = value
        return limit


STEP_S = 0.005


def simulate(guest: Guest, link: Link, sched: Schedule) -> Prediction:
    """Simulate pre-copy (optionally stepped, throttled, or finished by post-copy)."""
    b = link.bandwidth_bytes_s
    t = sched.setup_s
    sent = 0.0
    rounds: list[Round] = []
    throttle = 0.0
    first = True  # in round 1, the estimate counts zero pages too
    unsent = guest.nonzero_bytes
    scale = guest.memory_bytes / guest.nonzero_bytes if guest.nonzero_bytes else 1.0
    since_sync = 0.0
    sent_in_round = 0.0
    syncs: list[float] = []
    curve = guest.curve
    rounds.append(Round(t, unsent))
    while True:
        step = min(STEP_S, unsent / b) if unsent > 0 else STEP_S
        unsent -= b * step
        unsent = max(unsent, 0.0)
        sent += b * step
        sent_in_round += b * step
        since_sync += step
        t += step
        threshold = b * sched.limit_at(t)
        estimate = unsent * (scale if first else 1.0)
        if estimate <= threshold or unsent <= 0:
            # a page dirtied while still pending is one bitmap bit, not two
            pool = guest.nonzero_bytes if first else min(guest.curve.wss_bytes,
                                                         guest.memory_bytes)
            dirtied = curve.bytes_in(since_sync) * max(0.0, 1.0 - unsent / pool)
            exact = estimate + dirtied
            if exact <= threshold:
                rest = unsent + dirtied
                pause = rest / link.final_bytes_s
                return Prediction(True, t + pause, pause, sent + rest, len(rounds), rounds)
            # sync: the dirtied pages join the bitmap and a new round starts
            if sched.throttle and not first and dirtied > 0.5 * sent_in_round:
                throttle = min(0.99, 0.2 if throttle == 0 else throttle + 0.1)
                curve = guest.curve.scaled(1.0 - throttle * sched.throttle_effect)
            unsent, first = unsent + dirtied, False
            syncs.append(unsent - threshold)  # progress is the excess over the threshold
            since_sync = sent_in_round = 0.0
            rounds.append(Round(t, unsent))
            if sched.postcopy_after_round is not None and \
                    len(rounds) > sched.postcopy_after_round:
                pause = 0.05  # device state only; the pages follow while the guest runs
                return Prediction(True, t + pause + unsent / b, pause, sent + unsent,
                                  len(rounds), rounds,
                                  f"post-copy: the guest runs on the destination while the "
                                  f"last {unsent / 2**20:.0f} MiB follow")
            if _stuck(syncs, sched):
                return Prediction(False, t, 0.0, sent, len(rounds), rounds,
                                  f"no progress: {unsent / 2**20:.1f} MiB dirtied per round "
                                  "is not shrinking")
        if t > sched.max_time_s:
            return Prediction(False, t, 0.0, sent, len(rounds), rounds,
                              f"still copying after {sched.max_time_s:.0f} s")


def _stuck(syncs: list[float], sched: Schedule) -> bool:
    """The excess over the threshold stopped shrinking, and nothing in the schedule
    (a rising limit, a throttle, post-copy) can change that."""
    if sched.throttle or sched.downtime_steps or sched.postcopy_after_round is not None:
        return False
    return len(syncs) >= 6 and syncs[-1] >= 0.98 * syncs[-4]
