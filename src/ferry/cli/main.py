"""`ferry`: the command line.  Every command but `serve` and `lab` talks to the
controller's HTTP API; `--json` prints machine-readable output.

Exit codes: 0 ok, 1 other error, 2 invalid input, 3 conflict, 4 not found,
5 migration refused or failed, 6 unavailable, 7 auth, 8 no controller.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Annotated, Any

import typer

from ferry.cli.client import ApiError, Client
from ferry.cli.common import JsonOpt, handles_errors
from ferry.cli.cpu_cmds import cpu_app
from ferry.cli.drain_cmds import drain_app, host_activate, host_drain
from ferry.cli.lab_cmds import lab_app
from ferry.cli.plot import plot_migration
from ferry.cli.render import (
    console,
    kv,
    mib,
    migration_summary,
    print_json,
    size,
    table,
)
from ferry.cli.storage_cmds import parse_disks, pool_app, volume_app
from ferry.cli.ui_cmds import ui
from ferry.cli.watch import follow
from ferry.domain.vocab import OnTimeout, Policy, VirtType, WorkloadPattern

app = typer.Typer(help="Ferry: safe, predictable live migration of KVM virtual machines.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
host_app = typer.Typer(help="Hypervisor hosts.", no_args_is_help=True)
vm_app = typer.Typer(help="Virtual machines.", no_args_is_help=True)
mig_app = typer.Typer(help="Migrations: history, details, cancel, recover.",
                      no_args_is_help=True)
secret_app = typer.Typer(help="The controller's key for stored secrets.",
                         no_args_is_help=True)
app.add_typer(lab_app, name="lab")
app.add_typer(host_app, name="host")
app.add_typer(vm_app, name="vm")
app.add_typer(mig_app, name="migration")
app.add_typer(secret_app, name="secret")
app.add_typer(cpu_app, name="cpu")
app.add_typer(pool_app, name="pool")
app.add_typer(volume_app, name="volume")
app.add_typer(drain_app, name="drain")
app.command()(ui)
host_app.command("drain")(host_drain)
host_app.command("activate")(host_activate)

# -- controller ---------------------------------------------------------------
@app.command()
def serve(config: Annotated[Path, typer.Option(help="Controller settings (JSON).")]) -> None:
    """Run the Ferry controller (HTTP API, HTTPS with a certificate in the settings, +
    migration workers)."""
    # the server's whole stack, loaded only here: every other command is a thin client
    import uvicorn

    from ferry.api.app import create_app
    from ferry.hypervisor.drivers import LIBVIRT
    from ferry.service.settings import Settings
    from ferry.service.wiring import build

    os.umask(0o077)  # whatever the controller writes (database, logs, keys) is its own
    settings = Settings.load(config)
    tls: dict[str, Any] = {}
    if settings.tls_cert_file:
        tls = {"ssl_certfile": settings.tls_cert_file, "ssl_keyfile": settings.tls_key_file}
    if settings.tls_client_ca_file:
        tls.update(ssl_ca_certs=settings.tls_client_ca_file, ssl_cert_reqs=ssl.CERT_REQUIRED)
    uvicorn.run(create_app(build(settings, LIBVIRT)), host=settings.listen_host,
                port=settings.listen_port, log_level="warning", **tls)


@secret_app.command("rotate")
@handles_errors
def secret_rotate(config: Annotated[Path, typer.Option(help="Controller settings (JSON).")],
                  as_json: JsonOpt = False) -> None:
    """Seal every stored secret with a new key and drop the old ones (stop the
    controller first: it holds the old key)."""
    from ferry.service.settings import Settings
    from ferry.service.wiring import rotate_secret_key

    os.umask(0o077)
    settings = Settings.load(config)
    n = rotate_secret_key(settings)
    res = {"resealed": n, "key_file": str(settings.secret_key_path())}
    print_json(res) if as_json else console.print(
        f"{n} stored secret(s) sealed with a new key in {res['key_file']}")


# -- hosts ----------------------------------------------------------------------
HOST_COLS = ["name", "state", "uri", "virt_type", "cpu_model", "memory_free_mib"]


@host_app.command("list")
@handles_errors
def host_list(as_json: JsonOpt = False) -> None:
    hosts = Client().get("/hosts")
    if as_json:
        print_json(hosts)
    else:
        table("hosts", HOST_COLS, [[h[c] for c in HOST_COLS] for h in hosts])


@host_app.command("show")
@handles_errors
def host_show(name: str, as_json: JsonOpt = False) -> None:
    h = Client().get(f"/hosts/{name}")
    print_json(h) if as_json else kv(f"host {name}", h, [*HOST_COLS, "cpu_vendor", "cpus",
                                                        "memory_total_mib", "networks",
                                                        "interfaces", "error", "updated_at"])


@host_app.command("add")
@handles_errors
def host_add(name: str, uri: str,
             virt_type: Annotated[VirtType, typer.Option(
                 help="What guests run under (qemu: TCG); auto asks the host.")] = VirtType.AUTO,
             migration_tls: Annotated[bool, typer.Option(
                 help="It has QEMU's migration certificates (qemu.conf's x509 directory): "
                      "streams to and from it are encrypted.")] = False,
             as_json: JsonOpt = False) -> None:
    """Register a host by its libvirt URI (qemu+tls://HOST/system in production)."""
    h = Client().post("/hosts", json={"name": name, "uri": uri,
                                      "virt_type": virt_type.value,
                                      "migration_tls": migration_tls})
    if as_json:
        print_json(h)
        return
    console.print(f"host {h['name']} added ({h['state']})")
    for w in h.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {w}")


@host_app.command("refresh")
@handles_errors
def host_refresh(name: str, as_json: JsonOpt = False) -> None:
    """Re-read the host and reconcile VM whereabouts with libvirt."""
    h = Client().post(f"/hosts/{name}/refresh")
    print_json(h) if as_json else kv(f"host {name}", h, HOST_COLS)


# -- vms ------------------------------------------------------------------------
VM_COLS = ["name", "host", "state", "memory_mib", "vcpus", "cpu_model", "mobility"]


@vm_app.command("create")
@handles_errors
def vm_create(name: str,
              host: Annotated[str, typer.Option(help="Host to start it on.")],
              memory: Annotated[int, typer.Option(help="Memory in MiB.")] = 256,
              vcpus: Annotated[int, typer.Option()] = 1,
              workload_dirty: Annotated[int, typer.Option(
                  help="Guest workload dirty rate, MiB/s.")] = 0,
              workload_wss: Annotated[int | None, typer.Option(
                  help="Guest workload working set, MiB.")] = None,
              boot_pool: Annotated[str | None, typer.Option(
                  help="Pool of the boot disk (default: the controller's).")] = None,
              disk: Annotated[list[str] | None, typer.Option(
                  help="A data disk POOL:SIZE_GIB (repeatable); the guest writes and "
                       "verifies checksummed records on it.")] = None,
              workload_fill: Annotated[bool, typer.Option(
                  help="The guest first fills its data disks with records.")] = False,
              workload_pattern: Annotated[WorkloadPattern, typer.Option(
                  help="How the guest's writes spread over its working set: uniform, "
                       "hotcold (9 in 10 to a hot eighth), burst (2 s on at twice the "
                       "rate, 2 s off), sequential (streams through it).")
              ] = WorkloadPattern.UNIFORM,
              network: Annotated[str | None, typer.Option(
                  help="Its NIC: a libvirt network NAME, bridge:BRIDGE, or none "
                       "(default: the controller's guest network; the lab's has an "
                       "address for it and a client that talks to it).")] = None,
              as_json: JsonOpt = False) -> None:
    """Define and start a VM from the guest image; returns once its heartbeat is seen."""
    body = {"name": name, "host": host, "memory_mib": memory, "vcpus": vcpus,
            "workload_dirty_mib_s": workload_dirty, "workload_wss_mib": workload_wss,
            "boot_pool": boot_pool, "disks": parse_disks(disk or []),
            "workload_fill": workload_fill, "workload_pattern": workload_pattern.value,
            "network": network}
    if not as_json:
        console.print(f"creating {name} on {host} and waiting for its heartbeat ...")
    v = Client().post("/vms", json=body)
    print_json(v) if as_json else console.print(f"VM {v['name']} {v['state']} on {v['host']}")


@vm_app.command("list")
@handles_errors
def vm_list(as_json: JsonOpt = False) -> None:
    vms = Client().get("/vms")
    print_json(vms) if as_json else table("vms", VM_COLS, [[v[c] for c in VM_COLS] for v in vms])


@vm_app.command("show")
@handles_errors
def vm_show(name: str, as_json: JsonOpt = False) -> None:
    v = Client().get(f"/vms/{name}")
    print_json(v) if as_json else kv(f"vm {name}", v, [*VM_COLS, "cpu_blocked", "disks", "nics",
                                                      "address", "managed",
                                                      "workload_dirty_mib_s",
                                                      "workload_wss_mib", "workload_pattern",
                                                      "updated_at"])


@vm_app.command("delete")
@handles_errors
def vm_delete(name: str,
              delete_volumes: Annotated[bool | None, typer.Option(
                  "--delete-volumes/--keep-volumes",
                  help="Also delete its volumes, or keep them (detached). Asked if not given.")]
              = None,
              as_json: JsonOpt = False) -> None:
    """Power off and remove the VM; its volumes are deleted or kept as you say."""
    client = Client()
    if delete_volumes is None:
        vols = [f"{v['pool']}/{v['name']}" for v in client.get("/volumes") if v["vm"] == name]
        if vols and not as_json:
            delete_volumes = typer.confirm(f"Delete its volumes too ({', '.join(vols)})?",
                                           default=False)
    params = {} if delete_volumes is None else {
        "volumes": "delete" if delete_volumes else "keep"}
    client.delete(f"/vms/{name}", params=params)
    if as_json:
        print_json({"deleted": name, "volumes": params.get("volumes", "none")})
    else:
        done = {"delete": "; volumes deleted", "keep": "; volumes kept"}
        console.print(f"VM {name} deleted{done.get(params.get('volumes', ''), '')}")


# -- migrations -------------------------------------------------------------------
@app.command()
@handles_errors
def migrate(vm: str, to: Annotated[str | None, typer.Option(
                "--to", help="Destination host, or several (comma-separated) for placement "
                "to choose among; none: placement chooses.")] = None,
            wait: Annotated[bool, typer.Option(help="Follow until it finishes.")] = False,
            bandwidth: Annotated[int | None, typer.Option(help="Limit, MiB/s.")] = None,
            max_downtime: Annotated[int | None, typer.Option(help="Downtime limit, ms.")] = None,
            policy: Annotated[Policy, typer.Option(
                help="How the migration adapts while it runs.")] = Policy.AUTO,
            timeout_per_gib: Annotated[float | None, typer.Option(
                help="Give up (or force) after this many s per GiB of guest RAM.")] = None,
            on_timeout: Annotated[OnTimeout, typer.Option(
                help="abort: the VM stays on the source; force: finish with post-copy.")]
            = OnTimeout.ABORT,
            tls: Annotated[bool | None, typer.Option(
                "--tls/--no-tls", help="Encrypt the stream (default: when both hosts have "
                "migration certificates); --no-tls moves the guest's memory in clear.")]
            = None,
            compress: Annotated[bool | None, typer.Option(
                "--compress/--no-compress", help="zstd over parallel streams (default: where "
                "the guest's pages compress, pre-copy alone finishes and the source has CPU to "
                "spare; --compress: whatever the source's load).")] = None,
            as_json: JsonOpt = False) -> None:
    """Live-migrate VM to another host (prechecks first; nothing moves if they fail)."""
    client = Client()
    m = client.post("/migrations", json={
        "vm": vm, "to": to, "bandwidth_mib_s": bandwidth, "max_downtime_ms": max_downtime,
        "policy": policy.value, "timeout_per_gib_s": timeout_per_gib,
        "on_timeout": on_timeout.value, "tls": tls, "compress": compress})
    if not wait:
        print_json(m) if as_json else console.print(
            f"migration {m['id']} {m['state']}: {vm} {m['source']} → {m['destination']}")
        return
    final = follow(client, m["id"], show=not as_json)
    if as_json:
        print_json(final)
    else:
        migration_summary(final)
    if final["state"] != "completed":
        raise typer.Exit(5)


# most important first: a narrow terminal drops columns from the right
MIG_COLS = ["id", "vm", "from", "to", "state", "total", "downtime", "sent", "policy", "rounds"]
MIG_KEEP = ("id", "vm", "from", "to", "state")


def mig_row(m: dict[str, Any]) -> list[Any]:
    total, down = m.get("total_ms"), m.get("downtime_ms")
    return [m["id"], m["vm"], m["source"], m["destination"], m["state"],
            None if total is None else f"{total / 1000:.1f} s",
            None if down is None else f"{down} ms", size(m.get("transferred_bytes")),
            m["policy"], m["rounds"]]


@mig_app.command("list")
@handles_errors
def migration_list(vm: Annotated[str | None, typer.Option(help="Only this VM.")] = None,
                   as_json: JsonOpt = False) -> None:
    ms = Client().get("/migrations", params={"vm": vm} if vm else {})
    print_json(ms) if as_json else table("migrations", MIG_COLS, [mig_row(m) for m in ms],
                                         keep=MIG_KEEP)


@mig_app.command("show")
@handles_errors
def migration_show(mid: int,
                   plot: Annotated[Path | None, typer.Option(
                       help="Also draw it to this PNG file.")] = None,
                   as_json: JsonOpt = False) -> None:
    """Figures, events and (with --plot) a chart of one migration."""
    client = Client()
    m = client.get(f"/migrations/{mid}")
    if plot is not None:
        if plot.suffix.lower() != ".png":
            raise ApiError(400, "invalid", "--plot needs a .png file name", {})
        plot_migration(m, client.get(f"/migrations/{mid}/samples"), plot)
        if not as_json:
            console.print(f"plot written to {plot}")
    if as_json:
        m["samples"] = client.get(f"/migrations/{mid}/samples")
        print_json(m)
        return
    migration_summary(m)
    table("events", ["at", "kind", "message"],
          [[e["at"], e["kind"], e["message"]] for e in m["events"]])


@app.command()
@handles_errors
def predict(vm: str, to: Annotated[str, typer.Option("--to", help="Destination host.")],
            bandwidth: Annotated[int | None, typer.Option(help="Limit, MiB/s.")] = None,
            max_downtime: Annotated[int | None, typer.Option(help="Downtime limit, ms.")] = None,
            as_json: JsonOpt = False) -> None:
    """Measure the guest's dirtying now and predict every policy (no migration)."""
    params: dict[str, Any] = {"vm": vm, "to": to}
    if bandwidth:
        params["bandwidth_mib_s"] = bandwidth
    if max_downtime:
        params["max_downtime_ms"] = max_downtime
    if not as_json:
        console.print(f"measuring {vm}: its non-zero memory, then its dirty pages up to the "
                      "length of round 1 (at most ~17 s) ...")
    res = Client(timeout=120).get("/predict", params=params)
    if as_json:
        print_json(res)
        return
    inp = res["inputs"]
    b = inp.get("bursts")
    bursts = f" in bursts of {b['on_s']} s every {b['on_s'] + b['off_s']:.1f} s" if b else ""
    cold = inp.get("cold_set")
    also = f" and {cold['rate_mib_s']} MiB/s over ~{cold['working_set_mib']} MiB" if cold else ""
    console.print(f"{vm}: {inp['memory_mib']} MiB, dirtying {inp['dirty_rate_mib_s']} MiB/s"
                  f"{bursts} over ~{inp['working_set_mib']} MiB{also}, "
                  f"{inp['zero_share'] * 100:.0f}% zero pages; "
                  f"link {inp['link_mib_s']} MiB/s ({inp['link']})", soft_wrap=True)
    table(f"predicted {res['source']} → {res['destination']}",
          ["policy", "converges", "total_ms", "range", "downtime_ms", "sent", "rounds", "note"],
          [[("* " if n == res["recommended"] else "") + n, st["converges"],
            st["total_ms"] if st["converges"] else "-", span(st.get("range", {})),
            st["downtime_ms"] if st["converges"] else "-", mib(st["transferred_bytes"]),
            st["rounds"], st["note"]] for n, st in res["strategies"].items()])
    console.print(f"measured for {inp['dirty_measured_s']} s; inputs: "
                  + ", ".join(f"{k} {v}" for k, v in res["sources"].items()), soft_wrap=True)
    console.print(f"recommended: [bold]{res['recommended']}[/bold]")


def span(r: dict[str, Any]) -> str:
    """A prediction's range for people: total time, and whether it converges at both ends."""
    if not r:
        return ""
    lo, hi = r["total_ms"]
    return f"{lo}-{hi}" + ("" if len(r["converges"]) == 1 else " (may not converge)")


@mig_app.command("recover")
@handles_errors
def migration_recover(mid: int, as_json: JsonOpt = False) -> None:
    """Resume a post-copy migration that broke (state postcopy-paused), now."""
    m = Client().post(f"/migrations/{mid}/recover")
    print_json(m) if as_json else console.print(
        f"migration {mid}: resuming its post-copy ({m['state']})")


@mig_app.command("cancel")
@handles_errors
def migration_cancel(mid: int, as_json: JsonOpt = False) -> None:
    m = Client().post(f"/migrations/{mid}/cancel")
    print_json(m) if as_json else console.print(f"cancel requested for migration {mid}")


if __name__ == "__main__":
    app()
