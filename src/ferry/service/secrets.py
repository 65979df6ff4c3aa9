"""Secrets at rest: cephx keys are stored sealed with a key only the controller reads.

The key file holds Fernet keys (the `cryptography` library: AES-128-CBC +
HMAC-SHA256), one per line, newest first; it is created 0600 on first use.
New values are sealed with the newest key, any listed key opens them, so a
rotation is: add a key in front, re-seal every stored value, drop the old
keys (`ferry secret rotate`, with the controller stopped).  A database copied
without the key file gives away no key.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ferry.errors import FerryError

PREFIX = "fernet:"


class SecretError(FerryError):
    """A stored secret cannot be opened with the keys in the key file."""


def _read_keys(path: Path) -> list[bytes]:
    return [line.strip().encode() for line in path.read_text().splitlines() if line.strip()]


def _write_keys(path: Path, keys: list[bytes]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(k.decode() + "\n" for k in keys))
    os.replace(tmp, path)


class SecretBox:
    def __init__(self, key_file: Path) -> None:
        self.key_file = key_file
        if not key_file.exists():
            _write_keys(key_file, [Fernet.generate_key()])
        os.chmod(key_file, 0o600)
        self._keys = _read_keys(key_file)
        self._fernet = MultiFernet([Fernet(k) for k in self._keys])

    def seal(self, plain: str) -> str:
        """The stored form of `plain` ("" stays "": nothing to hide)."""
        return PREFIX + self._fernet.encrypt(plain.encode()).decode() if plain else ""

    def open(self, stored: str) -> str:
        """The plain value; a value stored before sealing existed is returned as is."""
        if not stored.startswith(PREFIX):
            return stored
        try:
            return self._fernet.decrypt(stored[len(PREFIX):].encode()).decode()
        except InvalidToken:
            raise SecretError(f"a stored secret does not open with the keys in "
                              f"{self.key_file} (was the key file replaced?)") from None

    def sealed(self, stored: str) -> bool:
        return stored.startswith(PREFIX)

    def rotated(self) -> SecretBox:
        """A box whose newest key is a new one; the old keys still open old values."""
        _write_keys(self.key_file, [Fernet.generate_key(), *self._keys])
        return SecretBox(self.key_file)

    def drop_old_keys(self) -> None:
        """Keep only the newest key (after every value was re-sealed with it)."""
        _write_keys(self.key_file, self._keys[:1])
        self._keys = self._keys[:1]
        self._fernet = MultiFernet([Fernet(self._keys[0])])
