"""``kgqa serve``: its flags are ServiceSettings' fields (defaults from there); KGQA_* variables fill the rest."""

from __future__ import annotations

import argparse
from pathlib import Path

# flag → (setting, type, what it is); a flag given on the command line wins over its KGQA_* variable
_FLAGS: list[tuple[str, str, type, str]] = [
    ("--model", "model", Path, "model directory"),
    ("--index", "index", Path, "index directory"),
    ("--host", "host", str, "0.0.0.0 listens on every interface"),
    ("--port", "port", int, "0 picks a free port"),
    ("--workers", "workers", int, "worker processes, forked after loading"),
    ("--threads", "torch_threads", int, "torch threads per worker; 0: the CPUs divided among the workers"),
    ("--max-batch-size", "max_batch_size", int, "questions decoded together"),
    ("--max-batch-cost", "max_batch_cost", int, "beam-characters a batch may hold: beams × (length + 16), summed"),
    ("--batch-wait-ms", "batch_wait_ms", float, "how long a batch waits to fill"),
    ("--request-timeout-s", "request_timeout_s", float, "a request not answered by then gets 504"),
    ("--cors-origins", "cors_origins", str, "comma-separated origins whose pages may call the API"),
    ("--api-key", "api_key", str, "require 'Authorization: Bearer <key>' on /v1/*; KGQA_API_KEY keeps it out of ps"),
    ("--log-level", "log_level", str, "debug, info, warning, error"),
    ("--log-format", "log_format", str, "text or json (one JSON object a line)"),
]
_SWITCHES: list[tuple[str, str, str]] = [  # flags that turn a setting off
    ("--no-quantize", "quantize", "float32 Linear layers instead of int8 (slower)"),
    ("--no-ranker", "ranker", "rank by log-probability, not the learned ranker"),
    ("--no-access-log", "access_log", "no line per request"),
]


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    from kgqa.service.settings import ServiceSettings

    fields = ServiceSettings.model_fields
    serve = commands.add_parser(
        "serve", help="the HTTP API and web page (FastAPI under uvicorn); every flag is also a KGQA_* variable"
    )
    for flag, name, kind, what in _FLAGS:
        default = fields[name].get_default(call_default_factory=True)
        shown = "none" if default in (None, []) else default
        serve.add_argument(flag, dest=name, type=kind, help=f"{what} (KGQA_{name.upper()}; default {shown})")
    for flag, name, what in _SWITCHES:
        serve.add_argument(flag, dest=name, action="store_const", const=False, help=f"{what} (KGQA_{name.upper()})")
    serve.set_defaults(run=_serve)


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kgqa.service.server import serve
    from kgqa.service.settings import ServiceSettings

    names = [name for _, name, _, _ in _FLAGS] + [name for _, name, _ in _SWITCHES]
    given = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    try:
        settings = ServiceSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid service settings (flags or KGQA_* variables): {problems}") from exc
    return serve(settings)
