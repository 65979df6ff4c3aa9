"""The web view's files: served without the token (they hold no data), with a strict
Content-Security-Policy; nothing else under /ui is public, and every figure the page
shows comes from routes that need the token."""

from __future__ import annotations

from fastapi.testclient import TestClient

from ferry.api.app import create_app
from tests.sim.conftest import SimEnv


def test_the_page_and_its_assets_are_public_and_locked_down(env: SimEnv) -> None:
    with TestClient(create_app(env.svc, start_background=False)) as client:
        for path, kind in (("/ui", "text/html"), ("/ui/ui.js", "text/javascript"),
                           ("/ui/ui.css", "text/css")):
            r = client.get(path)
            assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
            csp = r.headers["content-security-policy"]
            assert "default-src 'none'" in csp and "script-src 'self'" in csp
            assert "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
        page = client.get("/ui").text
        assert 'src="/ui/ui.js"' in page and "<script>" not in page  # no inline script
        assert env.settings.token not in page
        for path in ("/ui/other.js", "/ui/", "/uix", "/ui/../hosts", "/hosts", "/metrics"):
            assert client.get(path).status_code == 401, path
        assert client.post("/ui").status_code == 401
