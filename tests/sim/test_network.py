"""A guest's interfaces decide where it can go: the destination must have its
libvirt network active, its bridge, its device; refused before anything moves,
naming the interface, and placement and drains take the same into account."""

from __future__ import annotations

import pytest

from ferry.domain.models import MigrationState
from ferry.domain.vocab import EventKind as K
from ferry.errors import Conflict, MigrationRefused
from ferry.service.drain_plan import DrainRequest
from tests.sim.conftest import SimEnv


def _nets(env: SimEnv, host: str, networks: dict[str, bool], bridges: tuple[str, ...] = ()
          ) -> None:
    h = env.cluster.host(host)
    h.networks, h.interfaces = dict(networks), dict.fromkeys(bridges, "bridge")


def test_a_network_not_active_on_the_destination_is_refused_naming_the_interface(
        env: SimEnv) -> None:
    _nets(env, "node1", {"prod": True})
    _nets(env, "node2", {"prod": False})
    _nets(env, "node3", {"prod": True})
    env.svc.vms.create("web1", "node1", 256, network="prod")
    nic = env.svc.vms.get("web1").nics[0]
    assert (nic["kind"], nic["source"]) == ("network", "prod") and nic["mac"]
    with pytest.raises(MigrationRefused) as err:
        env.migrate("web1", "node2")
    assert err.value.reason == "network_missing"
    assert f"interface {nic['mac']} (network prod): network prod is defined but not " \
        "active" in str(err.value)
    assert err.value.details["interfaces"][0]["source"] == "prod"
    refused = env.svc.store.list_migrations("web1")[0]
    assert K.STARTED not in env.kinds(refused)
    assert env.cluster.where("web1") == {"node1": "running"}
    m = env.migrate("web1", "node3")
    assert m.state == MigrationState.COMPLETED
    checked = [e.message for e in env.svc.store.get(m.id).events if e.kind == K.PRECHECK]
    assert f"interface {nic['mac']} (network prod): present" in checked


def test_placement_sends_a_bridged_guest_only_where_its_bridge_is(env: SimEnv) -> None:
    _nets(env, "node1", {}, ("br-prod",))
    _nets(env, "node3", {}, ("br-prod",))
    env.cluster.host("node3").memory_mib = 8192  # node2 has far more room
    env.svc.vms.create("web1", "node1", 256, network="bridge:br-prod")
    env.svc.vms.create("db1", "node1", 256, network="none")
    env.svc.hosts.refresh("node1")
    plan = env.svc.drains.plan(DrainRequest("node1"))
    to = {m["vm"]: m["to"] for m in plan["moves"]}
    assert to == {"web1": "node3", "db1": "node2"}
    m = env.svc.drains.migrate("web1", None)
    assert env.svc.store.get(m.id).destination == "node3"
    _nets(env, "node1", {})  # the only other host with the bridge loses it
    env.svc.hosts.refresh("node1")
    with pytest.raises(Conflict) as err:
        env.svc.drains.migrate("web1", None)
    assert "node3: interface" not in str(err.value)  # its own host is no candidate
    for host in ("node1", "node2"):
        assert f"{host}: interface " in str(err.value)
    assert "(bridge br-prod): bridge br-prod does not exist" in str(err.value)


def test_a_host_that_cannot_list_its_networks_is_not_called_missing(env: SimEnv) -> None:
    _nets(env, "node1", {"prod": True})
    env.svc.vms.create("web1", "node1", 256, network="prod")
    h = env.cluster.host("node2")
    h.networks = {"prod": True}
    orig = h.host_networks
    h.host_networks = lambda: type(orig())(None, None)  # type: ignore[method-assign]
    m = env.migrate("web1", "node2")
    assert m.state == MigrationState.COMPLETED
    checked = [e.message for e in env.svc.store.get(m.id).events if e.kind == K.PRECHECK]
    assert any("not verified (cannot list libvirt networks)" in c for c in checked)


def test_bad_network_requests_are_refused(env: SimEnv) -> None:
    for bad in ("bridge:../etc", "a b", "bridge:" + "x" * 16, "-x"):
        with pytest.raises(Exception, match="invalid"):
            env.svc.vms.create("web1", "node1", 256, network=bad)
    with pytest.raises(Conflict, match="cannot give the VM its NIC: network nowhere is "
                       "not defined"):
        env.svc.vms.create("web2", "node1", 256, network="nowhere")
    with pytest.raises(Conflict, match="bridge br9 does not exist"):
        env.svc.vms.create("web2", "node1", 256, network="bridge:br9")
    assert [v.name for v in env.svc.vms.list_vms()] == []  # nothing left behind
    assert env.cluster.where("web2") == {}
