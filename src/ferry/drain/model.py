"""A drain's moves in the model's terms, and what a move predicts at a share of its
link (pure): the figures `schedule` simulates with.

A move's rate is bounded three ways: its share of its source's and its
destination's link, what one migration from its source reaches alone (its
QEMU thread, TCP, encryption: `streams`), and its share of what all
migrations from the source reach together (`together`: where the host's CPUs
are busy, a second stream adds nothing, `predict.load.streams_together`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ferry.domain.vocab import Policy
from ferry.predict.inputs import SWITCHOVER_S
from ferry.predict.precopy import Guest, Link, Prediction, simulate
from ferry.predict.strategy import Inputs, schedule_for

DEFAULT_OVERHEAD_S = 3.0  # measured on the lab: a move spends ~2-3.5 s off the link
DEFAULT_FINISH_S = 1.2  # lab: the job's end to the VM settled on the destination
STREAM_FILLS = 0.75
SHARE_STEP = 0.02  # shares are rounded to 2 % of a link for the predictions' cache
EPS = 1e-6
QUIET_SHARE = 0.05  # round 2 at most this share of round 1: the guest is quiet
HORIZON_S = 3600.0  # a move simulated this long at most (no timeout in a drain's model)


@dataclass(frozen=True)
class MoveSpec:
    """One VM to move, with what the model needs."""

    vm: str
    source: str
    destination: str
    memory_mib: int
    guest: Guest
    limit_s: float  # the pause allowed
    cpu_bound: float = 0.0
    overhead_s: float = DEFAULT_OVERHEAD_S
    setup_s: float = 0.1
    finish_s: float = DEFAULT_FINISH_S  # after its last byte: libvirt's finish, settling
    compressed: bool = False  # its stream is compressed (`guest` sends round 1 so)


class Model:
    """Predictions of a move at a share of its link, cached (shares rounded).

    `streams`: what one migration from a host reaches alone (QEMU's migration
    thread, TCP); a host absent there is one whose single migration fills its
    link (then more at once only split it: each slower, none sooner).
    `together`: what all migrations from a host reach at once (absent: the link;
    busy CPUs: about what one reaches); one stream, even one taken to fill the
    link, counts for no more than that."""

    def __init__(self, links: dict[str, float], streams: dict[str, float] | None = None,
                 together: dict[str, float] | None = None) -> None:
        self.links = links
        self.streams = streams or {}
        self.together_bytes_s = together or {}
        self._cache: dict[tuple[str, int], tuple[Prediction, bool]] = {}

    def link(self, host: str) -> float:
        return self.links[host]

    def stream(self, host: str) -> float:
        """One migration's rate from `host`: what one was seen to reach (history keeps
        the best of the latest, the nearest to one alone), at most the link and what
        all of the host's migrations reach together (busy CPUs: lab, two encrypted
        streams planned at 24 MiB/s each reached ~31 together).  Not rounded up to the
        link: on the lab one stream alone reached 44-47 MiB/s of a 48 MiB/s link (the
        shaper counts TCP/IP headers too), and each of twelve drains' ETAs, planned
        with 48, came out short (2-40 %, most of it dirtiers read low)."""
        s, link = self.streams.get(host, math.inf), self.links[host]
        return min(s, link, self.together(host))

    def together(self, host: str) -> float:
        """What every migration from `host` reaches at once: at least what one was
        seen to reach, at most the link."""
        link = self.links[host]
        seen = min(self.streams.get(host, math.inf), link)
        return min(link, max(seen, self.together_bytes_s.get(host, link)))

    def fills(self, host: str) -> bool:
        """Does one migration from `host` reach (nearly) all that several do?  Then
        more at once only split it."""
        return self.stream(host) >= STREAM_FILLS * self.together(host)

    def share(self, host: str, n: int) -> float:
        """Each one's rate when `n` migrations leave `host` at once (its link's side)."""
        return min(self.stream(host), self.link(host) / n, self.together(host) / n)

    def _at(self, m: MoveSpec, share: float) -> tuple[Prediction, bool]:
        top = min(self.link(m.source), self.link(m.destination))
        k = max(1, round(min(share, top) / top / SHARE_STEP))
        key = (m.vm, k)
        if key not in self._cache:
            rate = k * SHARE_STEP * top
            # `auto` chooses its schedule on the same horizon it is simulated on: the
            # step grows with the horizon, and a schedule chosen on finer steps (a
            # tiny working set converging at the first limit) stalled on coarser
            # ones without the raise `auto` would have planned
            inp = Inputs(m.guest, Link(rate, rate, SWITCHOVER_S), m.limit_s,
                         cpu_bound=m.cpu_bound, timeout_s=HORIZON_S, setup_s=m.setup_s)
            pred = simulate(m.guest, inp.link, schedule_for(Policy.AUTO, inp))
            self._cache[key] = (pred, pred.converges and not pred.postcopy)
        return self._cache[key]

    def predict(self, m: MoveSpec, share: float) -> Prediction:
        return self._at(m, share)[0]

    def fits(self, m: MoveSpec, share: float) -> bool:
        """Converges in pre-copy within its pause limit at this share (post-copy, planned
        or because the rounds would shrink too slowly, is not converging here)."""
        return self._at(m, share)[1]

    def costs_little(self, m: MoveSpec, share: float) -> bool:
        """What the move sends at this share beyond what it sends alone takes its link
        less time than the fixed costs sharing overlaps (its set-up and finish)."""
        alone = self.predict(m, self.stream(m.source)).transferred_bytes
        extra = self.predict(m, share).transferred_bytes - alone
        return extra / self.link(m.source) <= m.setup_s + m.finish_s

    def alone(self, m: MoveSpec) -> bool:
        """Converges only with all one stream reaches (nothing sharing its link)."""
        return not self.fits(m, self.stream(m.source))


def quiet(guest: Guest, rate_bytes_s: float) -> bool:
    """What the guest dirties while round 1 runs at this rate is at most QUIET_SHARE of
    round 1: it converges whatever shares its link.  Judged on the curve, not its
    initial slope: an idle guest's kernel re-dirties a few hundred KiB quickly (lab:
    10-18 MB/s measured over a 0.4-0.7 MB working set), which a rate alone would
    call a dirtier."""
    t1 = guest.nonzero_bytes / max(rate_bytes_s, EPS)
    return guest.curve.bytes_in(t1) <= QUIET_SHARE * guest.nonzero_bytes
