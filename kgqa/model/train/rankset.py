"""A ranking set: every candidate of each question of a file, its feature row and whether it is the gold path.

What the learned ranker is fit and evaluated on. Collecting it costs one pass of candidate proposal (the model's
decoding), so it is cached beside the evaluation outputs (``.npz`` plus the candidates as JSON lines) and reused by
the out-of-fold evaluation, every feature-group ablation and the final fit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kgqa.data import Answer, Question, evaluate_answers, parse_answer, split_head
from kgqa.model.answerer import QuestionAnswerer
from kgqa.model.candidate import Candidate
from kgqa.model.segments import SegmentScores


def is_gold(candidate: Candidate, gold: Answer) -> bool:
    """The gold path: the same KB head and relation (its object is then the gold object)."""
    return candidate.subject == gold.subject and candidate.relation == gold.predicate


@dataclass
class RankingSet:
    questions: list[Question]
    candidates: list[list[Candidate]]
    features: np.ndarray  # one row per candidate, questions in order
    labels: np.ndarray  # 1 for the gold path
    feature_names: tuple[str, ...]
    groups: dict[str, tuple[str, ...]]

    @property
    def sizes(self) -> np.ndarray:
        return np.array([len(c) for c in self.candidates], dtype=np.int64)

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.sizes)])

    def rows_of(self, question_mask: np.ndarray) -> np.ndarray:
        """Row mask of the candidates of the questions selected by ``question_mask``."""
        return np.repeat(question_mask, self.sizes)

    def columns(self, without: Sequence[str] = ()) -> list[int]:
        """Feature columns, leaving out whole groups."""
        dropped = {n for g in without for n in self.groups[g]}
        return [i for i, n in enumerate(self.feature_names) if n not in dropped]

    def without_groups(self, groups: Sequence[str]) -> RankingSet:
        """The same candidates with whole feature groups left out."""
        cols = self.columns(groups)
        kept = {g: names for g, names in self.groups.items() if g not in groups}
        names = tuple(self.feature_names[i] for i in cols)
        return RankingSet(self.questions, self.candidates, self.features[:, cols], self.labels, names, kept)

    def top_answers(self, scores: np.ndarray) -> list[Answer | None]:
        """Each question's best candidate by ``scores`` (one per row; the first on ties)."""
        offsets = self.offsets
        answers: list[Answer | None] = []
        for q, candidates in enumerate(self.candidates):
            if not candidates:
                answers.append(None)
                continue
            best = int(np.argmax(scores[offsets[q] : offsets[q + 1]]))
            answers.append(candidates[best].as_answer())
        return answers

    def metrics(self, scores: np.ndarray) -> dict[str, float]:
        return evaluate_answers(self.top_answers(scores), [q.answer for q in self.questions])  # type: ignore[misc]

    def error_kinds(self, scores: np.ndarray) -> dict[str, int]:
        """Wrong top answers (object not the gold object) by what went wrong first: name, relation or meaning;
        ``not_proposed`` counts those whose gold path was among no candidate."""
        kinds = {"name": 0, "relation": 0, "meaning": 0, "not_proposed": 0}
        for q, answer in zip(self.questions, self.top_answers(scores), strict=True):
            gold = q.answer
            if gold is None or (answer is not None and answer.object == gold.object):
                continue
            name = split_head(answer.subject)[0] if answer else ""
            if name != split_head(gold.subject)[0]:
                kinds["name"] += 1
            elif answer is not None and answer.predicate != gold.predicate:
                kinds["relation"] += 1
            else:
                kinds["meaning"] += 1
        for q, candidates in zip(self.questions, self.candidates, strict=True):
            kinds["not_proposed"] += not any(is_gold(c, q.answer) for c in candidates)  # type: ignore[arg-type]
        return kinds

    def recall_at(self, ks: Sequence[int | None]) -> dict[str, float]:
        """Share of questions whose gold path is among the beam's first k distinct paths (None: all candidates)."""
        out = {}
        for k in ks:
            hits = 0
            for q, candidates in zip(self.questions, self.candidates, strict=True):
                pool = candidates if k is None else [c for c in candidates if c.beam_rank is not None][:k]
                hits += any(is_gold(c, q.answer) for c in pool)  # type: ignore[arg-type]
            out["all" if k is None else str(k)] = round(100 * hits / max(1, len(self.questions)), 2)
        return out

    def save(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path.with_suffix(".npz"), features=self.features, labels=self.labels)
        with open(path.with_suffix(".jsonl"), "w", encoding="utf-8") as f:
            f.write(json.dumps({"features": self.feature_names, "groups": self.groups}, ensure_ascii=False) + "\n")
            for q, candidates in zip(self.questions, self.candidates, strict=True):
                row = {
                    "id": q.id,
                    "question": q.question,
                    "answer": q.answer.format() if q.answer else None,
                    "kind": q.kind,
                    "candidates": [_candidate_json(c) for c in candidates],
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RankingSet:
        path = Path(path)
        arrays = np.load(path.with_suffix(".npz"))
        with open(path.with_suffix(".jsonl"), encoding="utf-8") as f:
            head = json.loads(f.readline())
            rows = [json.loads(line) for line in f]
        return cls(
            [
                Question(r["id"], r["question"], parse_answer(r["answer"]) if r["answer"] else None, r.get("kind"))
                for r in rows
            ],
            [[_candidate_from_json(c) for c in r["candidates"]] for r in rows],
            arrays["features"],
            arrays["labels"],
            tuple(head["features"]),
            {g: tuple(names) for g, names in head["groups"].items()},
        )


def collect(answerer: QuestionAnswerer, questions: Sequence[Question], progress: bool = True) -> RankingSet:
    """Propose candidates for every question and compute their feature rows (the answerer's extractor)."""
    candidates = answerer.propose([q.question for q in questions], progress=progress)
    extractor = answerer.features
    blocks, labels = [], []
    step = 256
    for start in tqdm(range(0, len(questions), step), desc="features", unit="batch", disable=not progress):
        batch = questions[start : start + step]
        blocks += extractor.rows_many([answerer.facts(q.question) for q in batch], candidates[start : start + step])
        labels += [
            float(q.answer is not None and is_gold(c, q.answer))
            for q, cands in zip(batch, candidates[start : start + step], strict=True)
            for c in cands
        ]
    features = np.concatenate(blocks) if blocks else np.zeros((0, len(extractor.names)), dtype=np.float32)
    return RankingSet(
        list(questions),
        candidates,
        features,
        np.asarray(labels, dtype=np.float32),
        extractor.names,
        dict(extractor.groups),
    )


def _candidate_json(c: Candidate) -> dict:
    seg = c.segments
    return {
        "path": [c.name, c.relation, c.meaning, c.object],
        "log_probability": c.log_probability,
        "segments": [seg.name, seg.relation, seg.meaning] if seg else None,
        "beam_rank": c.beam_rank,
    }


def _candidate_from_json(d: dict) -> Candidate:
    name, relation, meaning, obj = d["path"]
    seg = d["segments"]
    return Candidate(
        name,
        relation,
        meaning,
        obj,
        d["log_probability"],
        log_probability=d["log_probability"],
        segments=SegmentScores(*seg) if seg else None,
        beam_rank=d["beam_rank"],
    )
