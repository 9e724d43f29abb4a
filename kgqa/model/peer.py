"""The no-learning peer: the longest KB name in the question, then that name's relation closest to the question.

"Closest" is the longest common subsequence with the question (ties: the shorter relation, then the first in KB
order). It needs no model, so it is the floor every learned system must beat.
"""

from __future__ import annotations

from kgqa.data import lcs_length, normalize
from kgqa.model.candidate import Candidate
from kgqa.trie import KBIndex


class LongestNamePeer:
    def __init__(self, index: KBIndex) -> None:
        self.index = index

    def answer(self, question: str) -> Candidate | None:
        names = self.index.names_in(question)
        if not names:
            return None
        name = names[0]
        text = normalize(question)
        best = max(
            self.index.triples(name),
            key=lambda t: (lcs_length(normalize(t.relation), text), -len(t.relation)),
        )
        return Candidate(best.name, best.relation, best.meaning, best.object, 0.0)
