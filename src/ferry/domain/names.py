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


_PATH = re.compile(r"^(/[A-Za-z0-9._-]+)+$")
_MONITOR = re.compile(r"^[A-Za-z0-9.-]{1,253}:[0-9]{1,5}$")
_CEPH_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_KEY = re.compile(r"^[A-Za-z0-9+/]{20,200}={0,2}$")


def check_path(path: str) -> str:
    """An absolute, normalised directory path: no '..', '.', '//' or odd characters."""
    parts = path.split("/")[1:]
    if not _PATH.match(path) or any(p in (".", "..") for p in parts) or len(path) > 400:
        raise InvalidRequest(f"invalid path {path!r}: use an absolute path of letters, digits, "
                             "'.', '_', '-' without '..'", {"field": "path"})
    return path


def check_monitor(mon: str) -> str:
    """A Ceph monitor as host:port."""
    if not _MONITOR.match(mon) or not 1 <= int(mon.rsplit(":", 1)[1]) <= 65535:
        raise InvalidRequest(f"invalid monitor {mon!r}: expected host:port",
                             {"field": "monitors"})
    return mon


def check_ceph_name(kind: str, name: str) -> str:
    """A Ceph pool or cephx user name."""
    if not _CEPH_NAME.match(name):
        raise InvalidRequest(f"invalid {kind} {name!r}: letters, digits, '_', '.', '-'",
                             {"field": kind})
    return name


def check_cephx_key(key: str) -> str:
    """A cephx key as `ceph auth get-key` prints it (base64)."""
    if not _KEY.match(key):
        raise InvalidRequest("invalid cephx key: expected base64 as `ceph auth get-key` "
                             "prints it", {"field": "key"})
    return key
