"""The web UI's files at ``/ui``: one HTML page, its script modules and its stylesheet.

The files are package data (``ui_static/``): plain HTML, CSS and JavaScript modules, no build step
and nothing loaded from another origin. The page asks ``/ui/config.json`` where its API is (the
server's ``/api`` here; the gateway serves the same files with ``/noetl`` and a session). The
files hold no data, so they are served without the service token; every API call they make is
authorized as any other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import APIRouter
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

ASSETS: Final = Path(__file__).with_name("ui_static")

SECURITY_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

router = APIRouter(include_in_schema=False)


@router.get("/ui")
async def ui_root() -> Response:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/")
async def ui_index() -> Response:
    return index()


@router.get("/ui/config.json")
async def ui_config() -> Response:
    return JSONResponse({"api": "/api", "mode": "server"}, headers=SECURITY_HEADERS)


def index() -> Response:
    return FileResponse(ASSETS / "index.html", headers={**SECURITY_HEADERS, "Cache-Control": "no-cache"})


def assets() -> StaticFiles:
    """The static files app, mounted at ``/ui/assets``."""
    return StaticFiles(directory=ASSETS)
