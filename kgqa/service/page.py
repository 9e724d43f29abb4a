"""The web page at ``/``: plain HTML, CSS and JavaScript shipped as package data, nothing loaded from another host.

It calls the same API as any client (``/v1/answer`` with ``"explain": true``, ``/v1/entities``, ``/v1/info``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
# the page loads only its own files and talks only to its own origin, whatever a question or a KB string holds
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

page = APIRouter(include_in_schema=False)


@page.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


def install_page(app: FastAPI) -> None:
    """``/`` and its files under ``/static``."""
    app.include_router(page)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
