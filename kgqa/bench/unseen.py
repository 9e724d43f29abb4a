"""A KB and question file in which a share of the answer names carry a character a model has never seen.

For measuring open vocabulary (kgqa.model.vocabulary): a seeded share of the questions whose subject name appears in
the question get one character of that name replaced by a character outside ``known`` (CJK Extension A, rare in
training text, 㐀-䶵), a different one per name. The name is renamed everywhere: in every KB head that
carries it (all its meanings and triples), in the question and in the gold answer. Everything else is copied as is.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kgqa.data.knowledge import join_head, open_binary, split_head
from kgqa.data.questions import Question

_POOL = [chr(c) for c in range(0x3400, 0x4DB6)]  # CJK Unified Ideographs Extension A


@dataclass(frozen=True)
class UnseenSet:
    renamed: dict[str, str]  # old name -> new name
    changed_ids: list[int | str]  # questions whose subject was renamed
    triples_renamed: int
    triples: int


def rename_with_unseen(
    questions: list[Question], known: set[str], share: float, seed: int
) -> tuple[list[Question], dict[str, str], list[int | str]]:
    """The questions with ``share`` of the answerable ones renamed; the renaming; the changed questions' ids."""
    rng = random.Random(seed)
    pool = [ch for ch in _POOL if ch not in known]
    rng.shuffle(pool)
    eligible = [q for q in questions if q.answer and _name(q) in q.question and len(_name(q)) >= 2]
    chosen = {q.id for q in rng.sample(eligible, round(share * len(eligible)))}
    renamed: dict[str, str] = {}
    out: list[Question] = []
    for q in questions:
        if q.id not in chosen or q.answer is None:
            out.append(q)
            continue
        name = _name(q)
        if name not in renamed:
            at = rng.randrange(len(name))
            renamed[name] = name[:at] + pool[len(renamed)] + name[at + 1 :]
        _, meaning = split_head(q.answer.subject)
        subject = join_head(renamed[name], meaning)
        out.append(Question(q.id, q.question.replace(name, renamed[name]), q.answer._replace(subject=subject)))
    return out, renamed, [q.id for q in questions if q.id in chosen]


def write_unseen_set(
    kb_path: Path,
    questions: list[Question],
    known: set[str],
    share: float,
    seed: int,
    out_dir: Path,
    progress: Callable[[int], object] | None = None,
) -> UnseenSet:
    """Write ``knowledge.tsv.gz``, ``questions.json`` (all) and ``changed.json`` / ``original.json`` (the renamed
    questions after and before) under ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    renamed_questions, renamed, changed_ids = rename_with_unseen(questions, known, share, seed)
    triples = triples_renamed = 0
    stream, raw = open_binary(kb_path)
    with raw, stream, gzip.open(out_dir / "knowledge.tsv.gz", "wt", encoding="utf-8", compresslevel=3) as out:
        for line in stream:
            text = line.decode("utf-8", errors="replace")
            head, tab, rest = text.partition("\t")
            name, meaning = split_head(head.strip())
            if tab and name in renamed:
                text = join_head(renamed[name], meaning) + tab + rest
                triples_renamed += 1
            out.write(text)
            triples += 1
            if progress and triples % 100_000 == 0:
                progress(100_000)
    changed = set(changed_ids)
    _write_questions(out_dir / "questions.json", renamed_questions)
    _write_questions(out_dir / "changed.json", [q for q in renamed_questions if q.id in changed])
    _write_questions(out_dir / "original.json", [q for q in questions if q.id in changed])
    return UnseenSet(renamed, changed_ids, triples_renamed, triples)


def _name(q: Question) -> str:
    return split_head(q.answer.subject)[0] if q.answer else ""


def _write_questions(path: Path, questions: list[Question]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for q in questions:
            record = {"id": q.id, "question": q.question}
            if q.answer:
                record["answer"] = q.answer.format()
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
