"""Every error is a JSON body ``{"detail": "...", "errors": [...]}`` with a 4xx status; bad input never gets a 5xx."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kgqa.service.batcher import DeadlineExceededError, QueueFullError, ShuttingDownError


def _field(error: dict[str, Any]) -> str:
    location = [str(part) for part in error.get("loc", ()) if part != "body"]
    return ".".join(location) or "body"


def _is_json(content_type: str) -> bool:
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _describe(errors: list[dict[str, Any]], content_type: str) -> tuple[int, str]:
    body_level = any(tuple(e.get("loc", ())) == ("body",) for e in errors)
    if body_level and not _is_json(content_type):
        # FastAPI reads a body as JSON only when it says it is JSON (no cross-site form posts to a JSON API)
        return 415, f"send the body as JSON with Content-Type: application/json (got {content_type or 'none'!r})"
    if any(e.get("type") == "json_invalid" for e in errors):
        reason = next(e for e in errors if e.get("type") == "json_invalid").get("ctx", {}).get("error", "")
        return 400, f"the body is not valid JSON ({reason})" if reason else "the body is not valid JSON"
    if any(e.get("type") == "missing" and tuple(e.get("loc", ())) == ("body",) for e in errors):
        return 422, "the body is missing: send a JSON object"
    return 422, "; ".join(f"{_field(e)}: {e.get('msg', 'invalid')}" for e in errors[:5])


def _jsonable(errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # pydantic's ctx may hold exception objects, and the input may be huge: keep what a client can use
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in errors
    ]


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        status, detail = _describe(errors, request.headers.get("content-type", ""))
        return JSONResponse({"detail": detail, "errors": _jsonable(errors)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(DeadlineExceededError)
    async def deadline_exceeded(request: Request, exc: DeadlineExceededError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"the service is too busy: {exc} (KGQA_REQUEST_TIMEOUT_S); retry later"}, status_code=504
        )

    @app.exception_handler(ShuttingDownError)
    async def shutting_down(request: Request, exc: ShuttingDownError) -> JSONResponse:
        # another replica (or this service restarted) can answer: tell the client and the load balancer to retry
        return JSONResponse({"detail": f"{exc}; retry"}, status_code=503, headers={"Retry-After": "1"})

    @app.exception_handler(QueueFullError)
    async def queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
        return JSONResponse(
            {"detail": f"the service is overloaded: {exc}; retry shortly"},
            status_code=503,
            headers={"Retry-After": "1"},
        )


class BodySizeLimitMiddleware:
    """Refuses a body over ``max_bytes`` with 413, whether or not it declares its length, before anything parses it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(scope, receive, send)
            return
        # read the body here, counting, so a chunked body cannot exceed the limit either
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would report it

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = JSONResponse({"detail": f"the body is larger than {self.max_bytes} bytes"}, status_code=413)
        await response(scope, receive, send)
