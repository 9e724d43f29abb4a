"""KB-driven augmentation: synthetic questions for knowledge-base paths, from templates mined from training questions.

Dev relations never occur in train, so the model must learn to *copy* names and relations it never saw as targets.
A training question whose answer name (and relation) appear literally becomes a template:
"你知道守望星光的出品公司吗" -> "你知道{S}的{P}吗" (generic: any relation fits) and
"你知道守望星光是哪家公司出品的吗" -> "你知道{S}是哪家公司出品的吗" (for the relation 出品公司 only).
Filling templates with paths drawn from the whole KB, half uniformly and half relation-balanced, shows the model
every relation of the KB as a target, the 216 dev relations among them, with no peek at the dev questions.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from kgqa.data import Question, split_head
from kgqa.trie import KBIndex, PathKey

SUBJECT_SLOT = "\ue000"  # private-use characters: never in a question, so slots are unambiguous
RELATION_SLOT = "\ue001"


@dataclass
class TemplateBank:
    generic: list[str] = field(default_factory=list)  # with a subject and a relation slot
    by_relation: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # subject slot only

    @classmethod
    def mine(cls, questions: Iterable[Question]) -> TemplateBank:
        bank = cls()
        for q in questions:
            if q.answer is None:
                continue
            name, _ = split_head(q.answer.subject)
            relation = q.answer.predicate
            if not name or name not in q.question:
                continue
            template = q.question.replace(name, SUBJECT_SLOT, 1)
            # A one-character relation is usually part of another word ("作" in "作者"): no generic template.
            if len(relation) >= 2 and relation in template:
                bank.generic.append(template.replace(relation, RELATION_SLOT, 1))
            else:
                bank.by_relation[relation].append(template)
        return bank

    def __len__(self) -> int:
        return len(self.generic) + sum(len(t) for t in self.by_relation.values())

    def fill(self, path: PathKey, rng: random.Random) -> str:
        specific = self.by_relation.get(path.relation)
        if specific and (not self.generic or rng.random() < 0.5):
            return rng.choice(specific).replace(SUBJECT_SLOT, path.name)
        template = rng.choice(self.generic)
        return template.replace(SUBJECT_SLOT, path.name).replace(RELATION_SLOT, path.relation)


class PathSampler:
    """Random KB paths: half uniform over paths, half uniform over relations (so rare relations are seen too)."""

    def __init__(self, index: KBIndex, progress: bool = False) -> None:
        self.index = index
        relation_ids: dict[str, int] = {}
        path_relation = np.empty(len(index), dtype=np.int32)
        for path_id in tqdm(range(len(index)), desc="grouping paths by relation", disable=not progress, unit="path"):
            relation = index.path_by_id(path_id).relation
            path_relation[path_id] = relation_ids.setdefault(relation, len(relation_ids))
        order = np.argsort(path_relation, kind="stable")
        bounds = np.searchsorted(path_relation[order], np.arange(len(relation_ids) + 1))
        self._paths_by_relation = order.astype(np.int32)
        self._relation_bounds = bounds

    def sample(self, rng: random.Random) -> PathKey:
        if rng.random() < 0.5:
            path_id = rng.randrange(len(self.index))
        else:
            r = rng.randrange(len(self._relation_bounds) - 1)
            start, stop = self._relation_bounds[r], self._relation_bounds[r + 1]
            path_id = int(self._paths_by_relation[rng.randrange(start, stop)])
        return self.index.path_by_id(path_id)


def synthesize(
    bank: TemplateBank, sampler: PathSampler, count: int, seed: int, max_chars: int = 80
) -> list[tuple[str, PathKey]]:
    """``count`` (question, path) pairs; reproducible for a given seed."""
    rng = random.Random(seed)
    pairs: list[tuple[str, PathKey]] = []
    while len(pairs) < count:
        path = sampler.sample(rng)
        question = bank.fill(path, rng)
        if len(question) <= max_chars:
            pairs.append((question, path))
    return pairs
