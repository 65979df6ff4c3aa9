"""A real Prometheus (Debian's) scraping the lab's controller, for the tests.

It runs from a temporary directory (config, TSDB), listens on a free loopback
port, scrapes every second over HTTPS (the lab's CA) with the lab's scrape
token (docs/metrics.md), and is ended by its PID whatever happened.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx

from ferry.lab.layout import lab_dir
from tests.helpers import end, free_port

CONFIG = """global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: ferry
    scheme: https
    tls_config:
      ca_file: {ca}
    authorization:
      type: Bearer
      credentials_file: {token}
    static_configs:
      - targets: ["{target}"]
"""


class Prometheus:
    def __init__(self, url: str) -> None:
        self.url = url

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        params: dict[str, Any] = {"query": promql}
        if at is not None:
            params["time"] = at
        r = httpx.get(f"{self.url}/api/v1/query", params=params, timeout=10, trust_env=False)
        r.raise_for_status()
        return list(r.json()["data"]["result"])

    def query_range(self, promql: str, start: float, end: float) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.url}/api/v1/query_range", timeout=10, trust_env=False,
                      params={"query": promql, "start": start, "end": end, "step": 1})
        r.raise_for_status()
        return list(r.json()["data"]["result"])


@contextmanager
def prometheus(controller_url: str, ca: str) -> Iterator[Prometheus]:
    with tempfile.TemporaryDirectory(prefix="ferry-prom-") as tmp:
        cfg = Path(tmp) / "prometheus.yml"
        cfg.write_text(CONFIG.format(ca=ca, target=urlparse(controller_url).netloc,
                                     token=lab_dir() / "controller" / "metrics.token"))
        port = free_port()
        log = (Path(tmp) / "prometheus.log").open("w")
        proc = subprocess.Popen(
            ["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            prom = Prometheus(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # up, and its first scrape succeeded
                try:
                    up = prom.query('up{job="ferry"}')
                    if up and up[0]["value"][1] == "1":
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                raise AssertionError("Prometheus never scraped the controller: "
                                     + (Path(tmp) / "prometheus.log").read_text()[-2000:])
            yield prom
        finally:
            end(proc)
            log.close()
