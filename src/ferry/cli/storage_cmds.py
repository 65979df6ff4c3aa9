"""`ferry pool ...` and `ferry volume ...`: storage, as thin calls to the API."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import typer

from ferry.cli.client import Client
from ferry.cli.common import JsonOpt, handles_errors
from ferry.cli.render import console, err_console, kv, mib, print_json, table
from ferry.domain.models import PoolKind

pool_app = typer.Typer(help="Storage pools: dir-shared, local, rbd.", no_args_is_help=True)
volume_app = typer.Typer(help="Volumes in pools.", no_args_is_help=True)

POOL_COLS = ["name", "kind", "where", "hosts"]
VOL_COLS = ["pool", "name", "size", "vm", "target", "host", "path"]


def _where(p: dict[str, Any]) -> str:
    if p["kind"] == "rbd":
        return f"{p['rbd_pool']} @ {','.join(p['monitors'])} as client.{p['user']}"
    return str(p["path"])


def _read_key(path: Path) -> str:
    """A cephx key from `ceph auth get-key` output or a keyring file (`key = ...`)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}") from None
    m = re.search(r"^\s*key\s*=\s*(\S+)", text, re.MULTILINE)
    return m.group(1) if m else text.strip()


@pool_app.command("add")
@handles_errors
def pool_add(name: str,
             kind: Annotated[PoolKind, typer.Option("--type", help="Where its volumes live.")],
             path: Annotated[str, typer.Option(help="Directory (dir-shared, local).")] = "",
             hosts: Annotated[str, typer.Option(
                 help="Comma-separated hosts that have it (default: every host).")] = "",
             monitor: Annotated[list[str] | None, typer.Option(
                 help="rbd: a Ceph monitor host:port (repeatable).")] = None,
             rbd_pool: Annotated[str, typer.Option(help="rbd: the Ceph pool.")] = "",
             user: Annotated[str, typer.Option(help="rbd: the cephx user (no 'client.').")] = "",
             key_file: Annotated[Path | None, typer.Option(
                 help="rbd: file with the user's key (`ceph auth get-key` or a keyring).")]
             = None,
             as_json: JsonOpt = False) -> None:
    """Register a pool and define it on its hosts (rbd: with the cephx secret)."""
    body = {"name": name, "kind": kind.value, "path": path,
            "hosts": [h for h in hosts.split(",") if h], "monitors": monitor or [],
            "rbd_pool": rbd_pool, "user": user,
            "key": _read_key(key_file) if key_file else ""}
    p = Client().post("/pools", json=body)
    print_json(p) if as_json else console.print(f"pool {p['name']} ({p['kind']}) added")


@pool_app.command("list")
@handles_errors
def pool_list(as_json: JsonOpt = False) -> None:
    pools = Client().get("/pools")
    if as_json:
        print_json(pools)
        return
    table("pools", POOL_COLS, [[p["name"], p["kind"], _where(p), ",".join(p["hosts"]) or "all"]
                               for p in pools])


@pool_app.command("show")
@handles_errors
def pool_show(name: str, as_json: JsonOpt = False) -> None:
    """The pool, how each host's libvirt sees it, and its volumes."""
    st = Client().get(f"/pools/{name}")
    if as_json:
        print_json(st)
        return
    p = st["pool"]
    kv(f"pool {name}", {**p, "where": _where(p)}, ["kind", "where", "hosts", "secret_uuid"])
    rows = [[h, e.get("state", ""), mib(e.get("capacity_bytes")), mib(e.get("available_bytes")),
             e.get("secret", "")] for h, e in st["hosts"].items()]
    table("hosts", ["host", "state", "capacity", "available", "secret"], rows)
    _volume_table(st["volumes"])


@pool_app.command("remove")
@handles_errors
def pool_remove(name: str, as_json: JsonOpt = False) -> None:
    """Undefine the pool on every host (its data stays); refused while it has volumes."""
    Client().delete(f"/pools/{name}")
    print_json({"removed": name}) if as_json else console.print(f"pool {name} removed")


def _volume_table(vols: list[dict[str, Any]]) -> None:
    table("volumes", VOL_COLS, [[v["pool"], v["name"], mib(v["capacity_bytes"]), v["vm"] or "",
                                 v["target"], v["host"] or "", v["path"]] for v in vols])


PoolOpt = Annotated[str, typer.Option("--pool", help="The volume's pool.")]


@volume_app.command("create")
@handles_errors
def volume_create(name: str, pool: PoolOpt,
                  size: Annotated[float | None, typer.Option(help="Size in GiB.")] = None,
                  host: Annotated[str | None, typer.Option(
                      help="local pools: the host whose directory holds it.")] = None,
                  from_volume: Annotated[str | None, typer.Option(
                      "--from", help="Copy of this volume of the same pool (an image).")]
                  = None,
                  as_json: JsonOpt = False) -> None:
    """Create a raw volume, empty or as a copy of an image volume."""
    v = Client().post(f"/pools/{pool}/volumes", json={"name": name, "size_gib": size,
                                                       "host": host,
                                                       "from_volume": from_volume})
    print_json(v) if as_json else console.print(
        f"volume {pool}/{v['name']} created ({mib(v['capacity_bytes'])})")


@volume_app.command("list")
@handles_errors
def volume_list(pool: Annotated[str | None, typer.Option(help="Only this pool.")] = None,
                as_json: JsonOpt = False) -> None:
    vols = Client().get("/volumes", params={"pool": pool} if pool else None)
    print_json(vols) if as_json else _volume_table(vols)


@volume_app.command("show")
@handles_errors
def volume_show(name: str, pool: PoolOpt, as_json: JsonOpt = False) -> None:
    v = Client().get(f"/pools/{pool}/volumes/{name}")
    print_json(v) if as_json else kv(f"volume {pool}/{name}", v,
                                     ["capacity_bytes", "path", "vm", "target", "host",
                                      "created_at"])


@volume_app.command("delete")
@handles_errors
def volume_delete(name: str, pool: PoolOpt, as_json: JsonOpt = False) -> None:
    """Delete a volume no VM uses (its data is gone)."""
    Client().delete(f"/pools/{pool}/volumes/{name}")
    print_json({"deleted": f"{pool}/{name}"}) if as_json else console.print(
        f"volume {pool}/{name} deleted")


def parse_disks(specs: list[str]) -> list[dict[str, Any]]:
    """`POOL:SIZE_GIB` options of `vm create` to request bodies."""
    out = []
    for spec in specs:
        pool, sep, size = spec.partition(":")
        try:
            gib = float(size)
        except ValueError:
            gib = -1.0
        if not sep or not pool or gib <= 0:
            err_console.print(f"[red]error:[/red] --disk {spec!r}: expected POOL:SIZE_GIB")
            raise typer.Exit(2)
        out.append({"pool": pool, "size_gib": gib})
    return out
