"""`ferry host drain`, `ferry host activate` and `ferry drain list|show|cancel`."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ferry.cli.client import Client
from ferry.cli.common import JsonOpt, handles_errors
from ferry.cli.render import console, print_json, table

drain_app = typer.Typer(help="Drains: hosts being emptied, their moves and ETA.",
                        no_args_is_help=True)
FINAL = ("completed", "failed", "cancelled")
POLL_S = 0.2  # the end is seen within this (a drain of 30 s: 1 % at most)


def _s(ms: int | None) -> str:
    return "" if ms is None else f"{ms / 1000:.1f} s"


def show_plan(p: dict[str, Any]) -> None:
    rows = [[m["order"] + 1, m["vm"], m["to"], _s(m["start_ms"]), _s(m["predicted_total_ms"]),
             f"{m['predicted_downtime_ms']} ms", f"{m['share_mib_s']:.0f} MiB/s",
             "alone" if m["alone"] else ""] for m in p["moves"]]
    table(f"drain plan for {p['host']}", ["#", "vm", "to", "starts", "takes", "pause",
                                          "link share", ""], rows)
    for b in p["blocked"]:
        console.print(f"[yellow]stays:[/yellow] {b['vm']}: {b['reason']}")
    one = p.get("transfers_per_link") == 1
    console.print(f"ETA {_s(p['eta_ms'])} for {len(p['moves'])} moves "
                  f"(at most {p['max_parallel']} at once from {p['host']}"
                  + ("; one transfers while the next prepares)" if one else ")"))


def show_report(d: dict[str, Any]) -> None:
    rows = [[m["vm"], m["to"], m["state"], m.get("migration"), _s(m.get("total_ms")),
             "" if m.get("downtime_ms") is None else f"{m['downtime_ms']} ms",
             m.get("error", "")] for m in d["moves"]]
    rows += [[b["vm"], "", "blocked", None, "", "", b["reason"]] for b in d["blocked"]]
    table(f"drain {d['id']} of {d['host']}: {d['state']}",
          ["vm", "to", "state", "migration", "time", "pause", "why"], rows)
    console.print(f"took {_s(d['elapsed_ms'])} (planned {_s(d['planned_eta_ms'])})")
    for e in d.get("events", []):
        console.print(f"  {e['at'][11:23]}  {e['kind']:<10} {e['message']}")


def follow(client: Client, did: int, show: bool) -> dict[str, Any]:
    """Poll the drain until it ends; a progress bar per move and the ETA when `show`."""
    if not show:
        while True:
            d = client.get(f"/drains/{did}")
            if d["state"] in FINAL:
                return dict(d)
            time.sleep(POLL_S)
    last: dict[int, int] = {}
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                  TextColumn("{task.fields[detail]}"), TimeElapsedColumn(),
                  console=console) as progress:
        overall = progress.add_task("drain", total=1.0, detail="")
        tasks: dict[str, TaskID] = {}
        while True:
            d = client.get(f"/drains/{did}")
            moves = d["moves"]
            done = sum(m["state"] in FINAL for m in moves)
            progress.update(overall, completed=done / max(len(moves), 1),
                            description=f"drain {did} of {d['host']}",
                            detail=f"{done}/{len(moves)} done, ETA {_s(d['eta_ms'])}")
            for m in moves:
                key = m["vm"]
                if key not in tasks:
                    tasks[key] = progress.add_task(key, total=1.0, detail="waiting")
                frac, detail = _move_progress(client, m, last)
                progress.update(tasks[key], completed=frac, detail=detail,
                                description=f"{m['vm']} → {m['to']}")
            if d["state"] in FINAL:
                return dict(d)
            time.sleep(POLL_S)


def _move_progress(client: Client, m: dict[str, Any], last: dict[int, int]
                   ) -> tuple[float, str]:
    if m["state"] in FINAL:
        return (1.0 if m["state"] == "completed" else 0.0), m["state"]
    if m["state"] != "running" or m.get("migration") is None:
        return 0.0, m["state"]
    mid = int(m["migration"])
    samples = client.get(f"/migrations/{mid}/samples", params={"after_ms": last.get(mid, -1)})
    if not samples:
        return 0.0, f"migration {mid}: preparing"
    s = samples[-1]
    last[mid] = s["t_ms"]
    total = max(s["memory_total_bytes"], 1)
    return max(0.0, 1.0 - s["memory_remaining_bytes"] / total), f"round {s['iteration']}"


@handles_errors
def host_drain(host: str,
               to: Annotated[str | None, typer.Option(
                   "--to", help="Only these destinations (comma-separated).")] = None,
               max_parallel: Annotated[int, typer.Option(
                   help="At most this many moves at once from the host.")] = 2,
               link: Annotated[float | None, typer.Option(
                   help="The host's link, MiB/s (else learned from earlier migrations).")]
               = None,
               max_downtime: Annotated[int | None, typer.Option(
                   help="Pause limit per VM, ms.")] = None,
               tls: Annotated[bool | None, typer.Option(
                   "--tls/--no-tls", help="Encrypt the streams (default: between hosts with "
                   "migration certificates); --no-tls moves the guests' memory in clear.")]
               = None,
               compress: Annotated[bool | None, typer.Option(
                   "--compress/--no-compress", help="zstd over parallel streams (default: "
                   "where a guest's pages compress, pre-copy alone finishes and the source "
                   "has CPU to spare; --compress: whatever the source's load).")] = None,
               dry_run: Annotated[bool, typer.Option(
                   help="Show the plan; move nothing.")] = False,
               wait: Annotated[bool, typer.Option(help="Follow until it ends.")] = False,
               as_json: JsonOpt = False) -> None:
    """Empty a host: maintenance, a plan (destinations, order, parallelism, ETA), moves."""
    client = Client()
    body = {"to": [h for h in (to or "").split(",") if h], "max_parallel": max_parallel,
            "link_mib_s": link, "max_downtime_ms": max_downtime, "dry_run": dry_run,
            "tls": tls, "compress": compress}
    d = client.post(f"/hosts/{host}/drain", json=body)
    if dry_run:
        print_json(d) if as_json else show_plan(d)
        return
    if not wait:
        if as_json:
            print_json(d)
        else:
            console.print(f"drain {d['id']} running: {len(d['moves'])} moves, "
                          f"ETA {_s(d['eta_ms'])}; `ferry drain show {d['id']}`")
            for b in d["blocked"]:
                console.print(f"[yellow]stays:[/yellow] {b['vm']}: {b['reason']}")
        return
    final = follow(client, d["id"], show=not as_json)
    print_json(final) if as_json else show_report(final)
    if final["state"] != "completed":
        raise typer.Exit(5)


@handles_errors
def host_activate(host: str,
                  back: Annotated[bool, typer.Option(
                      "--return", help="Move the VMs the last drain moved away back.")]
                  = False,
                  wait: Annotated[bool, typer.Option(help="Follow the return.")] = False,
                  as_json: JsonOpt = False) -> None:
    """End a host's maintenance (optionally bringing its VMs back)."""
    client = Client()
    out = client.post(f"/hosts/{host}/activate", json={"back": back})
    ret = out.get("return")
    if wait and ret is not None:
        out["return"] = follow(client, ret["id"], show=not as_json)
    if as_json:
        print_json(out)
        return
    console.print(f"host {host}: {out['state']}")
    if out.get("return") is not None:
        show_report(out["return"]) if wait else console.print(
            f"returning {len(ret['moves'])} VMs: drain {ret['id']}")


@drain_app.command("list")
@handles_errors
def drain_list(as_json: JsonOpt = False) -> None:
    ds = Client().get("/drains")
    if as_json:
        print_json(ds)
        return
    table("drains", ["id", "host", "state", "moves", "blocked", "eta", "elapsed"],
          [[d["id"], d["host"], d["state"], len(d["moves"]), len(d["blocked"]),
            _s(d["eta_ms"]), _s(d["elapsed_ms"])] for d in ds])


@drain_app.command("show")
@handles_errors
def drain_show(did: int, wait: Annotated[bool, typer.Option(
        help="Follow until it ends.")] = False, as_json: JsonOpt = False) -> None:
    client = Client()
    d = follow(client, did, show=not as_json) if wait else client.get(f"/drains/{did}")
    print_json(d) if as_json else show_report(d)


@drain_app.command("cancel")
@handles_errors
def drain_cancel(did: int, as_json: JsonOpt = False) -> None:
    """Queued moves do not start; running ones are cancelled (VMs stay on the host)."""
    d = Client().post(f"/drains/{did}/cancel")
    print_json(d) if as_json else console.print(f"drain {did}: cancel requested")
