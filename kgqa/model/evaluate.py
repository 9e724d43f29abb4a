"""Batch evaluation and prediction files: KgCLUE's official metrics and its submission format."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from kgqa.data import METRIC_KEYS, Answer, Question, evaluate_answers, read_questions
from kgqa.data.abstention import ANSWERABLE
from kgqa.data.questions import take_shard
from kgqa.data.report import markdown_table
from kgqa.model.answerer import QuestionAnswerer
from kgqa.model.candidate import Prediction, top_answers, top_predictions
from kgqa.model.peer import LongestNamePeer
from kgqa.model.workers import answer_in_workers
from kgqa.trie import KBIndex


def write_predictions(questions: Sequence[Question], answers: Sequence[Answer | None], out: str | Path) -> None:
    """One JSON object a line, ``{"id", "answer": "S ||| P ||| O"}``; no KB path -> ``"answer": ""``."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for q, a in zip(questions, answers, strict=True):
            f.write(json.dumps({"id": q.id, "answer": a.format() if a else ""}, ensure_ascii=False) + "\n")


def write_abstaining_predictions(
    questions: Sequence[Question], predictions: Sequence[Prediction], out: str | Path, abstain_below: float
) -> None:
    """``{"id", "answer", "confidence"}`` a line: ``"answer": ""`` where no KB path fits or the confidence is below
    ``abstain_below`` (the KB does not hold it); ``confidence`` 0 where no KB path fits."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for q, p in zip(questions, predictions, strict=True):
            answer = p.answer.format() if p.answer is not None and p.shown(abstain_below) else ""
            line = {"id": q.id, "answer": answer, "confidence": round(p.confidence or 0.0, 4)}
            f.write(json.dumps(line, ensure_ascii=False) + "\n")


def _report(questions: Sequence[Question], answers: Sequence[Answer | None], seconds: float) -> dict[str, Any]:
    gold = [q for q in questions if q.answer is not None]
    if len(gold) != len(questions):
        raise ValueError(f"{len(questions) - len(gold)} questions have no answer to evaluate against")
    metrics = evaluate_answers(answers, [q.answer for q in gold])  # type: ignore[misc]
    return {
        **metrics,
        "questions": len(questions),
        "unanswered": sum(a is None for a in answers),
        "seconds": round(seconds, 2),
        "questions_per_second": round(len(questions) / seconds, 2) if seconds else None,
    }


def evaluate_file(
    answerer: QuestionAnswerer,
    qa_file: str | Path,
    limit: int | None = None,
    predictions_out: str | Path | None = None,
    skip: int = 0,
    workers: int = 1,
) -> dict[str, Any]:
    """Answer every question of a file with answers (in ``workers`` processes: ``answer_in_workers``); metrics,
    counts and timing (model loading excluded)."""

    def answer_all(questions: list[Question]) -> list[Answer | None]:
        found = answer_in_workers(answerer, [q.question for q in questions], workers, progress=True)
        return top_answers(found)

    result = _evaluate(qa_file, skip, limit, predictions_out, answer_all)
    result["decoding"] = asdict(answerer.options) | _runtime_of(answerer) | {"workers": workers}
    return result


def predict_file(
    answer_all: Callable[[list[str]], list[Prediction]],
    qa_file: str | Path,
    out: str | Path,
    shard: tuple[int, int] | None = None,
    abstain_below: float | None = None,
) -> tuple[int, int, int]:
    """Write the submission file of ``qa_file`` (or of its ``shard``: index, count) with the answers of
    ``answer_all`` (any engine): KgCLUE's format, or with ``abstain_below`` the abstaining one with confidences.
    Returns (questions, questions with no KB path, questions abstained on)."""
    questions = read_questions(qa_file)
    if shard is not None:
        questions = take_shard(questions, *shard)
    predictions = answer_all([q.question for q in questions])
    if abstain_below is None:
        write_predictions(questions, [p.answer for p in predictions], out)
        abstained = 0
    else:
        write_abstaining_predictions(questions, predictions, out, abstain_below)
        abstained = sum(p.answer is not None and not p.shown(abstain_below) for p in predictions)
    return len(questions), sum(p.answer is None for p in predictions), abstained


def is_mix(questions: Sequence[Question]) -> bool:
    """A question file with unanswerable questions (``kgqa data unanswerable``): it is scored in SQuAD 2.0's terms."""
    return any(q.kind is not None for q in questions)


