"""Can a host plug in a guest's interfaces: every interface type, and what a host
that cannot tell is taken to mean (pure)."""

from __future__ import annotations

import pytest

from ferry.errors import InvalidRequest
from ferry.hypervisor.types import HostNetworks, NicInfo
from ferry.network.check import check_nics, problems
from ferry.network.requests import next_address, parse_network

HOST = HostNetworks({"prod": True, "backup": False},
                    {"br-prod": "bridge", "eno2": "ethernet", "bond0": "bond"})


def nic(kind: str, source: str = "", mac: str = "52:54:00:00:00:01") -> NicInfo:
    return NicInfo(kind, source, mac)


@pytest.mark.parametrize(("n", "problem"), [
    (nic("network", "prod"), ""),
    (nic("network", "backup"), "network backup is defined but not active"),
    (nic("network", "dmz"), "network dmz is not defined"),
    (nic("bridge", "br-prod"), ""),
    (nic("bridge", "br-dmz"), "bridge br-dmz does not exist"),
    (nic("bridge", "bond0"), "bond0 is not a bridge (it is bond)"),
    (nic("direct", "eno2"), ""),
    (nic("direct", "eno3"), "host device eno3 does not exist"),
    (nic("hostdev"), "a passed-through host device cannot move live"),
    (nic("user"), ""),
    (nic("ethernet"), ""),
])
def test_each_interface_type(n: NicInfo, problem: str) -> None:
    [v] = check_nics([n], HOST)
    assert v.problem == problem
    assert v.ok == (not problem)


def test_problems_name_each_interface_and_skip_the_good_ones() -> None:
    vs = check_nics([nic("network", "prod"), nic("bridge", "br-x", "52:54:00:00:00:02")],
                    HOST)
    assert problems(vs) == ["interface 52:54:00:00:00:02 (bridge br-x): bridge br-x does "
                            "not exist"]


def test_a_host_that_cannot_tell_is_not_a_refusal() -> None:
    vs = check_nics([nic("network", "prod"), nic("bridge", "br-prod"),
                     nic("vhostuser")], HostNetworks(None, None))
    assert problems(vs) == []
    assert [v.unverified for v in vs] == ["cannot list libvirt networks",
                                          "cannot list host interfaces",
                                          "interface type 'vhostuser' is not checked"]


@pytest.mark.parametrize("bad", ["bridge:", "bridge:a/b", "bridge:$(x)", "a;b", "..", "-a",
                                 "bridge:0123456789abcdef", "x" * 65])
def test_network_requests_that_could_escape_are_refused(bad: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_network(bad)


def test_addresses_skip_the_lab_own_and_taken_ones() -> None:
    assert next_address("198.19.0.0/24", set()) == "198.19.0.10/24"
    taken = {f"198.19.0.{i}/24" for i in range(10, 255)}
    with pytest.raises(InvalidRequest, match="no free guest address"):
        next_address("198.19.0.0/24", taken)
