"""The layering of DESIGN.md, checked on the source: what imports what.

Module-level imports only (a function-level import would hide a cycle, so
there are none outside the CLI's lazily loaded server stack).
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "ferry"
# top to bottom: a package may import only packages after it in this list
LAYERS = ["cli", "api", "service", "simulated", "migration", "drain", "predict", "cpu", "storage",
          "network", "hypervisor", "lab", "db", "domain", "clock", "errors"]
# the CLI loads the server's stack only inside `ferry serve` (every other command is a
# thin HTTP client and would pay ~1 s to import it)
LAZY = {("cli.main", "api.app"), ("cli.main", "hypervisor.drivers"),
        ("cli.main", "service.settings"), ("cli.main", "service.wiring"),
        # what only `ferry lab ...` and `ferry cpu baseline --from-xml` need (the lab's
        # processes and certificates; libvirt): every other command starts faster
        ("cli.lab_cmds", "lab.cluster"), ("cli.lab_cmds", "lab.netns"),
        ("cli.cpu_cmds", "cpu.baseline")}
# (`ferry secret rotate` loads the same two service modules)


def _modules() -> dict[str, Path]:
    out = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        if parts[:2] == ("db", "schema"):
            continue  # Alembic's scripts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _imports() -> list[tuple[str, str, bool]]:
    """(importer, imported, at module level) for imports of ferry's own modules."""
    mods = _modules()
    edges = []
    for m, p in mods.items():
        for node in ast.walk(ast.parse(p.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = node.module
                subs = [f"{base}.{a.name}" for a in node.names]
                names = [s for s in subs if s.removeprefix("ferry.") in mods] or [base]
            for n in names:
                target = n.removeprefix("ferry.")
                if n.startswith("ferry") and target in mods and target != m:
                    edges.append((m, target, node.col_offset == 0))
    return edges


def _layer(module: str) -> str:
    return module.split(".")[0]


def test_no_import_cycles_at_module_level() -> None:
    graph: dict[str, set[str]] = {}
    for a, b, top in _imports():
        if top:
            graph.setdefault(a, set()).add(b)
    seen: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(v: str, path: list[str]) -> None:
        seen[v] = 1
        for w in sorted(graph.get(v, ())):
            assert seen.get(w) != 1, f"import cycle: {' -> '.join([*path, w])}"
            if w not in seen:
                visit(w, [*path, w])
        seen[v] = 2

    for v in sorted(graph):
        if v not in seen:
            visit(v, [v])


def test_no_function_level_imports_but_the_lazy_server_stack() -> None:
    inner = {(a, b) for a, b, top in _imports() if not top}
    assert inner <= LAZY, sorted(inner - LAZY)


def test_nothing_imports_upward() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    up = [(a, b) for a, b, _top in _imports()
          if _layer(a) != _layer(b) and rank[_layer(b)] < rank[_layer(a)]]
    assert up == []


def test_only_the_hypervisor_package_imports_libvirt() -> None:
    found = []
    for m, p in _modules().items():
        for node in ast.walk(ast.parse(p.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] in ("libvirt", "libvirt_qemu") for n in names):
                found.append(m)
    allowed = {m for m in found if m.startswith("hypervisor.")} | {"lab.hostd"}
    assert set(found) == allowed


def test_no_driver_class_named_outside_the_hypervisor_package() -> None:
    users = [m for m, p in _modules().items()
             if not m.startswith("hypervisor.") and "LibvirtHost" in p.read_text()]
    assert users == []


def test_the_simulated_cluster_is_never_wired_into_the_product() -> None:
    users = {a for a, b, _top in _imports() if _layer(b) == "simulated"}
    assert {_layer(a) for a in users} <= {"simulated"}
