"""One shared handle per host URI, opened through the wired-in `Connector`."""

from __future__ import annotations

import threading

from ferry.hypervisor.base import Connector, Hypervisor


class HostConnections:
    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._hosts: dict[str, Hypervisor] = {}
        self._lock = threading.Lock()

    def get(self, uri: str) -> Hypervisor:
        """A shared, lazily (re)connected handle to the host at `uri`."""
        with self._lock:
            h = self._hosts.get(uri)
            if h is None:
                h = self._hosts[uri] = self._connector(uri)
            return h

    def close_all(self) -> None:
        with self._lock:
            for h in self._hosts.values():
                h.close()
            self._hosts.clear()
