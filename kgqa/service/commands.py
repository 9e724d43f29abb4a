"""``kgqa serve``: one flag per ServiceSettings field, generated from it (name, type, default, description);
KGQA_* variables fill what the command line leaves out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

# older spellings kept working
_ALIASES = {"threads": ["--torch-threads"]}


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    from kgqa.service.settings import ServiceSettings

    serve = commands.add_parser(
        "serve", help="the HTTP API and web page (FastAPI under uvicorn); every flag is also a KGQA_* variable"
    )
    for name, field in ServiceSettings.model_fields.items():
        flags, options = _argument(name, field)
        serve.add_argument(*flags, **options)
    serve.set_defaults(run=_serve)


def _argument(name: str, field: Any) -> tuple[list[str], dict[str, Any]]:
    """The flag of one setting: ``--name`` (``--no-name`` for a setting on by default), typed, with its help."""
    flag = "--" + name.replace("_", "-")
    env = f"KGQA_{name.upper()}"
    what = field.description or ""
    default = field.get_default(call_default_factory=True)
    annotation = field.annotation
    if annotation is bool:
        negated = default is True
        flags = [f"--no-{flag[2:]}"] if negated else [flag]
        help_text = f"off: {what} ({env}=false)" if negated else f"{what} ({env}=true)"
        return flags, {"dest": name, "action": "store_const", "const": not negated, "help": help_text}
    choices = list(get_args(annotation)) if get_origin(annotation) is Literal else None
    kind = annotation if annotation in (Path, int, float, str) else str  # lists and secrets: the text of the variable
    shown = "none" if default in (None, []) else default
    help_text = f"{what} ({env}; default {shown})".lstrip()
    return [flag, *_ALIASES.get(name, [])], {"dest": name, "type": kind, "choices": choices, "help": help_text}


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from kgqa.service.server import serve
    from kgqa.service.settings import ServiceSettings

    given = {name: getattr(args, name) for name in ServiceSettings.model_fields if getattr(args, name) is not None}
    try:
        settings = ServiceSettings(**given)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ValueError(f"invalid service settings (flags or KGQA_* variables): {problems}") from exc
    return serve(settings)
