"""Request ids and the access log: one line per request, with the id the response carries in ``X-Request-ID``.

The id is the client's own ``X-Request-ID`` when it sends a sensible one (letters, digits, ``-_.:``, at most 128),
else a new one; it is echoed in the response and written in the access log line (``request_id``), so a client's
report and the server's log meet. uvicorn's own access log is off: this one knows the id and the duration.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-ID"
REQUEST_ID: ContextVar[str | None] = ContextVar("kgqa_request_id", default=None)
_SENSIBLE = re.compile(r"[A-Za-z0-9._:\-]{1,128}")  # nothing that could forge a log line or a header

access_log = logging.getLogger("kgqa.access")


def request_id_of(header: str | None) -> str:
    """The client's id when it is sensible, else a new one."""
    return header if header is not None and _SENSIBLE.fullmatch(header) else uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, log_requests: bool = True) -> None:
        self.app = app
        self.log_requests = log_requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope).get(HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        token = REQUEST_ID.set(request_id)
        status = 500  # unless a response starts
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
            if self.log_requests:
                self._log(scope, status, 1000 * (time.perf_counter() - started), request_id)

    @staticmethod
    def _log(scope: Scope, status: int, duration_ms: float, request_id: str) -> None:
        client = scope.get("client")
        address = f"{client[0]}:{client[1]}" if client else "-"
        path = scope.get("path", "")
        access_log.info(
            '%s "%s %s HTTP/%s" %d %.1f ms request_id=%s',
            address,
            scope.get("method", ""),
            path,
            scope.get("http_version", "1.1"),
            status,
            duration_ms,
            request_id,
            extra={
                "request_id": request_id,
                "client": address,
                "method": scope.get("method", ""),
                "path": path,
                "status": status,
                "duration_ms": round(duration_ms, 2),
            },
        )
