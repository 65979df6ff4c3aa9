"""Which accelerator lab guests can use: KVM if a guest really boots under it.

/dev/kvm existing is not enough: on nested set-ups guests can hang at the
switch to protected mode.  The probe boots the lab's own guest image under
KVM and waits for its init to report; the verdict is cached per kernel and
QEMU version.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path

from ferry.lab.image import GuestImage
from ferry.lab.run import run

PROBE_TIMEOUT_S = 20


def _qemu_version() -> str:
    return run(["qemu-system-x86_64", "--version"]).stdout.splitlines()[0]


def probe(image: GuestImage, cache: Path) -> tuple[str, str]:
    """Return (virt_type, reason): ("kvm", ...) or ("qemu", why TCG)."""
    key = f"{platform.release()} {_qemu_version()}"
    cached = cache / "accel.json"
    try:
        data = json.loads(cached.read_text())
        if data.get("key") == key:
            return str(data["virt_type"]), str(data["reason"]) + " (cached)"
    except (OSError, ValueError):
        pass
    virt, reason = _probe_now(image)
    cache.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps({"key": key, "virt_type": virt, "reason": reason}))
    return virt, reason


def _probe_now(image: GuestImage) -> tuple[str, str]:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "qemu", "no usable /dev/kvm: guests run under TCG"
    with tempfile.TemporaryDirectory() as tmp:
        disk = Path(tmp) / "disk"
        disk.write_bytes(b"\0" * 1024 * 1024)
        serial = Path(tmp) / "serial"
        cmd = ["qemu-system-x86_64", "-accel", "kvm", "-m", "128", "-display", "none",
               "-no-reboot", "-monitor", "none", "-kernel", str(image.kernel),
               "-initrd", str(image.initrd), "-append", "console=ttyS0 quiet ferry.probe=1",
               "-drive", f"file={disk},if=virtio,format=raw", "-serial", f"file:{serial}"]
        try:
            subprocess.run(cmd, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return "qemu", (f"a guest under KVM did not boot within {PROBE_TIMEOUT_S}s "
                            "(nested virtualisation broken?): guests run under TCG")
        if "FERRY PROBE OK" in serial.read_text(errors="replace"):
            return "kvm", "a guest booted under KVM"
        return "qemu", "QEMU could not boot a guest under KVM: guests run under TCG"
