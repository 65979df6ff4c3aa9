"""docs/deploy.md followed end to end: the wheel built from this checkout, installed
into a fresh venv, the settings of the page (its JSON block, with this test's paths),
the command of deploy/ferry.service started against a throwaway PostgreSQL, and the
installed CLI, the web view and /metrics used over HTTPS.

Differences from a real node, on purpose: root in a temporary directory instead of
user `ferry` in /opt and /etc, no systemd (the unit's ExecStart is run as it is
written, with those two prefixes mapped), PostgreSQL over loopback TCP with trust
instead of peer authentication over its socket.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from ferry.lab import pki
from tests.db.conftest import Postgres
from tests.helpers import end, free_port

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "deploy.md"
UNIT = REPO / "deploy" / "ferry.service"


def settings_block() -> dict[str, Any]:
    """The settings JSON as the page gives it."""
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)
    return dict(json.loads(next(b for b in blocks if '"db_url"' in b)))


def exec_start() -> list[str]:
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(UNIT)
    assert unit["Service"]["User"] == "ferry" and unit["Install"]["WantedBy"]
    return unit["Service"]["ExecStart"].split()


# what a fresh shell on the node would have: not this test run's venv, sources or client
CLEAN = {k: v for k, v in os.environ.items()
         if k not in ("PYTHONPATH", "VIRTUAL_ENV", "FERRY_CONFIG", "FERRY_URL", "FERRY_TOKEN",
                      "FERRY_CA")}


def run(*args: str, env: dict[str, str] | None = None, timeout: float = 300
        ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          env=env or CLEAN, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stdout}\n{proc.stderr}"
    return proc


def test_the_deployment_page_end_to_end(pg: Postgres, tmp_path: Path) -> None:
    # 1. the wheel, from a copy of the checkout (a build leaves files behind)
    src = tmp_path / "checkout"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".venv", ".git", "build", "*.egg-info", "__pycache__", ".*_cache", "bench"))
    dist = tmp_path / "dist"
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(src))
    wheel = next(dist.glob("ferry-*.whl"))

    # 2. a fresh venv with the wheel and its PostgreSQL driver
    opt, etc = tmp_path / "opt-ferry", tmp_path / "etc-ferry"
    venv = opt / "venv"
    run("python3", "-m", "venv", str(venv))
    run(str(venv / "bin" / "pip"), "install", "-q", f"{wheel}[postgres]", timeout=900)

    # 3. its database (4.) a certificate for the API (5.) the page's settings
    db_url = pg.new_database("ferrydeploy")
    ca = pki.new_authority("deploy test CA")
    (etc / "tls").mkdir(parents=True)
    pki.write_pair(pki.issue(ca, "ferry-controller", dns=("localhost",), ips=("127.0.0.1",),
                             server=True), etc / "tls" / "cert.pem", etc / "tls" / "key.pem")
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem)
    settings = settings_block()
    assert set(settings) >= {"db_url", "token", "metrics_token", "tls_cert_file",
                             "tls_key_file", "secret_key_file"}
    port = free_port()
    token, scrape = "d" * 40, "m" * 32
    settings |= {"db_url": db_url, "listen_host": "127.0.0.1", "listen_port": port,
                 "token": token, "metrics_token": scrape,
                 "tls_cert_file": str(etc / "tls" / "cert.pem"),
                 "tls_key_file": str(etc / "tls" / "key.pem"),
                 "secret_key_file": str(tmp_path / "state" / "secret.key")}
    (etc / "settings.json").write_text(json.dumps(settings))

    # 6. the unit's command, as written, with this test's prefixes
    cmd = [a.replace("/opt/ferry", str(opt)).replace("/etc/ferry", str(etc))
           for a in exec_start()]
    assert cmd[0] == str(venv / "bin" / "ferry") and cmd[1] == "serve"
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path / "state")}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"https://127.0.0.1:{port}"
    verify = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    try:
        with httpx.Client(base_url=url, verify=verify, trust_env=False, timeout=10) as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if http.get("/health", headers={"Authorization": f"Bearer {token}"}
                                ).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert server.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
                time.sleep(0.5)
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as plain:
                try:
                    answered = plain.get("/health").status_code
                except httpx.HTTPError:
                    answered = None
                assert answered != 200  # HTTPS only
            # the web view's files are in the wheel, /metrics takes the scrape token
            assert http.get("/ui").status_code == 200
            assert http.get("/ui/ui.js").status_code == 200
            m = http.get("/metrics", headers={"Authorization": f"Bearer {scrape}"})
            assert m.status_code == 200 and 'ferry_hosts{state="up"} 0.0' in m.text
            assert http.get("/hosts", headers={"Authorization": f"Bearer {scrape}"}
                            ).status_code == 401

        # 7. an operator's CLI, from the installed wheel, with a client config
        client = tmp_path / "client.json"
        client.write_text(json.dumps({"url": url, "token": token,
                                      "ca": str(tmp_path / "ca.pem")}))
        cli_env = {**env, "FERRY_CONFIG": str(client)}
        ferry = str(venv / "bin" / "ferry")
        assert json.loads(run(ferry, "host", "list", "--json", env=cli_env).stdout) == []
        assert json.loads(run(ferry, "ui", "--json", env=cli_env).stdout)["url"] == \
            f"{url}/ui#token={token}"
        bad = subprocess.run([ferry, "host", "add", "node1", "qemu+tls://node1/system?"
                              "pkipath=/tmp", "--json"], env=cli_env, capture_output=True,
                             text=True, timeout=60, check=False)
        assert bad.returncode == 2 and "pkipath" in bad.stdout  # checked, nothing reached
    finally:
        end(server, timeout=30)
        log.close()
    # uvicorn shuts down, then re-raises the signal; systemd counts SIGTERM as clean
    assert server.returncode in (0, -signal.SIGTERM), (tmp_path / "serve.log").read_text()
    engine = create_engine(db_url)
    try:
        with engine.connect() as c:  # the schema, created at start by the controller
            assert c.execute(text("SELECT version_num FROM alembic_version")).scalar()
            assert c.execute(text("SELECT count(*) FROM migrations")).scalar() == 0
    finally:
        engine.dispose()
    assert (tmp_path / "state" / "secret.key").exists()
    assert os.stat(tmp_path / "state" / "secret.key").st_mode & 0o077 == 0
