"""The common CPU of a set of hosts, and which host holds the others back.

Live hosts: libvirt's `baselineHypervisorCPU` on a host, over every host's
host-model CPU for the accelerator in use (it knows what that hypervisor can
really run).  Offline (recorded `virsh capabilities`): libvirt's
`baselineCPU`, the call `virsh cpu-baseline` makes, through the test driver.
Neither path has a hand-written model table: libvirt's CPU map decides.
"""

from __future__ import annotations

from ferry.cpu.model import CpuSummary, feature_names, summarize
from ferry.cpu.xmlinput import CpuInputError, extract_cpus
from ferry.hypervisor import offline
from ferry.hypervisor.errors import HypervisorError


def holds_back(features: dict[str, set[str]]) -> dict[str, list[str]]:
    """Per host, the features some other host has and it lacks (pure).

    >>> holds_back({"a": {"sse", "avx"}, "b": {"sse"}, "c": {"sse", "avx", "aes"}})
    {'a': ['aes'], 'b': ['aes', 'avx'], 'c': []}
    """
    out = {}
    for host, own in features.items():
        others: set[str] = set().union(*(f for h, f in features.items() if h != host))
        out[host] = sorted(others - own)
    return out


def offline_baseline(inputs: list[tuple[str, str]]) -> tuple[CpuSummary, str]:
    """Baseline of the CPUs found in (source name, text) inputs, without any host.

    Returns the summary and libvirt's XML; raises CpuInputError on bad input
    (malformed XML, no CPU, vendors that cannot be combined)."""
    cpus: list[str] = []
    for source, text in inputs:
        cpus.extend(extract_cpus(text, source))
    try:
        xml = offline.baseline_cpu(cpus)
    except HypervisorError as exc:
        raise CpuInputError(f"libvirt cannot compute a baseline: {exc}") from exc
    return summarize(xml), xml


def expanded_features(host_cpu_xml: str) -> set[str]:
    """All features of a host-dialect CPU (model's features included), offline."""
    try:
        return feature_names(offline.baseline_cpu([host_cpu_xml], expand=True))
    except HypervisorError as exc:
        raise CpuInputError(f"libvirt cannot expand the CPU: {exc}") from exc
