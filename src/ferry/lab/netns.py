"""The lab network: one bridge in the root namespace, a veth per host namespace."""

from __future__ import annotations

from ferry.lab.layout import BRIDGE, BRIDGE_ADDR, NETNS_PREFIX, PREFIX, VETH_PREFIX, LabHost
from ferry.lab.run import run


def _link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def create_bridge() -> None:
    if not _link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "replace", f"{BRIDGE_ADDR}/{PREFIX}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def create_host_netns(host: LabHost) -> None:
    """Namespace + veth into the bridge + the host's address; idempotent."""
    if host.netns not in list_netns():
        run(["ip", "netns", "add", host.netns])
    if not _link_exists(host.veth):
        run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "eth0",
             "netns", host.netns])
    run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
    ns = ["ip", "-n", host.netns]
    run([*ns, "link", "set", "lo", "up"])
    run([*ns, "addr", "replace", f"{host.address}/{PREFIX}", "dev", "eth0"])
    run([*ns, "link", "set", "eth0", "up"])


def list_netns() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def lab_netns() -> list[str]:
    return [n for n in list_netns() if n.startswith(NETNS_PREFIX)]


def delete_all() -> None:
    """Remove every lab namespace, veth and the bridge; missing ones are fine."""
    for ns in lab_netns():
        run(["ip", "netns", "delete", ns], check=False)
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    for line in out.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name.startswith(VETH_PREFIX):
            run(["ip", "link", "delete", name], check=False)
    if _link_exists(BRIDGE):
        run(["ip", "link", "delete", BRIDGE], check=False)



def set_link_rate(host: LabHost, mib_s: float | None) -> None:
    """Shape what the host sends (tbf) to emulate a slower link; None removes it.

    The kernel here has no netem: rates can be emulated, latency and loss cannot."""
    dev = ["dev", "eth0"]
    run(["ip", "netns", "exec", host.netns, "tc", "qdisc", "del", *dev, "root"], check=False)
    if mib_s:
        bits = int(mib_s * 1024 * 1024 * 8)
        run(["ip", "netns", "exec", host.netns, "tc", "qdisc", "add", *dev, "root", "tbf",
             "rate", f"{bits}bit", "burst", "1mb", "latency", "100ms"])


def link_rate(host: LabHost) -> str:
    out = run(["ip", "netns", "exec", host.netns, "tc", "qdisc", "show", "dev", "eth0"],
              check=False).stdout
    return "unlimited" if "tbf" not in out else out.split("rate", 1)[1].split()[0]
