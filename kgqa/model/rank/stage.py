"""The ranking stage: a question's proposed candidates in order, cut to its top_k.

With a learned ranker (the model directory's), its scores order them; without one, the model's log-probability plus
the tuned rule bonuses (``kgqa.model.rank.rerank``) do.
"""

from __future__ import annotations

from collections.abc import Sequence

from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.model.rank.confidence import Pressure
from kgqa.model.rank.features import FeatureExtractor
from kgqa.model.rank.ranker import LearnedRanker
from kgqa.model.rank.rerank import RerankWeights, rerank


class RankingStage:
    def __init__(self, features: FeatureExtractor, ranker: LearnedRanker | None, weights: RerankWeights) -> None:
        self.features = features
        self.ranker = ranker
        self.weights = weights

    def rank(
        self,
        questions: Sequence[QuestionFacts],
        proposed: Sequence[list[Candidate]],
        top_ks: Sequence[int],
        contributions: bool = False,
        pressure: Pressure | None = None,
        confidence: bool = True,
    ) -> list[list[Candidate]]:
        """Each question's candidates, ordered, cut to its own top_k (the one cut). ``contributions``: the learned
        ranker's per-group contributions of the kept candidates too (only where they are shown)."""
        if self.ranker is not None:
            rows = self.features.rows_many(questions, proposed)
            return self.ranker.rank(proposed, rows, top_ks, contributions, pressure, confidence)
        return [
            rerank(facts, candidates, self.weights)[:k]
            for facts, candidates, k in zip(questions, proposed, top_ks, strict=True)
        ]