def evaluate_mix(
    answerer: QuestionAnswerer,
    qa_file: str | Path,
    workers: int = 1,
    predictions_out: str | Path | None = None,
    plot_out: str | Path | None = None,
) -> dict[str, Any]:
    """Answer a mix of answerable and unanswerable questions, abstaining below the answerer's threshold; HasAns
    EM_O, NoAns accuracy by kind, overall, AUROC, coverage at 95/99% precision, ECE, and the risk-coverage plot."""
    from kgqa.data.abstention import abstention_report
    from kgqa.data.metrics import object_right

    threshold = answerer.abstain_below
    if threshold is None:
        raise ValueError(
            f"{Path(qa_file).name} holds unanswerable questions, and this model has no confidence to abstain by: "
            "fit one with `make confidence` (or evaluate a file without them)"
        )
    questions = read_questions(qa_file)
    start = time.perf_counter()
    found = answer_in_workers(answerer, [q.question for q in questions], workers, progress=True)
    seconds = time.perf_counter() - start
    predictions = top_predictions(found)
    confidence = np.array([p.confidence if p.confidence is not None else 0.0 for p in predictions])
    right = np.array([object_right(p.answer, q.answer) for q, p in zip(questions, predictions, strict=True)])
    kinds = [q.kind or ANSWERABLE for q in questions]
    result = abstention_report(kinds, right, confidence < threshold, confidence)
    result |= {"threshold": threshold, "seconds": round(seconds, 2)}
    if predictions_out:
        write_abstaining_predictions(questions, predictions, predictions_out, threshold)
    if plot_out:
        from kgqa.model.plots import plot_risk_coverage

        result["plot"] = Path(plot_out).name
        plot_risk_coverage(confidence, right, kinds, threshold, plot_out, Path(qa_file).parent.name or "mix")
    result["decoding"] = asdict(answerer.options) | _runtime_of(answerer) | {"workers": workers}
    return result


def format_mix(result: dict[str, Any]) -> str:
    kinds = list(result["NoAns_by_kind"])
    return markdown_table(
        ["HasAns EM_O", *[f"NoAns {k}" for k in kinds], "NoAns", "overall", "AUROC", "cov@95%P", "cov@99%P", "ECE"],
        [
            [
                f"{result['HasAns_EM_O']:.2f}",
                *(f"{result['NoAns_by_kind'][k]:.2f}" for k in kinds),
                f"{result['NoAns']:.2f}",
                f"{result['overall']:.2f}",
                f"{result['AUROC']:.4f}" if result["AUROC"] is not None else "-",
                f"{result['coverage_at_95_precision']:.2f}",
                f"{result['coverage_at_99_precision']:.2f}",
                f"{result['ECE_answerable']:.4f}",
            ]
        ],
        numeric_from=0,
    )


def evaluate_peer(
    index: KBIndex,
    qa_file: str | Path,
    limit: int | None = None,
    predictions_out: str | Path | None = None,
    skip: int = 0,
) -> dict[str, Any]:
    peer = LongestNamePeer(index)

    def answer_all(questions: list[Question]) -> list[Answer | None]:
        found = (peer.answer(q.question) for q in tqdm(questions, desc="peer", unit="q"))
        return [c.as_answer() if c else None for c in found]

    return _evaluate(qa_file, skip, limit, predictions_out, answer_all)


def _evaluate(
    qa_file: str | Path,
    skip: int,
    limit: int | None,
    predictions_out: str | Path | None,
    answer_all: Callable[[list[Question]], list[Answer | None]],
) -> dict[str, Any]:
    questions = _slice(read_questions(qa_file), skip, limit)
    start = time.perf_counter()
    answers = answer_all(questions)
    result = _report(questions, answers, time.perf_counter() - start)
    if predictions_out:
        write_predictions(questions, answers, predictions_out)
    return result


def _slice(questions: list[Question], skip: int, limit: int | None) -> list[Question]:
    return questions[skip : None if limit is None else skip + limit]


def format_metrics(metrics: dict[str, float]) -> str:
    return markdown_table(METRIC_KEYS, [[f"{metrics[k]:.2f}" for k in METRIC_KEYS]], numeric_from=0)


def _runtime_of(answerer: QuestionAnswerer) -> dict[str, object]:
    return {"runtime": answerer.runtime.name, "quantized": answerer.runtime.quantized}
