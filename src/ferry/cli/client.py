"""HTTP client for the controller, and where its URL and token come from.

Lookup order: FERRY_URL + FERRY_TOKEN (+ FERRY_CA); the file named by
FERRY_CONFIG; `.ferry/client.json` in the current directory or a parent
(written by `ferry lab up`); ~/.config/ferry/client.json.  A config may name
`ca` (the CA that signed the controller's HTTPS certificate: the server is
verified against it) and `cert` + `key` (this client's certificate, for a
controller that asks for one).
"""

from __future__ import annotations

import json
import os
import ssl
import sys
from pathlib import Path
from typing import Any

# httpx loads its own command line (click, rich, pygments) when those are installed,
# and Ferry never runs it: its stub instead takes ~0.1 s off every `ferry` command
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
import httpx  # noqa: E402

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


TLS_KEYS = ("ca", "cert", "key")


def find_config() -> dict[str, str]:
    if os.environ.get("FERRY_URL") and os.environ.get("FERRY_TOKEN"):
        env = {"url": os.environ["FERRY_URL"], "token": os.environ["FERRY_TOKEN"]}
        return env | ({"ca": os.environ["FERRY_CA"]} if os.environ.get("FERRY_CA") else {})
    candidates: list[Path] = []
    if os.environ.get("FERRY_CONFIG"):
        candidates.append(Path(os.environ["FERRY_CONFIG"]))
    here = Path.cwd()
    candidates += [d / ".ferry" / "client.json" for d in (here, *here.parents)]
    candidates.append(Path.home() / ".config" / "ferry" / "client.json")
    for path in candidates:
        if path.is_file():
            data = json.loads(path.read_text())
            return {"url": str(data["url"]), "token": str(data["token"])} | {
                k: str(data[k]) for k in TLS_KEYS if data.get(k)}
    raise ApiError(0, "connection", "no controller configured: run `ferry lab up`, or set "
                   "FERRY_URL and FERRY_TOKEN", {})


def tls_context(cfg: dict[str, str]) -> ssl.SSLContext:
    """Verify the controller against the config's CA (the system's CAs without one),
    and present the config's client certificate if it names one."""
    ctx = ssl.create_default_context(cafile=cfg.get("ca"))
    if cfg.get("cert"):
        ctx.load_cert_chain(cfg["cert"], cfg.get("key"))
    return ctx


class Client:
    def __init__(self, url: str | None = None, token: str | None = None,
                 timeout: float = 180) -> None:
        cfg = {"url": url, "token": token} if url and token else find_config()
        self.url = cfg["url"]
        try:
            verify = tls_context(cfg)
        except (OSError, ssl.SSLError) as exc:
            raise ApiError(0, "connection", f"cannot load the TLS files of the client "
                           f"config: {exc}", {}) from exc
        self._http = httpx.Client(base_url=self.url, timeout=timeout, verify=verify,
                                  headers={"Authorization": f"Bearer {cfg['token']}"})

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
