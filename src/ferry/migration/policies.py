"""How a running migration adapts: pure decisions over progress samples.

The engine feeds every sample to `Adapter.decide`, which returns actions with
a reason each (recorded as migration events).  Stall detection looks at what
was pending when each round began (libvirt's iteration counter):

| round starts with | 120 MiB | 100 MiB | 95 MiB | 93 MiB | → stalled: the last  |
|                   |         |         |        |        | 3 differ by < 10 %   |
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ferry.domain.models import Sample
from ferry.domain.vocab import AbortReason, EventKind, OnTimeout, Policy
from ferry.predict.rounds import SLOW_RESEND, need_s, resend_factor
from ferry.predict.strategy import AutoSettings

STALL_ROUNDS = 3
STALL_SHRINK = 0.9


class ActionKind(StrEnum):
    SET_DOWNTIME = "set_downtime"
    START_POSTCOPY = "start_postcopy"
    ABORT = "abort"

    @property
    def event(self) -> EventKind:
        """The event that records this action (an abort is recorded as its reason)."""
        return {ActionKind.SET_DOWNTIME: EventKind.SET_DOWNTIME,
                ActionKind.START_POSTCOPY: EventKind.START_POSTCOPY,
                ActionKind.ABORT: EventKind.TIMEOUT}[self]

    @property
    def failed_event(self) -> EventKind:
        return {ActionKind.SET_DOWNTIME: EventKind.SET_DOWNTIME_FAILED,
                ActionKind.START_POSTCOPY: EventKind.START_POSTCOPY_FAILED,
                ActionKind.ABORT: EventKind.ABORT_FAILED}[self]


@dataclass(frozen=True)
class Action:
    kind: ActionKind
    reason: str
    downtime_ms: int | None = None
    abort_for: AbortReason = AbortReason.TIMEOUT  # ABORT: why


@dataclass(frozen=True)
class PolicyConfig:
    """What one migration's policy was told: its limits and, per policy, its settings."""

    policy: Policy
    max_downtime_ms: int
    timeout_s: float
    on_timeout: OnTimeout = OnTimeout.ABORT
    auto: AutoSettings | None = None  # auto only
    steps: tuple[tuple[float, float], ...] = ()  # stepped only: (from s, limit s)
    compressed: bool = False  # the stream is compressed: it cannot switch to post-copy

    def as_dict(self) -> dict[str, Any]:
        """Stored with the migration, so a restarted controller resumes the policy."""
        return {"policy": self.policy.value, "max_downtime_ms": self.max_downtime_ms,
                "timeout_s": self.timeout_s, "on_timeout": self.on_timeout.value,
                "auto": dataclasses.asdict(self.auto) if self.auto else None,
                "steps": [list(s) for s in self.steps], "compressed": self.compressed}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyConfig:
        """The inverse of `as_dict`.

        >>> c = PolicyConfig(Policy.STEPPED, 500, 60.0, steps=((0.0, 0.05), (75.0, 0.1)))
        >>> PolicyConfig.from_dict(c.as_dict()) == c
        True
        """
        auto = d.get("auto")
        return cls(Policy(d["policy"]), int(d["max_downtime_ms"]), float(d["timeout_s"]),
                   OnTimeout(d["on_timeout"]), AutoSettings(**auto) if auto else None,
                   tuple((float(a), float(b)) for a, b in d.get("steps") or ()),
                   bool(d.get("compressed", False)))


