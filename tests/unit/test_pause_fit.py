"""What a switchover costs, read from earlier pauses (predict/pause.py)."""

from __future__ import annotations

import pytest

from ferry.predict.pause import MAX_SPEEDUP, Sample, fit, paused_bytes

MIB = 2**20
LINK = 200 * MIB


def test_too_few_pauses_teach_nothing() -> None:
    assert fit([(4 * MIB, 0.04), (8 * MIB, 0.06)], LINK) is None


def test_cost_and_rate_are_read_from_rests_that_differ() -> None:
    pts = [(r * MIB, 0.015 + r / 260) for r in (3, 4, 9, 12, 18)]
    s = fit(pts, LINK)
    assert s is not None
    assert s.cost_s == pytest.approx(0.015, abs=1e-6)
    assert s.speedup == pytest.approx(1.3, rel=1e-3)


def test_alike_rests_give_the_cost_at_the_links_rate() -> None:
    """Rests within a few MiB of each other cannot tell a rate from noise."""
    pts = [(4 * MIB, 0.05), (5 * MIB, 0.045), (6 * MIB, 0.06), (4.5 * MIB, 0.052)]
    s = fit(pts, LINK)
    assert s is not None and s.speedup == 1.0
    assert s.cost_s == pytest.approx(0.0298, abs=0.001)  # median of pause - rest / link


def test_a_slope_the_pauses_noise_hides_is_not_read_as_a_rate() -> None:
    """The eight pauses before tls14's 1240 (rest MiB, pause ms, as the lab recorded
    them): least squares said 459 MiB/s on a 214 MiB/s link, with a standard error
    of 66 % of the slope; the 75 ms pause was then predicted at 51.  Such a slope
    gives the link's rate, and the cost is read at it."""
    link = 214 * MIB
    seen = [(4.0, 36), (7.5, 36), (4.0, 39), (7.2, 50), (8.7, 57), (6.8, 42), (3.8, 44),
            (5.8, 51)]
    s = fit([(r * MIB, ms / 1000) for r, ms in seen], link)
    assert s is not None and s.speedup == pytest.approx(1.0)
    assert 0.010 < s.cost_s < 0.025
    # the same rests with pauses on a line: the rate is read
    exact = fit([(r * MIB, 0.02 + r / 300) for r, _ in seen], link)
    assert exact is not None and exact.speedup == pytest.approx(300 / 214, rel=1e-3)


def test_the_rate_is_kept_between_the_link_and_four_times_it() -> None:
    flat = fit([(r * MIB, 0.03) for r in (2, 8, 14, 20)], LINK)  # pauses ignore the pages
    assert flat is not None and flat.speedup == MAX_SPEEDUP
    slow = fit([(r * MIB, r / 50) for r in (2, 8, 14, 20)], LINK)  # slower than the link
    assert slow is not None and slow.speedup == 1.0
    assert slow.cost_s > 0


def test_a_cost_below_zero_is_read_as_zero() -> None:
    s = fit([(10 * MIB, 0.01), (11 * MIB, 0.012), (12 * MIB, 0.011)], LINK)
    assert s is not None and s.cost_s == 0.0


def test_a_rest_is_not_read_from_a_sample_long_before_the_pause() -> None:
    assert paused_bytes(None, 3.0, 0.1, 100 * MIB) is None
    assert paused_bytes(Sample(1.0, 50 * MIB, 50 * MIB), 3.0, 0.1, 100 * MIB) is None
    # a sample inside the pause is not "before" it
    assert paused_bytes(Sample(2.95, 99 * MIB, 50 * MIB), 3.0, 0.1, 100 * MIB) is None
    near = paused_bytes(Sample(2.8, 90 * MIB, 50 * MIB), 3.0, 0.1, 100 * MIB)
    assert near == pytest.approx(5 * MIB)
