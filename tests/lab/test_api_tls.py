"""`ferry serve` with mutual TLS: a controller of its own on a loopback port (no lab
hosts), certificates from the lab's PKI module; only a client whose certificate
the client CA signed gets an answer, and the CLI presents the one its config
names.  (The lab's own controller serves HTTPS with server verification only:
test_api_errors.py.)"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ferry.lab.pki import issue, new_authority, write_authority, write_pair
from tests.helpers import end, free_port

FERRY = str(Path(sys.executable).parent / "ferry")
TOKEN = "mtls-test-token-" + "x" * 16


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    ca = new_authority("test CA")
    write_authority(ca, tmp_path)
    write_pair(issue(ca, "api", ips=("127.0.0.1",), server=True),
               tmp_path / "api.pem", tmp_path / "api.key")
    write_pair(issue(ca, "operator", client=True), tmp_path / "op.pem", tmp_path / "op.key")
    port = free_port()
    settings = {"db_url": f"sqlite:///{tmp_path / 'ferry.db'}", "listen_port": port,
                "token": TOKEN, "tls_cert_file": str(tmp_path / "api.pem"),
                "tls_key_file": str(tmp_path / "api.key"),
                "tls_client_ca_file": str(tmp_path / "ca-cert.pem")}
    (tmp_path / "settings.json").write_text(json.dumps(settings))
    with open(tmp_path / "serve.log", "wb") as log:
        proc = subprocess.Popen([FERRY, "serve", "--config", str(tmp_path / "settings.json")],
                                stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.2)
        yield f"https://127.0.0.1:{port}", tmp_path
    finally:
        end(proc)


def _ctx(d: Path, client_cert: bool) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(d / "ca-cert.pem"))
    if client_cert:
        ctx.load_cert_chain(d / "op.pem", d / "op.key")
    return ctx


def test_only_a_client_with_a_certificate_of_the_client_ca_gets_an_answer(
        mtls: tuple[str, Path]) -> None:
    url, d = mtls
    auth = {"Authorization": f"Bearer {TOKEN}"}
    deadline = time.monotonic() + 60
    while True:  # the port opens before the app has started
        try:
            r = httpx.get(f"{url}/health", headers=auth, verify=_ctx(d, True), timeout=10)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert r.status_code == 200
    with pytest.raises(httpx.HTTPError):  # the server wants a certificate: none, no answer
        httpx.get(f"{url}/health", headers=auth, verify=_ctx(d, False), timeout=10)
    cfg = d / "client.json"
    cfg.write_text(json.dumps({"url": url, "token": TOKEN, "ca": str(d / "ca-cert.pem"),
                               "cert": str(d / "op.pem"), "key": str(d / "op.key")}))
    out = subprocess.run([FERRY, "host", "list", "--json"], capture_output=True, text=True,
                         check=False, env=dict(os.environ, FERRY_CONFIG=str(cfg)))
    assert out.returncode == 0 and json.loads(out.stdout) == [], out
