"""The data room's commands: ``kgqa data locate`` and ``kgqa metrics`` (KgCLUE's official metrics of a file)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_data_commands(commands: argparse._SubParsersAction) -> None:
    data = commands.add_parser("data", help="KgCLUE data files").add_subparsers(dest="data_command", required=True)
    locate = data.add_parser(
        "locate",
        help="print the KgCLUE data directory ($KGQA_DATA_DIR, ./data/kgclue, "
        "../shared/kgclue, else download the question files)",
    )
    locate.add_argument("--no-download", dest="download", action="store_false")
    locate.set_defaults(run=_cmd_data_locate)

    metrics = commands.add_parser("metrics", help="KgCLUE's official metrics of a prediction file against gold")
    metrics.add_argument("--pred", type=Path, required=True, help='JSON lines {"id", "answer": "S ||| P ||| O"}')
    metrics.add_argument("--gold", type=Path, required=True, help="KgCLUE question file with answers")
    metrics.add_argument("--json", type=Path, help="also write the metrics here")
    metrics.set_defaults(run=_cmd_metrics)


def _cmd_data_locate(args: argparse.Namespace) -> int:
    from kgqa.data.locate import find_data_dir, knowledge_file

    directory = find_data_dir(download=args.download)
    print(directory)
    if knowledge_file(directory) is None:
        print(
            f"note: {directory} has no knowledge file; `kgqa prepare` uses the question files' answer triples",
            file=sys.stderr,
        )
    return 0


def _cmd_metrics(args: argparse.Namespace) -> int:
    from kgqa.data.metrics import METRIC_KEYS, evaluate_answers
    from kgqa.data.questions import read_predictions, read_questions

    gold = read_questions(args.gold)
    predicted = read_predictions(args.pred)
    missing = [q.id for q in gold if q.id not in predicted]
    if missing:
        print(f"note: {len(missing)} gold questions have no prediction and count as wrong", file=sys.stderr)
    metrics = evaluate_answers([predicted.get(q.id) for q in gold], [q.answer for q in gold if q.answer])
    print("  ".join(f"{k} {metrics[k]:.3f}" for k in METRIC_KEYS))
    if args.json:
        Path(args.json).write_text(json.dumps(metrics, indent=2) + "\n")
    return 0
