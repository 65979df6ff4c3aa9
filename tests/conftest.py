"""Markers by directory, so the split cannot drift: tests/lab is `lab`, tests/db is
`postgres`, tests/fuzz is `fuzz` (`make test-unit` runs none of them: it starts
nothing and stays under a minute).  A test marked
`destroys_lab` runs after every other test, whatever its file is called."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if HERE / "lab" in path.parents:
            item.add_marker(pytest.mark.lab)
        if HERE / "db" in path.parents:
            item.add_marker(pytest.mark.postgres)
        if HERE / "fuzz" in path.parents:
            item.add_marker(pytest.mark.fuzz)
    items.sort(key=lambda i: i.get_closest_marker("destroys_lab") is not None)
