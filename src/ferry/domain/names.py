"""Validation of names that users give: they end up in libvirt XML and file paths."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit

from ferry.errors import InvalidRequest

# Every pattern is matched whole (re.fullmatch): with re.match, "$" also matches
# before a trailing newline, so "web1\n" or "/etc\n" would pass.
_NAME = re.compile(r"[a-z]([a-z0-9-]{0,30}[a-z0-9])?")
_URI = re.compile(r"qemu(\+(tcp|tls|ssh))?://([A-Za-z0-9._-]{1,64}@)?"
                  r"(\[[0-9A-Fa-f:]{2,45}\]|[A-Za-z0-9.-]{0,253})(:[0-9]{1,5})?/system"
                  r"(\?[!-~]{0,400})?")  # parameters: checked one by one below
# libvirt URI parameters a client may set.  Everything else is refused: `command`,
# `netcat` and `proxy` run programs, `socket`, `keyfile`, `pkipath` and
# `known_hosts` point at local files, `no_verify` and `known_hosts_verify` turn
# checks off.
URI_PARAMS = {"no_tty": re.compile(r"[01]")}


def check_name(kind: str, name: str) -> str:
    """Lower-case letters, digits and '-', starting with a letter, at most 32 chars.

    No dots or slashes: a name can never escape the directory it is used in.
    """
    if not _NAME.fullmatch(name):
        raise InvalidRequest(
            f"invalid {kind} name {name!r}: use 1-32 lower-case letters, digits and '-', "
            "starting with a letter", {"field": "name"})
    return name


def check_uri(uri: str) -> str:
    """A libvirt QEMU system URI (qemu, qemu+tcp, qemu+tls or qemu+ssh) whose only
    parameters are in URI_PARAMS.

    >>> check_uri("qemu+ssh://root@h1/system?command=/bin/prog")
    Traceback (most recent call last):
    ...
    ferry.errors.InvalidRequest: libvirt URI parameter 'command' is not allowed ...
    """
    if not _URI.fullmatch(uri):
        raise InvalidRequest(f"invalid libvirt URI {uri!r}: expected e.g. "
                             "qemu+tls://host.example/system", {"field": "uri"})
    query = urlsplit(uri).query
    try:
        params = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise InvalidRequest(f"invalid parameters in libvirt URI {uri!r}",
                             {"field": "uri"}) from None
    for key, value in params:
        if key not in URI_PARAMS:
            raise InvalidRequest(
                f"libvirt URI parameter {key!r} is not allowed (allowed: "
                f"{', '.join(sorted(URI_PARAMS))}); set ssh keys and TLS files on the "
                "controller's side (its ~/.ssh/config, libvirt's PKI directories)",
                {"field": "uri"})
        if not URI_PARAMS[key].fullmatch(value):
            raise InvalidRequest(f"invalid value {value!r} for libvirt URI parameter {key!r}",
                                 {"field": "uri"})
    return uri


_PATH = re.compile(r"(/[A-Za-z0-9._-]+)+")
_MONITOR = re.compile(r"[A-Za-z0-9.-]{1,253}:[0-9]{1,5}")
_CEPH_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_KEY = re.compile(r"[A-Za-z0-9+/]{20,200}={0,2}")


def check_path(path: str) -> str:
    """An absolute, normalised directory path: no '..', '.', '//' or odd characters."""
    parts = path.split("/")[1:]
    if not _PATH.fullmatch(path) or any(p in (".", "..") for p in parts) or len(path) > 400:
        raise InvalidRequest(f"invalid path {path!r}: use an absolute path of letters, digits, "
                             "'.', '_', '-' without '..'", {"field": "path"})
    return path


def check_monitor(mon: str) -> str:
    """A Ceph monitor as host:port."""
    if not _MONITOR.fullmatch(mon) or not 1 <= int(mon.rsplit(":", 1)[1]) <= 65535:
        raise InvalidRequest(f"invalid monitor {mon!r}: expected host:port",
                             {"field": "monitors"})
    return mon


def check_ceph_name(kind: str, name: str) -> str:
    """A Ceph pool or cephx user name."""
    if not _CEPH_NAME.fullmatch(name):
        raise InvalidRequest(f"invalid {kind} {name!r}: letters, digits, '_', '.', '-'",
                             {"field": kind})
    return name


def check_cephx_key(key: str) -> str:
    """A cephx key as `ceph auth get-key` prints it (base64)."""
    if not _KEY.fullmatch(key):
        raise InvalidRequest("invalid cephx key: expected base64 as `ceph auth get-key` "
                             "prints it", {"field": "key"})
    return key
