"""`--wait`: follow a migration live, from its samples, until it finishes."""

from __future__ import annotations

import time
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from ferry.cli.client import Client
from ferry.cli.render import console

FINISHED = ("completed", "failed", "cancelled")
POLL_S = 0.1


def progress_detail(s: dict[str, Any]) -> str:
    """One sample for people.  QEMU measures the dirty rate when a round ends, so
    during round 1 there is none yet (not "0.0").

    >>> progress_detail({"iteration": 1, "memory_remaining_bytes": 100 * 2**20,
    ...                  "memory_total_bytes": 256 * 2**20, "dirty_rate_bytes_s": 0,
    ...                  "bandwidth_bytes_s": 64 * 2**20})
    'round 1  remaining 100/256 MiB  dirty rate known after round 1  link 64 MiB/s'
    """
    mib = 1048576
    dirty = (f"dirty {s['dirty_rate_bytes_s'] / mib:.1f} MiB/s" if s["iteration"] >= 2
             else "dirty rate known after round 1")
    return (f"round {s['iteration']}  remaining {s['memory_remaining_bytes'] / mib:.0f}/"
            f"{s['memory_total_bytes'] / mib:.0f} MiB  {dirty}  "
            f"link {s['bandwidth_bytes_s'] / mib:.0f} MiB/s")


def follow(client: Client, mid: int, show: bool) -> dict[str, Any]:
    """Poll until the migration finishes; draw progress when `show`."""
    last_t = -1
    if not show:
        while True:
            m = client.get(f"/migrations/{mid}")
            if m["state"] in FINISHED:
                return dict(m)
            time.sleep(POLL_S)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("starting", total=1.0, detail="")
        while True:
            m = client.get(f"/migrations/{mid}")
            for s in client.get(f"/migrations/{mid}/samples", params={"after_ms": last_t}):
                last_t = s["t_ms"]
                total = max(s["memory_total_bytes"], 1)
                done = 1.0 - s["memory_remaining_bytes"] / total
                progress.update(task, completed=max(done, 0.0), detail=progress_detail(s),
                                description=f"{m['vm']} {m['source']}→{m['destination']}")
            if m["state"] in FINISHED:
                if m["state"] == "completed":
                    progress.update(task, completed=1.0)
                progress.update(task, description=f"{m['vm']}: {m['state']}")
                return dict(m)
            time.sleep(POLL_S)
