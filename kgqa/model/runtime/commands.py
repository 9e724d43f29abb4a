"""``kgqa model export``: the model's layers into the ONNX graphs that answering runs (needs the [train] extra)."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_export(args: argparse.Namespace) -> int:
    from kgqa.model.runtime.export import export_model

    manifest = export_model(args.model, quantize=not args.no_int8)
    for part, report in manifest["sample_calls"].items():
        shown = ", ".join(f"{name.replace('_max_abs_difference', '')} {value:.2g}" for name, value in report.items())
        print(f"{part}: largest difference from torch on the sample calls: {shown}")
    print(f"written {', '.join(manifest['graphs'])} and onnx.json into {args.model}")
    return 0


def add_runtime_commands(commands: argparse._SubParsersAction) -> None:
    model = commands.add_parser("model", help="the model's files: export its layers for ONNX Runtime")
    sub = model.add_subparsers(dest="model_command", required=True)
    export = sub.add_parser(
        "export",
        help="trace the layers into ONNX graphs (float32 and int8) with a manifest of the weights they came from; "
        "answering loads them and refuses a stale export",
    )
    export.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    export.add_argument("--no-int8", action="store_true", help="the float32 graphs alone")
    export.set_defaults(run=_cmd_export)
