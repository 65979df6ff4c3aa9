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


def size(n: int | None) -> str:
    """Bytes in at most 8 characters: "153 MiB", "5.0 GiB"."""
    if n is None:
        return "-"
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def build_table(title: str, columns: list[str], rows: list[list[Any]],
                keep: tuple[str, ...] = (), width: int | None = None) -> Table:
    """A table whose `keep` columns (ids, names, states) are never cut.  When the
    terminal is too narrow for every column at its natural width, the others are
    dropped from the right (and the caption says so) rather than cut to "...".

    >>> t = build_table("t", ["id", "name", "note"], [[1, "web1", "x" * 70]], ("id", "name"),
    ...                 width=40)
    >>> [c.header for c in t.columns], t.caption
    (['id', 'name'], '1 column hidden: narrow terminal (--json has all)')
    """
    cells = [["-" if v is None or v == "" else str(v) for v in r] for r in rows]
    natural = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    limit = width if width is not None else console.width
    while sum(natural[i] + 3 for i in shown) + 1 > limit:
        optional = [i for i in shown if columns[i] not in keep]
        if not optional:
            break
        shown.remove(optional[-1])
    hidden = len(columns) - len(shown)
    t = Table(title=title, caption=(f"{hidden} column{'s' if hidden > 1 else ''} hidden: "
                                    "narrow terminal (--json has all)") if hidden else None)
    for i in shown:
        if columns[i] in keep:
            t.add_column(columns[i], no_wrap=True, min_width=natural[i])
        else:
            t.add_column(columns[i], overflow="fold")
    for r in cells:
        t.add_row(*[r[i] for i in shown])
    return t


def table(title: str, columns: list[str], rows: list[list[Any]],
          keep: tuple[str, ...] = ()) -> None:
    console.print(build_table(title, columns, rows, keep))


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
        "encrypted", "compressed", "error"])
