"""The model's inputs from a measurement and history: the pause beyond the pages
depends on the stream's mode (an encrypted switchover costs more)."""

from __future__ import annotations

from ferry.domain.vocab import Policy
from ferry.predict.dirty import MIB, DirtyCurve
from ferry.predict.inputs import History, Measurement, build_inputs, sources
from ferry.predict.strategy import predict_all


def _inputs(encrypted: bool):  # type: ignore[no-untyped-def]
    m = Measurement([(1.0, 8 * MIB)], DirtyCurve(8 * MIB, 32 * MIB), resident_mib=200,
                    cpu_busy=0.1, pages_read=1024, pages_nonzero=512, nonzero_stderr=0.02)
    h = History(link_bytes_s=100 * MIB, link_how="measured", encrypted=encrypted)
    return m, h, build_inputs(m, h, 256, 32, None, 120.0)[0]


def test_an_encrypted_switchover_is_assumed_to_cost_more() -> None:
    m, h, plain = _inputs(False)
    _m, h_tls, tls = _inputs(True)
    assert plain.link.switchover_s < tls.link.switchover_s
    assert "TLS" in sources(m, h_tls, 32)["switchover"]
    assert "TLS" not in sources(m, h, 32)["switchover"]
    pause = {mode: predict_all(inp)[Policy.PRECOPY].downtime_s
             for mode, inp in (("plain", plain), ("tls", tls))}
    gap = tls.link.switchover_s - plain.link.switchover_s
    assert abs(pause["tls"] - pause["plain"] - gap) < 0.002, pause
