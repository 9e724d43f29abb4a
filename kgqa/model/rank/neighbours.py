"""The training questions nearest to a question, and the relations and meanings they asked about.

KgCLUE words a question about a relation from a few templates (什么时候召开, 在哪里啊, 怎么来的); dev and test relations
never occur in train, but relations that *mean* the same often do (创办时间 for 创办, 名字由来 for 得名, 功能主治 for
适应症). So a question's template — its text without the entity name — is matched against the training questions'
templates (TF-IDF over characters and character bigrams, cosine), and the relations of the ``NEIGHBOURS`` nearest
become the relations the question probably means, weighted by similarity; likewise the meanings (the kind of entity:
哪个书里的角色 asks about a 小说中的人物). ``kgqa.model.rank.semantic`` compares a candidate's relation and meaning with
them by word vectors: a relation never seen in training is judged by its distance to relations that were.

Learned by ``kgqa ranker neighbours`` from train.json into ``neighbours.npz`` beside the model: the templates'
normalised TF-IDF rows (CSR), the grams and their IDF, and each template's relations and meanings with their counts.
"""

from __future__ import annotations

import io
import zipfile
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kgqa.data import Question, normalize, split_head

NEIGHBOURS_FILE = "neighbours.npz"
NEIGHBOURS_FORMAT = 1
NEIGHBOURS = 20  # templates consulted a question (10–40 measured within 0.2 EM_O out-of-fold: docs/evaluation.md)
DENSE_FROM = 64  # grams in more templates than this are dense rows (283 of 10,377 grams for train.json, 9.9 MB)
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)  # zip members' time: the same questions give the same bytes
_NONE = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)


def template(question: str, name: str) -> str:
    """The question without (the first occurrence of) its entity name."""
    return normalize(question).replace(normalize(name), "", 1)


def grams(text: str) -> set[str]:
    """Characters and character bigrams."""
    return {*text, *(text[i : i + 2] for i in range(len(text) - 1))}


