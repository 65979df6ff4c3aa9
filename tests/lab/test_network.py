"""Guests with a NIC on the real lab: a client outside every host (the lab's probe)
keeps a TCP connection streaming and sends a UDP request every 10 ms while the
guest moves there and back; a guest whose bridge the destination lacks is
refused before anything moves, naming the interface."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.lab.conftest import Lab, ferry, ferry_json, wait_for


def _talking(vm: str) -> dict[str, Any]:
    """Wait until the probe's TCP records and UDP echoes come back from the guest."""
    return dict(wait_for(lambda: (lambda c: c if (c.get("tcp_records") or 0) > 20
                                  and (c.get("net_replies") or 0) > 20 else None)(
        ferry_json("lab", "check", vm)), 60, f"the probe to talk to {vm}"))


def _port_of(mac: str) -> str:
    """The port of the lab's guest bridge where `mac` was last seen."""
    out = subprocess.run(["bridge", "fdb", "show", "br", "ferrygbr0"], capture_output=True,
                         text=True, check=True).stdout
    return next((line.split()[2] for line in out.splitlines()
                 if line.startswith(mac) and " dev " in line), "")


def test_vm_with_a_nic_keeps_its_tcp_connection_there_and_back(
        lab: Lab, make_vm: Callable[..., str]) -> None:
    vm = make_vm("node1", memory=256, dirty=4, wss=32, network=None)  # the lab's network
    shown = ferry_json("vm", "show", vm)
    assert shown["address"].startswith("198.19.0."), shown
    assert [(n["kind"], n["source"]) for n in shown["nics"]] == [("network", "ferrynet")]
    before = _talking(vm)
    mac = shown["nics"][0]["mac"]
    moves = []
    for to, port in (("node2", "fvethg2"), ("node1", "fvethg1")):
        moves.append(ferry_json("migrate", vm, "--to", to, "--wait"))
        # the guest segment learnt the guest's MAC on its new host's port (announced
        # from there after the switch: the old entry would live for 300 s)
        wait_for(lambda port=port: _port_of(mac) == port, 5, f"{mac} on {port}")
    assert [m["state"] for m in moves] == ["completed", "completed"], moves
    assert lab.where(vm) == {"node1": "running"}
    for m in moves:
        seen = ferry_json("lab", "check", vm, "--migration", str(m["id"]))
        # the guest answered over the network during and after the switch, on one
        # connection that never broke and never lost or reordered a byte
        assert seen["net_replies"] > 0 and seen["tcp_records"] > 0, seen
        assert seen["tcp_resets"] == 0 and seen["tcp_errors"] == 0, seen
        assert seen["net_max_gap_ms"] > 0, seen  # the blackout is measured
    # the connection kept streaming after both moves
    after = wait_for(lambda: (lambda c: c if c["tcp_records"] > before["tcp_records"] + 100
                              else None)(ferry_json("lab", "check", vm)), 60,
                     "TCP records after the moves")
    assert after["tcp_resets"] == 0 and after["tcp_errors"] == 0, after
    assert after["boots"] == 1 and after["memory_errors"] == 0, after


@pytest.fixture
def node1_bridge() -> Iterator[str]:
    """A bridge on node1 only (removed after the test)."""
    br = "fbrtest0"
    subprocess.run(["ip", "-n", "ferry-node1", "link", "add", br, "type", "bridge"],
                   check=True)
    subprocess.run(["ip", "-n", "ferry-node1", "link", "set", br, "up"], check=True)
    yield br
    subprocess.run(["ip", "-n", "ferry-node1", "link", "delete", br], check=False)


def test_a_guest_whose_bridge_the_destination_lacks_is_refused(
        lab: Lab, make_vm: Callable[..., str], node1_bridge: str) -> None:
    vm = make_vm("node1", memory=128, network=f"bridge:{node1_bridge}")
    mac = ferry_json("vm", "show", vm)["nics"][0]["mac"]
    refused = ferry_json("migrate", vm, "--to", "node2", check=False)
    assert refused["details"]["reason"] == "network_missing", refused
    assert f"interface {mac} (bridge {node1_bridge})" in refused["error"], refused
    assert refused["details"]["interfaces"] == [
        {"mac": mac, "type": "bridge", "source": node1_bridge,
         "problem": f"bridge {node1_bridge} does not exist"}]
    assert lab.where(vm) == {"node1": "running"}  # nothing started on node2
    # placement says the same of every other host
    nowhere = ferry_json("migrate", vm, check=False)
    assert nowhere["status"] == 409, nowhere
    for host in ("node2", "node3"):
        assert f"{host}: interface {mac} (bridge {node1_bridge}): bridge " in \
            nowhere["error"], nowhere
    ferry("host", "refresh", "node1")
    assert node1_bridge in ferry_json("host", "show", "node1")["interfaces"]
