"""Entry point run inside a lab host's namespaces: private dirs, hostname, libvirtd.

Started as `ip netns exec NS unshare --mount --uts --propagation private --
python -m ferry.lab.hostexec NAME ROOT`; it bind-mounts the host's private
copies over libvirt's directories, sets the hostname (libvirt refuses to
migrate between hosts with the same hostname), then execs libvirtd so the PID
the lab records is libvirtd's own.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from ferry.lab.layout import CACHE_DIR, HOST_NAME, PRIVATE_DIRS


def main(argv: list[str]) -> None:
    name, root_s, cache_s = argv
    if not HOST_NAME.fullmatch(name):
        raise SystemExit(f"bad host name {name!r}")
    root = Path(root_s)
    binds = [(root / p.strip("/").replace("/", "-"), p) for p in PRIVATE_DIRS]
    binds.append((Path(cache_s), CACHE_DIR))
    for src, target in binds:
        Path(target).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(src), target], check=True)
    socket.sethostname(name)
    libvirtd = "/usr/sbin/libvirtd"
    os.execv(libvirtd, [libvirtd, "--listen", "--config", str(root / "libvirtd.conf"),
                        "--pid-file", str(root / "libvirtd.lock")])


if __name__ == "__main__":
    main(sys.argv[1:])
