"""Rich output for people; plain JSON for scripts (`--json`)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 1048576:.1f} MiB"


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*["-" if v is None or v == "" else str(v) for v in r])
    console.print(t)


def kv(title: str, data: dict[str, Any], keys: list[str]) -> None:
    console.print(f"[bold]{title}[/bold]")
    t = Table(show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    for k in keys:
        v = data.get(k)
        t.add_row(k, "-" if v is None or v == "" else str(v))
    console.print(t)


def migration_summary(m: dict[str, Any]) -> None:
    kv(f"migration {m['id']}: {m['vm']} {m['source']} → {m['destination']}", {
        **m,
        "transferred": mib(m.get("transferred_bytes")),
        "disks copied": mib(m.get("disk_bytes")) if m.get("disk_bytes") else "-",
    }, ["state", "total_ms", "downtime_ms", "transferred", "disks copied", "rounds", "wall_ms",
        "error"])
