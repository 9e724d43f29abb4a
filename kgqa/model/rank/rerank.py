"""Re-ranking the beam's KB paths with two question-side signals the small model reads poorly.

The beam proposes up to ``num_beams`` distinct KB paths with their log-probabilities. Two bonuses are added:
- relation: the share of the relation found in the question, LCS(relation, question) / len(relation) — the
  no-learning peer's whole signal, which the look-ahead applies only one character at a time;
- name: the name's length over the longest KB name found in the question (the peer picks that longest name).
Weights are chosen on a slice of dev by ``kgqa tune`` and stored in the model's ``kgqa.json``; 0 turns a bonus off.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts


@dataclass(frozen=True)
class RerankWeights:
    relation: float = 0.0
    name: float = 0.0

    @property
    def active(self) -> bool:
        return self.relation != 0.0 or self.name != 0.0


def rerank(facts: QuestionFacts, candidates: Sequence[Candidate], weights: RerankWeights) -> list[Candidate]:
    """Candidates re-scored (log-probability + bonuses) and sorted best first; unchanged when no weight is set."""
    if not weights.active or not candidates:
        return list(candidates)
    longest = facts.longest_name if weights.name else 0
    rescored = []
    for c in candidates:
        bonus = 0.0
        if weights.relation:
            bonus += weights.relation * facts.share(c.relation)
        if weights.name and longest:
            bonus += weights.name * min(1.0, len(c.name) / longest)
        rescored.append(replace(c, score=c.log_probability + bonus))
    return sorted(rescored, key=lambda c: c.score, reverse=True)
