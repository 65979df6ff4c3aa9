"""Processes the lab started: recorded by PID, checked by name before signalling.

We only ever signal a PID we recorded, and only if its command line still
matches what we started (PIDs are reused).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
            errors="replace")
    except OSError:
        return ""


def pid_alive(pid: int, marker: str | None = None) -> bool:
    """True if PID runs (not a zombie) and, if given, its command line has `marker`."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False
    return marker is None or marker in cmdline(pid)


def stop_pid(pid: int, marker: str, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
    """Signal a process we started, wait, then SIGKILL if it lingers."""
    if not pid_alive(pid, marker):
        return
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            _reap(pid)
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


class StopFlag:
    """Set by SIGTERM or SIGINT: the lab's daemons (console logger, network probe)
    finish their loop and close their files instead of dying mid-write."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)

    def _stop(self, _sig: int, _frm: object) -> None:
        self.set = True
