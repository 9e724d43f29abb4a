"""KgCLUE question files: JSON lines ``{"id", "question", "answer": "S ||| P ||| O"}`` (``test.json`` has no answer)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar

ANSWER_SEPARATOR = " ||| "
# The longest question kgqa decodes: the API refuses longer ones, the CLI cuts them (KgCLUE's longest is 54).
MAX_QUESTION_CHARS = 256
T = TypeVar("T")


class Answer(NamedTuple):
    subject: str
    predicate: str
    object: str

    def format(self) -> str:
        return ANSWER_SEPARATOR.join(self)


@dataclass(frozen=True)
class Question:
    id: int | str
    question: str
    answer: Answer | None = None
    # in a mix with unanswerable questions (kgqa.data.unanswerable): answerable, entity, relation or out_of_scope
    kind: str | None = None


class QuestionFileError(ValueError):
    """A question file line that is not a KgCLUE question; the message names the file and line."""


def parse_answer(text: str) -> Answer:
    """Parse ``"S ||| P ||| O"``; tolerant of spacing around ``|||`` (the metric normalises white space anyway)."""
    parts = text.split(ANSWER_SEPARATOR)
    if len(parts) != 3:
        parts = text.split("|||")
    if len(parts) != 3:
        raise ValueError(f"answer is not 'S ||| P ||| O': {text!r}")
    # Outer spaces are padding (some KgCLUE answers have them); the KB reader strips its fields the same way.
    return Answer(*(p.strip() for p in parts))


def parse_shard(spec: str) -> tuple[int, int]:
    """``"I/N"`` (0 ≤ I < N) as ``(I, N)``: the I-th of N shards, as Kubernetes Indexed Jobs and Slurm arrays number."""
    index, _, count = spec.partition("/")
    if not (index.isdigit() and count.isdigit() and 0 <= int(index) < int(count)):
        raise ValueError(f"a shard is I/N with 0 <= I < N, e.g. 0/4 (got {spec!r})")
    return int(index), int(count)


def take_shard(items: list[T], index: int, count: int) -> list[T]:
    """The ``index``-th of ``count`` contiguous parts of ``items``, sizes differing by at most one: the shards, in
    order, concatenate to ``items`` (so their prediction files do too)."""
    return items[index * len(items) // count : (index + 1) * len(items) // count]


def read_questions(path: str | Path) -> list[Question]:
    """Read a KgCLUE question file. Blank lines are ignored; anything else malformed raises QuestionFileError."""
    return list(_json_lines(path, "question", _question))


def read_predictions(path: str | Path) -> dict[int | str, Answer | None]:
    """A submission file (``{"id", "answer": "S ||| P ||| O"}`` a line) by id; an empty answer is None."""
    return dict(_json_lines(path, "prediction", _prediction))


def _question(record: dict) -> Question:
    answer = record.get("answer")
    return Question(
        id=record["id"],
        question=str(record["question"]),
        answer=parse_answer(answer) if answer is not None else None,
        kind=str(record["kind"]) if record.get("kind") is not None else None,
    )


def _prediction(record: dict) -> tuple[int | str, Answer | None]:
    answer = record["answer"]
    return record["id"], parse_answer(answer) if answer else None


def _json_lines(path: str | Path, kind: str, parse: Callable[[dict], T]) -> Iterator[T]:
    """``parse`` of each non-blank JSON line; a line it cannot parse raises QuestionFileError naming file and line."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield parse(json.loads(line))
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise QuestionFileError(f"{path}:{line_no}: not a KgCLUE {kind} line ({exc})") from exc


def answer_triples(questions: Iterable[Question]) -> Iterator[tuple[str, str, str]]:
    """The answer triples of questions, as ``(head, relation, tail)``: the 'easy' KB derived from question files."""
    for q in questions:
        if q.answer is not None:
            yield tuple(q.answer)  # type: ignore[misc]


def write_answer_kb(questions: Iterable[Question], out: str | Path) -> int:
    """Write the distinct answer triples as a knowledge file (``head<TAB>relation<TAB>tail``); returns their count."""
    seen = dict.fromkeys(answer_triples(questions))
    with open(out, "w", encoding="utf-8") as f:
        for triple in seen:
            f.write("\t".join(triple) + "\n")
    return len(seen)
