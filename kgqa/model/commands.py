"""What the model's commands share: decoding options from the command line, the --quantize flag."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and transformers load only when a command decodes, not for every `kgqa ...`
    from kgqa.model.answerer import DecodeOptions


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """Decoding options from the command line; what it leaves out comes from the model's ``kgqa.json``."""
    from kgqa.model.answerer import DecodeOptions
    from kgqa.model.modeling import read_training_info

    source = Path(getattr(args, "decoding_from", None) or args.model)
    changes: dict = {
        "num_beams": args.beams,
        "constrained": not args.unconstrained,
        "lookahead": not args.no_lookahead,
        "batch_size": args.batch_size,
    }
    if getattr(args, "no_rerank", False):
        changes |= {"rerank_relation_weight": 0.0, "rerank_name_weight": 0.0, "use_ranker": False}
    if getattr(args, "no_ranker", False):
        changes["use_ranker"] = False
    if args.lookahead_strength is not None:
        changes["lookahead_strength"] = args.lookahead_strength
    return DecodeOptions.from_training_info(read_training_info(source) if source.is_dir() else {}, **changes)


def add_quantize_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quantize", action="store_true", help="int8 Linear layers (CPU): faster decoding")
