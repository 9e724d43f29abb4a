"""`kgqa predict` on dev under each search: kgqa's best-first search over the index against transformers' beam search,
with and without the learned ranker, beside transformers' unconstrained beam search (the cost a plain user pays).

A benchmark, not a test: wall time per run (process start, imports and model loading included, as a user waits for
it), the ratio to the unconstrained run of the same invocation, and EM_O of each prediction file. Then every dev
question whose answer differs between the two searches (with the ranker), with the model's score of each answer under
both. Prints tables and writes JSON.

    .venv/bin/python scripts/bench_search.py --json bench/search.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from kgqa.data import evaluate_answers, read_questions
from kgqa.data.locate import find_data_dir
from kgqa.data.questions import parse_answer

KGQA = [sys.executable, "-m", "kgqa.cli"]
RUNS = {
    "best-first search + anchored + ranker (default)": [],
    "best-first search only (--no-ranker)": ["--no-ranker"],
    # transformers' searches run on the torch runtime
    "transformers beam + anchored + ranker (--search beam)": ["--search", "beam", "--runtime", "torch"],
    "transformers beam only (--search beam --no-ranker)": ["--search", "beam", "--no-ranker", "--runtime", "torch"],
    "transformers unconstrained beam (--unconstrained --no-ranker)": [
        "--unconstrained",
        "--no-ranker",
        "--runtime",
        "torch",
    ],
}
BASELINE = "transformers unconstrained beam (--unconstrained --no-ranker)"


def timed(command: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{command} exited {result.returncode}:\n{result.stderr[-3000:]}")
    return time.perf_counter() - started


def em_o(predictions: Path, gold: list) -> float:
    """EM_O of a prediction file (an answer that is no KB path, as unconstrained decoding may write, counts wrong)."""
    answers = []
    for line in predictions.read_text(encoding="utf-8").splitlines():
        try:
            answers.append(parse_answer(json.loads(line)["answer"]))
        except ValueError:
            answers.append(None)
    return round(evaluate_answers(answers, [q.answer for q in gold])["EM_O"], 2)


def changed_answers(model: Path, index: Path, questions: list, quantize: bool) -> list[dict]:
    """Questions whose best answer differs between the searches (ranker on), with both answers' scores."""
    from kgqa.model.answerer import QuestionAnswerer
    from kgqa.model.modeling import read_training_info
    from kgqa.model.options import DecodeOptions

    options = DecodeOptions.from_training_info(read_training_info(model), search="best_first")
    exact = QuestionAnswerer.load(model, index, options, quantize=quantize, runtime="torch")  # beam's runtime
    beam = exact.with_options(search="beam")
    texts = [q.question for q in questions]
    found, beamed = exact.answer(texts, top_k=1), beam.answer(texts, top_k=1)
    changes = []
    for q, f, b in zip(questions, found, beamed, strict=True):
        if (f[0].as_answer() if f else None) != (b[0].as_answer() if b else None):
            changes.append(
                {
                    "id": q.id,
                    "question": q.question,
                    "gold": q.answer.format(),
                    "best_first": _best(f),
                    "beam": _best(b),
                }
            )
    return changes


def _best(candidates: list) -> dict | None:
    """The best candidate's answer and scores, for the list of changed answers."""
    if not candidates:
        return None
    best = candidates[0]
    return {"answer": best.as_answer().format(), "log_prob": best.log_probability, "ranker": best.score}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    parser.add_argument("--index", type=Path, default=Path("indexes/kgclue-sim"))
    parser.add_argument("--qa", type=Path, help="default: KgCLUE's dev.json")
    parser.add_argument("--quantize", action="store_true", help="int8 Linear layers (as the service decodes)")
    parser.add_argument("--runtime", choices=("onnx", "torch"), default="onnx", help="the best-first runs' runtime")
    parser.add_argument("--work", type=Path, default=Path("bench/search"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    qa = args.qa or find_data_dir(download=False) / "dev.json"
    gold = read_questions(qa)
    args.work.mkdir(parents=True, exist_ok=True)
    base = [*KGQA, "predict", "--model", str(args.model), "--index", str(args.index), "--qa", str(qa)]
    base += ["--quantize"] if args.quantize else []
    rows: dict[str, dict] = {}
    for n, (label, flags) in enumerate(RUNS.items()):
        out = args.work / f"run-{n}.json"
        runtime = [] if "--runtime" in flags else ["--runtime", args.runtime]
        seconds = timed([*base, *flags, *runtime, "--out", str(out)])
        rows[label] = {"seconds": round(seconds, 1), "EM_O": em_o(out, gold), "file": out.name}
        print(f"{label}: {rows[label]}", flush=True)
    for row in rows.values():
        row["ratio_to_unconstrained"] = round(row["seconds"] / rows[BASELINE]["seconds"], 2)
    changes = changed_answers(args.model, args.index, gold, args.quantize)
    right = sum(c["best_first"] is not None and c["best_first"]["answer"] == c["gold"] for c in changes)
    beam_right = sum(c["beam"] is not None and c["beam"]["answer"] == c["gold"] for c in changes)

    precision = "int8 (--quantize)" if args.quantize else "float32"
    print(f"\n{len(gold):,} questions of {qa.name}, {precision}; wall time of `kgqa predict`, start-up included\n")
    print("| pipeline | seconds | × unconstrained | EM_O (ranker in-sample on dev) |")
    print("| --- | ---: | ---: | ---: |")
    for label, row in rows.items():
        print(f"| {label} | {row['seconds']} | {row['ratio_to_unconstrained']} | {row['EM_O']} |")
    print(
        f"\nanswers that differ between the searches (ranker on): {len(changes)}; right under best-first {right}, "
        f"under beam {beam_right}"
    )
    for c in changes:
        f, b = c["best_first"] or {}, c["beam"] or {}
        print(
            f"- {c['question']} | gold {c['gold']} | best-first {f.get('answer')} (log-prob {f.get('log_prob', 0):.3f},"
            f" ranker {f.get('ranker', 0):.3f}) | beam {b.get('answer')} (log-prob {b.get('log_prob', 0):.3f}, "
            f"ranker {b.get('ranker', 0):.3f})"
        )
    if args.json:
        result = {"questions": len(gold), "precision": precision, "runs": rows, "changed_answers": changes}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
