"""CPU definitions as plain data, and conversions between their XML forms (pure).

libvirt speaks two dialects: host CPUs (`virsh capabilities`: arch, model,
vendor, <feature name=...>) and guest CPUs (mode/match attributes, features
with policies).  Feature expansion only accepts the host dialect, so a guest
CPU is judged as: its model plus its required features, expanded by libvirt,
minus the features it disables.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

REQUIRED_POLICIES = (None, "require", "force")
DISABLED_POLICIES = ("disable", "forbid")


@dataclass(frozen=True)
class CpuSummary:
    """A CPU: its named model, vendor, and the features listed on top of the model."""

    model: str
    vendor: str
    features: list[str] = field(default_factory=list)  # required on top of the model
    disabled: list[str] = field(default_factory=list)  # the model's, switched off

    def as_dict(self) -> dict[str, object]:
        return {"model": self.model, "vendor": self.vendor, "features": list(self.features),
                "disabled": list(self.disabled)}


def summarize(cpu_xml: str) -> CpuSummary:
    """Model, vendor and required feature names of a <cpu> (either dialect)."""
    cpu = ET.fromstring(cpu_xml)
    feats = [f.get("name", "") for f in cpu.findall("feature")
             if f.get("policy") in REQUIRED_POLICIES]
    disabled = [f.get("name", "") for f in cpu.findall("feature")
                if f.get("policy") in DISABLED_POLICIES]
    return CpuSummary(model=cpu.findtext("model", "") or "", vendor=cpu.findtext("vendor", "")
                      or "", features=feats, disabled=disabled)


def feature_names(expanded_xml: str) -> set[str]:
    """Every feature an expanded CPU (baseline with expand-features) requires."""
    return set(summarize(expanded_xml).features)


def guest_as_host(cpu_xml: str, arch: str = "x86_64") -> tuple[str, set[str]]:
    """A guest <cpu> in the host dialect (model + required features) and the set of
    features it disables, for expansion by libvirt."""
    cpu = ET.fromstring(cpu_xml)
    host = ET.Element("cpu")
    ET.SubElement(host, "arch").text = cpu.findtext("arch") or arch
    model = cpu.findtext("model")
    if model:
        ET.SubElement(host, "model").text = model
    vendor = cpu.findtext("vendor")
    if vendor:
        ET.SubElement(host, "vendor").text = vendor
    disabled: set[str] = set()
    for f in cpu.findall("feature"):
        name, policy = f.get("name", ""), f.get("policy")
        if policy in REQUIRED_POLICIES:
            ET.SubElement(host, "feature", name=name)
        elif policy in DISABLED_POLICIES:
            disabled.add(name)
    return ET.tostring(host, encoding="unicode"), disabled


def host_model_guest(host_cpu_xml: str) -> str:
    """The guest CPU a `host-model` guest started on this host carries: the host's
    model and every listed feature, required."""
    s = summarize(host_cpu_xml)
    cpu = ET.Element("cpu", mode="custom", match="exact")
    ET.SubElement(cpu, "model", fallback="forbid").text = s.model
    if s.vendor:
        ET.SubElement(cpu, "vendor").text = s.vendor
    for name in s.features:
        ET.SubElement(cpu, "feature", policy="require", name=name)
    return ET.tostring(cpu, encoding="unicode")


def nova_conf(s: CpuSummary) -> str:
    """The nova.conf [libvirt] lines that give every instance this CPU."""
    lines = ["[libvirt]", "cpu_mode = custom", f"cpu_models = {s.model}"]
    flags = [*(f"+{f}" for f in s.features), *(f"-{f}" for f in s.disabled)]
    if flags:
        lines.append(f"cpu_model_extra_flags = {', '.join(flags)}")
    return "\n".join(lines) + "\n"
