"""How much of a lab guest's memory its workload may take: the measurement behind
the `guest_reserved_mib` setting (what `ferry vm create` refuses as a working set).

For each guest size, guests are started (all of one size at once) with working
sets that leave 56..96 MiB for the kernel and initramfs.  A guest is healthy
when, 45 s after it started, it has booted once, still sends heartbeats (two
looks 10 s apart) and reports no memory error; a working set it cannot hold
ends with the OOM killer taking the workload (no heartbeat).  The lab
controller runs with `guest_reserved_mib` 0 for the run, then with its own
setting again.

Usage: .venv/bin/python bench/guest_memory.py   (with `ferry lab up` running)
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from common import ferry, write
from ferry.cli.client import tls_context

SIZES = (128, 256, 512)
HEADROOM = (56, 64, 72, 80, 88, 96)
SETTLE_S = 45.0
LAB = Path("/var/lib/ferry/lab")


def client() -> httpx.Client:
    cfg = json.loads((LAB / "client.json").read_text())
    return httpx.Client(base_url=cfg["url"], timeout=120, verify=tls_context(cfg),
                        headers={"Authorization": f"Bearer {cfg['token']}"})


def set_reserve(mib: int | None) -> None:
    path = LAB / "controller" / "settings.json"
    s = json.loads(path.read_text())
    if mib is None:
        s.pop("guest_reserved_mib", None)
    else:
        s["guest_reserved_mib"] = mib
    path.write_text(json.dumps(s, indent=2))
    ferry("lab", "controller", "stop")
    ferry("lab", "controller", "start")


def healthy(vm: str) -> dict[str, Any]:
    """Booted once, no memory error, and still beating (10 s apart)."""
    def look() -> dict[str, Any]:
        proc, _ms = ferry("lab", "check", vm, "--json", check=False)
        if proc.returncode != 0:  # no console output at all
            return {"boots": 0, "heartbeats": 0, "memory_errors": 0}
        return dict(json.loads(proc.stdout))

    before = look()
    time.sleep(10)
    c = look()
    ok = c["boots"] == 1 and c["heartbeats"] > before["heartbeats"] and \
        c["memory_errors"] == 0
    return {"ok": ok, "boots": c["boots"], "heartbeats": c["heartbeats"],
            "memory_errors": c["memory_errors"]}


def probe(api: httpx.Client, memory: int, headroom: int) -> dict[str, Any]:
    vm = f"mem{uuid.uuid4().hex[:6]}"
    wss = memory - headroom
    r = api.post("/vms", json={"name": vm, "host": "node1", "memory_mib": memory,
                               "workload_wss_mib": wss, "wait": False})
    if r.status_code != 201:
        return {"memory_mib": memory, "headroom_mib": headroom, "wss_mib": wss, "ok": False,
                "refused": r.json().get("message")}
    try:
        time.sleep(SETTLE_S)
        return {"memory_mib": memory, "headroom_mib": headroom, "wss_mib": wss,
                **healthy(vm)}
    finally:
        ferry("vm", "delete", vm, "--delete-volumes", check=False)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    args = ap.parse_args()
    rows = []
    set_reserve(0)
    try:
        with client() as api, ThreadPoolExecutor(len(HEADROOM)) as pool:
            for memory in args.sizes:
                for row in pool.map(lambda h, m=memory: probe(api, m, h), HEADROOM):
                    print(row, flush=True)
                    rows.append(row)
    finally:
        set_reserve(None)
    least = {m: min((r["headroom_mib"] for r in rows if r["memory_mib"] == m and r["ok"]),
                    default=None) for m in args.sizes}
    data = {"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
            "settle_s": SETTLE_S, "rows": rows, "least_headroom_mib": least}
    md = ["# Guest memory headroom (bench/guest_memory.py)", "",
          f"{datetime.now(UTC):%Y-%m-%d}; a guest is healthy {SETTLE_S:.0f} s after start: "
          "one boot, heartbeats still coming 10 s later, no memory error.", "",
          "| guest MiB | " + " | ".join(f"{h} MiB left" for h in HEADROOM) + " |",
          "|---|" + "---|" * len(HEADROOM)]
    for m in args.sizes:
        cells = []
        for h in HEADROOM:
            r = next(r for r in rows if r["memory_mib"] == m and r["headroom_mib"] == h)
            cells.append("refused" if "refused" in r else ("ok" if r["ok"] else "FAILS"))
        md.append(f"| {m} | " + " | ".join(cells) + " |")
    md += ["", "Least headroom that worked: " + ", ".join(
        f"{m} MiB: {least[m]} MiB" for m in args.sizes), "",
        "A guest that FAILS never boots its workload: its console shows the OOM killer "
        "taking it.  `ferry vm create` keeps `guest_reserved_mib` (72) + 1/32 of the "
        "memory out of the working set (128: 76, 256: 80, 512: 88 MiB).", ""]
    write("guest_memory", data, "\n".join(md))


if __name__ == "__main__":
    main()
