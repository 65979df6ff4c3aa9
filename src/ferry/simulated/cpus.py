"""CPU models of simulated hosts: a small map of Intel generations and their features.

Enough to give hosts of different generations, compute a baseline and
compare a guest CPU with a host the way libvirt answers (the missing
features named), in libvirt's XML dialects so `cpu/` reads them as it reads
real hosts.  Not libvirt's CPU map: the real driver uses that.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ferry.hypervisor.errors import HypervisorError
from ferry.hypervisor.types import CpuVerdict

_BASE = {"fpu", "sse", "sse2", "cx8", "mmx", "lm", "syscall", "nx", "pae", "apic"}
GENERATIONS: list[tuple[str, set[str]]] = [
    ("qemu64", set()),
    ("Nehalem", {"sse3", "ssse3", "sse4.1", "sse4.2", "popcnt", "cx16"}),
    ("Westmere", {"aes", "pclmuldq"}),
    ("SandyBridge", {"avx", "xsave", "tsc-deadline", "x2apic"}),
    ("Haswell", {"avx2", "fma", "bmi1", "bmi2", "movbe", "pcid"}),
    ("Skylake-Server", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "clwb"}),
]


def model_features(model: str) -> set[str]:
    """Every feature a named model implies (cumulative over the generations)."""
    feats = set(_BASE)
    for name, added in GENERATIONS:
        feats |= added
        if name == model:
            return feats
    raise HypervisorError(f"unknown CPU model {model!r}")


def _newest_model(features: set[str]) -> str:
    best = GENERATIONS[0][0]
    for name, _added in GENERATIONS:
        if model_features(name) <= features:
            best = name
    return best


def _parse(cpu_xml: str) -> tuple[str, str, set[str], set[str]]:
    """(model, vendor, required features incl. the model's, disabled features)."""
    cpu = ET.fromstring(cpu_xml)
    model = cpu.findtext("model", "") or ""
    vendor = cpu.findtext("vendor", "") or ""
    req = {f.get("name", "") for f in cpu.findall("feature")
           if f.get("policy") in (None, "require", "force")}
    off = {f.get("name", "") for f in cpu.findall("feature")
           if f.get("policy") in ("disable", "forbid")}
    base = model_features(model) if model else set()
    return model, vendor, (base | req) - off, off


def host_cpu_xml(model: str, vendor: str, extra: set[str]) -> str:
    """`virsh capabilities` style: arch, model, vendor, features beyond the model."""
    cpu = ET.Element("cpu")
    ET.SubElement(cpu, "arch").text = "x86_64"
    ET.SubElement(cpu, "model").text = model
    ET.SubElement(cpu, "vendor").text = vendor
    for f in sorted(extra - model_features(model)):
        ET.SubElement(cpu, "feature", name=f)
    return ET.tostring(cpu, encoding="unicode")


def custom_cpu_xml(model: str, vendor: str, features: set[str], *,
                   expand: bool = False) -> str:
    """A guest-style custom CPU: the model plus required features beyond it."""
    cpu = ET.Element("cpu", mode="custom", match="exact")
    ET.SubElement(cpu, "model", fallback="forbid").text = model
    ET.SubElement(cpu, "vendor").text = vendor
    listed = features if expand else features - model_features(model)
    for f in sorted(listed):
        ET.SubElement(cpu, "feature", policy="require", name=f)
    return ET.tostring(cpu, encoding="unicode")


def usable_models(features: set[str]) -> list[str]:
    return [name for name, _ in GENERATIONS if model_features(name) <= features]


def baseline(cpu_xmls: list[str], *, expand: bool = False) -> str:
    """The newest model every CPU has, plus the features they all share."""
    if not cpu_xmls:
        raise HypervisorError("no CPUs to compute a baseline of")
    parsed = [_parse(x) for x in cpu_xmls]
    vendors = {v for _m, v, _f, _o in parsed if v}
    if len(vendors) > 1:
        raise HypervisorError("CPU vendors do not match")
    common = set.intersection(*(f for _m, _v, f, _o in parsed))
    return custom_cpu_xml(_newest_model(common), vendors.pop() if vendors else "", common,
                          expand=expand)


def compare(guest_xml: str, host_features: set[str], host_vendor: str) -> CpuVerdict:
    """libvirt's answer to compareHypervisorCPU for a guest CPU on this host."""
    mode = ET.fromstring(guest_xml).get("mode", "custom")
    if mode in ("host-model", "host-passthrough"):
        return CpuVerdict(True, [], "compatible")
    try:
        _model, vendor, need, _off = _parse(guest_xml)
    except HypervisorError as exc:
        return CpuVerdict(False, [], str(exc))
    if vendor and vendor != host_vendor:
        return CpuVerdict(False, [], f"host CPU vendor {host_vendor} does not match "
                                     f"required CPU vendor {vendor}")
    missing = sorted(need - host_features)
    if missing:
        return CpuVerdict(False, missing, "the CPU is incompatible with host CPU: Host CPU "
                                          "does not provide required features: "
                                          + ", ".join(missing))
    return CpuVerdict(True, [], "compatible")
