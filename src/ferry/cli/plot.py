"""`ferry migration show ID --plot FILE.png`: one migration, drawn from its samples."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from ferry.domain.vocab import EventKind

MIB = 2**20
MARKED = {EventKind.SET_DOWNTIME: "downtime limit", EventKind.START_POSTCOPY: "post-copy",
          EventKind.TIMEOUT: "timeout", EventKind.CANCEL: "cancel", EventKind.SENT: "memory sent"}


def plot_migration(m: dict[str, Any], samples: list[dict[str, Any]], out: Path) -> None:
    import matplotlib  # ~0.5 s to load: only for the command that draws

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6.5), sharex=True)
    t = [s["t_ms"] / 1000 for s in samples]
    ax1.plot(t, [s["memory_remaining_bytes"] / MIB for s in samples], color="tab:blue",
             label="memory remaining")
    for it in sorted({s["iteration"] for s in samples}):
        first = next(s for s in samples if s["iteration"] == it)
        ax1.axvline(first["t_ms"] / 1000, color="grey", lw=0.5, ls=":")
        ax1.text(first["t_ms"] / 1000, ax1.get_ylim()[1] * 0.02 if ax1.get_ylim()[1] else 0,
                 f" r{it}", fontsize=7, color="grey")
    started = _event_time(m, EventKind.STARTED)
    for e in m.get("events", []):
        if e["kind"] in MARKED and started is not None:
            x = (datetime.fromisoformat(e["at"]) - started).total_seconds()
            ax1.axvline(x, color="tab:red", lw=1)
            ax1.text(x, ax1.get_ylim()[1] * 0.9, " " + MARKED[e["kind"]], color="tab:red",
                     fontsize=8)
    if m.get("total_ms") and m.get("downtime_ms") is not None:
        end = m["total_ms"] / 1000
        ax1.axvspan(end - m["downtime_ms"] / 1000, end, color="tab:orange", alpha=0.4,
                    label=f"pause {m['downtime_ms']} ms")
    ax1.set_ylabel("MiB")
    ax1.legend(loc="upper right", fontsize=8)
    ax2.plot(t, [s["dirty_rate_bytes_s"] / MIB for s in samples], label="dirty rate",
             color="tab:purple")
    ax2.plot(t, [s["bandwidth_bytes_s"] / MIB for s in samples], label="transfer rate",
             color="tab:green")
    ax2.set_ylabel("MiB/s")
    ax2.set_xlabel("seconds since the job started")
    ax2.legend(loc="upper right", fontsize=8)
    pred = (f"predicted {m['predicted_total_ms']} ms / {m['predicted_downtime_ms']} ms pause"
            if m.get("predicted_total_ms") is not None else
            "predicted: does not converge" if m.get("predicted_converges") is False else
            "no prediction")
    actual = (f"actual {m['total_ms']} ms / {m['downtime_ms']} ms pause"
              if m.get("total_ms") is not None else f"actual: {m['state']}")
    fig.suptitle(f"migration {m['id']}: {m['vm']} {m['source']} → {m['destination']} "
                 f"({m.get('policy', '')})\n{actual}; {pred}", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _event_time(m: dict[str, Any], kind: str) -> datetime | None:
    for e in m.get("events", []):
        if e["kind"] == kind:
            return datetime.fromisoformat(e["at"])
    return None
