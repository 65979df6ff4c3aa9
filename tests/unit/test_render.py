"""What people read in a terminal: narrow tables keep ids, names and states whole."""

from __future__ import annotations

from rich.console import Console

from ferry.cli.main import MIG_COLS, MIG_KEEP, mig_row
from ferry.cli.render import build_table


def _migration(i: int, vm: str, state: str) -> dict[str, object]:
    return {"id": i, "vm": vm, "source": "compute-01", "destination": "compute-02",
            "state": state, "policy": "autoconverge", "total_ms": 123456, "downtime_ms": 45,
            "rounds": 12, "transferred_bytes": 5 * 2**30}


def test_migration_list_in_80_columns_never_cuts_ids_names_or_states() -> None:
    rows = [_migration(1234, "web-frontend-12", "completed"),
            _migration(7, "db1", "prechecking")]
    console = Console(width=80, record=True)
    console.print(build_table("migrations", MIG_COLS, [mig_row(m) for m in rows], MIG_KEEP,
                              width=80))
    text = console.export_text()
    assert "…" not in text
    for word in ("1234", "web-frontend-12", "compute-01", "compute-02", "prechecking"):
        assert word in text
    assert "hidden" in text  # and it says what it left out
    assert max(len(line) for line in text.splitlines()) <= 80


def test_wide_terminal_shows_every_column() -> None:
    console = Console(width=200, record=True)
    console.print(build_table("migrations", MIG_COLS, [mig_row(_migration(1, "web1", "failed"))],
                              MIG_KEEP, width=200))
    text = console.export_text()
    assert all(c in text for c in MIG_COLS) and "hidden" not in text
