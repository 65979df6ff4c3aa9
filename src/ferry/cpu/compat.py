"""Can this guest's CPU run on that destination?  Offline, from recorded XML.

Always the guest's CPU against the destination — never one host against
another.  (Comparing hosts refuses a guest on a baseline model that would
move fine, and allows nothing that it should not: it answers the wrong
question.)  Both CPUs are expanded to full feature sets by libvirt and
compared as sets; the live path is `compareHypervisorCPU` on the destination.
"""

from __future__ import annotations

from ferry.cpu.baseline import expanded_features
from ferry.cpu.model import guest_as_host, summarize
from ferry.hypervisor.types import CpuVerdict


def check_offline(guest_cpu_xml: str, destination_cpu_xml: str) -> CpuVerdict:
    """Verdict for a guest CPU (guest dialect) on a destination host CPU (host dialect)."""
    guest, dest = summarize(guest_cpu_xml), summarize(destination_cpu_xml)
    if guest.vendor and dest.vendor and guest.vendor != dest.vendor:
        return CpuVerdict(False, [], f"vendor {guest.vendor} guest on a {dest.vendor} host")
    host_style, disabled = guest_as_host(guest_cpu_xml)
    needed = expanded_features(host_style) - disabled
    have = expanded_features(destination_cpu_xml)
    missing = sorted(needed - have)
    if missing:
        return CpuVerdict(False, missing,
                          f"destination lacks {len(missing)} feature(s): {', '.join(missing)}")
    return CpuVerdict(True, [], f"{guest.model} with its features runs on {dest.model}")
