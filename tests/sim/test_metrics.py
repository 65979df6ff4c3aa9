"""`/metrics` over the simulated cluster: what Prometheus would read before, during
and after migrations and a drain, parsed with prometheus_client's own parser, and
who may read it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ferry.api.app import create_app
from ferry.service.drain_plan import DrainRequest
from tests.sim.conftest import SimEnv, make_env

SCRAPE = "s" * 24
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Series:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def value(series: Series, name: str, **labels: str) -> float | None:
    for (n, lab), v in series.items():
        if n == name and all(dict(lab).get(k) == x for k, x in labels.items()):
            return v
    return None


@pytest.fixture
def menv(tmp_path: Path) -> Iterator[SimEnv]:
    e = make_env(tmp_path, settings_kw={"metrics_token": SCRAPE})
    yield e
    e.svc.shutdown()


@pytest.fixture
def api(menv: SimEnv) -> Iterator[TestClient]:
    with TestClient(create_app(menv.svc, start_background=False),
                    headers={"Authorization": f"Bearer {menv.settings.token}"}) as client:
        yield client


def scrape(api: TestClient, token: str = SCRAPE) -> Series:
    r = api.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


def test_before_anything_moved(api: TestClient) -> None:
    s = scrape(api)
    assert value(s, "ferry_hosts", state="up") == 3
    assert value(s, "ferry_hosts", state="unreachable") == 0
    assert value(s, "ferry_admission_queue_length") == 0
    assert value(s, "ferry_migration_duration_seconds_count") == 0
    assert value(s, "ferry_migration_remaining_bytes") is None  # nothing running


def test_a_running_migration_is_watched_and_its_figures_land_in_the_histograms(
        menv: SimEnv, api: TestClient) -> None:
    vm = menv.vm(dirty=8, wss=64)
    during: list[Series] = []
    for t in (1.0, 2.0):
        menv.in_job(t, lambda: during.append(scrape(api)))
    m = menv.migrate(vm, "node2", bandwidth_mib_s=64)
    assert m.state == "completed"
    first, second = during
    live = {"id": str(m.id), "vm": vm, "source": "node1", "destination": "node2",
            "policy": "auto"}
    assert value(first, "ferry_migrations", state="running", policy="auto") == 1
    assert value(first, "ferry_migration_memory_bytes", **live) == 256 * 2**20
    r1 = value(first, "ferry_migration_remaining_bytes", **live)
    r2 = value(second, "ferry_migration_remaining_bytes", **live)
    assert r1 is not None and r2 is not None and r2 < r1  # it moves
    assert (value(second, "ferry_migration_processed_bytes", **live) or 0) > \
        (value(first, "ferry_migration_processed_bytes", **live) or 0)
    assert (value(first, "ferry_migration_transfer_rate_bytes_per_second", **live) or 0) > 0
    assert value(first, "ferry_migration_round", **live) is not None
    assert value(first, "ferry_migration_predicted_seconds", **live) is not None

    after = scrape(api)
    assert value(after, "ferry_migration_remaining_bytes") is None  # gone with the job
    assert value(after, "ferry_migrations", state="completed", policy="auto") == 1
    assert value(after, "ferry_migration_duration_seconds_count") == 1
    assert value(after, "ferry_migration_duration_seconds_sum") == pytest.approx(
        m.total_ms / 1000)
    assert value(after, "ferry_migration_pause_seconds_count") == 1
    assert value(after, "ferry_migration_transferred_bytes_sum") == m.transferred_bytes
    assert value(after, "ferry_migration_prediction_error_ratio_count") == 1


def test_a_drain_in_progress_shows_its_eta_and_moves(menv: SimEnv, api: TestClient) -> None:
    for i in range(3):  # d0 is quiet, d1 and d2 are not
        menv.vm(f"d{i}", dirty=8 if i else 0)
    during: list[Series] = []
    # in the first job (the quiet guest moving while the others are measured) the plan
    # and its ETA are not made yet: scraped in the second
    menv.in_job(0.5, lambda: (during.append(scrape(api)),
                              menv.in_job(0.5, lambda: during.append(scrape(api)))))
    d = menv.svc.drains.start(DrainRequest("node1", link_mib_s=64))
    assert value(during[0], "ferry_drain_eta_seconds", id=str(d["id"])) is None
    s = during[1]
    assert (value(s, "ferry_drain_eta_seconds", id=str(d["id"]), host="node1") or 0) > 0
    assert sum(v for (n, lab), v in s.items() if n == "ferry_drain_moves"
               and dict(lab)["id"] == str(d["id"])) == 3
    assert value(s, "ferry_hosts", state="maintenance") == 1
    assert value(s, "ferry_hosts", state="up") == 2
    after = scrape(api)
    assert value(after, "ferry_drain_eta_seconds") is None  # over
    assert value(after, "ferry_migrations", state="completed") is not None


def test_the_scrape_token_reads_metrics_and_nothing_else(api: TestClient) -> None:
    assert scrape(api, SCRAPE)
    assert scrape(api, "t" * 32)  # the API token reads it too
    bad = {"Authorization": f"Bearer {SCRAPE}"}
    assert api.get("/hosts", headers=bad).status_code == 401
    assert api.post("/migrations", headers=bad, json={}).status_code == 401
    assert api.post("/metrics", headers=bad).status_code == 401
    assert api.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert api.get("/metrics", headers={"Authorization": ""}).status_code == 401


def test_without_a_scrape_token_only_the_api_token_reads_metrics(
        env: SimEnv) -> None:
    with TestClient(create_app(env.svc, start_background=False)) as client:
        r = client.get("/metrics", headers={"Authorization": f"Bearer {env.settings.token}"})
        assert r.status_code == 200
        assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401
