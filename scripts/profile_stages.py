"""Where a question's time goes, stage by stage, under each search: the answerer's own stages timed in process
(batches of 64 dev questions, or ``--batch-size``; the learned ranker on), best-first search beside transformers' beam
search.

A benchmark, not a test: prints a table (milliseconds per question) and writes JSON. Stages: the encoder, the search
(for transformers' beam search: ``generate`` with its processors, encoder excluded), the name-anchored candidates'
scores, the feature rows without the matcher, the matcher, LightGBM; then the best-first search's work per question
(decoder calls, rows fed, cached slots read, ...), counts that do not drift with the machine. HTTP and batching are
not in it: `scripts/bench_service.py` measures the service around them.

    .venv/bin/python scripts/profile_stages.py --questions 640 --quantize --json bench/stages.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from kgqa.data import read_questions
from kgqa.data.locate import find_data_dir

STAGES = ("encoder", "search", "anchored", "features", "matcher", "ranker")


def timed(clock: dict[str, float], stage: str, function: Callable, minus: tuple[str, ...] = ()) -> Callable:
    """``function`` that adds its wall time to ``clock[stage]``, less what the stages in ``minus`` took meanwhile."""

    def wrapper(*args, **kwargs):
        before = {name: clock[name] for name in minus}
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            inner = sum(clock[name] - before[name] for name in minus)
            clock[stage] += time.perf_counter() - started - inner

    return wrapper


def profile(
    model: Path, index: Path, questions: list[str], search: str, quantize: bool, batch_size: int
) -> dict[str, float]:
    from kgqa.model.answerer import QuestionAnswerer
    from kgqa.model.decode.pathscore import ScoringStats
    from kgqa.model.modeling import read_training_info
    from kgqa.model.options import DecodeOptions

    options = DecodeOptions.from_training_info(read_training_info(model), search=search, batch_size=batch_size)
    # the torch runtime: its modules are what this profile times
    answerer = QuestionAnswerer.load(model, index, options, quantize=quantize, runtime="torch")
    answerer.answer(questions[:8])  # warm-up: one-off costs out of the figures
    clock: dict[str, float] = defaultdict(float)
    proposer = answerer.proposer
    encoder = answerer.runtime.model.get_encoder()
    # transformers' beam search calls the encoder module; the best-first search calls its layers itself
    # (IncrementalDecoder.encode, with each decoder layer's cross-attention keys and values)
    encoder.forward = timed(clock, "encoder", encoder.forward)
    proposer.decoder.encode = timed(clock, "encoder", proposer.decoder.encode)
    work = None
    if search == "best_first":
        from kgqa.model.decode import search as search_module

        work = search_module.SearchStats()
        search_encoded = search_module.BestFirstSearch.search_encoded

        def counted(self, *args, **kwargs):
            try:
                return search_encoded(self, *args, **kwargs)
            finally:
                for name, value in vars(self.stats).items():
                    setattr(work, name, getattr(work, name) + value)

        search_module.BestFirstSearch.search_encoded = timed(clock, "search", counted)
    else:
        proposer.beam.search = timed(clock, "search", proposer.beam.search, minus=("encoder",))
    # the anchored pass (under the best-first search: before it, as its draft); score() runs through draft()
    proposer.scorer.draft = timed(clock, "anchored", proposer.scorer.draft)
    features = answerer.features
    if features.matcher is not None:
        features.matcher.scores_many = timed(clock, "matcher", features.matcher.scores_many)
    features.rows_many = timed(clock, "features", features.rows_many, minus=("matcher",))
    if answerer.ranker is not None:
        answerer.ranker.rank = timed(clock, "ranker", answerer.ranker.rank)
    scoring = proposer.scorer.stats = ScoringStats()  # the measured answers' alone, not the warm-up's
    started = time.perf_counter()
    answerer.answer(questions, top_k=1)
    total = time.perf_counter() - started
    per_question = {stage: 1000 * clock[stage] / len(questions) for stage in STAGES}
    per_question["other"] = 1000 * total / len(questions) - sum(per_question.values())
    per_question["total"] = 1000 * total / len(questions)
    result: dict = {k: round(v, 2) for k, v in per_question.items()}
    if work is not None:  # the search's work per question: counts, as steady as the code (unlike time here)
        result["work"] = {name: round(value / len(questions), 2) for name, value in vars(work).items()}
    result["anchored_work"] = {name: round(value / len(questions), 2) for name, value in vars(scoring).items()}
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    parser.add_argument("--index", type=Path, default=Path("indexes/kgclue-sim"))
    parser.add_argument("--qa", type=Path, help="default: KgCLUE's dev.json")
    parser.add_argument("--questions", type=int, default=640)
    parser.add_argument("--quantize", action="store_true", help="int8 Linear layers (as the service decodes)")
    parser.add_argument("--batch-size", type=int, default=64, help="questions answered together (1: one at a time)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    qa = args.qa or find_data_dir(download=False) / "dev.json"
    questions = [q.question for q in read_questions(qa)[: args.questions]]
    rows = {
        search: profile(args.model, args.index, questions, search, args.quantize, args.batch_size)
        for search in ("beam", "best_first")
    }
    precision = "int8" if args.quantize else "float32"
    batches = f"batches of {args.batch_size}"
    print(f"\nms per question, {len(questions)} questions of {qa.name}, {batches}, {precision}, ranker on\n")
    columns = (*STAGES, "other", "total")
    print("| search | " + " | ".join(columns) + " |")
    print("| --- |" + " ---: |" * len(columns))
    for search, row in rows.items():
        print(f"| {search} | " + " | ".join(f"{row[c]:.2f}" for c in columns) + " |")
    for title, work in (
        ("the best-first search's work", rows["best_first"]["work"]),
        ("the anchored paths' scoring (the search's draft)", rows["best_first"]["anchored_work"]),
    ):
        print(f"\n{title} per question (counts, not time):\n")
        print("| " + " | ".join(work) + " |")
        print("|" + " ---: |" * len(work))
        print("| " + " | ".join(f"{value:g}" for value in work.values()) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"questions": len(questions), "precision": precision, "batch_size": args.batch_size, "stages": rows},
                indent=2,
            )
        )
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
