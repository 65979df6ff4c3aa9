"""The lab network: one bridge in the root namespace, a veth per host namespace;
and the guests' segment: a second root bridge, a veth into a bridge inside each
host (libvirt plugs guests' taps there) and one into the probe's namespace."""

from __future__ import annotations

from ferry.lab.layout import (
    BRIDGE,
    BRIDGE_ADDR,
    GUEST_BRIDGE,
    GUEST_HOST_BRIDGE,
    GUEST_PREFIX,
    NETNS_PREFIX,
    PREFIX,
    PROBE_ADDR,
    PROBE_NETNS,
    PROBE_VETH,
    VETH_PREFIX,
    LabHost,
)
from ferry.lab.run import run


def _link_exists(name: str) -> bool:
    return run(["ip", "link", "show", name], check=False).returncode == 0


def create_bridge() -> None:
    if not _link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    run(["ip", "addr", "replace", f"{BRIDGE_ADDR}/{PREFIX}", "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def create_host_netns(host: LabHost) -> None:
    create_netns(host.netns, host.veth, host.address)
    _join_guest_segment(host)


def _bridge(ns: list[str], name: str) -> None:
    """An up bridge `name` (in the namespace `ns` is the `ip` prefix of); idempotent.
    Forwards at once (no STP learning delay): a port that appears mid-migration
    carries the guest's traffic as soon as it is up."""
    if run([*ns, "link", "show", name], check=False).returncode != 0:
        run([*ns, "link", "add", name, "type", "bridge", "forward_delay", "0", "stp_state",
             "0"])
    run([*ns, "link", "set", name, "up"])


def create_guest_segment() -> None:
    """The guests' bridge and the probe's namespace on it (no address in the root
    namespace: only the probe talks to guests)."""
    _bridge(["ip"], GUEST_BRIDGE)
    create_netns(PROBE_NETNS, PROBE_VETH, PROBE_ADDR, GUEST_BRIDGE, GUEST_PREFIX)


def _join_guest_segment(host: LabHost) -> None:
    """The host's guest bridge, joined to the guests' segment by a veth (its end in
    the host is `gnet0`)."""
    ns = ["ip", "-n", host.netns]
    _bridge(ns, GUEST_HOST_BRIDGE)
    if not _link_exists(host.guest_veth):
        run(["ip", "link", "add", host.guest_veth, "type", "veth", "peer", "name", "gnet0",
             "netns", host.netns])
    run(["ip", "link", "set", host.guest_veth, "master", GUEST_BRIDGE, "up"])
    run([*ns, "link", "set", "gnet0", "master", GUEST_HOST_BRIDGE, "up"])


def create_netns(netns: str, veth: str, address: str, bridge: str = BRIDGE,
                 prefix: int = PREFIX) -> None:
    """Namespace + veth into `bridge` + one lab address on its eth0; idempotent."""
    if netns not in list_netns():
        run(["ip", "netns", "add", netns])
    if not _link_exists(veth):
        run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0",
             "netns", netns])
    run(["ip", "link", "set", veth, "master", bridge, "up"])
    ns = ["ip", "-n", netns]
    run([*ns, "link", "set", "lo", "up"])
    run([*ns, "addr", "replace", f"{address}/{prefix}", "dev", "eth0"])
    run([*ns, "link", "set", "eth0", "up"])


def delete_netns(netns: str, veth: str) -> None:
    """Remove one namespace and its veth; missing ones are fine."""
    if netns in list_netns():
        run(["ip", "netns", "delete", netns], check=False)
    if _link_exists(veth):
        run(["ip", "link", "delete", veth], check=False)


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
    for br in (BRIDGE, GUEST_BRIDGE):
        if _link_exists(br):
            run(["ip", "link", "delete", br], check=False)



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
