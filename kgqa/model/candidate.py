"""What a question answerer returns: a KB path, its object and a score."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

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
    # the calibrated probability that this, the question's top answer, is right (kgqa.model.rank.confidence); None
    # for the other candidates, and without a confidence model
    confidence: float | None = None

    @property
    def path_probability(self) -> float:
        """The path's probability under the model, renormalised over what the KB allows at each step: how sure the
        decoder was among KB paths, not the chance that the answer is right (that is ``confidence``)."""
        return math.exp(self.log_probability)

    def abstains(self, threshold: float) -> bool:
        """Below the threshold, kgqa says the KB does not hold the answer (never without a confidence)."""
        return self.confidence is not None and self.confidence < threshold

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


class Prediction(NamedTuple):
    """A question's top answer (None: no KB path fits) and the confidence that it is right (None: no confidence
    model), whatever the threshold: files and engines carry both, the threshold is applied where they are written."""

    answer: Answer | None
    confidence: float | None = None

    def shown(self, threshold: float) -> bool:
        """Whether an abstaining file shows the answer: there is one, and its confidence (0 without) is not below."""
        return self.answer is not None and (self.confidence or 0.0) >= threshold


def top_predictions(results: Sequence[Sequence[Candidate]]) -> list[Prediction]:
    return [Prediction(c[0].as_answer(), c[0].confidence) if c else Prediction(None) for c in results]


def top_answers(results: Sequence[Sequence[Candidate]]) -> list[Answer | None]:
    """Each question's best candidate as a KgCLUE answer; None where no KB path fitted."""
    return [candidates[0].as_answer() if candidates else None for candidates in results]
