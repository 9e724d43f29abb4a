"""The web page at ``/``: plain HTML, CSS and JavaScript shipped as package data, nothing loaded from another host.

It calls the same API as any client (``/v1/answer`` with ``"explain": true``, ``/v1/entities``, ``/v1/info``).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

STATIC = Path(__file__).parent / "static"
# the page loads only its own files and talks only to its own origin, whatever a question or a KB string holds
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)

# Swagger UI and ReDoc start from inline scripts, and ReDoc shows a logo from its CDN: the browser refuses that one
DOCS_CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; "
    "worker-src 'self' blob:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
DOCS_ROUTES = ("/docs", "/redoc")

page = APIRouter(include_in_schema=False)


@page.get("/")
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


class DocsPolicyMiddleware:
    """The same-origin policy on the /docs and /redoc pages (FastAPIOffline serves them; this adds the header)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") not in DOCS_ROUTES:
            await self.app(scope, receive, send)
            return

        async def send_with_policy(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["Content-Security-Policy"] = DOCS_CONTENT_SECURITY_POLICY
            await send(message)

        await self.app(scope, receive, send_with_policy)


def install_page(app: FastAPI) -> None:
    """``/`` and its files under ``/static``; the docs pages' policy."""
    app.include_router(page)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(DocsPolicyMiddleware)
