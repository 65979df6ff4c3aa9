"""The dirty-page curve's helpers, with the numbers worked out by hand."""

import math

import pytest

from ferry.predict.dirty import MIB, DirtyCurve, fit, tracking_factor


def test_curve_saturates_at_the_working_set() -> None:
    c = DirtyCurve(64 * MIB, 64 * MIB)
    assert c.bytes_in(1) == pytest.approx(64 * MIB * (1 - math.exp(-1)))
    assert c.bytes_in(100) == pytest.approx(64 * MIB)
    assert DirtyCurve(8 * MIB).bytes_in(2) == 16 * MIB  # no working set: linear


def test_tracking_factor_compares_with_the_apparent_rate() -> None:
    linear = DirtyCurve(100 * MIB)
    assert tracking_factor(40 * MIB, linear) == pytest.approx(0.4)
    assert tracking_factor(500 * MIB, linear) == 1.0  # never above what was measured
    assert tracking_factor(1 * MIB, linear) == 0.1  # clamped
    assert tracking_factor(0, linear) == 1.0  # QEMU reported nothing: no correction
    assert tracking_factor(10 * MIB, DirtyCurve(0)) == 1.0


def test_a_first_window_between_bursts_does_not_set_the_rate() -> None:
    """Lab, a guest 2 s on at 80 MiB/s, 2 s off: its 0.25 s window fell in an off
    phase and the fit read 0 MiB/s for a guest that dirtied 85 MiB in 2.8 s."""
    pts = [(0.25, 0.0), (0.5, 21.2 * MIB), (1.0, 55.5 * MIB), (2.0, 41.0 * MIB),
           (2.79, 85.2 * MIB)]
    c = fit(pts, 384 * MIB)
    assert c.rate_bytes_s >= 40 * MIB  # at least what the 0.5 s window saw
    assert c.bytes_in(2.79) > 40 * MIB


def test_a_guest_writing_in_order_is_read_as_a_stream() -> None:
    """Lab windows of a guest streaming 12 MiB/s through 64 MiB (tls15, seed 1247):
    ~1 MiB more in every short window (its kernel), then 12.5 MiB/s, then the wrap."""
    pts = [(0.25, 3.9 * MIB), (0.5, 7.2 * MIB), (1, 13.5 * MIB), (2, 25.0 * MIB),
           (4, 50.0 * MIB), (8, 68.0 * MIB)]
    c = fit(pts, 256 * MIB)
    assert c.streaming
    assert c.rate_bytes_s / MIB == pytest.approx(12.5, abs=0.5)
    assert c.wss_bytes / MIB == pytest.approx(67, abs=3)
    assert 0 < c.cold_wss_bytes <= 2 * MIB  # the kernel's few pages
    assert c.bytes_in(8) == pytest.approx(68 * MIB, rel=0.03)


def test_a_stream_whose_wrap_no_window_saw_keeps_the_memory_as_its_set() -> None:
    """No saturation is assumed from windows that never saw one."""
    pts = [(t, 3 * MIB * t + 0.5 * MIB) for t in (0.25, 0.5, 1, 2, 4, 8)]
    c = fit(pts, 384 * MIB)
    assert c.streaming and c.wss_bytes == pytest.approx(384 * MIB)
    assert c.rate_bytes_s / MIB == pytest.approx(3, rel=0.05)
