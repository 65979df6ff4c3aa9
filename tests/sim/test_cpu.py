"""Hosts of different CPU generations: guests get the cluster's baseline, and a guest
CPU the destination lacks is refused with the missing features named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ferry.domain.models import MigrationState
from ferry.errors import MigrationRefused
from tests.sim.conftest import SimEnv, make_env


@pytest.fixture
def mixed(tmp_path: Path) -> Iterator[SimEnv]:
    """node1 Skylake, node2 Haswell registered; node3 Westmere exists, not registered."""
    e = make_env(tmp_path, cpu_models={"node1": "Skylake-Server", "node2": "Haswell",
                                       "node3": "Westmere"}, registered=("node1", "node2"))
    yield e
    e.svc.shutdown()


def test_baseline_guests_move_everywhere(mixed: SimEnv) -> None:
    mixed.svc.hosts.add("node3", mixed.cluster.host("node3").uri)
    assert mixed.svc.cpu.baseline()["model"] == "Westmere"
    held = mixed.svc.cpu.baseline()["holds_back"]
    assert {"avx", "avx2"} <= set(held["node3"])  # the oldest holds the others back
    assert held["node1"] == []
    vm = mixed.vm(host="node1")
    assert mixed.svc.vms.get(vm).cpu_model == "Westmere"
    assert mixed.migrate(vm, "node3").state == MigrationState.COMPLETED
    assert mixed.migrate(vm, "node2").state == MigrationState.COMPLETED


def test_a_newer_guest_cpu_is_refused_on_an_older_host_naming_what_it_lacks(
        mixed: SimEnv) -> None:
    """The guest was created before the old host joined: the baseline was newer then."""
    vm = mixed.vm(host="node1")
    assert mixed.svc.vms.get(vm).cpu_model == "Haswell"
    mixed.svc.hosts.add("node3", mixed.cluster.host("node3").uri)
    with pytest.raises(MigrationRefused) as err:
        mixed.migrate(vm, "node3")
    assert err.value.reason == "cpu_incompatible"
    assert {"avx2", "fma"} <= set(err.value.details["missing_features"])
    check = mixed.svc.cpu.check(vm, "node3")
    assert not check["compatible"] and "avx2" in check["missing_features"]
    report = {r["vm"]: r for r in mixed.svc.cpu.report()}[vm]
    assert report["restart_needed"] and "node3" in report["cannot_move_to"]
    assert report["can_move_to"] == ["node2"]
    assert mixed.migrate(vm, "node2").state == MigrationState.COMPLETED
    assert mixed.cluster.where(vm) == {"node2": "running"}