@dataclass
class TemplateLabels:
    """What each template's questions asked about (relations, or meanings), with counts; templates in rows (CSR)."""

    names: list[str]
    indptr: np.ndarray
    ids: np.ndarray
    counts: np.ndarray

    def __post_init__(self) -> None:
        self._lengths = np.diff(self.indptr)
        totals = np.add.reduceat(self.counts, self.indptr[:-1][self._lengths > 0]) if len(self.counts) else []
        self._shares = self.counts / np.repeat(totals, self._lengths[self._lengths > 0])  # share of its template

    def of(self, templates: np.ndarray, sims: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The labels of ``templates``: ids and weights (each template's cosine shared among its labels by count),
        summing to 1; empty when these templates have none."""
        lengths = self._lengths[templates]
        if not lengths.sum():
            return _NONE
        ends = np.cumsum(lengths)
        at = np.arange(ends[-1]) + np.repeat(self.indptr[templates] - ends + lengths, lengths)
        mass = np.bincount(
            self.ids[at],
            weights=np.repeat(sims.astype(np.float64), lengths) * self._shares[at],
            minlength=len(self.names),
        )
        ids = np.flatnonzero(mass)
        return ids, mass[ids] / mass[ids].sum()

    def held(self, templates: np.ndarray) -> np.ndarray:
        """Which of ``templates`` have any label (a template whose questions' entities had no meaning has none)."""
        return self._lengths[templates] > 0

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        return {
            f"{prefix}s": np.array(self.names, dtype=str),
            f"{prefix}_indptr": self.indptr,
            f"{prefix}_ids": self.ids,
            f"{prefix}_counts": self.counts,
        }

    @classmethod
    def from_arrays(cls, arrays: np.lib.npyio.NpzFile, prefix: str) -> TemplateLabels:
        return cls(
            arrays[f"{prefix}s"].tolist(),
            arrays[f"{prefix}_indptr"],
            arrays[f"{prefix}_ids"],
            arrays[f"{prefix}_counts"],
        )

    @classmethod
    def count(cls, per_template: Sequence[dict[str, int]]) -> TemplateLabels:
        names = sorted({label for counts in per_template for label in counts})
        label_id = {label: i for i, label in enumerate(names)}
        rows = [sorted((label_id[label], n) for label, n in counts.items()) for counts in per_template]
        return cls(
            names,
            np.concatenate([[0], np.cumsum([len(row) for row in rows])]).astype(np.int64),
            np.asarray([i for row in rows for i, _ in row], dtype=np.int64),
            np.asarray([n for row in rows for _, n in row], dtype=np.float64),
        )


class TemplateNeighbours:
    """Which training templates a question's template is nearest, and what they asked about."""

    def __init__(
        self,
        gram_list: Sequence[str],
        idf: np.ndarray,
        indptr: np.ndarray,
        indices: np.ndarray,
        data: np.ndarray,
        relations: TemplateLabels,
        meanings: TemplateLabels,
    ) -> None:
        self.gram_list = list(gram_list)
        self.gram_id = {g: i for i, g in enumerate(self.gram_list)}
        self.idf = idf
        self.indptr, self.indices, self.data = indptr, indices, data  # the templates' rows (CSR), as saved
        self.relations = relations
        self.meanings = meanings
        self.templates = len(indptr) - 1
        # postings: gram -> (templates holding it, their normalised weights), for a sparse dot product
        by_gram = np.argsort(indices, kind="stable")
        self._post_templates = np.repeat(np.arange(self.templates), np.diff(indptr))[by_gram]
        self._post_weights = data[by_gram]
        self._post_starts = np.searchsorted(indices[by_gram], np.arange(len(self.gram_list) + 1))
        self._post_lengths = np.diff(self._post_starts)
        # the grams in many templates (什, 么, 时候 …) hold most postings: kept as dense rows, read whole
        common = np.flatnonzero(self._post_lengths > DENSE_FROM)
        self._dense_row = np.full(len(self.gram_list), -1, dtype=np.int64)
        self._dense_row[common] = np.arange(len(common))
        self._dense = np.zeros((len(common), self.templates), dtype=np.float32)
        for row, gram in enumerate(common):
            span = slice(self._post_starts[gram], self._post_starts[gram + 1])
            self._dense[row, self._post_templates[span]] = self._post_weights[span]

    def nearest(self, text: str, k: int = NEIGHBOURS) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` training templates nearest ``text`` (at most; those sharing no gram are left out) and their
        cosines; pass them to ``relations.of`` or ``meanings.of``."""
        found = np.fromiter((self.gram_id[g] for g in grams(text) if g in self.gram_id), dtype=np.int64)
        if not len(found):
            return _NONE
        weights = self.idf[found]
        weights = weights / np.linalg.norm(weights)
        # the cosine with every template: the common grams' dense rows, plus the other grams' postings gathered at
        # once and summed per template
        dense = self._dense_row[found]
        sims = weights[dense >= 0].astype(np.float32) @ self._dense[dense[dense >= 0]]
        rare, rare_weights = found[dense < 0], weights[dense < 0]
        if len(rare):
            starts, lengths = self._post_starts[rare], self._post_lengths[rare]
            ends = np.cumsum(lengths)
            at = np.arange(ends[-1]) + np.repeat(starts - ends + lengths, lengths)
            sims = sims + np.bincount(
                self._post_templates[at],
                weights=np.repeat(rare_weights, lengths) * self._post_weights[at],
                minlength=self.templates,
            ).astype(np.float32)
        top = _top(sims, k)
        return top, sims[top]

    @staticmethod
    def present(directory: str | Path) -> bool:
        return (Path(directory) / NEIGHBOURS_FILE).is_file()

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / NEIGHBOURS_FILE
        arrays = {
            "format": np.array([NEIGHBOURS_FORMAT]),
            "grams": np.array(self.gram_list, dtype=str),
            "idf": self.idf,
            "indptr": self.indptr,
            "indices": self.indices,
            "data": self.data,
            **self.relations.arrays("relation"),
            **self.meanings.arrays("meaning"),
        }
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for name, array in arrays.items():
                buffer = io.BytesIO()
                np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
                member = zipfile.ZipInfo(f"{name}.npy", date_time=_FIXED_TIME)
                member.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(member, buffer.getvalue())
        return path

    @classmethod
    def load(cls, directory: str | Path) -> TemplateNeighbours:
        """ValueError when the file cannot be read or is of another format (learn it again with ``kgqa ranker
        neighbours``)."""
        path = Path(directory) / NEIGHBOURS_FILE
        redo = f"learn it again with `kgqa ranker neighbours --model {Path(directory).name} --train train.json`"
        try:
            with np.load(path, allow_pickle=False) as arrays:
                found = int(arrays["format"][0]) if "format" in arrays else None
                if found != NEIGHBOURS_FORMAT:
                    raise ValueError(
                        f"{NEIGHBOURS_FILE} is format {found}, this kgqa reads {NEIGHBOURS_FORMAT}; {redo}"
                    )
                return cls(
                    arrays["grams"].tolist(),
                    arrays["idf"],
                    arrays["indptr"],
                    arrays["indices"],
                    arrays["data"],
                    TemplateLabels.from_arrays(arrays, "relation"),
                    TemplateLabels.from_arrays(arrays, "meaning"),
                )
        except (OSError, KeyError, zipfile.BadZipFile, EOFError) as exc:
            raise ValueError(f"cannot read {NEIGHBOURS_FILE} in {Path(directory).name}: {exc}; {redo}") from exc


def _top(sims: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` highest (positive) entries' places, in no order. Most templates are far from a question: the
    selection runs over the first set of those near the best that has k of them, which holds the same top k."""
    best = float(sims.max()) if len(sims) else 0.0
    if best <= 0.0:
        return np.zeros(0, dtype=np.int64)
    for share in (0.8, 0.5, 0.3, 0.15, 0.0):
        near = np.flatnonzero(sims > share * best)
        if len(near) >= k:
            break
    if len(near) <= k:
        return near
    return near[np.argpartition(-sims[near], k)[:k]]


def learn_neighbours(questions: Sequence[Question]) -> TemplateNeighbours:
    """The templates of ``questions`` (with answers), TF-IDF weighted, with their relations and meanings."""
    relations_of: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    meanings_of: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for q in questions:
        if q.answer is not None:
            name, meaning = split_head(q.answer.subject)
            asked = template(q.question, name)
            relations_of[asked][q.answer.predicate] += 1
            if meaning:
                meanings_of[asked][meaning] += 1
    templates = sorted(relations_of)
    gram_list = sorted({g for t in templates for g in grams(t)})
    gram_id = {g: i for i, g in enumerate(gram_list)}
    rows = [sorted(gram_id[g] for g in grams(t)) for t in templates]
    df = np.bincount([g for row in rows for g in row], minlength=len(gram_list))
    idf = np.log(len(templates) / (1.0 + df)) + 1.0
    indptr = np.concatenate([[0], np.cumsum([len(row) for row in rows])]).astype(np.int64)
    indices = np.asarray([g for row in rows for g in row], dtype=np.int64)
    data = idf[indices]
    for t in range(len(templates)):  # each template's row to unit length: cosine by dot product
        span = slice(indptr[t], indptr[t + 1])
        data[span] /= np.linalg.norm(data[span])
    return TemplateNeighbours(
        gram_list,
        idf,
        indptr,
        indices,
        data,
        TemplateLabels.count([relations_of[t] for t in templates]),
        TemplateLabels.count([meanings_of.get(t, {}) for t in templates]),
    )
