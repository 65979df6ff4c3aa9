"""Draining a real lab host: a plan, every running guest (with a NIC a client talks
to) moved to the two others, a stopped one reported, maintenance, the way back;
cancel and a controller restart mid-drain.  Guests are checked through their
heartbeats (one boot, no memory errors), their client (no TCP reset) and
libvirt on every host (each guest runs on exactly one)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import libvirt
import pytest

from tests.lab.conftest import URIS, Lab, ferry, ferry_json, wait_for, wait_samples

FINAL = ("completed", "failed", "cancelled")


@pytest.fixture
def node1_back(lab: Lab) -> Iterator[None]:
    """Whatever happens, node1 leaves maintenance and the link its shaping."""
    yield
    ferry("lab", "link", "--unlimited", check=False)
    for d in ferry_json("drain", "list"):
        if d["state"] not in FINAL:
            ferry("drain", "cancel", str(d["id"]), check=False)
            with contextlib.suppress(AssertionError):
                _drain(lab, d["id"])
    ferry("host", "activate", "node1", check=False)


def _clean(lab: Lab, vm: str) -> None:
    check = ferry_json("lab", "check", vm)
    assert check["boots"] == 1 and check["memory_errors"] == 0, check
    if check.get("tcp_records") is not None:  # a guest with a NIC: its client stayed on
        assert check["tcp_resets"] == 0 and check["tcp_errors"] == 0, check


# waits ask the API (what `ferry drain show` prints): a `ferry` call a poll would cost
# a CPU second, slowing the guests and moves being watched
def _drain(lab: Lab, did: int, timeout: float = 240) -> dict[str, Any]:
    with lab.api() as api:
        try:
            return dict(wait_for(lambda: (lambda d: d if d["state"] in FINAL else None)(
                api.get(f"/drains/{did}").json()), timeout, f"drain {did} to end"))
        except AssertionError:  # say where it stuck: its moves, and what their jobs did
            d = api.get(f"/drains/{did}").json()
            jobs = {m["migration"]: [(e["kind"], e["message"]) for e in api.get(
                f"/migrations/{m['migration']}").json()["events"]][-12:]
                for m in d["moves"] if m["migration"] is not None}
            raise AssertionError(f"drain {did} did not end: {d['state']}; events "
                                 f"{d['events'][-10:]}; moves {d['moves']}; "
                                 f"jobs {jobs}") from None


def _first_running(lab: Lab, did: int) -> int:
    with lab.api() as api:
        def running() -> int | None:
            d = api.get(f"/drains/{did}").json()
            return next((m["migration"] for m in d["moves"] if m["state"] == "running"
                         and m["migration"] is not None), None)
        return int(wait_for(running, 120, "a move to run"))


def test_drain_plans_moves_reports_and_returns(lab: Lab, make_vm: Callable[..., str],
                                              node1_back: None) -> None:
    # guests with a NIC on the lab's network, that the lab's probe talks to
    vms = [make_vm("node1", memory=128, dirty=d, wss=16, network=None) for d in (0, 6)]
    wait_for(lambda: all((ferry_json("lab", "check", vm).get("tcp_records") or 0) > 0
                         for vm in vms), 60, "the probe to talk to the guests")
    stopped = make_vm("node1", memory=128)
    libvirt.open(URIS["node1"]).lookupByName(stopped).destroy()
    ferry("host", "refresh", "node1")

    # --compress: compressed wherever a guest's pages compress and pre-copy alone
    # finishes, whatever the load (this lab's busy CPUs would otherwise keep them in clear)
    plan = ferry_json("host", "drain", "node1", "--dry-run", "--compress")
    assert plan["host"] == "node1" and plan["eta_ms"] > 0
    moves = {m["vm"]: m for m in plan["moves"]}
    assert set(vms) <= set(moves)
    for vm in vms:
        assert moves[vm]["to"] in ("node2", "node3")
        assert moves[vm]["predicted_total_ms"] > 0 and moves[vm]["predicted_downtime_ms"] >= 0
    assert {moves[vm]["to"] for vm in vms} == {"node2", "node3"}  # spread
    blocked = {b["vm"]: b["reason"] for b in plan["blocked"]}
    assert "not running" in blocked[stopped]
    assert ferry_json("host", "show", "node1")["state"] == "up"  # a dry run moves nothing

    d = ferry_json("host", "drain", "node1", "--wait", "--compress")
    assert d["state"] == "completed", d
    done = {m["vm"]: m for m in d["moves"]}
    for vm in vms:
        assert done[vm]["state"] == "completed" and done[vm]["migration"]
        assert lab.where(vm) == {done[vm]["to"]: "running"}
        _clean(lab, vm)
        seen = ferry_json("lab", "check", vm, "--migration", str(done[vm]["migration"]))
        assert seen["net_replies"] > 0 and seen["net_max_gap_ms"] > 0, seen
    # the quiet guest's pages compress (a fresh lab guest's to ~57 %): its stream went
    # through zstd over multifd, as planned, and it arrived whole (checked above)
    quiet = ferry_json("migration", "show", str(done[vms[0]]["migration"]))
    assert moves[vms[0]]["model"]["compressed"] and quiet["compressed"] is True, quiet
    assert stopped in {b["vm"] for b in d["blocked"]}
    assert d["elapsed_ms"] > 0 and d["eta_ms"] == 0
    assert ferry_json("host", "show", "node1")["state"] == "maintenance"
    refused = ferry("vm", "create", "late1", "--host", "node1", "--memory", "128", check=False)
    assert refused.returncode == 3 and "maintenance" in refused.stderr + refused.stdout

    out = ferry_json("host", "activate", "node1", "--return", "--wait")
    assert out["state"] == "up" and out["return"]["state"] == "completed", out
    for vm in vms:
        assert lab.where(vm) == {"node1": "running"}
        _clean(lab, vm)


def test_cancel_mid_drain_leaves_every_guest_whole_on_one_host(
        lab: Lab, make_vm: Callable[..., str], node1_back: None) -> None:
    vms = [make_vm("node1", memory=192, dirty=8, wss=64) for _ in range(2)]
    ferry("lab", "link", "--rate", "16")  # slow enough to be caught mid-move
    d = ferry_json("host", "drain", "node1")
    wait_samples(lab, _first_running(lab, d["id"]))
    ferry("drain", "cancel", str(d["id"]))
    final = _drain(lab, d["id"])
    assert final["state"] == "cancelled", final
    states = {m["vm"]: m["state"] for m in final["moves"]}
    assert "cancelled" in states.values()
    for vm in vms:
        where = lab.where(vm)
        assert list(where.values()) == ["running"], where  # one host, running
        if states[vm] == "cancelled":
            assert where == {"node1": "running"}
        _clean(lab, vm)
    assert ferry_json("host", "show", "node1")["state"] == "maintenance"


def test_controller_restart_mid_drain_resumes_it(lab: Lab, make_vm: Callable[..., str],
                                                 node1_back: None) -> None:
    vms = [make_vm("node1", memory=128, dirty=4, wss=32) for _ in range(2)]
    ferry("lab", "link", "--rate", "16")
    d = ferry_json("host", "drain", "node1")
    wait_samples(lab, _first_running(lab, d["id"]))
    ferry("lab", "controller", "stop")
    ferry("lab", "controller", "start")
    ferry("lab", "link", "--unlimited")
    final = _drain(lab, d["id"])
    assert final["state"] == "completed", final
    for m in final["moves"]:
        assert lab.where(m["vm"]) == {m["to"]: "running"}
    assert {m["vm"] for m in final["moves"]} >= set(vms)
    for vm in vms:
        _clean(lab, vm)


def test_a_move_whose_link_is_busy_is_staged_then_released(
        lab: Lab, make_vm: Callable[..., str], node1_back: None) -> None:
    """Two guests drained to one host over a 16 MiB/s link: the idle one moves first
    (quiet: it starts while the other is measured); the dirtier may not share the
    link with it (at half the link it would not converge, or re-send far more), so
    its libvirt job is staged, started at 1 MiB/s while the idle one transfers, and
    released at full speed when the link frees (libvirt's migrateSetMaxSpeed on
    the running job).  Both guests clean, each on the destination only."""
    idle = make_vm("node1", memory=128, dirty=0, wss=16)
    hot = make_vm("node1", memory=128, dirty=12, wss=48)
    ferry("lab", "link", "--rate", "16")
    d = ferry_json("host", "drain", "node1", "--to", "node2", "--link", "16", "--no-tls",
                   "--wait")
    assert d["state"] == "completed", d
    done = {m["vm"]: m for m in d["moves"]}
    mig = ferry_json("migration", "show", str(done[hot]["migration"]))
    kinds = [e["kind"] for e in mig["events"]]
    assert "staged" in kinds and "released" in kinds, (d["events"], d["moves"], mig["events"])
    assert kinds.index("started") < kinds.index("staged") < kinds.index("released")
    released = next(e for e in mig["events"] if e["kind"] == "released")
    assert "full speed" in released["message"], released
    assert mig["state"] == "completed" and "set_bandwidth_failed" not in kinds
    # the idle one handed the link on when its source had sent everything (libvirt's
    # suspended-for-migration event), before libvirt's finish and settling
    first = ferry_json("migration", "show", str(done[idle]["migration"]))
    first_kinds = [e["kind"] for e in first["events"]]
    assert "sent" in first_kinds, first["events"]
    assert first_kinds.index("started") < first_kinds.index("sent") \
        < first_kinds.index("resolved")
    for vm in (idle, hot):
        assert lab.where(vm) == {"node2": "running"}
        _clean(lab, vm)
