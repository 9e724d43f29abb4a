"""Decoding benchmark: constrained vs unconstrained generation at the same beam and batch, side by side in one run.

Each round decodes the same questions once per variant, in rotating order, so drift on a noisy machine hits all
variants alike; the table reports each variant's median seconds and its ratio to unconstrained decoding.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

import torch

from kgqa.model.answerer import QuestionAnswerer

VARIANTS: dict[str, dict[str, bool]] = {
    "unconstrained": {"constrained": False, "lookahead": False},
    "constrained": {"constrained": True, "lookahead": False},
    "constrained + look-ahead": {"constrained": True, "lookahead": True},
}


def bench_decode(answerer: QuestionAnswerer, questions: Sequence[str], rounds: int = 3) -> dict[str, Any]:
    answerers = {name: answerer.with_options(**settings) for name, settings in VARIANTS.items()}
    answerers[next(iter(answerers))].answer(questions[: answerer.options.batch_size])  # warm-up
    seconds: dict[str, list[float]] = {name: [] for name in answerers}
    tokens: dict[str, int] = {}
    names = list(answerers)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            start = time.perf_counter()
            results = answerers[name].answer(questions)
            seconds[name].append(time.perf_counter() - start)
            tokens[name] = sum(len(c[0].name) + len(c[0].relation) + len(c[0].meaning) + 3 for c in results if c)
    base = statistics.median(seconds["unconstrained"])
    rows = [
        {
            "variant": name,
            "median_seconds": round(statistics.median(times), 3),
            "all_seconds": [round(t, 3) for t in times],
            "questions_per_second": round(len(questions) / statistics.median(times), 1),
            "ratio_to_unconstrained": round(statistics.median(times) / base, 3),
            "target_tokens_of_top_answers": tokens[name],
        }
        for name, times in seconds.items()
    ]
    return {
        "questions": len(questions),
        "rounds": rounds,
        "num_beams": answerer.options.num_beams,
        "batch_size": answerer.options.batch_size,
        "device": str(answerer.model.device),
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
    }


def format_decode_table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['questions']} questions, beam {result['num_beams']}, batch {result['batch_size']}, "
        f"{result['rounds']} rounds on {result['device']} ({result['torch_threads']} threads)",
        "",
        "| decoding | median s | questions/s | × unconstrained |",
        "| --- | ---: | ---: | ---: |",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['variant']} | {row['median_seconds']:.2f} | {row['questions_per_second']:.1f} "
            f"| {row['ratio_to_unconstrained']:.3f} |"
        )
    return "\n".join(lines)
