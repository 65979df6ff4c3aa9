"""Validation of names that users give: they end up in libvirt XML and file paths."""

from __future__ import annotations

import re

from ferry.errors import InvalidRequest

_NAME = re.compile(r"^[a-z][a-z0-9-]{0,30}[a-z0-9]$|^[a-z]$")
_URI = re.compile(r"^qemu(\+(tcp|tls|ssh))?://[A-Za-z0-9.\-\[\]:@_]*/system(\?[A-Za-z0-9=&_.\-/]*)?$")


def check_name(kind: str, name: str) -> str:
    """Lower-case letters, digits and '-', starting with a letter, at most 32 chars.

    No dots or slashes: a name can never escape the directory it is used in.
    """
    if not _NAME.match(name):
        raise InvalidRequest(
            f"invalid {kind} name {name!r}: use 1-32 lower-case letters, digits and '-', "
            "starting with a letter", {"field": "name"})
    return name


def check_uri(uri: str) -> str:
    """A libvirt QEMU system URI (qemu, qemu+tcp, qemu+tls or qemu+ssh)."""
    if not _URI.match(uri):
        raise InvalidRequest(f"invalid libvirt URI {uri!r}: expected e.g. "
                             "qemu+tls://host.example/system", {"field": "uri"})
    return uri
