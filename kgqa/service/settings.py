"""Every setting of the service, in one place: command-line flags and ``KGQA_*`` environment variables."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from kgqa.data.locate import DEFAULT_INDEX_DIR
from kgqa.model.options import DEFAULT_BEAMS, Runtime, Search


class ServiceSettings(BaseSettings):
    """``KGQA_MODEL=models/kgqa-default KGQA_PORT=9000 kgqa serve`` is ``kgqa serve --model ... --port 9000``."""

    model_config = SettingsConfigDict(env_prefix="KGQA_", extra="forbid")

    model: Path = Field(Path("models/kgqa-default"), description="model directory")
    index: Path = Field(DEFAULT_INDEX_DIR, description="index directory")
    host: str = Field("127.0.0.1", description="0.0.0.0 listens on every interface")
    port: int = Field(8000, ge=0, le=65535, description="0 picks a free port")
    workers: int = Field(1, ge=1, le=64, description="worker processes, forked after loading")
    threads: int = Field(0, ge=0, description="the model runtime's threads per worker; 0: the CPUs ÷ the workers")
    runtime: Runtime = Field("onnx", description="onnx: ONNX Runtime (no torch); torch: transformers, the reference")
    quantize: bool = Field(True, description="the model's int8 layers")
    num_beams: int = Field(DEFAULT_BEAMS, ge=1, le=20, description="paths proposed per question (widened to top_k)")
    search: Search = Field(
        "best_first", description="best_first: kgqa's exact top-k search; beam: transformers' beam search"
    )
    search_margin: float | None = Field(
        None,
        ge=0.0,
        description="best_first with the ranker: past top_k, paths more than this many nats below a question's best "
        "are not looked for; unset: the model's (kgqa.json), 0: the exact top k",
    )
    ranker: bool = Field(True, description="rank candidates by the model directory's learned ranker, if it has one")
    abstain_below: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="answer null (the KB does not hold it) when the confidence is below this; unset: the threshold "
        "the model's confidence was fit with (confidence.json), 0: never abstain",
    )

    # micro-batching: a batch starts when it is full or when its first question has waited this long
    max_batch_size: int = Field(32, ge=1, le=256, description="questions decoded together")
    # 32 questions of 48 characters at beam 5; one question of 256 characters at top_k 20 (5,440) fills a batch alone
    max_batch_cost: int = Field(
        10240, ge=1, description="beam-characters a batch may hold: beam width × (question length + 16), summed"
    )
    batch_wait_ms: float = Field(5.0, ge=0.0, le=1000.0, description="how long a batch waits to fill")
    max_queue: int = Field(2048, ge=1, description="questions waiting; beyond it requests get 503, not a hang")
    # the largest request the API accepts (256 questions of 256 characters, top_k 20) took over 60 s here
    request_timeout_s: float = Field(
        300.0, gt=0.0, description="a request not answered within this gets 504 (its questions still waiting dropped)"
    )

    # request limits (question length, top_k and batch size are part of the API: kgqa.service.schemas)
    max_body_bytes: int = Field(256 * 1024, ge=1024, description="larger request bodies get 413")
    max_entity_triples: int = Field(1000, ge=1, description="at most this many triples from /v1/entities")

    reload_timeout_s: float = Field(
        120.0, gt=0.0, description="SIGHUP with workers: how long new workers get to be ready before the reload fails"
    )
    graceful_shutdown_s: float = Field(
        30.0, ge=0.0, description="on SIGTERM, time in-flight questions get to finish; the rest get 503 (0: no limit)"
    )
    access_log: bool = Field(True, description="one log line per request")
    log_level: str = Field("info", description="debug, info, warning, error")
    log_format: Literal["text", "json"] = Field("text", description="json: one JSON object a log line")

    # who may call: with an API key, /v1/* needs "Authorization: Bearer <key>" (the probes, /metrics and the page's
    # static files stay open); browsers of these origins may call the API from their pages (none by default)
    api_key: SecretStr | None = Field(
        None, description="require 'Authorization: Bearer <key>' on /v1/*; the variable keeps it out of ps"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins, e.g. https://a.example,https://b.example; * any"
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _no_empty_key(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    def threads_per_worker(self) -> int:
        return self.threads or max(1, (os.cpu_count() or 1) // self.workers)
