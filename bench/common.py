"""Shared helpers for benchmarks: run the ferry CLI, medians, result files."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ferry.hypervisor.drivers import open_libvirt
from ferry.hypervisor.types import JobStats

ROOT = Path(__file__).resolve().parents[1]
FERRY = str(Path(sys.executable).parent / "ferry")
RESULTS = ROOT / "bench" / "results"


def ferry(*args: str, check: bool = True) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `ferry ARGS`; return the process and its wall time in ms."""
    env = dict(os.environ, FERRY_CONFIG=str(Path("/var/lib/ferry/lab/client.json")))
    t0 = time.perf_counter()
    proc = subprocess.run([FERRY, *args], capture_output=True, text=True, env=env, check=False)
    wall = (time.perf_counter() - t0) * 1000
    if check and proc.returncode != 0:
        raise SystemExit(f"ferry {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc, wall


def ferry_json(*args: str) -> Any:
    return json.loads(ferry(*args, "--json")[0].stdout)


def median(xs: list[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def write(name: str, data: dict[str, Any], table_md: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(data, indent=2) + "\n")
    (RESULTS / f"{name}.md").write_text(table_md)
    print(table_md)


def virsh_migrate(vm: str, src_uri: str, dst_uri: str, timeout_s: float,
                  extra: tuple[str, ...] = ()) -> tuple[bool, float, JobStats | None]:
    """Plain `virsh migrate --live --p2p --persistent --undefinesource` (libvirt's
    defaults; `extra` options added), aborted after `timeout_s`: (moved, wall s,
    libvirt's completed-job figures on the destination, if it moved)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["virsh", "-c", src_uri, "migrate", "--live", "--p2p",
                             "--persistent", "--undefinesource", *extra, vm, dst_uri],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        subprocess.run(["virsh", "-c", src_uri, "domjobabort", vm], capture_output=True,
                       check=False)
        proc.wait(timeout=60)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        return False, wall, None
    host = open_libvirt(dst_uri)
    try:
        return True, wall, host.completed_job_stats(vm)
    finally:
        host.close()


def wait_talking(vm: str, timeout_s: float = 60) -> None:
    """Wait until the lab's network probe gets TCP records back from a guest with a NIC
    (its blackout is measured from then on); a guest without one returns at once."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        c = ferry_json("lab", "check", vm)
        if c.get("net_replies") is None and not ferry_json("vm", "show", vm).get("address"):
            return
        if (c.get("tcp_records") or 0) > 0:
            return
        time.sleep(0.5)
    raise RuntimeError(f"the lab's probe got no answer from {vm} in {timeout_s:.0f} s")
