"""Finding CPU definitions in the files operators have, the way virsh does.

A file may hold a whole `virsh capabilities` document (its host CPU is
used), `virsh domcapabilities` (its host-model CPU), bare <cpu> elements, or
several of these one after another.  Like `virsh cpu-baseline`, the text is
wrapped in a container element after dropping a leading XML declaration.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from ferry.errors import InvalidRequest


class CpuInputError(InvalidRequest):
    """No usable CPU definition in the input, or input that is not XML."""


def extract_cpus(text: str, source: str = "input") -> list[str]:
    """Return each CPU definition found in `text` as a <cpu> XML string."""
    body = text.strip()
    if body.startswith("<?xml"):
        end = body.find("?>")
        body = body[end + 2:] if end >= 0 else body
    try:
        root = ET.fromstring(f"<container>{body}</container>")
    except ET.ParseError as exc:
        raise CpuInputError(f"{source}: malformed XML: {exc}") from exc
    found: list[ET.Element] = []
    for child in root:
        if child.tag == "cpu":
            found.append(child)
        elif child.tag == "capabilities":
            found.extend(child.findall("./host/cpu"))
        elif child.tag == "domainCapabilities":
            mode = child.find("./cpu/mode[@name='host-model']")
            if mode is not None:
                cpu = ET.Element("cpu")
                arch = child.findtext("arch")
                if arch:
                    ET.SubElement(cpu, "arch").text = arch
                for el in mode:
                    if el.tag == "model":
                        ET.SubElement(cpu, "model").text = el.text
                    elif el.tag == "vendor":
                        cpu.append(el)
                    elif el.tag == "feature" and el.get("policy") in (None, "require"):
                        ET.SubElement(cpu, "feature", name=el.get("name", ""))
                found.append(cpu)
    if not found:
        raise CpuInputError(f"{source}: no CPU definition found (expected `virsh capabilities`"
                            " output, domcapabilities, or <cpu> elements)")
    return [ET.tostring(c, encoding="unicode") for c in found]
