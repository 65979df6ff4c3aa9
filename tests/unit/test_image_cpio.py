"""The initramfs writer produces an archive the real cpio tool reads back."""

import subprocess
from pathlib import Path

import pytest

from ferry.lab.image import _cpio_newc


def test_cpio_roundtrip(tmp_path: Path) -> None:
    cpio = "/usr/bin/cpio"
    if not Path(cpio).exists():
        pytest.fail("cpio missing: run `make install`")
    archive = _cpio_newc([("bin", 0o040755, b""), ("bin/hello", 0o100755, b"hi\n"),
                          ("init", 0o100755, b"#!/bin/sh\n")])
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run([cpio, "-idm", "--quiet"], input=archive, cwd=out, check=True)
    assert (out / "bin" / "hello").read_bytes() == b"hi\n"
    assert (out / "init").stat().st_mode & 0o777 == 0o755
