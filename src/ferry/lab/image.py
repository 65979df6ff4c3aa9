"""The lab's guest image: Debian's cloud kernel + a busybox initramfs.

Built from Debian packages on first use and cached by a hash of its inputs, so
changing the workload or init script rebuilds it.  The initramfs holds the
virtio modules (they are modules in the cloud kernel), busybox, the static
workload from `guest/` that proves the guest survived a migration, and the
network echo (`guest/netecho.c`) the lab's outside client talks to.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import lzma
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ferry.lab.run import LabError, run

# Load order matters: each module needs the symbols of those before it.
MODULES = ("virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev",
           "virtio_pci", "virtio_blk", "failover", "net_failover", "virtio_net")
KERNEL_META = "linux-image-cloud-amd64"
GUEST_SOURCES = ("workload.c", "netecho.c", "init.sh")


@dataclass(frozen=True)
class GuestImage:
    """Paths of a built guest image; both readable by every lab host."""

    kernel: Path
    initrd: Path


def guest_source_dir() -> Path:
    """Locate `guest/` (the workload source) next to the package's checkout."""
    env = os.environ.get("FERRY_GUEST_SRC")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "guest" / "workload.c").is_file():
            return parent / "guest"
    raise LabError("cannot find guest/workload.c (set FERRY_GUEST_SRC)")


def _kernel_package() -> str:
    out = run(["apt-cache", "depends", KERNEL_META]).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split()[1]
    raise LabError(f"cannot resolve {KERNEL_META} (run apt-get update)")


def _fetch_kernel(cache: Path) -> Path:
    """Download and unpack the cloud kernel package once; return the unpack dir."""
    pkg = _kernel_package()
    dest = cache / pkg
    if (dest / ".done").exists():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        run(["apt-get", "download", "-q", pkg], timeout=600, cwd=tmp)
        debs = list(Path(tmp).glob("*.deb"))
        if not debs:
            raise LabError(f"apt-get download {pkg} produced no .deb")
        run(["dpkg-deb", "-x", str(debs[0]), str(dest)], timeout=300)
    (dest / ".done").touch()
    return dest


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A minimal cpio 'newc' archive: (name, mode, data) entries, dirs have no data."""
    buf = io.BytesIO()
    for ino, (name, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], start=1):
        namebytes = name.encode() + b"\0"
        header = "070701" + "".join(f"{v:08X}" for v in (
            ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(namebytes), 0))
        buf.write(header.encode() + namebytes)
        buf.write(b"\0" * ((4 - (110 + len(namebytes)) % 4) % 4))
        buf.write(data)
        buf.write(b"\0" * ((4 - len(data) % 4) % 4))
    return buf.getvalue()


def _inputs_hash(src: Path, kernel_pkg: str) -> str:
    h = hashlib.sha256(kernel_pkg.encode())
    for name in GUEST_SOURCES:
        h.update((src / name).read_bytes())
    return h.hexdigest()[:16]


def build_image(cache: Path) -> GuestImage:
    """Return the cached guest image, building it if its inputs changed."""
    cache.mkdir(parents=True, exist_ok=True)
    src = guest_source_dir()
    kernel_pkg = _kernel_package()
    out = cache / f"guest-{_inputs_hash(src, kernel_pkg)}"
    image = GuestImage(kernel=out / "vmlinuz", initrd=out / "initrd.gz")
    if image.kernel.exists() and image.initrd.exists():
        return image
    kdir = _fetch_kernel(cache)
    vmlinuz = next((kdir / "boot").glob("vmlinuz-*"))
    modroot = next((kdir / "lib" / "modules").iterdir())
    busybox = Path("/bin/busybox")
    if not busybox.exists():
        raise LabError("/bin/busybox missing (install busybox-static: `make install`)")

    with tempfile.TemporaryDirectory() as tmp:
        workload = Path(tmp) / "workload"
        netecho = Path(tmp) / "netecho"
        run(["gcc", "-O2", "-static", "-pthread", "-Wall", "-o", str(workload),
             str(src / "workload.c")])
        run(["gcc", "-O2", "-static", "-Wall", "-o", str(netecho), str(src / "netecho.c")])
        entries: list[tuple[str, int, bytes]] = [
            (d, 0o040755, b"") for d in ("bin", "dev", "proc", "sys", "lib", "lib/modules", "tmp")
        ]
        entries.append(("bin/busybox", 0o100755, busybox.read_bytes()))
        entries.append(("bin/workload", 0o100755, workload.read_bytes()))
        entries.append(("bin/netecho", 0o100755, netecho.read_bytes()))
        entries.append(("init", 0o100755, (src / "init.sh").read_bytes()))
        for mod in MODULES:
            found = list(modroot.rglob(f"{mod}.ko*"))
            if not found:
                raise LabError(f"module {mod} not found in {kernel_pkg}")
            data = found[0].read_bytes()
            if found[0].name.endswith(".xz"):
                data = lzma.decompress(data)
            entries.append((f"lib/modules/{mod}.ko", 0o100644, data))
        entries.append(("lib/modules/order", 0o100644, "\n".join(MODULES).encode() + b"\n"))
        staging = Path(tempfile.mkdtemp(dir=cache))
        try:
            shutil.copyfile(vmlinuz, staging / "vmlinuz")
            (staging / "initrd.gz").write_bytes(gzip.compress(_cpio_newc(entries), 6))
            if not out.exists():
                os.replace(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return image
