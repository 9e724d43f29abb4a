"""How questions word what a path holds: a translation lexicon learned on the training questions (IBM Model 1).

A question asks for a relation in its own words (什么时候建立 for 创办, 多大 for 总占地面积, 由什么引起 for 病因),
and for an answer of some form (a date, a number, a place). Dev relations never occur in train, but their characters
and their objects' forms do. So the lexicon learns t(question token | path token) by expectation-maximisation over
the training questions' gold paths, where question tokens are the characters and character bigrams of the question
without its entity name, and path tokens are the relation's characters plus the shapes of the object's first
characters (a digit, a Latin letter, or the character itself). A candidate's score is the mean log-probability of
the question's tokens given its path tokens: how well the path explains the question. It reads characters, never a
relation's identity.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from kgqa.data import Question, normalize, split_head
from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts

LEXICON_FILE = "lexicon.json"
LEXICON_FORMAT = 1
NULL = ""  # the empty path token: explains question words no path token accounts for
OBJECT_CHARS = 8
MIN_PROBABILITY = 1e-3  # smaller entries are dropped: the file stays small (3.1 MB for train.json's 18,000 paths)
FLOOR = 1e-4  # added to every token's probability: an unexplained word costs log(FLOOR), not -inf


def question_tokens(question: str, name: str) -> list[str]:
    """Characters and character bigrams of the question without (the first occurrence of) ``name``."""
    rest = normalize(question).replace(normalize(name), "", 1)
    return list(rest) + [rest[i : i + 2] for i in range(len(rest) - 1)]


def _shape(ch: str) -> str:
    if ch.isdigit():
        return "o:0"
    if ch.isascii() and ch.isalpha():
        return "o:a"
    return "o:" + ch


def path_tokens(relation: str, obj: str) -> list[str]:
    """The relation's characters and the shapes of the object's first characters (prefixed ``o:``)."""
    return [*normalize(relation), *(_shape(ch) for ch in normalize(obj)[:OBJECT_CHARS])]


class Lexicon:
    def __init__(self, table: dict[str, dict[str, float]], info: dict | None = None) -> None:
        self.table = table  # path token -> question token -> t(question token | path token)
        self.info = info or {}

    def score(self, question: Sequence[str], path: Sequence[str]) -> float:
        """Mean log-probability of the ``question`` tokens given the ``path`` tokens (and the empty token)."""
        return self.scorer(question)(path)

    def scorer(self, question: Sequence[str]) -> Callable[[Sequence[str]], float]:
        """:meth:`score` of ``question`` for any path: a question's candidates share most path tokens (their
        relations' characters, the objects' shapes), so each token's probabilities of the question's tokens are
        looked up once, not once per candidate."""
        columns: dict[str, list[float]] = {}  # path token -> t(q | token) for each question token q, in order

        def column(token: str) -> list[float]:
            found = columns.get(token)
            if found is None:
                row = self.table.get(token, {})
                found = columns[token] = [row.get(q, 0.0) for q in question]
            return found

        def score(path: Sequence[str]) -> float:
            if not question:
                return 0.0
            chosen = [column(token) for token in (*path, NULL)]
            share = 1.0 / len(chosen)
            # each question token's sum over the path tokens in path order, as the plain loop adds them
            return sum(math.log(FLOOR + share * total) for total in map(sum, zip(*chosen, strict=True))) / len(question)

        return score

    def columns(self, facts: QuestionFacts, candidates: Sequence[Candidate]) -> np.ndarray:
        """The ranker's ``lexicon`` group: each candidate's score and its gap to the question's best (rows × 2)."""
        scorers: dict[str, Callable[[Sequence[str]], float]] = {}  # by name: the question's tokens leave the name out
        values = []
        for c in candidates:
            scorer = scorers.get(c.name)
            if scorer is None:
                scorer = scorers[c.name] = self.scorer(question_tokens(facts.question, c.name))
            values.append(scorer(path_tokens(c.relation, c.object)))
        scores = np.array(values, dtype=np.float64)
        if not len(scores):
            return np.zeros((0, 2), dtype=np.float32)
        return np.stack([scores, scores - scores.max()], axis=1).astype(np.float32)

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / LEXICON_FILE
        data = {"format": LEXICON_FORMAT, "info": self.info, "table": self.table}
        path.write_text(json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        return path

    @staticmethod
    def present(directory: str | Path) -> bool:
        return (Path(directory) / LEXICON_FILE).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> Lexicon:
        """ValueError when the file is of another format (retrain it with ``kgqa ranker lexicon``)."""
        data = json.loads((Path(directory) / LEXICON_FILE).read_text(encoding="utf-8"))
        if data.get("format") != LEXICON_FORMAT:
            raise ValueError(
                f"{LEXICON_FILE} is format {data.get('format')}, this kgqa reads {LEXICON_FORMAT}: "
                "retrain it with `kgqa ranker lexicon`"
            )
        return cls(data["table"], data.get("info", {}))


def train_lexicon(questions: Sequence[Question], iterations: int = 8, progress: bool = True) -> Lexicon:
    """IBM Model 1 over the questions' gold paths: t(question token | path token), uniform to start."""
    pairs = []
    for q in questions:
        if q.answer is None:
            continue
        name = split_head(q.answer.subject)[0]
        pairs.append(([*path_tokens(q.answer.predicate, q.answer.object), NULL], question_tokens(q.question, name)))
    vocabulary = {token for _, words in pairs for token in words}
    uniform = 1.0 / max(1, len(vocabulary))
    table: dict[str, dict[str, float]] = {}
    for _ in tqdm(range(iterations), desc="lexicon (EM)", unit="iteration", disable=not progress):
        counts: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for path, words in pairs:
            columns = [table.get(x) for x in path]
            for word in words:
                weights = [c.get(word, 0.0) if c is not None else uniform for c in columns]
                total = sum(weights)
                if total <= 0.0:
                    continue
                for x, w in zip(path, weights, strict=True):
                    if w:
                        counts[x][word] += w / total
        table = {}
        for x, row in counts.items():
            total = sum(row.values())
            table[x] = {word: c / total for word, c in row.items()}
    kept = {x: {word: round(p, 6) for word, p in row.items() if p >= MIN_PROBABILITY} for x, row in table.items()}
    info = {"questions": len(pairs), "iterations": iterations, "path_tokens": len(kept)}
    return Lexicon({x: row for x, row in kept.items() if row}, info)
