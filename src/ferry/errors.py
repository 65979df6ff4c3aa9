"""Ferry's error types, mapped once to HTTP status codes (api/) and exit codes (cli/)."""

from __future__ import annotations

from typing import Any


class FerryError(Exception):
    """Base: a message for people and `details` for scripts."""

    status = 500
    code = "error"

    def __init__(self, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class InvalidRequest(FerryError):
    status = 400
    code = "invalid"


class NotFound(FerryError):
    status = 404
    code = "not_found"


class Conflict(FerryError):
    status = 409
    code = "conflict"


class MigrationRefused(FerryError):
    """A precheck said no before any transfer; `details` says why."""

    status = 422
    code = "refused"

    def __init__(self, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message, {"reason": reason, **(details or {})})
        self.reason = reason


class Unavailable(FerryError):
    """A host or dependency could not be reached."""

    status = 503
    code = "unavailable"


class DatabaseUnavailable(Unavailable):
    """The controller's database did not answer.  Never a verdict on a migration: what
    could not be recorded is settled from the hosts once it answers (or at restart)."""
