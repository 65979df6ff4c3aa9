"""Running host commands for the lab: argument lists only, never a shell."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path


class LabError(Exception):
    """A lab step failed; the message says which command and why."""


def run(args: Sequence[str], *, check: bool = True, timeout: float = 120,
        cwd: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing output; raise LabError with stderr on failure."""
    try:
        proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                              check=False, cwd=cwd)
    except FileNotFoundError as exc:
        raise LabError(f"command not found: {args[0]} (run `make install`)") from exc
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"timed out after {timeout:.0f}s: {' '.join(args)}") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"{' '.join(args)} failed ({proc.returncode}): {detail}")
    return proc


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, from its first byte (tokens, settings)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT
