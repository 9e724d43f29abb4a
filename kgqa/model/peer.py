"""The no-learning peer: the longest KB name in the question, then that name's relation closest to the question.

"Closest" is the longest common subsequence with the question (ties: the shorter relation, then the first in KB
order). It needs no model, so it is the floor every learned system must beat.
"""

from __future__ import annotations

from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.trie import KBIndex


class LongestNamePeer:
    def __init__(self, index: KBIndex) -> None:
        self.index = index

    def answer(self, question: str) -> Candidate | None:
        facts = QuestionFacts(question, self.index)
        if not facts.names:
            return None
        best = max(facts.paths(facts.names[0]), key=lambda p: (facts.lcs(p.relation), -len(p.relation)))
        return Candidate(best.name, best.relation, best.meaning, min(self.index.objects(*best)), 0.0)
