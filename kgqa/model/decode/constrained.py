"""The LogitsProcessor that keeps generation inside the knowledge base.

At every step it asks the index which tokens may follow each hypothesis (``TokenConstraint``), masks all others and
renormalises over the allowed ones (a choice forced by the KB costs nothing). Works for greedy and beam search
(transformers passes log-probs in beam search and logits in greedy; renormalising makes both log-probs). The relation
look-ahead is a processor of its own
(``kgqa.model.decode.lookahead.RelationLookaheadLogitsProcessor``), placed after this one.

With ``end_when_determined``, a hypothesis whose prefix only one KB key continues is ended at once (only EOS is
allowed, at log-prob 0): every remaining step would be forced, and a forced step's renormalised log-prob is 0 (the
look-ahead divides it, still 0), so the path's score is exactly what spelling it out would give, in fewer decoding
steps. The processor keeps the key each such hypothesis leads to (``completed``), for the answerer to look up.
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor

from kgqa.model.decode.step import DecodingStep, determined_key
from kgqa.trie import TokenConstraint


class KBConstraintLogitsProcessor(LogitsProcessor):
    """Masks every token the KB does not allow after each hypothesis and renormalises over the allowed ones.

    Example:
        >>> step = DecodingStep(constraint)
        >>> processor = KBConstraintLogitsProcessor(constraint, step, end_when_determined=True)
        >>> model.generate(..., logits_processor=LogitsProcessorList([processor]))
        >>> processor.completed.get(tuple(target_ids_before_eos))  # the whole key of a hypothesis ended early
    """

    def __init__(
        self, constraint: TokenConstraint, step: DecodingStep | None = None, end_when_determined: bool = False
    ) -> None:
        self.constraint = constraint
        self.step = step or DecodingStep(constraint)
        self.end_when_determined = end_when_determined
        self._end_only = np.array([constraint.eos_token_id], dtype=np.int64)
        self._allowed: dict[tuple[int, ...], np.ndarray] = {}
        self.completed: dict[tuple[int, ...], str] = {}  # target ended early → the one key it leads to

    def allowed(self, target: tuple[int, ...]) -> np.ndarray:
        found = self._allowed.get(target)
        if found is None:
            prefix = self.step.text(target)
            found = self.constraint.allowed_after(prefix)
            key = determined_key(self.constraint, prefix, found) if self.end_when_determined else None
            if key is not None:
                found = self._end_only
                self.completed[target] = key
            self._allowed[target] = found
        return found

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        allowed = [self.allowed(target) for target in self.step.targets(input_ids)]
        counts = np.fromiter((len(a) for a in allowed), dtype=np.int64, count=len(allowed))
        rows = torch.from_numpy(np.repeat(np.arange(len(allowed), dtype=np.int64), counts))
        cols = torch.from_numpy(np.concatenate(allowed)) if len(rows) else rows
        # Log-softmax over each row's allowed tokens only (a few dozen of thousands), then one fill of the rest:
        # one pass over the full scores instead of the five a mask-add-normalise would take.
        values = scores[rows, cols]
        row_max = torch.full((len(allowed),), float("-inf"), dtype=scores.dtype).scatter_reduce(
            0, rows, values, reduce="amax"
        )
        finite_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max))
        sums = torch.zeros_like(row_max).index_add_(0, rows, torch.exp(values - finite_max[rows]))
        values = values - (finite_max + torch.log(sums))[rows]
        values = values.masked_fill(torch.isnan(values), float("-inf"))  # a row whose allowed tokens are all -inf
        scores = torch.full_like(scores, float("-inf"))  # a new tensor: generate may keep the one it passed
        scores[rows, cols] = values
        return scores
