"""Prometheus metrics: requests by route and status, latency, batch sizes, queue depth.

With several workers ``kgqa serve`` sets ``PROMETHEUS_MULTIPROC_DIR`` before this module is imported, so every worker
writes its samples there and /metrics, whichever worker answers, reports them all.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUESTS = Counter("kgqa_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "kgqa_http_request_duration_seconds",
    "HTTP request latency",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram("kgqa_batch_size", "questions decoded together", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
BATCH_SECONDS = Histogram(
    "kgqa_batch_duration_seconds", "time to decode one batch", buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
)
QUEUE_SECONDS = Histogram(
    "kgqa_queue_duration_seconds",
    "time an answer request waited for a batch (or behind other decodes), not decoding",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
QUEUE_DEPTH = Gauge("kgqa_queue_depth", "questions waiting for a batch", multiprocess_mode="livesum")
INDEX_INFO = Gauge(
    "kgqa_index_info", "the KB index being served (1)", ["path", "manifest_sha256"], multiprocess_mode="livemax"
)
INDEX_TRIPLES = Gauge("kgqa_index_triples", "triples of the KB index being served", multiprocess_mode="livemax")
ADDED_CHARACTERS = Gauge(
    "kgqa_vocabulary_added_characters",
    "index characters the model had no token for, added at load (open vocabulary)",
    multiprocess_mode="livemax",
)
RELOADS = Counter("kgqa_reloads_total", "SIGHUP reloads of the index and model", ["result"])


def record_served(described: dict) -> None:
    """What this process serves now (after start-up or a reload): the index's identity, size and the vocabulary."""
    index = described["index"]
    INDEX_INFO.clear()  # one series: the index served now
    INDEX_INFO.labels(index["path"], index["manifest_sha256"]).set(1)
    INDEX_TRIPLES.set(index["triples"])
    ADDED_CHARACTERS.set(described["model"]["added_characters"])


def record_batch(size: int, seconds: float) -> None:
    BATCH_SIZE.observe(size)
    BATCH_SECONDS.observe(seconds)


def record_queue(seconds: float) -> None:
    QUEUE_SECONDS.observe(seconds)


def exposition() -> tuple[bytes, str]:
    """The metrics text and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by its route template (never the raw path: bounded labels)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            REQUESTS.labels(scope["method"], template, str(status)).inc()
            LATENCY.labels(template).observe(time.perf_counter() - started)
