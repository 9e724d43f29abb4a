"""The one LogitsProcessor that keeps generation inside the knowledge base.

At every step it asks the index which tokens may follow each hypothesis (``TokenConstraint``), masks all others,
renormalises over the allowed ones (a choice forced by the KB costs nothing), and, while a relation is being
spelled, applies the look-ahead re-weighting. Works for greedy and beam search (transformers passes log-probs in
beam search and logits in greedy; renormalising makes both log-probs).

With ``end_when_determined``, a hypothesis whose prefix only one KB key continues is ended at once (only EOS is
allowed, at log-prob 0): every remaining step would be forced, and a forced step's renormalised log-prob is 0 (the
look-ahead divides it, still 0), so the path's score is exactly what spelling it out would give, in fewer decoding
steps. The answerer completes such a prefix to its key (``TokenConstraint.completion``).
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
        lookahead_strength: float = 1.0,
        end_when_determined: bool = False,
    ) -> None:
        if lookahead is not None and questions is None:
            raise ValueError("the look-ahead needs the questions")
        self.constraint = constraint
        self.num_beams = num_beams
        self.questions = questions
        self.lookahead = lookahead
        self.lookahead_strength = lookahead_strength  # α in p ** (1 / (α·Δ + 1)); 1 is the published formula
        self.prompt_length = prompt_length  # the decoder start token(s) before the target
        self.end_when_determined = end_when_determined
        self._end_only = np.array([constraint.eos_token_id], dtype=np.int64)
        # which part of the key is the relation: 1 (name, relation, meaning) or 2 (name, meaning, relation)
        self.relation_part = 2 if constraint.index.key_order == NAME_MEANING_RELATION else 1
        self._allowed: dict[tuple[int, ...], np.ndarray] = {}
        self._gains: dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, np.ndarray] | None] = {}

    def allowed(self, target: tuple[int, ...]) -> np.ndarray:
        found = self._allowed.get(target)
        if found is None:
            found = self.constraint.allowed_token_ids(target)
            # one way on (a single next token) is necessary for one key ahead; only then is the trie asked
            if (
                self.end_when_determined
                and len(found) == 1
                and found[0] != self.constraint.eos_token_id
                and self.constraint.completion(target) is not None
            ):
                found = self._end_only
            self._allowed[target] = found
        return found

    def _relation_divisors(self, row: int, target: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray] | None:
        """(token ids, α·Δ + 1) for the look-ahead, or None outside a relation."""
        question = self.questions[row // self.num_beams]  # type: ignore[index]
        key = (question, target)  # the gains depend on these two only, so rows (and steps) asking the same share them
        if key in self._gains:
            return self._gains[key]
        result = None
        prefix = self.constraint.prefix_text(target)
        parts = prefix.split(SEP) if prefix is not None else []
        if len(parts) == self.relation_part + 1:
            meaning = parts[1] if self.relation_part == 2 else None
            gains = self.lookahead.gains(question, parts[0], parts[-1], meaning)  # type: ignore[union-attr]
            if gains:
                vocab = self.constraint.char_to_id
                ids = np.fromiter((vocab[ch] for ch in gains), dtype=np.int64, count=len(gains))
                strength = self.lookahead_strength
                divisors = np.fromiter((strength * d + 1.0 for d in gains.values()), dtype=np.float32, count=len(gains))
                result = (ids, divisors)
        self._gains[key] = result
        return result

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        targets = [tuple(row) for row in input_ids[:, self.prompt_length :].tolist()]
        allowed = [self.allowed(target) for target in targets]
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
        if self.lookahead is not None:
            for r, target in enumerate(targets):
                found = self._relation_divisors(r, target)
                if found is not None:
                    ids, divisors = found
                    ids_t = torch.from_numpy(ids)
                    scores[r, ids_t] = scores[r, ids_t] / torch.from_numpy(divisors)
        return scores
