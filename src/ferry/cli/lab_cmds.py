"""`ferry lab ...`: a real libvirt cluster on this machine (hosts, controller, link
speed) and what its guests' heartbeats say."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import typer

from ferry.cli.client import ApiError, Client, local_config_path
from ferry.cli.common import JsonOpt, handles_errors
from ferry.cli.render import console, kv, print_json, table
from ferry.domain.names import check_name
from ferry.errors import InvalidRequest
from ferry.lab.check import check_vm
from ferry.lab.layout import lab_dir, lab_host
from ferry.lab.run import LabError

lab_app = typer.Typer(help="A real libvirt cluster on this machine.", no_args_is_help=True)
lab_controller_app = typer.Typer(help="The lab's controller process.", no_args_is_help=True)
lab_app.add_typer(lab_controller_app, name="controller")


@lab_app.command("up")
@handles_errors
def lab_up(hosts: Annotated[int, typer.Option(help="How many hosts.")] = 2,
           storage: Annotated[str, typer.Option(
               help="dir (shared + local directories) or ceph (also a real Ceph cluster "
                    "and an rbd pool).")] = "dir",
           as_json: JsonOpt = False) -> None:
    """Start N libvirt hosts, the console logger and the controller; register hosts
    and the pools shared (dir-shared), local and, with --storage ceph, ceph (rbd)."""

    say = (lambda _m: None) if as_json else (lambda m: console.print(f"[dim]lab:[/dim] {m}"))
    from ferry.lab import cluster  # here: the other commands start faster
    state = cluster.up(hosts, client_config=local_config_path(), say=say, storage=storage)
    if as_json:
        print_json({"hosts": state["hosts"], "controller": state["controller"],
                    "storage": state["storage"]})
    else:
        console.print(f"[green]lab up:[/green] hosts {', '.join(state['hosts'])}; "
                      f"controller {state['controller']} ({state['virt_type']})")


@lab_app.command("down")
@handles_errors
def lab_down(as_json: JsonOpt = False) -> None:
    """Remove everything the lab made (guests, daemons, namespaces, bridge, controller)."""

    from ferry.lab import cluster  # here: the other commands start faster
    res = cluster.down(say=(lambda _m: None) if as_json else console.print)
    if as_json:
        print_json(res)


@lab_app.command("status")
@handles_errors
def lab_status(as_json: JsonOpt = False) -> None:
    """Show the lab's hosts, daemons and controller."""

    from ferry.lab import cluster  # here: the other commands start faster
    st = cluster.status()
    if as_json:
        print_json(st)
        return
    if not st["up"]:
        console.print("lab is down")
        return
    table("lab hosts", ["host", "address", "libvirtd"],
          [[h["name"], h["address"], "running" if h["libvirtd_running"] else "STOPPED"]
           for h in st["hosts"]])
    console.print(f"controller {st['controller']} "
                  f"({'running' if st['controller_running'] else 'STOPPED'}); "
                  f"guests under {st['virt_type']}: {st['accelerator_reason']}")


@lab_controller_app.command("stop")
@handles_errors
def lab_controller_stop(kill: Annotated[bool, typer.Option(
                            "--kill", help="SIGKILL, as a crash would.")] = False,
                        as_json: JsonOpt = False) -> None:
    """Stop the lab's controller (its hosts, guests and jobs go on)."""
    from ferry.lab import cluster  # here: the other commands start faster
    pid = cluster.controller_stop(lab_dir(), kill)
    res = {"stopped": pid, "signal": "SIGKILL" if kill else "SIGTERM"}
    print_json(res) if as_json else console.print(
        "controller was not running" if pid is None else
        f"controller {pid} stopped ({res['signal']})")


@lab_controller_app.command("start")
@handles_errors
def lab_controller_start(as_json: JsonOpt = False) -> None:
    """Start the lab's controller again with its settings; it recovers what was running."""
    from ferry.lab import cluster  # here: the other commands start faster
    pid = cluster.controller_start(lab_dir())
    print_json({"pid": pid}) if as_json else console.print(f"controller {pid} answers")


@lab_app.command("link")
@handles_errors
def lab_link(rate: Annotated[float | None, typer.Option(
                 "--rate", help="Link speed of every lab host, MiB/s.")] = None,
             unlimited: Annotated[bool, typer.Option(help="Remove the limit.")] = False,
             as_json: JsonOpt = False) -> None:
    """Emulate a slower network between lab hosts (tbf on each host's link)."""

    from ferry.lab import cluster, netns  # here: the other commands start faster
    st = cluster.status()
    if not st["up"]:
        raise LabError("the lab is down")
    if (rate is None) == (not unlimited):
        raise ApiError(400, "invalid", "give --rate MIBPS or --unlimited", {})
    if rate is not None and not 1 <= rate <= 100_000:
        raise ApiError(400, "invalid", "--rate must be 1..100000 MiB/s", {})
    hosts = [lab_host(int(h["name"][4:])) for h in st["hosts"]]
    for h in hosts:
        netns.set_link_rate(h, rate)
    res = {h.name: netns.link_rate(h) for h in hosts}
    print_json(res) if as_json else console.print(
        ", ".join(f"{k}: {v}" for k, v in res.items()))


@lab_app.command("check")
@handles_errors
def lab_check(vm: str,
              migration: Annotated[int | None, typer.Option(
                  help="Only while this migration ran: the pause the guest saw.")] = None,
              as_json: JsonOpt = False) -> None:
    """What the guest's heartbeats say (boots, last sequence, largest gap, memory and
    disk errors) and, for a guest with a NIC, what the lab's network probe saw: the
    longest time without a UDP echo, datagrams lost, TCP resets."""

    try:
        check_name("vm", vm)
    except InvalidRequest as exc:
        raise ApiError(400, "invalid", exc.message, {}) from None
    since = until = None
    if migration is not None:
        m = Client().get(f"/migrations/{migration}")
        if m["vm"] != vm or not m["started_at"] or not m["finished_at"]:
            raise ApiError(400, "invalid", f"migration {migration} is not a finished migration "
                           f"of {vm}", {})
        since, until = _epoch_ns(m["started_at"]), _epoch_ns(m["finished_at"])
    res = check_vm(lab_dir(), vm, since, until).as_dict()
    if migration is not None:
        res["migration"] = migration
    if res["heartbeats"] == 0:
        raise ApiError(404, "not_found", f"no heartbeats from {vm} in the lab", {})
    if as_json:
        print_json(res)
    else:
        net = ["net_replies", "net_max_gap_ms", "net_lost", "tcp_records", "tcp_max_gap_ms",
               "tcp_resets", "tcp_errors"] if res.get("net_replies") is not None else []
        kv(f"guest check: {vm}", res, ["hosts", "boots", "last_seq", "heartbeats",
                                       "max_gap_ms", "memory_errors", "seq_resets",
                                       "disk_errors", "disk_records", *net])


def _epoch_ns(iso: str) -> int:
    t = datetime.fromisoformat(iso)
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp() * 1e9)
