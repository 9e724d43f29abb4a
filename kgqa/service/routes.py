"""The HTTP API: thin handlers over the engine (answers go through the micro-batcher)."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from fastapi.responses import JSONResponse, Response

from kgqa.model.candidate import Candidate
from kgqa.service import metrics
from kgqa.service.batcher import RequestTiming
from kgqa.service.dependencies import ReadyState, require_api_key, service_state
from kgqa.service.limits import MAX_BATCH_QUESTIONS, MAX_QUESTION_CHARS, MAX_TOP_K
from kgqa.service.schemas import (
    Answer,
    AnswerRequest,
    AnswerResponse,
    BatchRequest,
    BatchResponse,
    EntityResponse,
    ErrorResponse,
    Health,
    Info,
    Readiness,
    Trace,
)
from kgqa.service.schemas import Path as PathOut
from kgqa.service.state import ServiceState

ERRORS = {
    400: {"model": ErrorResponse, "description": "the body is not valid JSON"},
    401: {"model": ErrorResponse, "description": "no or a wrong API key (only when the service has KGQA_API_KEY)"},
    413: {"model": ErrorResponse, "description": "the body is too large"},
    415: {"model": ErrorResponse, "description": "the body is not sent as application/json"},
    422: {"model": ErrorResponse, "description": "a field is missing, unknown, of the wrong type or out of range"},
    503: {"model": ErrorResponse, "description": "not ready yet (loading), overloaded, or stopping: retry"},
    504: {"model": ErrorResponse, "description": "not answered within KGQA_REQUEST_TIMEOUT_S"},
}

api = APIRouter(prefix="/v1", tags=["questions"], responses=ERRORS, dependencies=[Depends(require_api_key)])
probes = APIRouter(tags=["operations"])


def _response(question: str, candidates: list[Candidate], took_ms: float, threshold: float | None) -> AnswerResponse:
    answers = [Answer.of(c) for c in candidates]
    withheld = bool(candidates) and threshold is not None and candidates[0].abstains(threshold)
    return AnswerResponse(
        question=question,
        answer=answers[0] if answers and not withheld else None,
        reason="no_kb_path" if not answers else "below_threshold" if withheld else None,
        confidence=candidates[0].confidence if candidates else None,
        threshold=threshold,
        candidates=answers,
        took_ms=took_ms,
    )


def _timed(http: Response, timing: RequestTiming, started: float) -> None:
    """The ``Server-Timing`` header: waiting for a batch, decoding, the whole handler (the client's latency beyond
    it is HTTP: transport, parsing, validation, serialization)."""
    http.headers["Server-Timing"] = timing.server_timing(time.perf_counter() - started)
    metrics.record_queue(timing.queue_s)


@api.post("/answer", response_model=AnswerResponse, summary="Answer one question")
async def answer(body: AnswerRequest, state: ReadyState, http: Response) -> AnswerResponse:
    started = time.perf_counter()
    timing = RequestTiming()
    [candidates] = await state.batcher.submit(
        [body.question], body.top_k, state.settings.request_timeout_s, timing=timing
    )
    threshold = state.engine.answerer.abstain_below
    response = _response(body.question, candidates, round(1000 * (time.perf_counter() - started), 2), threshold)
    if body.explain and candidates:
        response.trace = Trace.of(state.engine.explain(candidates[0]), candidates[0])
    _timed(http, timing, started)
    return response


@api.post("/answer/batch", response_model=BatchResponse, summary="Answer up to 256 questions, in order")
async def answer_batch(body: BatchRequest, state: ReadyState, http: Response) -> BatchResponse:
    started = time.perf_counter()
    timing = RequestTiming()
    results = await state.batcher.submit(body.questions, body.top_k, state.settings.request_timeout_s, timing=timing)
    took_ms = round(1000 * (time.perf_counter() - started), 2)
    threshold = state.engine.answerer.abstain_below
    response = BatchResponse(
        results=[_response(q, c, took_ms, threshold) for q, c in zip(body.questions, results, strict=True)],
        took_ms=took_ms,
    )
    _timed(http, timing, started)
    return response


@api.get(
    "/entities/{name}",
    response_model=EntityResponse,
    summary="Every KB triple of a name (all its meanings), or of one entity given as name（meaning）",
    responses={404: {"model": ErrorResponse, "description": "no such name in the KB"}},
)
async def entity(
    state: ReadyState,
    name: Annotated[str, Path(min_length=1, max_length=1024)],
    limit: Annotated[int, Query(ge=1, le=10_000, description="at most this many triples")] = 1000,
) -> EntityResponse:
    found = state.engine.entity(name, min(limit, state.settings.max_entity_triples))
    if not found.total:
        raise HTTPException(404, f"no entity named {name!r} in the knowledge base")
    triples = [
        PathOut(subject=t.head, name=t.name, meaning=t.meaning, predicate=t.relation, object=t.object)
        for t in found.triples
    ]
    return EntityResponse(name=name, count=found.total, truncated=len(triples) < found.total, triples=triples)


@api.get("/info", response_model=Info, summary="What is served: kgqa's version, the model, the index, the settings")
async def info(state: ReadyState) -> Info:
    settings = state.settings
    service = {
        "workers": settings.workers,
        "max_batch_size": settings.max_batch_size,
        "max_batch_cost": settings.max_batch_cost,
        "batch_wait_ms": settings.batch_wait_ms,
        "max_queue": settings.max_queue,
        "request_timeout_s": settings.request_timeout_s,
        "api_key_required": settings.api_key is not None,
        "limits": {
            "question_characters": MAX_QUESTION_CHARS,
            "top_k": MAX_TOP_K,
            "batch_questions": MAX_BATCH_QUESTIONS,
            "body_bytes": settings.max_body_bytes,
            "entity_triples": settings.max_entity_triples,
        },
    }
    return Info(**state.engine.info(), service=service)


@probes.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    return Health(status="ok")


@probes.get(
    "/readyz",
    response_model=Readiness,
    summary="The model and the index are loaded and warmed up; which index (its manifest checksum) is served",
    responses={503: {"model": Health, "description": "still loading, or stopping"}},
)
async def readyz(state: Annotated[ServiceState, Depends(service_state)]) -> Response:
    if state.stopping:
        return JSONResponse({"status": "stopping"}, status_code=503)
    if not state.ready or state.engine is None:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", **state.engine.describe()})


@probes.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics() -> Response:
    body, content_type = metrics.exposition()
    return Response(body, media_type=content_type)
