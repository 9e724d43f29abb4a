"""The FastAPI application.

``create_app()`` is also a uvicorn factory: ``uvicorn --factory kgqa.service.app:create_app`` (settings from KGQA_*).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline

from kgqa.service import metrics
from kgqa.service.access import HEADER as REQUEST_ID_HEADER
from kgqa.service.access import RequestIdMiddleware
from kgqa.service.batcher import MicroBatcher
from kgqa.service.engine import WARM_UP_QUESTION, Engine
from kgqa.service.errors import BodySizeLimitMiddleware, install_error_handlers
from kgqa.service.metrics import MetricsMiddleware
from kgqa.service.page import install_page
from kgqa.service.reload import CloseWhenDraining, reload_engine
from kgqa.service.routes import api, probes
from kgqa.service.settings import ServiceSettings
from kgqa.service.state import ServiceState

log = logging.getLogger("kgqa.service")


def create_app(
    settings: ServiceSettings | None = None,
    engine: Engine | None = None,
    reload_on_sighup: bool = False,
    on_ready: Callable[[], None] | None = None,
    drain_on_sigusr1: bool = False,
) -> FastAPI:
    """The app; ``engine`` already loaded (``kgqa serve`` loads it before forking workers) or loaded at start-up.

    ``reload_on_sighup``: SIGHUP reloads the index and model in this process (``kgqa serve`` with one worker; the
    handler needs the main thread). ``on_ready``: called once warmed up (a forked worker tells its parent).
    ``drain_on_sigusr1``: a forked worker that SIGUSR1 tells to drain before it retires.
    """
    settings = settings or ServiceSettings()
    state = ServiceState(settings=settings, engine=engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.engine is None:
            state.engine = await asyncio.to_thread(Engine.load, settings)  # StartupError: start-up fails, says why
        state.loop = asyncio.get_running_loop()
        metrics.record_served(state.engine.describe())
        state.batcher = _micro_batcher(state)
        state.batcher.start()
        # warmed before the first connection is accepted (they wait in the listen backlog meanwhile, a second or two):
        # a worker forked by a reload must not answer 503 "loading" while the one it replaces has stopped accepting
        await _warm_up(state)
        if state.ready and on_ready is not None:
            on_ready()
        try:
            async with _signal_handlers(state, reload_on_sighup, drain_on_sigusr1):
                yield
        finally:
            await state.batcher.stop()  # requests still in flight were let finish by uvicorn before this

    # /docs and /redoc with Swagger UI's and ReDoc's files served by the app itself: they work without internet
    app = FastAPIOffline(
        title="kgqa",
        summary="Question answering over a knowledge graph: trie-constrained seq2seq decoding of KB paths",
        version="1",
        lifespan=lifespan,
        swagger_ui_parameters={"validatorUrl": None},  # else Swagger UI sends the schema to validator.swagger.io
    )
    app.state.kgqa = state
    install_error_handlers(app)
    app.include_router(api)
    app.include_router(probes)
    install_page(app)
    _add_middleware(app, state)
    return app


def _micro_batcher(state: ServiceState) -> MicroBatcher:
    settings = state.settings
    return MicroBatcher(
        state.answer,
        max_batch_size=settings.max_batch_size,
        max_batch_cost=settings.max_batch_cost,
        max_wait_s=settings.batch_wait_ms / 1000,
        max_queue=settings.max_queue,
        beam_width=lambda top_k: state.engine.answerer.options.beam_width(top_k),  # the engine of the moment
        on_batch=metrics.record_batch,
        on_queue_depth=metrics.QUEUE_DEPTH.set,
        # the decoding thread's share of the cores (torch's thread count is set per thread)
        thread_setup=lambda: state.engine.answerer.runtime.layers.set_threads(settings.threads_per_worker()),
    )


@asynccontextmanager
async def _signal_handlers(state: ServiceState, reload_on_sighup: bool, drain_on_sigusr1: bool) -> AsyncIterator[None]:
    """SIGHUP reloads, SIGUSR1 drains, while the app serves; on the way out, not ready, and reloads finished."""
    loop = asyncio.get_running_loop()
    reloads: set[asyncio.Task[bool]] = set()

    def request_reload() -> None:
        task = loop.create_task(reload_engine(state))
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    def drain() -> None:
        state.drain()
        log.info("draining: no new connections here; each open one closes after its next response")

    if reload_on_sighup:
        loop.add_signal_handler(signal.SIGHUP, request_reload)
    if drain_on_sigusr1:
        loop.add_signal_handler(signal.SIGUSR1, drain)
    try:
        yield
    finally:
        state.ready = False
        if reload_on_sighup:
            loop.remove_signal_handler(signal.SIGHUP)
        if drain_on_sigusr1:
            loop.remove_signal_handler(signal.SIGUSR1)
        await asyncio.gather(*reloads)


def _add_middleware(app: FastAPI, state: ServiceState) -> None:
    """Outermost last: the request id wraps everything, metrics see every status (413s included)."""
    settings = state.settings
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(CloseWhenDraining, state=state)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
        )
    app.add_middleware(MetricsMiddleware)  # it sees the status of every response, 413s included
    app.add_middleware(RequestIdMiddleware, log_requests=settings.access_log)  # outermost: every response has an id


async def _warm_up(state: ServiceState) -> None:
    assert state.batcher is not None
    try:
        answers = await state.batcher.submit([WARM_UP_QUESTION], 1)  # the first decode pays one-off costs
    except Exception:  # stays not ready: /readyz keeps answering 503, the log says why
        log.exception("the warm-up question failed")
        return
    state.ready = True
    best = answers[0][0].as_answer() if answers and answers[0] else None
    log.info("kgqa is ready; warm-up question %s -> %s", WARM_UP_QUESTION, best.format() if best else "no KB path")
