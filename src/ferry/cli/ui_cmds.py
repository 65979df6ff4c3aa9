"""`ferry ui`: the link to the controller's web view, with the token in its fragment
(a fragment never reaches a server, a proxy or a log; the page keeps the token in
its tab and takes it out of the address bar)."""

from __future__ import annotations

from urllib.parse import quote

from ferry.cli.client import find_config
from ferry.cli.common import JsonOpt, handles_errors
from ferry.cli.render import console, print_json


@handles_errors
def ui(as_json: JsonOpt = False) -> None:
    """Print the web view's link (hosts, drains, migrations live; read-only)."""
    cfg = find_config()
    url = f"{cfg['url'].rstrip('/')}/ui#token={quote(cfg['token'], safe='')}"
    if as_json:
        print_json({"url": url, "ca": cfg.get("ca")})
        return
    console.print(url, soft_wrap=True)
    if cfg.get("ca"):
        console.print(f"[dim]the controller's certificate is signed by {cfg['ca']}: a "
                      "browser trusts it once that CA is imported[/dim]")
