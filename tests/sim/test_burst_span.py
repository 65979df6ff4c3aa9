"""A guest in bursts is watched over several of them before its working set is read."""

from __future__ import annotations

from ferry.domain.vocab import WorkloadPattern
from ferry.predict.bursts import MIN_SPAN_S
from tests.sim.conftest import SimEnv


def test_a_bursty_guests_working_set_is_read_over_several_bursts(env: SimEnv) -> None:
    """14 MiB/s in its bursts over 184 MiB (held-out 1181): a window that sees one
    burst writes ~25 MiB of it; one over several bursts shows the set is large."""
    vm = env.vm(memory=384, dirty=7, wss=184, pattern=WorkloadPattern.BURST)
    out = env.svc.migrations.predict(vm, "node2", bandwidth_mib_s=16)
    inp = out["inputs"]
    assert inp["bursts"] is not None, inp
    assert inp["dirty_windows"][-1]["window_ms"] >= MIN_SPAN_S * 1000, inp["dirty_windows"]
    assert inp["working_set_mib"] >= 92, inp
    assert inp["dirty_measured_s"] <= 16.5
