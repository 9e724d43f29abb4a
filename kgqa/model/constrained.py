"""The one LogitsProcessor that keeps generation inside the knowledge base.

At every step it asks the index which tokens may follow each hypothesis (``TokenConstraint``), masks all others,
renormalises over the allowed ones (a choice forced by the KB costs nothing), and, while a relation is being
spelled, applies the look-ahead re-weighting. Works for greedy and beam search (transformers passes log-probs in
beam search and logits in greedy; renormalising makes both log-probs).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor

from kgqa.model.lookahead import RelationLookahead
from kgqa.trie import SEP, TokenConstraint
from kgqa.trie.keys import NAME_MEANING_RELATION


class KBConstraintLogitsProcessor(LogitsProcessor):
    def __init__(
        self,
        constraint: TokenConstraint,
        num_beams: int,
        questions: Sequence[str] | None = None,
        lookahead: RelationLookahead | None = None,
        prompt_length: int = 1,
    ) -> None:
        if lookahead is not None and questions is None:
            raise ValueError("the look-ahead needs the questions")
        self.constraint = constraint
        self.num_beams = num_beams
        self.questions = questions
        self.lookahead = lookahead
        self.prompt_length = prompt_length  # the decoder start token(s) before the target
        # which part of the key is the relation: 1 (name, relation, meaning) or 2 (name, meaning, relation)
        self.relation_part = 2 if constraint.index.key_order == NAME_MEANING_RELATION else 1
        self._allowed: dict[tuple[int, ...], np.ndarray] = {}
        self._gains: dict[tuple[int, tuple[int, ...]], tuple[np.ndarray, np.ndarray] | None] = {}

    def allowed(self, target: tuple[int, ...]) -> np.ndarray:
        found = self._allowed.get(target)
        if found is None:
            found = self._allowed[target] = self.constraint.allowed_token_ids(target)
        return found

    def _relation_divisors(self, row: int, target: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """(token ids, Δ + 1) for the look-ahead, or None outside a relation."""
        key = (row // self.num_beams, target)
        if key in self._gains:
            return self._gains[key]
        result = None
        prefix = self.constraint.prefix_text(target)
        parts = prefix.split(SEP) if prefix is not None else []
        if len(parts) == self.relation_part + 1:
            meaning = parts[1] if self.relation_part == 2 else None
            question = self.questions[row // self.num_beams]  # type: ignore[index]
            gains = self.lookahead.gains(question, parts[0], parts[-1], meaning)  # type: ignore[union-attr]
            if gains:
                vocab = self.constraint.char_to_id
                ids = np.fromiter((vocab[ch] for ch in gains), dtype=np.int64, count=len(gains))
                divisors = np.fromiter((d + 1.0 for d in gains.values()), dtype=np.float32, count=len(gains))
                result = (ids, divisors)
        self._gains[key] = result
        return result

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        targets = [tuple(row) for row in input_ids[:, self.prompt_length :].tolist()]
        rows, cols = [], []
        for r, target in enumerate(targets):
            allowed = self.allowed(target)
            rows.append(np.full(len(allowed), r, dtype=np.int64))
            cols.append(allowed)
        mask = torch.full_like(scores, float("-inf"))
        mask[torch.from_numpy(np.concatenate(rows)), torch.from_numpy(np.concatenate(cols))] = 0.0
        scores = torch.log_softmax(scores + mask, dim=-1)
        # A hypothesis with no allowed token (only possible off the KB) gets NaN from log_softmax: make it -inf.
        scores = scores.masked_fill(torch.isnan(scores), float("-inf"))
        if self.lookahead is not None:
            for r, target in enumerate(targets):
                found = self._relation_divisors(r, target)
                if found is not None:
                    ids, divisors = found
                    ids_t = torch.from_numpy(ids)
                    scores[r, ids_t] = scores[r, ids_t] / torch.from_numpy(divisors)
        return scores
