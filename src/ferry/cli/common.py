"""What every command shares: the --json option and error-to-exit-code handling."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from ferry.cli.client import ApiError
from ferry.cli.render import err_console, print_json
from ferry.lab.run import LabError

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
F = TypeVar("F", bound=Callable[..., Any])


def handles_errors(fn: F) -> F:
    """Turn API and lab errors into a message (or JSON) and the right exit code."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        as_json = bool(kwargs.get("as_json"))
        try:
            return fn(*args, **kwargs)
        except ApiError as exc:
            if as_json:
                print_json(exc.as_dict())
            else:
                err_console.print(f"[red]error:[/red] {exc.message}")
                for k, v in exc.details.items():
                    if k != "errors":
                        err_console.print(f"  {k}: {v}")
            raise typer.Exit(exc.exit_code) from None
        except LabError as exc:
            if as_json:
                print_json({"error": str(exc), "code": "lab"})
            else:
                err_console.print(f"[red]lab error:[/red] {exc}")
            raise typer.Exit(1) from None
    return wrapper  # type: ignore[return-value]


