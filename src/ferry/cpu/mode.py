"""The cluster's CPU mode: which CPU new VMs get (pure).

| mode                      | new VMs get                                        |
|---------------------------|----------------------------------------------------|
| baseline (default)        | the common CPU of every registered host            |
| host-model                | their first host's model (may pin them to it)      |
| host-passthrough          | the host CPU as is (KVM only; least mobile)        |
| custom:MODEL[+f1,f2...]   | exactly MODEL plus the listed features             |
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from ferry.domain.vocab import CpuModeKind
from ferry.errors import InvalidRequest

_CUSTOM = re.compile(r"custom:([A-Za-z0-9_.-]+)(?:\+([a-z0-9_.,-]+))?")


@dataclass(frozen=True)
class CpuMode:
    kind: CpuModeKind
    model: str = ""
    features: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.kind != CpuModeKind.CUSTOM:
            return self.kind.value
        return f"custom:{self.model}" + (f"+{','.join(self.features)}" if self.features else "")


DEFAULT = CpuMode(CpuModeKind.BASELINE)


def parse(text: str) -> CpuMode:
    """Parse a mode string; raise InvalidRequest with the accepted forms.

    >>> str(parse("custom:Westmere+aes"))
    'custom:Westmere+aes'
    """
    text = text.strip()
    if text in (CpuModeKind.BASELINE, CpuModeKind.HOST_MODEL, CpuModeKind.HOST_PASSTHROUGH):
        return CpuMode(CpuModeKind(text))
    m = _CUSTOM.fullmatch(text)
    if m:
        feats = [f for f in (m.group(2) or "").split(",") if f]
        return CpuMode(CpuModeKind.CUSTOM, m.group(1), feats)
    raise InvalidRequest(f"invalid CPU mode {text!r}: use baseline, host-model, "
                         "host-passthrough or custom:MODEL[+feature,...]")


def guest_cpu_xml(mode: CpuMode, baseline_xml: str | None) -> str:
    """The <cpu> element a new VM gets under `mode`."""
    if mode.kind == CpuModeKind.BASELINE:
        if not baseline_xml:
            raise InvalidRequest("no baseline CPU: no host is up")
        return baseline_xml
    if mode.kind in (CpuModeKind.HOST_MODEL, CpuModeKind.HOST_PASSTHROUGH):
        return f"<cpu mode='{mode.kind.value}'/>"
    cpu = ET.Element("cpu", mode="custom", match="exact")
    ET.SubElement(cpu, "model", fallback="forbid").text = mode.model
    for name in mode.features:
        ET.SubElement(cpu, "feature", policy="require", name=name)
    return ET.tostring(cpu, encoding="unicode")
