"""The data room's commands: ``kgqa data locate``, ``kgqa data unanswerable`` (a mix with unanswerable questions) and
``kgqa metrics`` (KgCLUE's official metrics of a file)."""

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

    mix = data.add_parser(
        "unanswerable",
        help="a question file with unanswerable questions (entity or relation removed from the KB, out of scope) "
        "and the reduced KB",
    )
    mix.add_argument("--qa", type=Path, required=True, help="KgCLUE question file with answers (dev.json)")
    mix.add_argument("--kb", type=Path, action="append", required=True, help="knowledge file; repeat for several")
    mix.add_argument("--out", type=Path, required=True, help="directory for questions.json, knowledge.tsv.gz")
    mix.add_argument("--seed", type=int, default=0)
    mix.add_argument("--entity-share", type=float, default=0.15, help="questions whose entity is removed (0.15)")
    mix.add_argument("--relation-share", type=float, default=0.15, help="questions whose relation is removed (0.15)")
    mix.set_defaults(run=_cmd_unanswerable)


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


def _cmd_unanswerable(args: argparse.Namespace) -> int:
    from kgqa.data.questions import read_questions
    from kgqa.data.unanswerable import make_mix

    if not 0 <= args.entity_share + args.relation_share <= 1 or min(args.entity_share, args.relation_share) < 0:
        raise ValueError("--entity-share and --relation-share are shares of the questions: each 0 or more, 1 at most")
    manifest = make_mix(read_questions(args.qa), args.kb, args.out, args.seed, args.entity_share, args.relation_share)
    counts = ", ".join(f"{kind} {n:,}" for kind, n in manifest["counts"].items())
    print(f"wrote {args.out}: {counts}; {manifest['kb_triples_removed']:,} triples removed from the KB")
    print(f"next: kgqa index build --kb {Path(args.out) / 'knowledge.tsv.gz'} --out {Path(args.out) / 'index'}")
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
