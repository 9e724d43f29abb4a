"""Look-ahead re-weighting of the relation: favour characters that lead to relations resembling the question.

While the decoder spells a relation, for each allowed next character c, Δ(c) is the best gain in longest common
subsequence (LCS) with the question among the name's relations that continue the prefix with c:
``Δ(c) = max LCS(r, question) - LCS(prefix, question)`` over relations r starting with prefix + c.
Its probability p becomes p ** (1 / (Δ + 1)), i.e. its log-probability is divided by Δ + 1. Ending the relation has
Δ = 0 and is left as it is. Only characters the trie already allows are re-weighted, never added.
"""

from __future__ import annotations

from kgqa.data import lcs_length, normalize
from kgqa.trie import KBIndex


class RelationLookahead:
    """Δ for the next character of a relation, cached per question and name."""

    def __init__(self, index: KBIndex) -> None:
        self.index = index
        self._relation_lcs: dict[tuple[str, str, str | None], dict[str, int]] = {}
        self._prefix_lcs: dict[tuple[str, str], int] = {}

    def gains(self, question: str, name: str, relation_prefix: str, meaning: str | None = None) -> dict[str, int]:
        """Δ for every character that continues ``relation_prefix`` towards one of ``name``'s relations.

        ``meaning`` narrows the relations to that entity's, when the target spells the meaning first (ablation order).
        """
        question = normalize(question)
        key = (question, name, meaning)
        scored = self._relation_lcs.get(key)
        if scored is None:
            if len(self._relation_lcs) > 100_000:  # a long-running server must not grow without bound
                self._relation_lcs.clear()
                self._prefix_lcs.clear()
            scored = {r: lcs_length(normalize(r), question) for r in self.index.relations(name, meaning)}
            self._relation_lcs[key] = scored
        prefix_key = (question, relation_prefix)
        base = self._prefix_lcs.get(prefix_key)
        if base is None:
            base = self._prefix_lcs[prefix_key] = lcs_length(normalize(relation_prefix), question)
        depth = len(relation_prefix)
        best: dict[str, int] = {}
        for relation, score in scored.items():
            if len(relation) > depth and relation.startswith(relation_prefix):
                ch = relation[depth]
                if score > best.get(ch, -1):
                    best[ch] = score
        return {ch: score - base for ch, score in best.items()}