@dataclass
class Adapter:
    """Per-migration memory of what was seen and done."""

    cfg: PolicyConfig
    round_starts: dict[int, int] = field(default_factory=dict)  # iteration -> pending bytes
    raised_at_round: int = 0  # the round of the last raise (stalls count after it)
    current_ms: int | None = None  # auto: the downtime limit set now
    postcopy: bool = False
    timed_out: bool = False
    given_up: bool = False  # aborted for good: nothing more to decide
    step: int = 0

    def decide(self, s: Sample, elapsed_s: float) -> list[Action]:
        if s.iteration >= 1 and s.iteration not in self.round_starts:
            self.round_starts[s.iteration] = s.memory_remaining_bytes
        acts: list[Action] = []
        if self.given_up:
            return acts
        if elapsed_s > self.cfg.timeout_s and not self.timed_out:
            self.timed_out = True
            force = self.cfg.on_timeout == OnTimeout.FORCE
            if force and self._may_postcopy() and not self.postcopy:
                self.postcopy = True
                return [Action(ActionKind.START_POSTCOPY, f"timeout after {elapsed_s:.0f} s: "
                               "forcing completion with post-copy")]
            return [Action(ActionKind.ABORT, f"timeout after {elapsed_s:.0f} s: aborting; "
                           "the VM stays on the source")]
        p = self.cfg.policy
        if p == Policy.POSTCOPY and s.iteration >= 2 and not self.postcopy:
            self.postcopy = True
            acts.append(Action(ActionKind.START_POSTCOPY, "round 1 done: switching to post-copy"))
        elif p == Policy.STEPPED:
            while self.step + 1 < len(self.cfg.steps) and elapsed_s >= self.cfg.steps[self.step
                                                                                    + 1][0]:
                self.step += 1
                ms = round(self.cfg.steps[self.step][1] * 1000)
                acts.append(Action(ActionKind.SET_DOWNTIME, f"step {self.step} at "
                                   f"{elapsed_s:.0f} s: downtime limit {ms} ms", ms))
        elif p == Policy.AUTO:
            acts += self._auto(s)
        return acts

    def _may_postcopy(self) -> bool:
        return self.cfg.policy in (Policy.AUTO, Policy.POSTCOPY) and not self.cfg.compressed

    def _switch(self, why: str) -> list[Action]:
        """Post-copy where the job may switch; a compressed one cannot, so it ends (the
        guest stays on the source; a drain tries it once more, in clear)."""
        if not self._may_postcopy():
            self.given_up = True
            return [Action(ActionKind.ABORT, f"{why}; a compressed stream cannot switch "
                           "to post-copy: aborting, the VM stays on the source",
                           abort_for=AbortReason.HOPELESS)]
        self.postcopy = True
        return [Action(ActionKind.START_POSTCOPY, f"{why}, switching to post-copy")]

    def _auto(self, s: Sample) -> list[Action]:
        auto = self.cfg.auto
        assert auto is not None
        if auto.postcopy_after_round is not None and not self.postcopy and \
                s.iteration > auto.postcopy_after_round:
            self.postcopy = True
            return [Action(ActionKind.START_POSTCOPY, f"{auto.reason}: round "
                           f"{auto.postcopy_after_round} done, switching to post-copy")]
        if self.postcopy:
            return []  # (after the switch a limit means nothing: lab, one was raised)
        limit_ms = self.cfg.max_downtime_ms
        resent = resend_factor(self.round_starts, s.bandwidth_bytes_s, limit_ms / 1000)
        if resent > SLOW_RESEND:
            pending = self.round_starts[max(self.round_starts)]
            return self._switch(f"rounds shrink slowly and leave {pending / 2**20:.0f} MiB "
                                f"pending, {_need_ms(pending, s.bandwidth_bytes_s):.0f} ms "
                                f"at the rate seen: {_resent(resent, limit_ms)}")
        if not stalled(self.round_starts, since_round=self.raised_at_round):
            return []
        pending = self.round_starts[max(self.round_starts)]
        if self.current_ms is None:
            self.current_ms = round(auto.start_downtime_s * 1000)
        # just enough for QEMU to stop with what one round leaves pending (it
        # switches when pending / bandwidth fits the limit)
        need = _need_ms(pending, s.bandwidth_bytes_s) if s.bandwidth_bytes_s > 0 else limit_ms
        if self.current_ms < limit_ms:
            ms = min(limit_ms, max(round(need), 2 * self.current_ms))  # at least double
            old, self.current_ms = self.current_ms, ms
            self.raised_at_round = max(self.round_starts)
            return [Action(ActionKind.SET_DOWNTIME, f"progress stalled at {pending / 2**20:.0f}"
                           f" MiB pending per round: downtime limit {old} -> {ms} ms", ms)]
        return self._switch(f"still stalled at {pending / 2**20:.0f} MiB per round with "
                            "the full downtime limit")


def _resent(times: float, limit_ms: int) -> str:
    if math.isinf(times):
        return f"no limit up to {limit_ms} ms lets pre-copy finish"
    return f"pre-copy would send it {times:.1f} times over before a {limit_ms} ms limit " \
        "lets it stop"


def _need_ms(pending: float, bandwidth_bytes_s: float) -> float:
    return need_s(pending, bandwidth_bytes_s) * 1000


def stalled(round_starts: dict[int, int], since_round: int = 0) -> bool:
    """The last STALL_ROUNDS round starts (after `since_round`) shrank < 10 % overall.

    >>> stalled({1: 120, 2: 100, 3: 95, 4: 93})
    True
    >>> stalled({1: 120, 2: 100, 3: 80, 4: 60})
    False
    """
    rounds = sorted(r for r in round_starts if r > max(since_round, 1))
    if len(rounds) < STALL_ROUNDS:
        return False
    last = [round_starts[r] for r in rounds[-STALL_ROUNDS:]]
    return last[-1] >= STALL_SHRINK * last[0]
