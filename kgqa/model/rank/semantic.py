"""The ranker's meaning features: how near a path's relation and meaning are, by pretrained word vectors and Cilin
synonym groups (``kgqa.model.rank.words``), to what the question asks.

Characters cannot bridge a paraphrase (什么时候召开 asks for 会期, 怎么来的 for 得名). Two groups bridge it:

- ``neighbours``: the relations of the training questions worded most like this one (``kgqa.model.rank.neighbours``)
  against the candidate's relation, by the cosine of their word vectors (a text's vector: the mean of its words'
  unit vectors, renormalised): the weighted mean, the best, the gap to the question's best candidate, and how many
  of the name's relations fit better; and the same neighbours' meanings against the candidate's meaning (the weighted
  mean, its gap to the best homonym of the same name and relation, and how much of the neighbours had a meaning);
- ``words``: the question's own words against the relation's, by Cilin: the share of the relation's words that share
  a synonym group with a question word, strictly and one level up.

Like every feature, these read how a path's words relate to the question's and to training relations, never which
relation it is: a relation renamed consistently changes only these features' inputs. A text with no word that has a
vector (or no Cilin entry) gives 0.0. The question's words are those of the question without the candidate's name
(``QuestionFacts.rest``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from kgqa.data import normalize
from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.model.rank.neighbours import NEIGHBOURS_FILE, TemplateNeighbours
from kgqa.model.rank.words import WORDS_MANIFEST, WordKnowledge

NEIGHBOURS_GROUP: dict[str, tuple[str, ...]] = {
    "neighbours": (
        "neighbour_vector",
        "neighbour_vector_best",
        "neighbour_vector_gap",
        "neighbour_vector_rank",
        "neighbour_meaning",
        "neighbour_meaning_gap",
        "neighbour_meaning_share",
    )
}
WORDS_GROUP: dict[str, tuple[str, ...]] = {"words": ("relation_cilin", "relation_cilin_broad")}


class SemanticFeatures:
    """The ``neighbours`` (when given) and ``words`` groups' columns for a question's candidates."""

    def __init__(self, words: WordKnowledge, neighbours: TemplateNeighbours | None = None) -> None:
        self.words = words
        self.neighbours = neighbours
        self.groups = (NEIGHBOURS_GROUP if neighbours is not None else {}) | WORDS_GROUP
        self.names: tuple[str, ...] = tuple(name for group in self.groups.values() for name in group)
        # relations recur across questions: each one's vector and groups are computed once
        self.vector = lru_cache(maxsize=8192)(self._vector)
        self.cilin = lru_cache(maxsize=8192)(self._cilin)
        self._relations = self._vectors(neighbours.relations.names if neighbours is not None else [])
        self._meanings = self._vectors(neighbours.meanings.names if neighbours is not None else [])

    @staticmethod
    def present(directory: str | Path) -> bool:
        """Whether a model directory has word files (the neighbours are optional beside them)."""
        return WordKnowledge.present(directory)

    @classmethod
    def load(cls, directory: str | Path, neighbours: bool = True) -> SemanticFeatures:
        """The word files, and the neighbours where there are (``neighbours``: and are asked for); WordsLoadError
        or ValueError when a file is missing, foreign or of another format."""
        words = WordKnowledge.load(directory)
        found = TemplateNeighbours.load(directory) if neighbours and TemplateNeighbours.present(directory) else None
        return cls(words, found)

    def files(self, directory: str | Path) -> dict[str, Path | None]:
        """The files whose sha256 a ranker fit on these features records: the word manifest (which holds the word
        files' own sha256) and the neighbours."""
        directory = Path(directory)
        return {
            "words": directory / WORDS_MANIFEST,
            "neighbours": directory / NEIGHBOURS_FILE if self.neighbours is not None else None,
        }

    def _vectors(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.words.dimensions), dtype=np.float32)
        return np.stack([self.vector(t) for t in texts])

    def _vector(self, text: str) -> np.ndarray:
        """A relation's or meaning's vector: the mean of its words' unit vectors, renormalised (zeros: none)."""
        vectors = self.words.unit_vectors(self.words.segment(normalize(text), "vector"))
        if not len(vectors):
            return np.zeros(self.words.dimensions, dtype=np.float32)
        mean = vectors.mean(axis=0)
        return mean / max(float(np.linalg.norm(mean)), 1e-9)

    def _cilin(self, text: str) -> tuple[tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]]:
        # tuples of ints, not sets: the garbage collector stops tracking them, and a cache of them costs its
        # collections nothing (sets would be traversed at every full collection)
        ids = self.words.segment(text, "cilin")
        return (
            tuple(tuple(sorted(self.words.group_ids(i))) for i in ids),
            tuple(tuple(sorted(self.words.group_ids(i, broad=True))) for i in ids),
        )

    def columns(self, facts: QuestionFacts, candidates: Sequence[Candidate]) -> np.ndarray:
        if not candidates:
            return np.zeros((0, len(self.names)), dtype=np.float32)
        names = list(dict.fromkeys(c.name for c in candidates))
        blocks = []
        if self.neighbours is not None:
            blocks.append(self._neighbour_columns(facts, candidates, names))
        blocks.append(self._word_columns(facts, candidates))
        return np.concatenate(blocks, axis=1).astype(np.float32)

    def _neighbour_columns(self, facts: QuestionFacts, candidates: Sequence[Candidate], names: list[str]) -> np.ndarray:
        assert self.neighbours is not None
        out = np.zeros((len(candidates), 7), dtype=np.float64)
        for name in names:
            rows = [i for i, c in enumerate(candidates) if c.name == name]
            templates, sims = self.neighbours.nearest(facts.rest(name))
            ids, weights = self.neighbours.relations.of(templates, sims)
            if not len(ids):
                continue
            known = self._relations[ids]
            cosines = self._vectors([candidates[i].relation for i in rows]) @ known.T
            out[rows, 0] = cosines @ weights
            out[rows, 1] = cosines.max(axis=1)
            # every relation of the name, scored alike: how many fit the question's neighbours better
            of_name = self._vectors(sorted({p.relation for p in facts.paths(name)})) @ known.T @ weights
            out[rows, 3] = [float((of_name > score + 1e-6).sum()) for score in out[rows, 0]]
            meaning_ids, meaning_weights = self.neighbours.meanings.of(templates, sims)
            if len(meaning_ids):
                meanings = self._vectors([candidates[i].meaning for i in rows])
                out[rows, 4] = meanings @ self._meanings[meaning_ids].T @ meaning_weights
                out[rows, 6] = sims[self.neighbours.meanings.held(templates)].sum() / sims.sum()
        out[:, 2] = out[:, 0] - out[:, 0].max()
        best: dict[tuple[str, str], float] = {}
        for c, score in zip(candidates, out[:, 4], strict=True):
            best[(c.name, c.relation)] = max(best.get((c.name, c.relation), -np.inf), score)
        out[:, 5] = out[:, 4] - [best[(c.name, c.relation)] for c in candidates]
        return out

    def _word_columns(self, facts: QuestionFacts, candidates: Sequence[Candidate]) -> np.ndarray:
        asked: dict[str, tuple[frozenset[int], frozenset[int]]] = {}
        rows = []
        for c in candidates:
            if c.name not in asked:
                strict, broad = self.cilin(facts.rest(c.name))
                asked[c.name] = (frozenset(g for w in strict for g in w), frozenset(g for w in broad for g in w))
            strict, broad = self.cilin(normalize(c.relation))
            rows.append([_share(strict, asked[c.name][0]), _share(broad, asked[c.name][1])])
        return np.asarray(rows, dtype=np.float64)


def _share(part: tuple[tuple[int, ...], ...], question: frozenset[int]) -> float:
    """The share of ``part``'s words that share a Cilin group with some question word."""
    return sum(not question.isdisjoint(groups) for groups in part) / len(part) if part else 0.0
