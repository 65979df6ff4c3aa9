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
    r = api.post("/vms", json={"name": "w1", "host": "node1", "workload_pattern": "zipf"})
    assert r.status_code == 422 and "hotcold" in r.text
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
    assert shown["events"][0]["kind"] == "requested"
    samples = api.get(f"/migrations/{m['id']}/samples").json()
    assert samples and samples[-1]["memory_total_bytes"] == 256 * 2**20
    assert api.post(f"/migrations/{m['id']}/cancel").status_code == 409  # already over


def test_unknown_fields_and_non_finite_numbers_are_422(env: SimEnv, api: TestClient) -> None:
    vm = env.vm()
    r = api.post("/migrations", json={"vm": vm, "to": "node2", "max_downtime": 50})
    assert r.status_code == 422 and "max_downtime" in r.json()["message"]
    for raw in (b'{"name": "v", "pool": "shared", "size_gib": NaN}',
                b'{"name": "v", "size_gib": Infinity}'):
        r = api.post("/pools/shared/volumes", content=raw,
                     headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
    assert api.get(f"/migrations/{2**63}").status_code == 422
    assert api.get("/migrations", params={"limit": 10**6}).status_code == 422
    assert api.get("/predict", params={"vm": vm, "to": "node2",
                                       "bandwidth_mib_s": -5}).status_code == 400
    assert env.svc.store.list_migrations(vm) == []


def test_no_body_is_read_without_the_token_and_none_over_the_limit(
        env: SimEnv, api: TestClient) -> None:
    big = b"x" * (2 << 20)
    r = api.post("/pools", content=big, headers={"Authorization": "Bearer nope",
                                                 "content-type": "application/json"})
    assert r.status_code == 401
    r = api.post("/pools", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "too_large"

    def stream() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(40):
            yield b" " * 65536

    r = api.post("/pools", content=stream(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_a_key_is_never_echoed_in_an_error(env: SimEnv, api: TestClient) -> None:
    key = "AQBzcW1mAAAAABAAc2VjcmV0LWtleS1uZXZlci1zaG93bg=="
    bodies = [{"name": "c", "kind": "rbd", "monitors": ["m:6789"], "rbd_pool": "vms",
               "user": "ferry", "key": key, "surplus": 1},
              {"name": "c", "kind": "rbd", "monitors": ["m:6789"], "rbd_pool": "vms",
               "user": "ferry", "key": key},  # Ceph unreachable from the hosts: 503
              {"name": "c", "kind": "dir-shared", "path": "/srv/x", "key": key}]
    for body in bodies:
        r = api.post("/pools", json=body)
        assert r.status_code in (400, 422, 503), r.text
        assert key not in r.text and key[:20] not in r.text


def test_uri_parameters_that_run_or_read_things_are_refused(env: SimEnv,
                                                            api: TestClient) -> None:
    r = api.post("/hosts", json={"name": "evil",
                                 "uri": "qemu+ssh://root@h/system?command=/usr/bin/id"})
    assert r.status_code == 400 and "'command' is not allowed" in r.json()["message"]
    assert api.get("/hosts/evil").status_code == 404
