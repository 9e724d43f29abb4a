"""Look-ahead re-weighting of the relation: favour characters that lead to relations resembling the question.

While the decoder spells a relation, for each allowed next character c, Δ(c) is the best gain in longest common
subsequence (LCS) with the question among the name's relations that continue the prefix with c:
``Δ(c) = max LCS(r, question) - LCS(prefix, question)`` over relations r starting with prefix + c.
Its probability p becomes p ** (1 / (Δ + 1)), i.e. its log-probability is divided by Δ + 1. Ending the relation has
Δ = 0 and is left as it is. Only characters the trie already allows are re-weighted, never added.

``RelationLookaheadLogitsProcessor`` applies it: to the allowed tokens' scores in the search and the path scorer
(``reweighted``, numpy), and as a transformers logits processor in the reference beam search, after
``KBConstraintLogitsProcessor`` (it divides the masked, renormalised log-probs); it owns the questions, which no other
processor needs. torch is imported only by that call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kgqa.model.decode.step import DecodingStep
from kgqa.model.facts import QuestionFacts
from kgqa.trie import SEP, KBIndex, TokenConstraint
from kgqa.trie.keys import key_parts

if TYPE_CHECKING:
    import torch


class RelationLookahead:
    """Δ for the next character of a relation, cached per question and name."""

    def __init__(self, index: KBIndex) -> None:
        self.index = index
        self._relation_lcs: dict[tuple[str, str, str | None], dict[str, int]] = {}

    def gains(
        self, facts: QuestionFacts, name: str, relation_prefix: str, meaning: str | None = None
    ) -> dict[str, int]:
        """Δ for every character that continues ``relation_prefix`` towards one of ``name``'s relations.

        ``meaning`` narrows the relations to that entity's, when the target spells the meaning first (ablation order).
        """
        key = (facts.text, name, meaning)
        scored = self._relation_lcs.get(key)
        if scored is None:
            if len(self._relation_lcs) > 100_000:  # a long-running server must not grow without bound
                self._relation_lcs.clear()
            scored = {r: facts.lcs(r) for r in self.index.relations(name, meaning)}
            self._relation_lcs[key] = scored
        base = facts.lcs(relation_prefix)
        depth = len(relation_prefix)
        best: dict[str, int] = {}
        for relation, score in scored.items():
            if len(relation) > depth and relation.startswith(relation_prefix):
                ch = relation[depth]
                if score > best.get(ch, -1):
                    best[ch] = score
        return {ch: score - base for ch, score in best.items()}


class RelationLookaheadLogitsProcessor:
    """While a relation is spelled, divides each allowed next character's log-prob by α·Δ + 1 (a transformers
    ``LogitsProcessor`` by its call, without importing transformers).

    Rows are hypotheses, ``num_beams`` per question, in the order of ``questions`` (their facts). Place it after the KB
    constraint processor, sharing its ``DecodingStep``.

    Example:
        >>> step = DecodingStep(constraint)
        >>> lookahead = RelationLookahead(index)
        >>> processors = LogitsProcessorList([
        ...     KBConstraintLogitsProcessor(constraint, step),
        ...     RelationLookaheadLogitsProcessor(lookahead, constraint, questions, num_beams=5, step=step),
        ... ])
    """

    def __init__(
        self,
        lookahead: RelationLookahead,
        constraint: TokenConstraint,
        questions: Sequence[QuestionFacts],
        num_beams: int = 1,
        strength: float = 1.0,
        step: DecodingStep | None = None,
    ) -> None:
        self.lookahead = lookahead
        self.constraint = constraint
        self.questions = questions
        self.num_beams = num_beams
        self.strength = strength  # α in p ** (1 / (α·Δ + 1)); 1 is the published formula
        self.step = step or DecodingStep(constraint)
        # which part of the key is the relation: 1 (name, relation, meaning) or 2 (name, meaning, relation)
        self.relation_part = key_parts(constraint.index.key_order).index("relation")
        self._divisors: dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, np.ndarray] | None] = {}

    def divisors(self, facts: QuestionFacts, target: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """(token ids, α·Δ + 1) for the next character of ``target``, or None outside a relation."""
        # the gains depend on these two only, so rows (and steps) asking the same share them
        key = (facts.question, target)
        if key in self._divisors:
            return self._divisors[key]
        result = None
        prefix = self.step.text(target)
        parts = prefix.split(SEP) if prefix is not None else []
        if len(parts) == self.relation_part + 1:
            meaning = parts[1] if self.relation_part == 2 else None
            gains = self.lookahead.gains(facts, parts[0], parts[-1], meaning)
            if gains:
                vocab = self.constraint.char_to_id
                ids = np.fromiter((vocab[ch] for ch in gains), dtype=np.int64, count=len(gains))
                divisors = np.fromiter(
                    (self.strength * d + 1.0 for d in gains.values()), dtype=np.float32, count=len(gains)
                )
                result = (ids, divisors)
        self._divisors[key] = result
        return result

    def reweighted(
        self, facts: QuestionFacts, target: tuple[int, ...], tokens: np.ndarray, values: np.ndarray
    ) -> np.ndarray:
        """``values`` (float32 log-probs of ``tokens`` after ``target``) divided as ``__call__`` divides a row: for
        the search and for teacher-forced scores, which compute logits only for the tokens the KB allows."""
        found = self.divisors(facts, target)
        if found is None:
            return values
        ids, divisors = found
        by_token = dict(zip(ids.tolist(), divisors.tolist(), strict=True))
        out = values.copy()
        for i, token in enumerate(tokens.tolist()):
            divisor = by_token.get(token)
            if divisor is not None:
                out[i] = np.float32(out[i]) / np.float32(divisor)
        return out

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        for row, target in enumerate(self.step.targets(input_ids)):
            found = self.divisors(self.questions[row // self.num_beams], target)
            if found is not None:
                ids, divisors = map(torch.from_numpy, found)
                scores[row, ids] = scores[row, ids] / divisors.to(scores.device)
        return scores
