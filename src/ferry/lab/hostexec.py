"""Entry point run inside a lab host's namespaces: private dirs, hostname, libvirtd,
and the reaper of its QEMU processes.

Started as `ip netns exec NS unshare --mount --uts --propagation private --
python -m ferry.lab.hostexec NAME ROOT CACHE`; it bind-mounts the host's private
copies over libvirt's directories, sets the hostname (libvirt refuses to
migrate between hosts with the same hostname), then starts libvirtd as its child
and writes libvirtd's PID to ROOT/libvirtd.pid (the PID the lab and the tests
signal).

It stays as libvirtd's parent, a child subreaper (prctl): libvirtd daemonizes each
QEMU, so a QEMU's parent is the nearest subreaper above it, else PID 1.  This
machine's PID 1 reaps orphans only every ~2 s, and libvirt's confirm phase waits
for the source QEMU it killed to be gone (`kill(pid, 0)` sees a zombie as alive):
every migration ended 1.6-2.2 s after the guest ran on the destination
(2026-12-07, libvirt log: QEMU exited 25 ms after SIGTERM, libvirt saw it 2.2 s
later).  A host's init (systemd) reaps at once; here this process does.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from ferry.lab.layout import CACHE_DIR, HOST_NAME, PRIVATE_DIRS

PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


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
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit(f"prctl(PR_SET_CHILD_SUBREAPER): errno {ctypes.get_errno()}")
    libvirtd = "/usr/sbin/libvirtd"
    pid = os.fork()
    if pid == 0:
        os.execv(libvirtd, [libvirtd, "--listen", "--config", str(root / "libvirtd.conf"),
                            "--pid-file", str(root / "libvirtd.lock")])
    (root / "libvirtd.pid").write_text(f"{pid}\n")

    def forward(sig: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    sys.exit(reap(pid))


def reap(libvirtd: int) -> int:
    """Reap every child (libvirtd's orphaned QEMUs and helpers) until libvirtd itself
    exits; its exit status."""
    while True:
        try:
            child, status = os.wait()
        except ChildProcessError:
            return 1
        if child == libvirtd:
            return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    main(sys.argv[1:])
