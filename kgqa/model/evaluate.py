"""Batch evaluation and prediction files: KgCLUE's official metrics and its submission format."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from kgqa.data import METRIC_KEYS, Answer, Question, evaluate_answers, read_questions
from kgqa.data.questions import take_shard
from kgqa.data.report import markdown_table
from kgqa.model.answerer import QuestionAnswerer
from kgqa.model.candidate import top_answers
from kgqa.model.peer import LongestNamePeer
from kgqa.model.workers import answer_in_workers
from kgqa.trie import KBIndex


def write_predictions(questions: Sequence[Question], answers: Sequence[Answer | None], out: str | Path) -> None:
    """One JSON object a line, ``{"id", "answer": "S ||| P ||| O"}``; no KB path -> ``"answer": ""``."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        for q, a in zip(questions, answers, strict=True):
            f.write(json.dumps({"id": q.id, "answer": a.format() if a else ""}, ensure_ascii=False) + "\n")


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
    result["decoding"] = asdict(answerer.options) | {"device": str(answerer.model.device), "workers": workers}
    return result


def predict_file(
    answer_all: Callable[[list[str]], list[Answer | None]],
    qa_file: str | Path,
    out: str | Path,
    shard: tuple[int, int] | None = None,
) -> tuple[int, int]:
    """Write the submission file of ``qa_file`` (or of its ``shard``: index, count) with the answers of
    ``answer_all`` (any engine); returns (questions, questions with no KB path)."""
    questions = read_questions(qa_file)
    if shard is not None:
        questions = take_shard(questions, *shard)
    answers = answer_all([q.question for q in questions])
    write_predictions(questions, answers, out)
    return len(questions), sum(a is None for a in answers)


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
