"""Round 1 of a VM's first move: the bytes predicted from guest pages read before it
(`hypervisor/page_sample.py`) against what QEMU then sent, on fresh VMs.

Each guest is created fresh (random size, working set and a low dirty rate,
from a seed), predicted (`ferry predict`: its `inputs` say what round 1 will
send and from where), moved with `--policy precopy`, then predicted again:
the second prediction takes round 1's bytes from the move (what QEMU really
sent).  Reported per guest: both figures and their ratio.

Usage: .venv/bin/python bench/nonzero.py [--seed 11] [--vms 4]
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
    dirty = rng.choice((1, 2, 4))
    vm = f"nz{i}-{rng.randrange(16**4):04x}"
    ferry("vm", "delete", vm, "--delete-volumes", check=False)
    ferry("vm", "create", vm, "--host", "node1", "--memory", str(memory), "--workload-wss",
          str(wss), "--workload-dirty", str(dirty))
    try:
        before = ferry_json("predict", vm, "--to", "node2")["inputs"]
        m = ferry_json("migrate", vm, "--to", "node2", "--policy", "precopy", "--wait")
        after = ferry_json("predict", vm, "--to", "node1")["inputs"]
    finally:
        ferry("vm", "delete", vm, "--delete-volumes", check=False)
    predicted = (1 - before["zero_share"]) * memory
    sent = (1 - after["zero_share"]) * memory
    return {"vm": vm, "memory_mib": memory, "wss_mib": wss, "dirty_mib_s": dirty,
            "state": m["state"], "source": before["nonzero_source"],
            "pages_read": before["pages_read"], "predicted_mib": round(predicted, 1),
            "round1_sent_mib": round(sent, 1), "from": after["nonzero_source"],
            "ratio": round(predicted / sent, 3)
            if sent and after["nonzero_source"].startswith("round 1") else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--vms", type=int, default=4)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows = [one(rng, i) for i in range(args.vms)]
    errors = [abs(r["ratio"] - 1) for r in rows if r["ratio"]]
    data = {"when": datetime.now(UTC).isoformat(), "machine": platform.node(),
            "seed": args.seed, "rows": rows, "median_abs_error": median(errors),
            "max_abs_error": max(errors, default=float("nan"))}
    md = ["# Round 1 of a first move: sampled non-zero memory vs sent (bench/nonzero.py)",
          "", f"{datetime.now(UTC):%Y-%m-%d}, seed {args.seed}, fresh VMs, `--policy "
          "precopy`; 'sent' is round 1 of the move as the next prediction reads it.", "",
          "| VM | memory MiB | wss MiB | pages read | predicted MiB | sent MiB | ratio |",
          "|---|---|---|---|---|---|---|"]
    md += [f"| {r['vm']} | {r['memory_mib']} | {r['wss_mib']} | {r['pages_read']} | "
           f"{r['predicted_mib']} | {r['round1_sent_mib']} | {r['ratio']} |" for r in rows]
    md += ["", f"Median |error| {data['median_abs_error']:.1%}, worst "
               f"{data['max_abs_error']:.1%}.", ""]
    write("nonzero", data, "\n".join(md))


if __name__ == "__main__":
    main()
