"""Scores of given KB paths under the model, by teacher forcing through the same constraint processor.

Beam search finds the paths the model likes; name-anchored candidates (a KB name found in the question, with each of
its relations and meanings) are paths it may not have reached. To rank both on one scale, a given path is scored
exactly as beam search would have scored it: each step's log-probs pass through the same processors
(``KBConstraintLogitsProcessor``: mask, renormalise; ``RelationLookaheadLogitsProcessor``), and the chosen token's
value is summed. A step the
KB forces is worth 0 either way, so the score equals the beam's for a path the beam found (tested).

Scores are split by segment — name (with its separator), relation (with its separator), meaning (with EOS) — for the
ranker's features.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import PreTrainedModel

from kgqa.model.decode.constrained import KBConstraintLogitsProcessor
from kgqa.model.decode.lookahead import RelationLookahead, RelationLookaheadLogitsProcessor
from kgqa.model.decode.step import DecodingStep
from kgqa.model.facts import QuestionFacts
from kgqa.model.segments import SegmentScores, split_segments
from kgqa.model.targets import TargetCodec
from kgqa.trie import PathKey, TokenConstraint


class PathScorer:
    """Teacher-forced scores of KB paths for one question, through the decoding's constraint and look-ahead."""

    def __init__(
        self,
        model: PreTrainedModel,
        codec: TargetCodec,
        constraint: TokenConstraint,
        lookahead: RelationLookahead | None,
        lookahead_strength: float,
    ) -> None:
        self.model = model
        self.codec = codec
        self.constraint = constraint
        self.lookahead = lookahead
        self.lookahead_strength = lookahead_strength
        self.rows_per_pass = 128  # paths scored in one forward pass (their logits are rows × length × vocabulary)

    @torch.inference_mode()
    def score(
        self,
        encoder_hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        questions: Sequence[QuestionFacts],
        paths: Sequence[Sequence[PathKey]],
    ) -> list[list[SegmentScores]]:
        """Scores of ``paths[q]`` for each question ``q`` of a batch.

        ``encoder_hidden``: the batch's encoder output (questions, length, d_model); ``attention_mask`` its mask.
        """
        # One question's paths a pass, never mixed with another's: with int8 dynamic quantization the activations'
        # scale is taken over the whole pass, and a path's score must not depend on which questions came with it.
        out: list[list[SegmentScores]] = []
        for q, own in enumerate(paths):
            scores: list[SegmentScores] = []
            for start in range(0, len(own), self.rows_per_pass):
                chunk = list(own[start : start + self.rows_per_pass])
                scores += self._score_rows(encoder_hidden, attention_mask, questions, [q] * len(chunk), chunk)
            out.append(scores)
        return out

    def _score_rows(
        self,
        encoder_hidden: torch.Tensor,
        attention_mask: torch.Tensor,
        questions: Sequence[QuestionFacts],
        owners: list[int],
        paths: list[PathKey],
    ) -> list[SegmentScores]:
        targets = [self.codec.encode(p.name, p.relation, p.meaning) for p in paths]
        length = max(len(t) for t in targets)
        pad = self.codec.pad_token_id
        start = self.model.config.decoder_start_token_id
        labels = torch.tensor([t + [pad] * (length - len(t)) for t in targets], dtype=torch.long)
        decoder_input = torch.cat([torch.full((len(paths), 1), start, dtype=torch.long), labels[:, :-1]], dim=1)
        rows_of = torch.tensor(owners, dtype=torch.long)
        device = self.model.device
        logits = self.model(
            encoder_outputs=(encoder_hidden[rows_of].to(device),),
            attention_mask=attention_mask[rows_of].to(device),
            decoder_input_ids=decoder_input.to(device),
            use_cache=False,
        ).logits.float()
        # rows are paths, each with its own question; the processor's caches (allowed tokens by prefix, look-ahead
        # gains by question and prefix) serve every step and every path sharing a prefix
        step = DecodingStep(self.constraint)
        constraint = KBConstraintLogitsProcessor(self.constraint, step)
        lookahead = None
        if self.lookahead is not None:
            lookahead = RelationLookaheadLogitsProcessor(
                self.lookahead, self.constraint, [], strength=self.lookahead_strength, step=step
            )
        steps = torch.zeros(len(paths), length)
        for t in range(length):
            live = [p for p, target in enumerate(targets) if t < len(target)]
            if not live:
                break
            rows = torch.tensor(live, dtype=torch.long)
            ids = decoder_input[rows, : t + 1]
            processed = constraint(ids, torch.log_softmax(logits[rows, t].cpu(), dim=-1))
            if lookahead is not None:
                lookahead.questions = [questions[owners[p]] for p in live]
                processed = lookahead(ids, processed)
            steps[rows, t] = processed[torch.arange(len(live)), labels[rows, t]]
        return [
            split_segments(steps[p, : len(target)].tolist(), target, self.codec.sep_token_id)
            for p, target in enumerate(targets)
        ]
