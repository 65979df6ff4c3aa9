"""The read-only web view (`/ui`): one HTML page, its script and its style, shipped in
the package (no build toolchain).

The page itself holds no data, so it is served without the token (a browser
cannot send a bearer header when it opens a link); everything it shows comes
from the API, with the token the operator gives it (`ferry ui` prints a link
whose fragment carries it: a fragment never reaches a server or a log).  A
strict Content-Security-Policy allows only this origin's script and style.
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import APIRouter
from fastapi.responses import Response

FILES = {"/ui": ("index.html", "text/html; charset=utf-8"),
         "/ui/ui.js": ("ui.js", "text/javascript; charset=utf-8"),
         "/ui/ui.css": ("ui.css", "text/css; charset=utf-8")}
PUBLIC_PATHS = tuple(FILES)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(include_in_schema=False)


def _serve(path: str) -> Response:
    name, media = FILES[path]
    body = files("ferry.api").joinpath("ui", name).read_bytes()
    return Response(body, media_type=media, headers=HEADERS)


@router.get("/ui")
def page() -> Response:
    return _serve("/ui")


@router.get("/ui/ui.js")
def script() -> Response:
    return _serve("/ui/ui.js")


@router.get("/ui/ui.css")
def style() -> Response:
    return _serve("/ui/ui.css")
