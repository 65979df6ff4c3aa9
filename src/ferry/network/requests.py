"""What `ferry vm create --network` asks for, and the address a lab guest gets (pure)."""

from __future__ import annotations

import ipaddress
import re

from ferry.errors import InvalidRequest

# libvirt network names and Linux interface names Ferry accepts: no path, no shell
_NETWORK = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,14}")
FIRST_HOST = 10  # below: the lab's own (probe) addresses


def parse_network(text: str) -> tuple[str, str] | None:
    """`NAME` (a libvirt network), `bridge:BR` (a host bridge) or `none`, as
    (kind, source) or None.

    >>> parse_network("bridge:br-prod"), parse_network("prod"), parse_network("none")
    (('bridge', 'br-prod'), ('network', 'prod'), None)
    >>> parse_network("bridge:../x")
    Traceback (most recent call last):
    ferry.errors.InvalidRequest: invalid bridge name '../x': up to 15 letters, digits, '_', '.', '-'
    """
    if text == "none":
        return None
    if text.startswith("bridge:"):
        br = text.removeprefix("bridge:")
        if not _IFNAME.fullmatch(br) or ".." in br:
            raise InvalidRequest(f"invalid bridge name {br!r}: up to 15 letters, digits, "
                                 "'_', '.', '-'", {"field": "network"})
        return ("bridge", br)
    if not _NETWORK.fullmatch(text) or ".." in text:
        raise InvalidRequest(f"invalid network {text!r}: a libvirt network name, "
                             "bridge:NAME or none", {"field": "network"})
    return ("network", text)


def next_address(subnet: str, used: set[str]) -> str:
    """The lowest free address of `subnet` from its FIRST_HOST-th on, as ADDR/PREFIX.

    >>> next_address("198.19.0.0/24", {"198.19.0.10/24"})
    '198.19.0.11/24'
    """
    net = ipaddress.ip_network(subnet)
    taken = {a.split("/")[0] for a in used}
    for i, addr in enumerate(net.hosts(), start=1):
        if i >= FIRST_HOST and str(addr) not in taken:
            return f"{addr}/{net.prefixlen}"
    raise InvalidRequest(f"no free guest address left in {subnet}")
