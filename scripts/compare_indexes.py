"""A question's time at two KB indexes, in one process: both answerers loaded side by side (the same model) and their
passes alternated, so the machine's drift falls on both alike. The service's p50 at each index (`make bench-scale`)
moves more between runs here than the two indexes differ; this isolates what the bigger index itself costs.

A benchmark, not a test: prints a table (ms per question: min and median of the passes, and by stage, the median of
each stage's time) and writes JSON. Stages are timed by wrappers around the answerer's own methods, as
`scripts/profile_stages.py` does; they overlap (the anchored pass holds its decoder call and logits).

    .venv/bin/python scripts/compare_indexes.py --index indexes/kgclue-sim --other bench/scale/index --json OUT
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from profile_stages import timed

from kgqa.data import read_questions
from kgqa.data.locate import find_data_dir
from kgqa.data.report import markdown_table, write_json


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    parser.add_argument("--index", type=Path, default=Path("indexes/kgclue-sim"))
    parser.add_argument("--other", type=Path, default=Path("bench/scale/index"))
    parser.add_argument("--qa", type=Path, help="default: KgCLUE's dev.json")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=1, help="questions answered together (1: one at a time)")
    parser.add_argument("--passes", type=int, default=6, help="passes over the questions at each index, alternated")
    parser.add_argument("--float32", action="store_true", help="float32 Linear layers (default: int8, as served)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    from kgqa.model.answerer import QuestionAnswerer
    from kgqa.model.decode.incremental import IncrementalDecoder
    from kgqa.model.decode.pathscore import PathScorer
    from kgqa.model.decode.search import BestFirstSearch
    from kgqa.model.modeling import read_training_info
    from kgqa.model.options import DecodeOptions
    from kgqa.model.propose import Proposer
    from kgqa.model.rank.features import FeatureExtractor

    # (class, method, stage); they overlap: the anchored pass holds a decoder call and logits, so does the search
    stages_timed = (
        (IncrementalDecoder, "encode", "encoder"),
        (IncrementalDecoder, "feed", "decoder calls"),
        (IncrementalDecoder, "allowed_log_probs", "allowed logits"),
        (PathScorer, "_branching", "branching positions"),
        (PathScorer, "draft", "anchored pass"),
        (BestFirstSearch, "search_encoded", "search"),
        (Proposer, "_anchor_paths", "anchored paths"),
        (FeatureExtractor, "rows_many", "features"),
    )

    qa = args.qa or find_data_dir(download=False) / "dev.json"
    questions = [q.question for q in read_questions(qa)[: args.questions]]
    clock: dict[str, float] = defaultdict(float)
    for cls, method, stage in stages_timed:
        setattr(cls, method, timed(clock, stage, getattr(cls, method)))
    options = DecodeOptions.from_training_info(read_training_info(args.model), batch_size=args.batch_size)
    names = {str(args.index): args.index, str(args.other): args.other}
    answerers = {
        name: QuestionAnswerer.load(args.model, path, options, quantize=not args.float32)
        for name, path in names.items()
    }
    batches = [questions[i : i + args.batch_size] for i in range(0, len(questions), args.batch_size)]
    for answerer in answerers.values():  # warm-up: one-off costs out of the figures
        for batch in batches[:8]:
            answerer.answer(batch)
    totals: dict[str, list[float]] = defaultdict(list)
    stages: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for done in range(args.passes):
        order = list(answerers.items()) if done % 2 == 0 else list(answerers.items())[::-1]
        for name, answerer in order:
            clock.clear()
            started = time.perf_counter()
            for batch in batches:
                answerer.answer(batch, top_k=1, explain=True)
            totals[name].append(1000 * (time.perf_counter() - started) / len(questions))
            for _, _, stage in stages_timed:
                stages[name][stage].append(1000 * clock[stage] / len(questions))

    first, second = names
    precision = "float32" if args.float32 else "int8"
    print(
        f"\nms per question, {len(questions)} questions of {qa.name}, batches of {args.batch_size}, {precision}, "
        f"{args.passes} passes at each index, alternated\n"
    )
    rows = [("total, min of passes", min(totals[first]), min(totals[second]))]
    rows.append(("total, median", statistics.median(totals[first]), statistics.median(totals[second])))
    rows += [
        (f"{stage}, median", statistics.median(stages[first][stage]), statistics.median(stages[second][stage]))
        for _, _, stage in stages_timed
    ]
    print(
        markdown_table(
            ("measure", first, second, "ratio"), [(m, f"{a:.2f}", f"{b:.2f}", f"{b / a:.2f}×") for m, a, b in rows]
        )
    )
    result = {
        "questions": len(questions),
        "batch_size": args.batch_size,
        "precision": precision,
        "passes": {name: [round(v, 2) for v in totals[name]] for name in names},
        "stages": {name: {s: [round(v, 2) for v in values] for s, values in stages[name].items()} for name in names},
    }
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
