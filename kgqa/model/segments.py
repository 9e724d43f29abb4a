"""A path's score split by segment: name, relation, meaning (each with the separator or EOS that ends it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SegmentScores:
    """Log-probabilities of a path's three segments; ``total`` is their sum (the beam's score for that path)."""

    name: float
    relation: float
    meaning: float

    @property
    def total(self) -> float:
        return self.name + self.relation + self.meaning


def segment_bounds(token_ids: Sequence[int], sep_token_id: int) -> tuple[int, int]:
    """Positions just after the first and second separator (the ends of the name and relation segments)."""
    first = second = len(token_ids)
    seen = 0
    for position, token_id in enumerate(token_ids):
        if token_id == sep_token_id:
            seen += 1
            if seen == 1:
                first = position + 1
            else:
                second = position + 1
                break
    return first, second


def split_segments(step_scores: Sequence[float], token_ids: Sequence[int], sep_token_id: int) -> SegmentScores:
    first, second = segment_bounds(token_ids, sep_token_id)
    return SegmentScores(sum(step_scores[:first]), sum(step_scores[first:second]), sum(step_scores[second:]))
