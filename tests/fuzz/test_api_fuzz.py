"""The API under generated input (Schemathesis from its own OpenAPI schema): no 5xx
but a deliberate 503, no traceback, no key in any body.

Against the real app and services, on the simulated cluster with one VM, a
pool holding a cephx key, and a host whose daemon does not answer.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from ferry.api.app import create_app
from tests.sim.conftest import SimEnv, make_env

KEY = "AQBzcW1mAAAAABAAc2VjcmV0LWtleS1mdXp6LXRlc3Q="


def _env() -> SimEnv:
    """Built when the module is collected: Schemathesis needs the schema then."""
    tmp = Path(tempfile.mkdtemp(prefix="ferry-fuzz-"))
    env = make_env(tmp)
    env.cluster.add_ceph_pool("vms", "ferry", KEY)
    env.svc.pools.add("ceph", "rbd", monitors=["198.18.0.2:6789"], rbd_pool="vms",
                      user="ferry", key=KEY)
    env.vm("web1")
    env.cluster.host("node3").unreachable = True
    return env


ENV = _env()
APP = create_app(ENV.svc, start_background=False)
HEADERS = {"Authorization": f"Bearer {ENV.settings.token}"}
schema = schemathesis.openapi.from_dict(APP.openapi())
schema.app = APP


def teardown_module() -> None:
    ENV.svc.shutdown()
    shutil.rmtree(Path(ENV.db_url.removeprefix("sqlite:///")).parent, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_server_error_no_traceback_no_key(case: Any) -> None:
    response = case.call(headers=HEADERS)
    body = response.text
    assert response.status_code < 500 or response.status_code == 503, body
    assert "Traceback" not in body
    assert KEY not in body and KEY[:24] not in body


HOSTILE_STRINGS = ["web1\n", "../../etc/passwd", "a" * 5000, "", " ", "$(id)", "`id`",
                   "'; DROP TABLE vms; --", "\x00", "é", "node1\r\nX-Injected: 1",
                   "qemu+ssh://root@h/system?command=/bin/touch%20/tmp/ferry-pwned"]
HOSTILE_NUMBERS: list[object] = [-1, 0, 2**63, -(2**63) - 1, 10**400, 1e308, "NaN", None,
                                 [], {}, True, "12"]
BODIES = {"/hosts": {"name": "h1", "uri": "qemu+tcp://x/system"},
          "/vms": {"name": "v1", "host": "node1"},
          "/pools": {"name": "p1", "kind": "dir-shared", "path": "/srv/p1"},
          "/migrations": {"vm": "web1", "to": "node2"},
          "/pools/shared/volumes": {"name": "x1", "size_gib": 1}}


def _check(r: Any) -> None:
    assert r.status_code < 500 or r.status_code == 503, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text and KEY not in r.text


def test_hostile_values_in_every_field_of_every_body() -> None:
    marker = Path("/tmp/ferry-pwned")
    marker.unlink(missing_ok=True)
    with TestClient(APP, headers=HEADERS) as client:
        for path, body in BODIES.items():
            for field in body:
                for value in [*HOSTILE_STRINGS, *HOSTILE_NUMBERS]:
                    _check(client.post(path, json={**body, field: value}))
            _check(client.post(path, content=b"{\"name\": NaN}",
                               headers={"content-type": "application/json"}))
            _check(client.post(path, content=b"not json",
                               headers={"content-type": "application/json"}))
        for value in HOSTILE_STRINGS[:9]:
            for path in ("/vms/{}", "/hosts/{}", "/pools/{}", "/migrations/{}",
                         "/pools/shared/volumes/{}"):
                _check(client.get(path.format(quote(value, safe=""))))
            _check(client.get("/predict", params={"vm": value, "to": value}))
            _check(client.get("/cpu/check", params={"vm": value, "to": value}))
    assert not marker.exists(), "a URI parameter made the controller run a program"
