"""Each generated path's score, recorded as generation runs.

transformers returns beam scores only with ``output_scores=True``, which also keeps a copy of every step's full
(hypotheses × vocabulary) score matrix: hundreds of MB for a batch of 64 questions. This processor, placed last,
keeps what the scores are made of instead — each hypothesis' running sum of processed log-probs — and the score of
every hypothesis that could end (its running sum plus the end-of-sequence log-prob). With ``length_penalty=0`` that
is exactly the beam search's own score; greedy search gets the same sum.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor

from kgqa.model.segments import SegmentScores, segment_bounds

Key = tuple[int, tuple[int, ...]]  # (question number in the batch, target tokens so far)


class PathScoreRecorder(LogitsProcessor):
    def __init__(self, num_beams: int, eos_token_id: int, prompt_length: int = 1, normalize: bool = False) -> None:
        self.num_beams = num_beams
        self.eos_token_id = eos_token_id
        self.prompt_length = prompt_length  # the decoder start token(s) before the target
        self.normalize = normalize  # greedy search passes raw logits when no processor before this one normalises
        self._rows: dict[Key, int] = {}  # the previous step's hypotheses → their row
        self._running = torch.zeros(0)  # the previous step's running sums, by row
        self._previous_scores = torch.zeros(0, 0)
        self._ended: dict[Key, float] = {}
        self._running_by_key: dict[Key, float] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        log_probs = torch.log_softmax(scores.float(), dim=-1) if self.normalize else scores.float()
        targets = input_ids[:, self.prompt_length :].tolist()
        keys = [(row // self.num_beams, tuple(target)) for row, target in enumerate(targets)]
        if self._rows:
            # a hypothesis = its parent (one token shorter, a row of the previous step) + the token chosen there
            parents = torch.tensor([self._rows[(q, target[:-1])] for q, target in keys], dtype=torch.long)
            chosen = torch.tensor([target[-1] for _, target in keys], dtype=torch.long)
            running = self._running[parents] + self._previous_scores[parents, chosen]
        else:
            running = torch.zeros(len(keys))
        ended = running + log_probs[:, self.eos_token_id]
        for key, value, total in zip(keys, ended.tolist(), running.tolist(), strict=True):
            if value > -math.inf:
                self._ended[key] = value
            self._running_by_key[key] = total
        self._rows = {key: row for row, key in enumerate(keys)}
        self._running = running
        self._previous_scores = log_probs
        return scores

    def segments(self, question: int, target: list[int], sep_token_id: int) -> SegmentScores:
        """(name, relation, meaning) shares of a generated target's score: running sums at its separators.

        A hypothesis ended early (one KB key left ahead) has only forced steps left, each worth 0.
        """
        total = self.score(question, target)
        end = target.index(self.eos_token_id) if self.eos_token_id in target else len(target)
        body = target[:end]
        first, second = segment_bounds(body, sep_token_id)
        name = self._running_by_key.get((question, tuple(body[:first])), total) if first <= len(body) else total
        through_relation = (
            self._running_by_key.get((question, tuple(body[:second])), total) if second <= len(body) else total
        )
        return SegmentScores(name, through_relation - name, total - through_relation)

    def score(self, question: int, target: list[int]) -> float:
        """The score of a generated target (decoder start token removed); -inf if it was never a hypothesis."""
        if self.eos_token_id in target:
            return self._ended.get((question, tuple(target[: target.index(self.eos_token_id)])), -math.inf)
        # cut off by the length limit: its running sum
        return self._running_by_key.get((question, tuple(target)), -math.inf)
