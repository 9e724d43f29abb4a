"""Live reload on SIGHUP, as nginx and gunicorn do: load the configured index and model again, check them as at
start-up, then switch.

In one process the switch happens between batches: the micro-batcher takes the state's engine afresh for each batch,
so a batch already decoding finishes with the old engine and the next one uses the new. Loading runs in a thread
beside the decoding one, so questions keep being answered meanwhile. A reload that fails its checks (an index that
does not load, a model that cannot spell it, a warm-up question that fails) keeps the old engine and logs why.
With workers the parent reloads and forks new workers (kgqa.service.server); the old ones first drain (SIGUSR1:
every response says ``Connection: close``, so a client busy on a keep-alive connection is moved off it cleanly, by
its next answer), then retire (SIGTERM). Without the drain, a request sent on an idle keep-alive connection just as
the retiring worker closes it is lost (a connection reset), the race of every graceful restart.
"""

from __future__ import annotations

import asyncio
import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kgqa.service import metrics
from kgqa.service.engine import Engine
from kgqa.service.settings import ServiceSettings
from kgqa.service.state import ServiceState

log = logging.getLogger("kgqa.service")


def load_for_reload(settings: ServiceSettings, warm_up: bool = True) -> Engine | None:
    """The engine of the configured paths, checked as at start-up (and warmed by one question); None, counted and
    logged, if it cannot serve: whatever fails, the old engine keeps serving. Both reload paths (one process, and
    the parent of workers) load through here."""
    try:
        engine = Engine.load(settings)
        if warm_up:
            engine.warm_up()
        return engine
    except Exception as exc:
        reload_failed(str(exc))
        return None


def reload_failed(reason: str) -> None:
    metrics.RELOADS.labels("failed").inc()
    log.error("reload failed; the old index and model keep serving: %s", reason)


def reload_done(engine: Engine, started: float, detail: str = "") -> None:
    metrics.RELOADS.labels("ok").inc()
    log.info("reloaded in %.1f s%s; now serving the index %s", time.perf_counter() - started, detail, served(engine))


async def reload_engine(state: ServiceState) -> bool:
    """Load and switch to the configured index and model; False (the old engine still serving) if that fails."""
    if state.reloading:
        log.warning("reload requested while one is running: ignored")
        return False
    state.reloading = True
    started = time.perf_counter()
    try:
        engine = await asyncio.to_thread(load_for_reload, state.settings)
        if engine is None:
            return False
        state.engine = engine
        metrics.record_served(engine.describe())
        reload_done(engine, started)
        return True
    finally:
        state.reloading = False


def served(engine: Engine) -> str:
    index = engine.describe()["index"]
    return (
        f"{index.get('path')} ({index.get('triples', 0):,} triples, manifest {index.get('manifest_sha256', '')[:12]})"
    )


CLOSE = (b"connection", b"close")


class CloseWhenDraining:
    """ASGI middleware: while the worker drains, each response closes its connection (``Connection: close``)."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.state.draining:
                message = {**message, "headers": [*message.get("headers", []), CLOSE]}
            await send(message)

        await self.app(scope, receive, send_closing)
