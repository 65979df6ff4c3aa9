"""Round 1 of a VM's first move: the bytes predicted from guest pages read before it
(`hypervisor/page_sample.py`) against what QEMU then sent, on fresh VMs.

Each guest is created fresh (random size and working set from a seed, no
dirtying, so that what QEMU sends is its non-zero memory once: the bytes
libvirt reports for the whole move), predicted (`ferry predict`: its `inputs`
say what round 1 will send and from where), then moved with `--policy
precopy`.  Reported per guest: predicted and sent MiB and their ratio.

Usage: .venv/bin/python bench/nonzero.py [--seed 11] [--vms 5]
"""

from __future__ import annotations

import argparse
import platform
import random
from datetime import UTC, datetime
from typing import Any

from common import ferry, ferry_json, median, write

MIB = 2**20


def one(rng: random.Random, i: int) -> dict[str, Any]:
    memory = rng.choice((256, 384, 512, 768))
    wss = rng.randrange(16, memory // 2, 8)
    vm = f"nz{i}-{rng.randrange(16**4):04x}"
    ferry("vm", "delete", vm, "--delete-volumes", check=False)
    ferry("vm", "create", vm, "--host", "node1", "--memory", str(memory), "--workload-wss",
          str(wss), "--workload-dirty", "0")
    try:
        before = ferry_json("predict", vm, "--to", "node2")["inputs"]
        m = ferry_json("migrate", vm, "--to", "node2", "--policy", "precopy", "--wait")
    finally:
        ferry("vm", "delete", vm, "--delete-volumes", check=False)
    predicted = (1 - before["zero_share"]) * memory
    sent = (m.get("transferred_bytes") or 0) / MIB
    return {"vm": vm, "memory_mib": memory, "wss_mib": wss, "state": m["state"],
            "source": before["nonzero_source"], "pages_read": before["pages_read"],
            "stderr": before["nonzero_stderr"], "predicted_mib": round(predicted, 1),
            "sent_mib": round(sent, 1), "ratio": round(predicted / sent, 3) if sent else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--vms", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = [one(rng, i) for i in range(args.vms)]
    errors = [abs(r["ratio"] - 1) for r in rows if r["ratio"]]
    data = {"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
            "seed": args.seed, "rows": rows, "median_abs_error": median(errors),
            "max_abs_error": max(errors, default=float("nan"))}
    md = ["# Round 1 of a first move: sampled non-zero memory vs sent (bench/nonzero.py)",
          "", f"{datetime.now(UTC):%Y-%m-%d}, seed {args.seed}, fresh idle VMs, `--policy "
          "precopy`; 'sent' is the bytes libvirt reports for the move (one round: the "
          "guest does not dirty).", "",
          "| VM | memory MiB | wss MiB | pages read | +- share | predicted MiB | sent MiB | "
          "ratio |", "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['vm']} | {r['memory_mib']} | {r['wss_mib']} | {r['pages_read']} | "
           f"{r['stderr']:.1%} | {r['predicted_mib']} | {r['sent_mib']} | {r['ratio']} |"
           for r in rows]
    md += ["", f"Median |error| {data['median_abs_error']:.1%}, worst "
               f"{data['max_abs_error']:.1%}.", ""]
    write("nonzero", data, "\n".join(md))


if __name__ == "__main__":
    main()
