"""``kgqa bench ...``: synthetic and renamed KBs, the index and decoding benchmarks, the evaluation table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kgqa.data.locate import DEFAULT_INDEX_DIR, find_data_dir
from kgqa.data.report import markdown_table, write_json
from kgqa.model.flags import add_runtime_flags, add_search_flag, decode_options
from kgqa.model.options import DEFAULT_BEAMS


def add_bench_commands(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="benchmarks").add_subparsers(dest="bench_command", required=True)
    synth = bench.add_parser("synth-kb", help="write a synthetic KB shaped like KgCLUE's")
    synth.add_argument("--triples", type=int, default=20_559_652)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--out", type=Path, required=True, help="knowledge file (.gz to compress)")
    synth.set_defaults(run=_cmd_bench_synth)
    unseen = bench.add_parser(
        "unseen-kb", help="a KB and dev file whose answer names carry characters the model has never seen (seeded)"
    )
    unseen.add_argument("--model", type=Path, required=True, help="whose vocabulary counts as seen")
    unseen.add_argument("--qa", type=Path, required=True, help="questions with answers (dev.json)")
    unseen.add_argument("--kb", type=Path, help="knowledge file (default: the KgCLUE-sim KB)")
    unseen.add_argument("--share", type=float, default=0.1, help="share of the questions renamed (%(default)s)")
    unseen.add_argument("--seed", type=int, default=0)
    unseen.add_argument("--out", type=Path, required=True, help="directory for knowledge.tsv.gz and question files")
    unseen.set_defaults(run=_cmd_bench_unseen)
    bidx = bench.add_parser("index", help="index build/size/load/query benchmark against a GENRE-style baseline")
    bidx.add_argument("--kb", type=Path, action="append", required=True)
    bidx.add_argument("--work", type=Path, default=Path("bench/index"), help="where the index is built")
    bidx.add_argument("--json", type=Path, help="write the results as JSON")
    bidx.add_argument("--queries", type=int, default=2000, help="random real prefixes per depth (%(default)s)")
    bidx.add_argument(
        "--baseline-seconds", type=float, default=20.0, help="time budget of the baseline per depth (%(default)s)"
    )
    bidx.add_argument("--seed", type=int, default=0)
    bidx.add_argument("--heavy-threshold", type=int)
    bidx.add_argument("--reuse", action="store_true", help="reuse an index already built in --work")
    bidx.set_defaults(run=_cmd_bench_index)
    bdec = bench.add_parser("decode", help="constrained vs unconstrained decoding time, side by side")
    bdec.add_argument("--model", type=Path, required=True)
    bdec.add_argument("--index", type=Path, default=DEFAULT_INDEX_DIR)
    bdec.add_argument("--qa", type=Path, required=True)
    bdec.add_argument("--limit", type=int, default=1000, help="questions to decode per variant (%(default)s)")
    bdec.add_argument("--beams", type=int, default=DEFAULT_BEAMS)
    add_search_flag(bdec)
    add_runtime_flags(bdec)
    bdec.add_argument("--batch-size", type=int, default=64)
    bdec.add_argument("--rounds", type=int, default=3)
    bdec.add_argument("--json", type=Path)
    bdec.set_defaults(run=_cmd_bench_decode, unconstrained=False, no_lookahead=False, lookahead_strength=None)

    btab = bench.add_parser("table", help="markdown table of `kgqa evaluate/baseline --json` files")
    btab.add_argument("files", type=Path, nargs="+")
    btab.set_defaults(run=_cmd_bench_table)


def _cmd_bench_synth(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kgqa.bench.synthetic import write_synthetic_kb

    with tqdm(total=args.triples, desc="synthetic KB", unit="triple", unit_scale=True) as bar:
        counts = write_synthetic_kb(args.out, args.triples, args.seed, progress=bar.update)
    print(f"{args.out}: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in counts.items()))
    return 0


def _cmd_bench_unseen(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from kgqa.bench.unseen import write_unseen_set
    from kgqa.data import read_questions
    from kgqa.model.tokenizer import load_tokenizer, single_char_vocab

    known = set(single_char_vocab(load_tokenizer(args.model)))
    kb = args.kb or find_data_dir() / "knowledge_sim_dev.tsv.gz"
    with tqdm(desc="unseen-character KB", unit="triple", unit_scale=True) as bar:
        made = write_unseen_set(kb, read_questions(args.qa), known, args.share, args.seed, args.out, bar.update)
    new_chars = sorted({ch for new in made.renamed.values() for ch in new} - known)
    print(
        f"{args.out}: {len(made.changed_ids):,} questions renamed ({len(made.renamed):,} names, "
        f"{made.triples_renamed:,} of {made.triples:,} triples), {len(new_chars):,} characters the model has never "
        f"seen (e.g. {''.join(new_chars[:8])})"
    )
    return 0


def _cmd_bench_index(args: argparse.Namespace) -> int:
    from kgqa.bench.index import bench_index, format_table

    result = bench_index(
        args.kb, args.work, args.queries, args.baseline_seconds, args.seed, args.heavy_threshold, reuse=args.reuse
    )
    print(format_table(result))
    write_json(args.json, result)
    return 0


def _cmd_bench_decode(args: argparse.Namespace) -> int:
    from kgqa.bench.decode import bench_decode, format_decode_table
    from kgqa.data.questions import read_questions
    from kgqa.model.answerer import QuestionAnswerer

    answerer = QuestionAnswerer.load(
        args.model, args.index, decode_options(args), quantize=args.quantize, runtime=args.runtime
    )
    questions = [q.question for q in read_questions(args.qa)][: args.limit]
    result = bench_decode(answerer, questions, rounds=args.rounds)
    print(format_decode_table(result))
    write_json(args.json, result)
    return 0


def _cmd_bench_table(args: argparse.Namespace) -> int:
    """A markdown table of evaluation JSON files (``kgqa evaluate/baseline --json``), one row each."""
    from kgqa.data.metrics import METRIC_KEYS

    rows = []
    for path in args.files:
        result = json.loads(path.read_text(encoding="utf-8"))
        rows.append(
            [result.get("label") or path.stem, *(f"{result[k]:.2f}" for k in METRIC_KEYS), f"{result['seconds']:.1f}"]
        )
    print(markdown_table(["system", *METRIC_KEYS, "seconds"], rows))
    return 0
