"""The HTTP API over the simulated cluster: auth, closed vocabularies as 422 with the
allowed values, and host failures as 503 (never a bare 500)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ferry.api.app import create_app
from ferry.hypervisor.errors import HostUnreachable
from tests.sim.conftest import SimEnv


@pytest.fixture
def api(env: SimEnv) -> Iterator[TestClient]:
    with TestClient(create_app(env.svc, start_background=False),
                    headers={"Authorization": f"Bearer {env.settings.token}"}) as client:
        yield client


def test_every_route_needs_the_token(env: SimEnv, api: TestClient) -> None:
    assert api.get("/hosts").status_code == 200
    for path in ("/hosts", "/openapi.json", "/health", "/migrations"):
        assert api.get(path, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_closed_vocabularies_are_enums_in_openapi_and_422_outside(
        env: SimEnv, api: TestClient) -> None:
    schema = api.get("/openapi.json").json()["components"]["schemas"]
    assert set(schema["Policy"]["enum"]) == {"auto", "precopy", "autoconverge", "postcopy",
                                             "stepped"}
    assert set(schema["OnTimeout"]["enum"]) == {"abort", "force"}
    assert set(schema["PoolKind"]["enum"]) == {"dir-shared", "local", "rbd"}
    assert "queued" in schema["EventKind"]["enum"]
    vm = env.vm()
    r = api.post("/migrations", json={"vm": vm, "to": "node2", "policy": "fastest"})
    assert r.status_code == 422 and "auto" in r.text
    r = api.post("/migrations", json={"vm": vm, "to": "node2", "on_timeout": "retry"})
    assert r.status_code == 422
    assert api.delete(f"/vms/{vm}", params={"volumes": "shred"}).status_code == 422
    assert api.post("/hosts", json={"name": "n9", "uri": "qemu+tcp://x/system",
                                    "virt_type": "xen"}).status_code == 422
    assert env.svc.store.list_migrations(vm) == []  # nothing was started


def test_a_host_that_does_not_answer_is_503_and_the_vm_is_free_again(
        env: SimEnv, api: TestClient) -> None:
    vm = env.vm()
    env.cluster.host("node1").unreachable = True
    r = api.post("/migrations", json={"vm": vm, "to": "node2"})
    assert r.status_code == 503 and r.json()["error"] == "unavailable"
    env.cluster.host("node1").unreachable = False
    r = api.post("/migrations", json={"vm": vm, "to": "node2"})
    assert r.status_code == 201 and r.json()["state"] == "completed"


def test_a_host_error_escaping_a_use_case_is_503(env: SimEnv, api: TestClient,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def boom() -> list[object]:
        raise HostUnreachable("qemu+tcp://node1.sim/system: gone")

    monkeypatch.setattr(env.svc.hosts, "list_hosts", boom)
    r = api.get("/hosts")
    assert r.status_code == 503 and "gone" in r.json()["message"]


def test_the_migration_as_the_api_returns_it(env: SimEnv, api: TestClient) -> None:
    vm = env.vm(dirty=8)
    m = api.post("/migrations", json={"vm": vm, "to": "node2", "policy": "precopy"}).json()
    assert m["policy"] == "precopy" and m["state"] == "completed"
    shown = api.get(f"/migrations/{m['id']}").json()
    assert shown["events"][0]["kind"] == "queued"
    samples = api.get(f"/migrations/{m['id']}/samples").json()
    assert samples and samples[-1]["memory_total_bytes"] == 256 * 2**20
    assert api.post(f"/migrations/{m['id']}/cancel").status_code == 409  # already over
