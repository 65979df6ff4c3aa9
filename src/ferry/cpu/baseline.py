"""The CPU new VMs get: the baseline every registered, reachable host can run.

Computed by libvirt (`baselineHypervisorCPU`) from each host's host-model
CPU for the accelerator in use, so a guest never starts with a feature that
one of the hosts lacks.
"""

from __future__ import annotations

from ferry.hypervisor.libvirt_driver import LibvirtHost


def cluster_baseline(on: LibvirtHost, host_cpu_xmls: list[str], virt_type: str) -> str:
    """Return a <cpu> element (custom mode) that every given host can run."""
    return on.baseline_cpu([x for x in host_cpu_xmls if x], virt_type)
