"""The real lab for end-to-end tests: brought up once per session, always torn down.

Tests drive Ferry as a user would (the `ferry` command, the HTTP API) and
check the truth with libvirt on the lab hosts directly.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import libvirt
import pytest

FERRY = str(Path(sys.executable).parent / "ferry")
STATE = Path(os.environ.get("FERRY_STATE_DIR", "/var/lib/ferry"))
CLIENT_CONFIG = STATE / "lab" / "client.json"
URIS = {"node1": "qemu+tls://198.18.0.11/system", "node2": "qemu+tls://198.18.0.12/system",
        "node3": "qemu+tls://198.18.0.13/system"}

libvirt.registerErrorHandler(lambda _c, _e: None, None)


TRACE = os.environ.get("FERRY_TEST_TRACE")  # a file: each CLI call's start and duration


def _trace(line: str) -> None:
    if TRACE:
        with open(TRACE, "a") as f:
            f.write(f"{time.time():.1f} {line}\n")


def ferry(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, FERRY_CONFIG=str(CLIENT_CONFIG), COLUMNS="200")
    t0 = time.monotonic()
    proc = subprocess.run([FERRY, *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)
    _trace(f"{time.monotonic() - t0:6.2f} ferry {' '.join(args)}")
    if check and proc.returncode != 0:
        raise AssertionError(f"ferry {' '.join(args)} exited {proc.returncode}:\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def ferry_json(*args: str, check: bool = True) -> Any:
    return json.loads(ferry(*args, "--json", check=check).stdout)


@dataclass
class Lab:
    url: str
    token: str
    ca: str  # the lab's CA: the controller's HTTPS certificate is verified against it

    def api(self, token: str | None = None, timeout: float = 180,
            auth: bool = True) -> httpx.Client:
        """The controller over HTTPS (verified), with the lab's token, another one, or
        none (`auth=False`)."""
        headers = {"Authorization": f"Bearer {token or self.token}"} if auth else {}
        return httpx.Client(base_url=self.url, timeout=timeout, headers=headers,
                            verify=ssl.create_default_context(cafile=self.ca))

    def domains(self, host: str) -> dict[str, libvirt.virDomain]:
        conn = libvirt.open(URIS[host])
        try:
            return {d.name(): d for d in conn.listAllDomains()}
        finally:
            pass

    def where(self, vm: str) -> dict[str, str]:
        """{host: 'running'|'paused'|'shutoff'|...} for every host that has the domain."""
        out = {}
        for host in URIS:
            d = self.domains(host).get(vm)
            if d is not None:
                try:
                    state = d.state()[0]
                except libvirt.libvirtError:  # gone since it was listed (migrated away)
                    continue
                out[host] = {libvirt.VIR_DOMAIN_RUNNING: "running",
                             libvirt.VIR_DOMAIN_PAUSED: "paused",
                             libvirt.VIR_DOMAIN_SHUTOFF: "shutoff"}.get(state, str(state))
        return out

    def persistent_on(self, vm: str, host: str) -> bool:
        d = self.domains(host).get(vm)
        return bool(d is not None and d.isPersistent())


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.fail("the lab tests need root (run `make test` as root)")
    try:
        # three hosts: a drain empties one onto the two others
        info = ferry_json("lab", "up", "--hosts", "3", "--storage", "ceph")
        assert info["hosts"] == ["node1", "node2", "node3"] and info["storage"] == "ceph"
        cfg = json.loads(CLIENT_CONFIG.read_text())
        yield Lab(url=cfg["url"], token=cfg["token"], ca=cfg["ca"])
    finally:
        settle_deletions()
        ferry("lab", "down", check=False)


# A test's VMs are deleted in the background while the next test's first VM boots
# (deleting takes ~3 s, booting a TCG guest ~6 s: CI time); `make_vm` returns only
# once they are gone, so no test sees another's VMs or memory.
_deleting: list[threading.Thread] = []


def settle_deletions() -> None:
    """Wait until the VMs of earlier tests are deleted."""
    while _deleting:
        _deleting.pop().join()


@pytest.fixture
def make_vm(lab: Lab) -> Iterator[Callable[..., str]]:
    """Create VMs through `ferry vm create`; delete them after the test, whatever
    happened (in the background: see `_deleting`)."""
    made: list[str] = []

    def create(host: str = "node1", memory: int = 256, dirty: int = 0, wss: int = 32,
               disks: tuple[str, ...] = (), boot_pool: str | None = None,
               network: str | None = "none", pattern: str = "uniform") -> str:
        """`network`: none (no NIC: what most tests need), a libvirt network or
        bridge:BR, None for the lab's default (its guest network, with an address
        the lab's probe talks to)."""
        name = f"t{uuid.uuid4().hex[:8]}"
        made.append(name)
        extra = [a for d in disks for a in ("--disk", d)] + ["--workload-pattern", pattern]
        if network is not None:
            extra += ["--network", network]
        if boot_pool:
            extra += ["--boot-pool", boot_pool]
        try:
            ferry("vm", "create", name, "--host", host, "--memory", str(memory),
                  "--workload-dirty", str(dirty), "--workload-wss", str(wss), *extra)
        finally:
            settle_deletions()
        return name

    yield create

    def delete() -> None:
        for name in made:
            if ferry("vm", "delete", name, "--delete-volumes", check=False).returncode == 3:
                _stop_migrations(lab, name)  # a failed test may leave one running
                ferry("vm", "delete", name, "--delete-volumes", check=False)

    t = threading.Thread(target=delete, name="lab-vm-delete")
    t.start()
    _deleting.append(t)


def _stop_migrations(lab: Lab, vm: str) -> None:
    """Cancel the VM's unfinished migration and wait for its end (test hygiene: a
    leftover busy guest would slow every test after it)."""
    for m in ferry_json("migration", "list", "--vm", vm):
        if m["state"] not in ("completed", "failed", "cancelled"):
            ferry("migration", "cancel", str(m["id"]), check=False)
            with contextlib.suppress(AssertionError):  # best effort: a teardown
                wait_finished(lab, int(m["id"]), timeout=240)


def wait_for(pred: Callable[[], Any], timeout: float = 60, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_finished(lab: Lab, mid: int, timeout: float = 180) -> dict[str, Any]:
    with lab.api() as api:
        def done() -> dict[str, Any] | None:
            m = api.get(f"/migrations/{mid}").json()
            return m if m["state"] in ("completed", "failed", "cancelled") else None
        return dict(wait_for(done, timeout, f"migration {mid} to finish"))


def wait_samples(lab: Lab, mid: int) -> None:
    """Wait until the job is really transferring (samples with memory in flight)."""
    with lab.api() as api:
        wait_for(lambda: any(s["memory_total_bytes"] > 0 and s["iteration"] >= 1
                             for s in api.get(f"/migrations/{mid}/samples").json()),
                 60, "migration samples")


@pytest.fixture(autouse=True)
def _trace_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """With FERRY_TEST_TRACE set, mark each test's start and end in the trace."""
    _trace(f"---- start {request.node.nodeid}")
    yield
    _trace(f"---- end {request.node.nodeid}")
