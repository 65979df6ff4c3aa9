"""`ferry predict` on simulated guests: how long it looks at the dirty curve, where
each input came from, and the range the readings' errors allow."""

from __future__ import annotations

import pytest

from ferry.domain.models import MigrationState
from ferry.domain.vocab import Policy, WorkloadPattern
from ferry.errors import InvalidRequest
from ferry.predict.bursts import MIN_PROBE_S
from tests.sim.conftest import SimEnv


def _windows(out: dict) -> list[int]:  # type: ignore[type-arg]
    return [w["window_ms"] for w in out["inputs"]["dirty_windows"]]


def test_a_slow_wide_dirtier_is_watched_up_to_round_one_or_the_budget(env: SimEnv) -> None:
    """2 MiB/s over 256 MiB: nowhere near flat within seconds; round 1 of a 512 MiB
    guest at 16 MiB/s lasts longer than the budget, so the windows grow to it."""
    vm = env.vm(memory=512, dirty=2, wss=256)
    out = env.svc.migrations.predict(vm, "node2", bandwidth_mib_s=16)
    w = _windows(out)
    assert w[:4] == [250, 500, 1000, 2000] and len(w) >= 5, w
    assert sum(w) <= 16_000
    assert out["inputs"]["dirty_wanted_up_to_s"] > 16
    assert out["sources"]["link"] == "capped"
    assert out["sources"]["nonzero_memory"] == "measured"
    assert out["sources"]["dirty_curve"] == "measured"


def test_a_curve_that_flattens_or_a_short_round_one_ends_the_look_early(env: SimEnv) -> None:
    flat = env.vm("flat", memory=256, dirty=64, wss=8)  # 8 MiB dirtied within ~0.25 s
    assert len(_windows(env.svc.migrations.predict(flat, "node2", bandwidth_mib_s=64))) <= 3
    idle = env.vm("idle", memory=256, dirty=0)  # nothing seen in a second: enough
    assert _windows(env.svc.migrations.predict(idle, "node2", bandwidth_mib_s=16)) == \
        [250, 500, 1000]
    short = env.svc.migrations.predict(idle, "node2")  # round 1 takes < 1 s at 100 MiB/s
    assert _windows(short)[-1] == round(short["inputs"]["dirty_wanted_up_to_s"] * 1000)


def test_every_policy_has_a_range_around_its_prediction(env: SimEnv) -> None:
    vm = env.vm(memory=512, dirty=8, wss=128)
    out = env.svc.migrations.predict(vm, "node2", bandwidth_mib_s=32)
    for name, p in out["strategies"].items():
        lo, hi = p["range"]["total_ms"]
        assert lo <= p["total_ms"] <= hi, (name, p)
        assert p["converges"] in p["range"]["converges"], (name, p)


def test_a_guest_dirtying_in_bursts_is_seen_and_moves_in_a_pause(env: SimEnv) -> None:
    """2 s at 90 MiB/s, 2 s idle, over 40 MiB (the lab's `burst`), capped at 32 MiB/s:
    at its burst rate pre-copy never finishes, but a pause is long enough to send the
    working set (1.25 s).  The held-out lab run predicted "no converge" for two such
    guests that then moved."""
    vm = env.vm(memory=256, dirty=45, wss=40, pattern=WorkloadPattern.BURST)
    out = env.svc.migrations.predict(vm, "node2", bandwidth_mib_s=32)
    b = out["inputs"]["bursts"]
    assert b is not None and b["probe_windows"] > 4, out["inputs"]
    assert 1.5 <= b["on_s"] <= 2.5 and 1.5 <= b["off_s"] <= 2.5, b
    assert out["inputs"]["dirty_rate_mib_s"] == pytest.approx(90, rel=0.15)
    pre = out["strategies"]["precopy"]
    assert pre["converges"], pre
    m = env.migrate(vm, "node2", bandwidth_mib_s=32, policy=Policy.PRECOPY)
    assert m.state == MigrationState.COMPLETED, m.error


