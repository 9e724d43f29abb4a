"""The FastAPI application.

``create_app()`` is also a uvicorn factory: ``uvicorn --factory kgqa.service.app:create_app`` (settings from KGQA_*).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import torch
from fastapi import FastAPI

from kgqa.service import metrics
from kgqa.service.batcher import MicroBatcher
from kgqa.service.engine import Engine
from kgqa.service.errors import BodySizeLimitMiddleware, install_error_handlers
from kgqa.service.metrics import MetricsMiddleware
from kgqa.service.routes import api, probes
from kgqa.service.settings import ServiceSettings
from kgqa.service.state import ServiceState

log = logging.getLogger("kgqa.service")

WARM_UP_QUESTION = "你知道守望星光是哪家公司出品的吗？"  # any text works: the first decode pays one-off costs


def create_app(settings: ServiceSettings | None = None, engine: Engine | None = None) -> FastAPI:
    """The app; ``engine`` already loaded (``kgqa serve`` loads it before forking workers) or loaded at start-up."""
    settings = settings or ServiceSettings()
    state = ServiceState(settings=settings, engine=engine)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state.engine is None:
            state.engine = await asyncio.to_thread(Engine.load, settings)  # StartupError: start-up fails, says why
        state.batcher = MicroBatcher(
            state.engine.answer,
            max_batch_size=settings.max_batch_size,
            max_wait_s=settings.batch_wait_ms / 1000,
            max_queue=settings.max_queue,
            min_top_k=settings.num_beams,
            on_batch=metrics.record_batch,
            on_queue_depth=metrics.QUEUE_DEPTH.set,
            thread_setup=partial(torch.set_num_threads, settings.threads_per_worker()),
        )
        state.batcher.start()
        warm_up = asyncio.create_task(_warm_up(state))
        try:
            yield
        finally:
            state.ready = False
            await warm_up
            await state.batcher.stop()  # requests still in flight were let finish by uvicorn before this

    app = FastAPI(
        title="kgqa",
        summary="Question answering over a knowledge graph: trie-constrained seq2seq decoding of KB paths",
        version="1",
        lifespan=lifespan,
    )
    app.state.kgqa = state
    install_error_handlers(app)
    app.include_router(api)
    app.include_router(probes)
    app.add_middleware(BodySizeLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)  # outermost: it sees the status of every response, 413s included
    return app


async def _warm_up(state: ServiceState) -> None:
    assert state.batcher is not None
    try:
        await state.batcher.submit([WARM_UP_QUESTION], 1)
    except Exception:  # stays not ready: /readyz keeps answering 503, the log says why
        log.exception("the warm-up question failed")
        return
    state.ready = True
    log.info("kgqa is ready")
