"""Where the lab keeps its files, and the names and addresses it assigns.

Everything the lab creates is named from here so `lab down` can find and
remove exactly that, even after a crash.  Addresses come from 198.18.0.0/24
(hosts) and 198.19.0.0/24 (guests), the benchmarking range, on bridges the
lab creates itself.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "ferrybr0"
BRIDGE_ADDR = "198.18.0.1"
PREFIX = 24
NETNS_PREFIX = "ferry-"
VETH_PREFIX = "fveth"
LIBVIRT_PORT = 16509  # plain TCP: nothing in the lab listens there
LIBVIRT_TLS_PORT = 16514
# The guests' own L2 segment, apart from the hosts' management one: a bridge in the
# root namespace joins one bridge per host (GUEST_HOST_BRIDGE, what the libvirt
# network GUEST_NETWORK of every host uses) and the probe's namespace, the client
# outside every host that talks to the guests.  Guests get GUEST_SUBNET addresses.
GUEST_BRIDGE = "ferrygbr0"
GUEST_HOST_BRIDGE = "fgbr0"
GUEST_NETWORK = "ferrynet"
GUEST_SUBNET = "198.19.0.0/24"
PROBE_NETNS = "ferry-probe"
PROBE_VETH = "fvethp0"
PROBE_ADDR = "198.19.0.2"
GUEST_PREFIX = 24
MAX_HOSTS = 8
HOST_NAME = re.compile(r"node[1-9]")
# Per-host copies of libvirt's state: bind-mounted over these paths inside the
# host's mount namespace so each libvirtd believes it owns the machine.
# /etc/pki holds the host's own certificates where libvirt looks for them (as a
# server, and as a client when it migrates peer to peer).
PRIVATE_DIRS = ("/etc/libvirt", "/run/libvirt", "/var/lib/libvirt", "/var/log/libvirt",
                "/etc/pki")
CACHE_DIR = "/var/cache/libvirt"


def base_dir() -> Path:
    """Root of all Ferry machine state (override with FERRY_STATE_DIR)."""
    return Path(os.environ.get("FERRY_STATE_DIR", "/var/lib/ferry"))


@dataclass(frozen=True)
class LabHost:
    """One lab host: its name, namespace, address and private directories."""

    name: str
    index: int

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.name}"

    @property
    def veth(self) -> str:
        return f"{VETH_PREFIX}{self.index}"

    @property
    def guest_veth(self) -> str:
        """Its end (root namespace) of the link into the guest segment."""
        return f"{VETH_PREFIX}g{self.index}"

    @property
    def address(self) -> str:
        return f"198.18.0.{10 + self.index}"

    @property
    def uri(self) -> str:
        return f"qemu+tls://{self.address}/system"

    @property
    def host_uuid(self) -> str:
        return f"f3770000-0000-4000-8000-{self.index:012d}"

    def root(self, lab: Path) -> Path:
        return lab / "hosts" / self.name

    def private_dir(self, lab: Path, path: str) -> Path:
        """The directory that backs `path` inside this host's mount namespace."""
        return self.root(lab) / path.strip("/").replace("/", "-")

    def console_dir(self, lab: Path) -> Path:
        return self.private_dir(lab, "/var/lib/libvirt") / "ferry-console"


def lab_host(index: int) -> LabHost:
    return LabHost(name=f"node{index}", index=index)


def lab_dir() -> Path:
    return base_dir() / "lab"


def cache_dir() -> Path:
    return base_dir() / "cache"