def test_a_steady_guest_is_not_taken_for_a_bursty_one(env: SimEnv) -> None:
    """Faster than the cap, it is probed for pauses before being said never to
    converge (a burst that saturates its set within each window looks steady)."""
    vm = env.vm(memory=256, dirty=45, wss=40)
    out = env.svc.migrations.predict(vm, "node2", bandwidth_mib_s=32)
    assert out["inputs"]["bursts"] is None
    assert not out["strategies"]["precopy"]["converges"]
    doubling_s = sum(_windows(out)) / 1000
    assert out["inputs"]["dirty_measured_s"] >= doubling_s + MIN_PROBE_S, out["inputs"]


def test_a_guest_slower_than_the_link_is_not_probed(env: SimEnv) -> None:
    vm = env.vm(memory=256, dirty=8, wss=64)
    out = env.svc.migrations.predict(vm, "node2", bandwidth_mib_s=32)
    doubling_s = sum(_windows(out)) / 1000
    assert out["inputs"]["dirty_measured_s"] < doubling_s + MIN_PROBE_S, out["inputs"]


def test_a_hot_cold_guest_is_measured_as_two_sets(env: SimEnv) -> None:
    """9 in 10 writes to a hot eighth of 192 MiB (the lab's `hotcold`)."""
    vm = env.vm(memory=512, dirty=115, wss=192, pattern=WorkloadPattern.HOTCOLD)
    out = env.svc.migrations.predict(vm, "node2", bandwidth_mib_s=64)
    cold = out["inputs"]["cold_set"]
    assert cold is not None and 16 <= out["inputs"]["working_set_mib"] <= 32, out["inputs"]
    pre = out["strategies"]["precopy"]
    m = env.migrate(vm, "node2", bandwidth_mib_s=64, policy=Policy.PRECOPY)
    assert pre["converges"] == (m.state == MigrationState.COMPLETED), (pre, m.error)


def test_a_sequential_guest_is_measured_as_streaming(env: SimEnv) -> None:
    """A guest writing 12 MiB/s in order through 64 MiB (the lab's `sequential`)
    dirties r*t until it wraps: a saturating curve bent that line into a faster
    rate over a larger set (15.8 MiB/s over 94 MiB on the lab) and, at a 16 MiB/s
    cap, pre-copy was predicted at 33 s for 23.  Read as a stream, its rate and set
    are the workload's, and the move takes what was predicted."""
    vm = env.vm(memory=256, dirty=12, wss=64, pattern=WorkloadPattern.SEQUENTIAL)
    out = env.svc.migrations.predict(vm, "node2", bandwidth_mib_s=16)
    got = out["inputs"]
    assert got["streaming"], got
    assert got["dirty_rate_mib_s"] == pytest.approx(12, rel=0.1), got
    assert got["working_set_mib"] == pytest.approx(64, rel=0.15), got
    pre = out["strategies"]["precopy"]
    m = env.migrate(vm, "node2", bandwidth_mib_s=16, policy=Policy.PRECOPY)
    assert m.state == MigrationState.COMPLETED and pre["converges"], (pre, m.error)
    assert m.total_ms == pytest.approx(pre["total_ms"], rel=0.15), (pre, m.total_ms)


def test_a_workload_that_cannot_fit_its_guest_is_refused_up_front(env: SimEnv) -> None:
    """`--memory 160 --workload-wss 96` booted, sent nothing and failed after 90 s with
    "sent no heartbeat": refused before anything is defined, saying the limit."""
    with pytest.raises(InvalidRequest, match=r"working set must be 1\.\.83 MiB for a 160 MiB"):
        env.vm("tight", memory=160, wss=96)
    assert all("tight" not in env.cluster.host(h).domains for h in ("node1", "node2", "node3"))
    assert env.vm("fits", memory=160, wss=83) == "fits"
