"""HTTP client for the controller, and where its URL and token come from.

Lookup order: FERRY_URL + FERRY_TOKEN; the file named by FERRY_CONFIG;
`.ferry/client.json` in the current directory or a parent (written by
`ferry lab up`); ~/.config/ferry/client.json.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import httpx

EXIT_CODES = {"invalid": 2, "too_large": 2, "conflict": 3, "not_found": 4, "refused": 5,
              "unavailable": 6, "auth": 7, "connection": 8}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: dict[str, Any]):
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.code, 1)

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.message, "code": self.code, "details": self.details,
                "status": self.status}


def local_config_path() -> Path:
    return Path.cwd() / ".ferry" / "client.json"


def find_config() -> dict[str, str]:
    if os.environ.get("FERRY_URL") and os.environ.get("FERRY_TOKEN"):
        return {"url": os.environ["FERRY_URL"], "token": os.environ["FERRY_TOKEN"]}
    candidates: list[Path] = []
    if os.environ.get("FERRY_CONFIG"):
        candidates.append(Path(os.environ["FERRY_CONFIG"]))
    here = Path.cwd()
    candidates += [d / ".ferry" / "client.json" for d in (here, *here.parents)]
    candidates.append(Path.home() / ".config" / "ferry" / "client.json")
    for path in candidates:
        if path.is_file():
            data = json.loads(path.read_text())
            return {"url": str(data["url"]), "token": str(data["token"])}
    raise ApiError(0, "connection", "no controller configured: run `ferry lab up`, or set "
                   "FERRY_URL and FERRY_TOKEN", {})


class Client:
    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 180) -> None:
        if url is None or token is None:
            cfg = find_config()
            url, token = cfg["url"], cfg["token"]
        self.url = url
        self._http = httpx.Client(base_url=url, timeout=timeout,
                                  headers={"Authorization": f"Bearer {token}"})

    def request(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise ApiError(0, "connection", f"cannot reach the controller at {self.url}: {exc}",
                           {}) from exc
        if r.status_code == 401:
            raise ApiError(401, "auth", "the controller rejected the API token", {})
        if r.status_code >= 400:
            try:
                body = r.json()
            except ValueError:
                body = {}
            raise ApiError(r.status_code, str(body.get("error", "error")),
                           str(body.get("message", body.get("detail", r.text))),
                           dict(body.get("details", {})))
        return r.json() if r.content else None

    def get(self, path: str, **kw: Any) -> Any:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Any:
        return self.request("POST", path, **kw)

    def put(self, path: str, **kw: Any) -> Any:
        return self.request("PUT", path, **kw)

    def delete(self, path: str, **kw: Any) -> Any:
        return self.request("DELETE", path, **kw)
