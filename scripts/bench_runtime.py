"""The two runtimes side by side: ONNX Runtime (what kgqa answers with) against torch (the reference), each at float32
and int8, on the same model, index and questions, alternated so the machine's drift falls on both.

Measures, per runtime and precision:
- start-up: `kgqa serve` from exec to /readyz 200, and `kgqa ask` wall time (one question);
- the service (1 worker): single-question p50 and questions/s at concurrency 32 (scripts/bench_service.py's client);
- `kgqa predict` over dev, start-up included, and its EM_O (ranker on);
- the same answers: each prediction file against torch float32's (the top answer, question by question).

A benchmark, not a test: prints a table, writes JSON.

    .venv/bin/python scripts/bench_runtime.py --json bench/runtime.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import timed
from bench_service import load

from kgqa.bench.process import ServerProcess
from kgqa.data import evaluate_answers, parse_answer, read_questions
from kgqa.data.locate import find_data_dir
from kgqa.data.report import markdown_table, write_json

KGQA = [sys.executable, "-m", "kgqa.cli"]
SETTINGS = {  # label: runtime flags
    "onnx float32": ["--runtime", "onnx"],
    "torch float32": ["--runtime", "torch"],
    "onnx int8": ["--runtime", "onnx", "--quantize"],
    "torch int8": ["--runtime", "torch", "--quantize"],
}
REFERENCE = "torch float32"
QUESTION = "你知道守望星光是哪家公司出品的吗？"


def serve_flags(flags: list[str]) -> list[str]:
    """kgqa serve's spelling of the runtime flags (its int8 is on by default)."""
    return [flags[0], flags[1], *([] if "--quantize" in flags else ["--no-quantize"])]


def start_up(model: Path, index: Path, flags: list[str]) -> float:
    server = ServerProcess(model, index, *serve_flags(flags))
    started = time.perf_counter()
    server.start()
    seconds = time.perf_counter() - started
    server.stop()
    return seconds


def service(model: Path, index: Path, flags: list[str], questions: list[str], seconds: float) -> dict:
    server = ServerProcess(model, index, *serve_flags(flags)).start()
    try:
        single = asyncio.run(load(server.url, questions, 1, seconds, 2000))
        loaded = asyncio.run(load(server.url, questions, 32, seconds, 4000))
    finally:
        server.stop()
    return {
        "p50_ms": single["p50_ms"],
        "qps_32": loaded["questions_per_second"],
        "errors": single["errors"] + loaded["errors"],
    }


def answers_of(path: Path) -> list[str]:
    return [json.loads(line)["answer"] for line in path.read_text(encoding="utf-8").splitlines()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    parser.add_argument("--index", type=Path, default=Path("indexes/kgclue-sim"))
    parser.add_argument("--rounds", type=int, default=2, help="alternated rounds of each timing")
    parser.add_argument("--seconds", type=float, default=15.0, help="per service load level")
    parser.add_argument("--work", type=Path, default=Path("bench/runtime"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    dev = find_data_dir(download=False) / "dev.json"
    gold = read_questions(dev)
    questions = [q.question for q in gold]
    args.work.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {label: {"start_up_s": [], "ask_s": [], "predict_s": []} for label in SETTINGS}
    for round_number in range(args.rounds):
        order = list(SETTINGS) if round_number % 2 == 0 else list(SETTINGS)[::-1]
        for label in order:
            flags = SETTINGS[label]
            row = results[label]
            row["start_up_s"].append(round(start_up(args.model, args.index, flags), 2))
            ask = [*KGQA, "ask", "--model", str(args.model), "--index", str(args.index), *flags, QUESTION]
            row["ask_s"].append(round(timed(ask), 2))
            out = args.work / f"{label.replace(' ', '-')}.json"
            predict = [*KGQA, "predict", "--model", str(args.model), "--index", str(args.index), "--qa", str(dev)]
            row["predict_s"].append(round(timed([*predict, *flags, "--out", str(out)]), 2))
            print(f"round {round_number + 1}, {label}: {row}", flush=True)
        for label in order:
            results[label].setdefault("service", []).append(
                service(args.model, args.index, SETTINGS[label], questions, args.seconds)
            )
            print(f"round {round_number + 1}, {label}: service {results[label]['service'][-1]}", flush=True)
    reference = answers_of(args.work / f"{REFERENCE.replace(' ', '-')}.json")
    rows = []
    for label, row in results.items():
        answers = answers_of(args.work / f"{label.replace(' ', '-')}.json")
        row["same_top_answer_as_torch_float32"] = round(
            100 * sum(a == b for a, b in zip(answers, reference, strict=True)) / len(reference), 2
        )
        parsed = [parse_answer(a) if a else None for a in answers]
        row["EM_O"] = round(evaluate_answers(parsed, [q.answer for q in gold])["EM_O"], 2)
        row["p50_ms"] = round(statistics.median(s["p50_ms"] for s in row["service"]), 1)
        row["qps_32"] = round(statistics.median(s["qps_32"] for s in row["service"]), 1)
        for key in ("start_up_s", "ask_s", "predict_s"):
            row[f"{key}_median"] = round(statistics.median(row[key]), 2)
    for label, row in results.items():  # ratios to torch at the same precision
        base = results[label.replace("onnx", "torch")]
        rows.append(
            [
                label,
                f"{row['start_up_s_median']} ({row['start_up_s_median'] / base['start_up_s_median']:.2f}×)",
                f"{row['ask_s_median']} ({row['ask_s_median'] / base['ask_s_median']:.2f}×)",
                f"{row['p50_ms']} ({row['p50_ms'] / base['p50_ms']:.2f}×)",
                f"{row['qps_32']} ({row['qps_32'] / base['qps_32']:.2f}×)",
                f"{row['predict_s_median']} ({row['predict_s_median'] / base['predict_s_median']:.2f}×)",
                row["EM_O"],
                row["same_top_answer_as_torch_float32"],
            ]
        )
    header = [
        "runtime",
        "serve → /readyz s (× torch)",
        "kgqa ask s",
        "p50 ms, 1 client",
        "q/s at 32",
        "predict dev s",
        "EM_O",
        "same top answer as torch float32 (%)",
    ]
    print(
        f"\n{len(questions):,} dev questions; medians of {args.rounds} alternated rounds; "
        "ratios to torch at the same precision\n"
    )
    print(markdown_table(header, rows))
    write_json(args.json, {"questions": len(questions), "rounds": args.rounds, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
