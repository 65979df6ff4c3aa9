"""Errors raised by hypervisor drivers; no libvirt types cross this boundary."""

from __future__ import annotations


class HypervisorError(Exception):
    """A host refused or failed an operation; `str()` carries the host's message."""


class HostUnreachable(HypervisorError):
    """The host's hypervisor daemon cannot be reached."""


class DomainNotFound(HypervisorError):
    """No domain of that name on the host."""


class MigrationJobError(HypervisorError):
    """The hypervisor failed or aborted a migration job."""

    def __init__(self, message: str, *, cancelled: bool = False) -> None:
        super().__init__(message)
        self.cancelled = cancelled
