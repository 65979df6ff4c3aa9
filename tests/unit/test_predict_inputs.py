"""The model's inputs from a measurement and history: the pause beyond the pages
depends on the stream's mode (an encrypted switchover costs more)."""

from __future__ import annotations

from ferry.domain.vocab import Policy
from ferry.predict.dirty import MIB, DirtyCurve
from ferry.predict.inputs import History, Measurement, build_inputs, sources, wire_rate
from ferry.predict.strategy import predict_all


def _inputs(encrypted: bool):  # type: ignore[no-untyped-def]
    m = Measurement([(1.0, 8 * MIB)], DirtyCurve(8 * MIB, 32 * MIB), resident_mib=200,
                    cpu_busy=0.1, pages_read=1024, pages_nonzero=512, nonzero_stderr=0.02)
    h = History(link_bytes_s=100 * MIB, link_how="measured", encrypted=encrypted)
    return m, h, build_inputs(m, h, 256, 32, None, 120.0)[0]


def test_an_encrypted_switchover_is_assumed_to_cost_more() -> None:
    m, h, plain = _inputs(False)
    _m, h_tls, tls = _inputs(True)
    assert plain.link.switchover_s == 0.01 and tls.link.switchover_s == 0.03
    assert "TLS" in sources(m, h_tls, 32)["switchover"]
    assert "TLS" not in sources(m, h, 32)["switchover"]
    pause = {mode: predict_all(inp)[Policy.PRECOPY].downtime_s
             for mode, inp in (("plain", plain), ("tls", tls))}
    assert abs(pause["tls"] - pause["plain"] - 0.02) < 0.002, pause


def test_the_link_rate_is_read_where_round_one_sent_non_zero_pages() -> None:
    """Samples (t ms, sent, remaining) of an encrypted, CPU-bound round 1: stretches of
    non-zero pages crossed at 50 MiB/s, stretches of zero pages show the scanning
    (little sent); the median of all would say ~30."""
    m = MIB
    samples = [(0, 0, 512 * m), (300, 15 * m, 497 * m), (600, 30 * m, 482 * m),
               (900, 36 * m, 300 * m), (1200, 51 * m, 285 * m), (1500, 66 * m, 270 * m),
               (1800, 70 * m, 100 * m), (2100, 85 * m, 85 * m)]
    rate = wire_rate(samples)
    assert rate is not None and abs(rate / MIB - 50) < 0.5
    # a guest whose zero pages are spread everywhere has no such stretch: no reading
    spread = [(t, t * 10 * m // 250, 512 * m - t * 70 * m // 250) for t in range(0, 2000, 250)]
    assert wire_rate(spread) is None
    assert wire_rate(samples[:3]) is None  # 0.6 s of them: too short to say
