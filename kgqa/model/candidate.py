"""What a question answerer returns: a KB path, its object and a score."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from kgqa.data import Answer, join_head
from kgqa.model.segments import SegmentScores
from kgqa.trie import KBIndex, PathKey


@dataclass(frozen=True)
class Candidate:
    name: str
    relation: str
    meaning: str
    object: str
    score: float  # what candidates are ranked by: the learned ranker's score, else log-probability + bonuses
    log_probability: float = 0.0  # of the path under the model (with the look-ahead re-weighting when it is on)
    segments: SegmentScores | None = None  # log_probability split into name, relation and meaning
    beam_rank: int | None = None  # its place among the beam's distinct paths; None for a name-anchored candidate
    contributions: tuple[tuple[str, float], ...] = ()  # what moved its score, by feature group (learned ranker)

    @property
    def probability(self) -> float:
        return math.exp(self.log_probability)

    @property
    def subject(self) -> str:
        """The KB head: ``name（meaning）``, or the name alone."""
        return join_head(self.name, self.meaning)

    def as_answer(self) -> Answer:
        return Answer(self.subject, self.relation, self.object)


def kb_candidate(
    index: KBIndex, path: PathKey, score: float, segments: SegmentScores | None, beam_rank: int | None = None
) -> Candidate:
    """A KB path as a candidate: its (first) object looked up, ranked by its log-probability until a ranker says."""
    objects = index.objects(path.name, path.relation, path.meaning)
    obj = objects[0] if objects else ""
    return Candidate(*path, obj, score, log_probability=score, segments=segments, beam_rank=beam_rank)


def top_answers(results: Sequence[Sequence[Candidate]]) -> list[Answer | None]:
    """Each question's best candidate as a KgCLUE answer; None where no KB path fitted."""
    return [candidates[0].as_answer() if candidates else None for candidates in results]
