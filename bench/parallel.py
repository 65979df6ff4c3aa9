"""How many migrations should run at once?  The measurement behind Ferry's limits.

Four guests (256 MiB, dirtying 8 MiB/s over 64 MiB) are moved node1 -> node2
and back, all requested at once, with the controller's per-source and
per-destination limit set to 1, 2 and 4 (the lab controller is restarted with
each setting), on the unlimited lab link and on one shaped to 32 MiB/s.  For
each: the wall time until the last one finished (the "drain" time), each
migration's total and downtime, and whether any failed.  Ratios are to limit 1.

Usage: .venv/bin/python bench/parallel.py [--vms 4]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from common import ferry, ferry_json, median, write

SETTINGS = Path("/var/lib/ferry/lab/controller/settings.json")
LIMITS = (1, 2, 4)
LINKS: tuple[float | None, ...] = (None, 32.0)


def set_limit(limit: int) -> None:
    s = json.loads(SETTINGS.read_text())
    s.update(migrations_per_source=limit, migrations_per_destination=limit,
             migrations_per_cluster=max(4, limit))
    SETTINGS.write_text(json.dumps(s, indent=2))
    ferry("lab", "controller", "stop")
    ferry("lab", "controller", "start")


def batch(vms: list[str], to: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    ids = [ferry_json("migrate", vm, "--to", to)["id"] for vm in vms]
    final: dict[int, dict[str, Any]] = {}
    while len(final) < len(ids):
        for mid in ids:
            if mid not in final:
                m = ferry_json("migration", "show", str(mid))
                if m["state"] in ("completed", "failed", "cancelled"):
                    final[mid] = m
        time.sleep(0.2)
    wall = (time.perf_counter() - t0) * 1000
    ms = list(final.values())
    return {"to": to, "wall_ms": round(wall), "failed": sum(m["state"] != "completed"
                                                            for m in ms),
            "total_ms": [m["total_ms"] for m in ms], "downtime_ms": [m["downtime_ms"]
                                                                   for m in ms],
            "max_queued": max(sum(1 for e in m["events"] if e["kind"] == "queued")
                              for m in ms)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vms", type=int, default=4)
    args = ap.parse_args()
    ferry("lab", "up")
    vms = [f"par{i}" for i in range(args.vms)]
    for vm in vms:
        if ferry("vm", "show", vm, "--json", check=False)[0].returncode == 0:
            ferry("vm", "delete", vm, "--delete-volumes")
        ferry("vm", "create", vm, "--host", "node1", "--memory", "256", "--workload-wss", "64",
              "--workload-dirty", "8")
    rows: list[dict[str, Any]] = []
    try:
        for link in LINKS:
            ferry("lab", "link", *(["--rate", str(link)] if link else ["--unlimited"]))
            for limit in LIMITS:
                set_limit(limit)
                for to in ("node2", "node1"):
                    r = batch(vms, to)
                    rows.append({"link_mib_s": link, "limit": limit, **r})
                    print(rows[-1])
    finally:
        ferry("lab", "link", "--unlimited")
        set_limit(2)
    checks = {vm: ferry_json("lab", "check", vm) for vm in vms}
    md = ["| link | limit per host | drain wall (median of 2 directions) | vs limit 1 | "
          "median total | median downtime | failed |", "|---|---|---|---|---|---|---|"]
    for link in LINKS:
        base = median([r["wall_ms"] for r in rows if r["link_mib_s"] == link
                       and r["limit"] == 1])
        for limit in LIMITS:
            rs = [r for r in rows if r["link_mib_s"] == link and r["limit"] == limit]
            wall = median([r["wall_ms"] for r in rs])
            totals = [t for r in rs for t in r["total_ms"] if t is not None]
            downs = [d for r in rs for d in r["downtime_ms"] if d is not None]
            md.append(f"| {'unlimited' if link is None else f'{link:.0f} MiB/s'} | {limit} | "
                      f"{wall / 1000:.1f} s | {wall / base:.2f} | "
                      f"{median(totals) / 1000:.1f} s | {median(downs):.0f} ms | "
                      f"{sum(r['failed'] for r in rs)} |")
    md.append("")
    md.append(f"{args.vms} guests of 256 MiB dirtying 8 MiB/s over 64 MiB, requested at once, "
              "moved node1 -> node2 and back per setting; guest checks after all runs: "
              + ", ".join(f"{vm}: {c['boots']} boot(s), {c['memory_errors']} memory errors"
                          for vm, c in checks.items()))
    write("parallel", {"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
                       "rows": rows, "checks": checks}, "\n".join(md) + "\n")


if __name__ == "__main__":
    main()
