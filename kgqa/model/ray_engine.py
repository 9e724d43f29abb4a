"""Batch prediction on Ray Data: the same answers as ``kgqa predict``, spread over an actor pool (one machine or a
cluster).

Each row of the dataset is one batch of ``batch_plan``: exactly the questions the local engine decodes together, so
the answers are identical (answers can depend on the batch: padding, and int8 layers quantize each batch's
activations with one scale). Each actor of the pool loads the model once and maps the index (``mmap``: actors on one
node share its pages); answers come back with their question numbers and are put back in input order. Ray is
optional (``pip install 'kgqa[ray]'``).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from kgqa.data import parse_answer
from kgqa.model.answerer import DecodeOptions, QuestionAnswerer, batch_plan
from kgqa.model.candidate import Prediction, top_predictions
from kgqa.model.runtime import DEFAULT_RUNTIME


class RayNotInstalledError(RuntimeError):
    """``--engine ray`` without Ray installed; the message says how to install it."""


def import_ray() -> Any:
    try:
        import ray
        import ray.data  # Ray Data: the [data] extra of ray
    except ImportError as exc:
        raise RayNotInstalledError(
            f"--engine ray needs Ray Data ({exc.name} is not installed): pip install 'kgqa[ray]'"
        ) from exc
    return ray


class BatchPredictor:
    """One actor of the pool: the model loaded once, the index mapped; answers one planned batch a call."""

    def __init__(
        self, model: str, index: str, options: dict[str, Any], quantize: bool, threads: int, runtime: str
    ) -> None:
        self.answerer = QuestionAnswerer.load(
            model, index, DecodeOptions(**options), quantize=quantize, runtime=runtime, threads=threads
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        found = top_predictions(self.answerer.answer([str(q) for q in batch["questions"]], top_k=1))
        return {
            "rows": list(batch["rows"]),
            "answers": [p.answer.format() if p.answer else "" for p in found],
            # NaN for none: a column of one type
            "confidences": [p.confidence if p.confidence is not None else float("nan") for p in found],
        }


def predict_with_ray(
    model: str | Path,
    index: str | Path,
    questions: list[str],
    options: DecodeOptions,
    quantize: bool = False,
    address: str | None = None,
    actors: int = 2,
    runtime: str = DEFAULT_RUNTIME,
) -> list[Prediction]:
    """The top answer of each question (None: no KB path) and its confidence, in input order, decoded by ``actors``
    Ray actors.

    Without ``address`` Ray starts on this machine (its CPUs); with one (``ray://host:10001`` or ``auto``) it joins
    that cluster, whose nodes must see the model and index at the same paths.
    """
    ray = import_ray()
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    context = ray.data.DataContext.get_current()
    context.execution_options.preserve_order = True
    cleaned = [options.clean(q) for q in questions]
    plan = batch_plan(cleaned, options.batch_size)
    results = [Prediction(None)] * len(questions)
    if not plan:
        return results
    batches = [{"rows": batch, "questions": [cleaned[i] for i in batch]} for batch in plan]
    cpus = max(1, int(ray.available_resources().get("CPU", os.cpu_count() or 1)) // actors)
    dataset = ray.data.from_items(batches, override_num_blocks=len(batches)).map(
        BatchPredictor,
        fn_constructor_kwargs={
            "model": str(Path(model).resolve()),
            "index": str(Path(index).resolve()),
            "options": asdict(options),
            "quantize": quantize,
            "threads": cpus,
            "runtime": runtime,
        },
        concurrency=actors,
        num_cpus=cpus,
    )
    for done in dataset.iter_rows():
        for i, answer, confidence in zip(done["rows"], done["answers"], done["confidences"], strict=True):
            known = confidence is not None and not math.isnan(confidence)
            results[int(i)] = Prediction(parse_answer(answer) if answer else None, float(confidence) if known else None)
    return results
