"""What the model's commands share: decoding options from the command line, and the flags that set them
(--search, --runtime, --quantize, --abstain-below). Light: torch loads only when a command runs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from kgqa.model.options import SEARCHES, DecodeOptions, Runtime

RUNTIMES = get_args(Runtime)


def decode_options(args: argparse.Namespace) -> DecodeOptions:
    """Decoding options from the command line; what it leaves out comes from the model's ``kgqa.json``."""
    from kgqa.model.checkpoint import read_training_info

    source = Path(getattr(args, "decoding_from", None) or args.model)
    changes: dict = {
        "num_beams": args.beams,
        "constrained": not args.unconstrained,
        "lookahead": not args.no_lookahead,
        "batch_size": args.batch_size,
        "lookahead_strength": args.lookahead_strength,
        "search": getattr(args, "search", None),
        "search_margin": getattr(args, "search_margin", None),
        "abstain_below": getattr(args, "abstain_below", None),
    }
    if getattr(args, "no_rerank", False):
        changes |= {"rerank_relation_weight": 0.0, "rerank_name_weight": 0.0, "use_ranker": False}
    if getattr(args, "no_ranker", False):
        changes["use_ranker"] = False
    return DecodeOptions.from_training_info(read_training_info(source) if source.is_dir() else {}, **changes)


def add_search_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--search",
        choices=SEARCHES,
        help="best_first: kgqa's exact top-k search over the index (default); beam: transformers' beam search",
    )
    parser.add_argument(
        "--search-margin",
        type=float,
        help="best_first with the learned ranker: past top_k, paths more than this many nats below a question's "
        "best are not looked for (0: the exact top k; default: the model's)",
    )


def _confidence(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a confidence between 0 and 1")
    return value


def add_abstain_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--abstain-below",
        type=_confidence,
        metavar="P",
        help="the KB does not hold an answer whose confidence is below P (default: the threshold the model's "
        "confidence was fit with; 0: never abstain)",
    )


def add_runtime_flags(parser: argparse.ArgumentParser) -> None:
    """--runtime and --quantize: what runs the model, at what precision."""
    parser.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="onnx",
        help="onnx: ONNX Runtime on the exported graphs (default); torch: transformers, the reference",
    )
    parser.add_argument("--quantize", action="store_true", help="the model's int8 layers: faster decoding")
