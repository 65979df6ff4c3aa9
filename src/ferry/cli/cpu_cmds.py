"""`ferry cpu ...`: the cluster baseline, the CPU mode, the mobility report, checks.

`ferry cpu baseline --from-xml FILE...` works offline (no controller, no
host): it reads recorded `virsh capabilities` output and uses libvirt's CPU
map through its test driver, as `virsh cpu-baseline` does.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ferry.cli.client import ApiError, Client
from ferry.cli.common import JsonOpt, handles_errors
from ferry.cli.render import console, kv, print_json, table
from ferry.cpu.model import nova_conf
from ferry.cpu.xmlinput import CpuInputError

cpu_app = typer.Typer(help="CPU models: baseline, mode, mobility.", no_args_is_help=True)
FORMATS = ("text", "json", "xml", "nova")


def _print_baseline(data: dict[str, Any], fmt: str) -> None:
    if fmt == "json":
        print_json({k: data[k] for k in ("model", "vendor", "features", "disabled",
                                         "holds_back", "hosts") if k in data})
    elif fmt in ("xml", "nova"):  # verbatim, for files and config management
        sys.stdout.write(data[fmt] if data[fmt].endswith("\n") else data[fmt] + "\n")
    else:
        say = functools.partial(console.print, soft_wrap=True)
        say(f"baseline CPU: [bold]{data['model']}[/bold] ({data['vendor']})")
        say(f"  extra features: {', '.join(data['features']) or '-'}")
        if data.get("disabled"):
            say(f"  disabled:       {', '.join(data['disabled'])}")
        for host, lacks in data.get("holds_back", {}).items():
            if lacks:
                say(f"  {host} holds back: {', '.join(lacks)}")


@cpu_app.command("baseline")
@handles_errors
def cpu_baseline(
    files: Annotated[list[Path] | None, typer.Argument(help="With --from-xml: files.")] = None,
    hosts: Annotated[str | None, typer.Option(help="Comma-separated hosts (default: all).")]
    = None,
    fmt: Annotated[str, typer.Option("--format", help="text, json, xml or nova.")] = "text",
    from_xml: Annotated[bool, typer.Option("--from-xml", help=(
        "Offline: read `virsh capabilities` output or <cpu> elements from FILES."))] = False,
    as_json: JsonOpt = False,
) -> None:
    """The CPU every given host can run, and which host holds the others back."""
    fmt = "json" if as_json else fmt
    if fmt not in FORMATS:
        raise ApiError(400, "invalid", f"--format must be one of {', '.join(FORMATS)}", {})
    if from_xml:
        _offline(files or [], fmt)
        return
    if files:
        raise ApiError(400, "invalid", "files are only read with --from-xml", {})
    data = Client().get("/cpu/baseline", params={"hosts": hosts} if hosts else {})
    _print_baseline(data, fmt)


def _offline(files: list[Path], fmt: str) -> None:
    if not files:
        raise ApiError(400, "invalid", "--from-xml needs at least one file", {})
    try:
        inputs = [(str(f), f.read_text()) for f in files]
    except OSError as exc:
        raise ApiError(400, "invalid", f"cannot read {exc.filename}: {exc.strerror}", {}) from exc
    from ferry.cpu.baseline import offline_baseline  # here: it loads libvirt

    try:
        summary, xml = offline_baseline(inputs)
    except CpuInputError as exc:
        raise ApiError(400, "invalid", exc.message, {}) from exc
    _print_baseline({**summary.as_dict(), "xml": xml, "nova": nova_conf(summary)}, fmt)


_MODE_HELP = "baseline | host-model | host-passthrough | custom:MODEL[+f,...]"


def _mode(action: str, value: str | None, as_json: JsonOpt, route: str, key: str) -> None:
    client = Client()
    if action == "show":
        res = client.get(route)
    elif action == "set" and value:
        res = client.put(route, json={key: value})
    else:
        raise ApiError(400, "invalid", "usage: ferry cpu mode show | set MODE", {})
    print_json(res) if as_json else console.print(f"CPU mode: {res[key]}")


@cpu_app.command("mode")
@handles_errors
def cpu_mode(action: Annotated[str, typer.Argument(help="show or set")] = "show",
             value: Annotated[str | None, typer.Argument(help=_MODE_HELP)] = None,
             as_json: JsonOpt = False) -> None:
    """Show or set the CPU mode new VMs get (default: baseline)."""
    _mode(action, value, as_json, "/cpu/mode", "mode")


@cpu_app.command("policy", hidden=True)
@handles_errors
def cpu_policy(action: Annotated[str, typer.Argument(help="show or set")] = "show",
               value: Annotated[str | None, typer.Argument(help=_MODE_HELP)] = None,
               as_json: JsonOpt = False) -> None:
    """The older name of `ferry cpu mode` (answers {"policy": ...}), kept for scripts."""
    _mode(action, value, as_json, "/cpu/policy", "policy")


@cpu_app.command("report")
@handles_errors
def cpu_report(as_json: JsonOpt = False) -> None:
    """For every VM, the hosts it can and cannot move to, and why."""
    rows = Client().get("/cpu/report")
    if as_json:
        print_json(rows)
        return
    table("CPU mobility", ["vm", "host", "cpu", "can move to", "cannot move to (missing)"],
          [[r["vm"], r["host"], r["cpu_model"], ", ".join(r["can_move_to"]) or "-",
            "; ".join(f"{h}: {', '.join(v['missing_features'])}"
                      for h, v in r["cannot_move_to"].items()) or "-"] for r in rows])


@cpu_app.command("check")
@handles_errors
def cpu_check(vm: str, to: Annotated[str, typer.Option("--to", help="Destination host.")],
              as_json: JsonOpt = False) -> None:
    """Would VM's own CPU run on HOST?  The migration precheck's verdict, explained."""
    res = Client().get("/cpu/check", params={"vm": vm, "to": to})
    if as_json:
        print_json(res)
    else:
        verdict = "[green]compatible[/green]" if res["compatible"] else "[red]incompatible[/red]"
        console.print(f"{vm} → {to}: {verdict} ({res['compared']})")
        kv("guest CPU", res["guest_cpu"], ["model", "vendor", "features"])
        if res["missing_features"]:
            console.print(f"{to} lacks: {', '.join(res['missing_features'])}")
    if not res["compatible"]:
        raise typer.Exit(5)
