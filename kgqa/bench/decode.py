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

from kgqa.data.report import markdown_table
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
    steps: dict[str, int] = {}
    step_count = [0]
    # Decoder calls = decoding steps summed over batches: constrained outputs are real KB paths, often longer
    # (meanings) than what the unconstrained model writes, so time per step is compared too.
    decoder = answerer.runtime.model.get_decoder()  # the torch runtime's (transformers' beam search)
    hook = decoder.register_forward_hook(lambda *_: step_count.__setitem__(0, step_count[0] + 1))
    names = list(answerers)
    try:
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                step_count[0] = 0
                start = time.perf_counter()
                results = answerers[name].answer(questions)
                seconds[name].append(time.perf_counter() - start)
                steps[name] = step_count[0]
                tokens[name] = sum(len(c[0].name) + len(c[0].relation) + len(c[0].meaning) + 3 for c in results if c)
    finally:
        hook.remove()
    base = statistics.median(seconds["unconstrained"])
    base_per_step = base / max(1, steps["unconstrained"])
    rows = [
        {
            "variant": name,
            "median_seconds": round(statistics.median(times), 3),
            "all_seconds": [round(t, 3) for t in times],
            "questions_per_second": round(len(questions) / statistics.median(times), 1),
            "ratio_to_unconstrained": round(statistics.median(times) / base, 3),
            "decoding_steps": steps[name],
            "ms_per_step": round(1000 * statistics.median(times) / max(1, steps[name]), 2),
            "per_step_ratio_to_unconstrained": round(statistics.median(times) / max(1, steps[name]) / base_per_step, 3),
            "target_tokens_of_top_answers": tokens[name],
        }
        for name, times in seconds.items()
    ]
    return {
        "questions": len(questions),
        "rounds": rounds,
        "num_beams": answerer.options.num_beams,
        "batch_size": answerer.options.batch_size,
        "device": str(answerer.runtime.model.device),
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
    }


def format_decode_table(result: dict[str, Any]) -> str:
    header = ["decoding", "median s", "questions/s", "× unconstrained", "decoding steps", "ms/step"]
    rows = [
        [
            row["variant"],
            f"{row['median_seconds']:.2f}",
            f"{row['questions_per_second']:.1f}",
            f"{row['ratio_to_unconstrained']:.3f}",
            row["decoding_steps"],
            f"{row['ms_per_step']:.1f}",
            f"{row['per_step_ratio_to_unconstrained']:.3f}",
        ]
        for row in result["rows"]
    ]
    settings = (
        f"{result['questions']} questions, beam {result['num_beams']}, batch {result['batch_size']}, "
        f"{result['rounds']} rounds on {result['device']} ({result['torch_threads']} threads)"
    )
    return settings + "\n\n" + markdown_table([*header, "× unconstrained per step"], rows)
