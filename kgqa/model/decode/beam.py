"""transformers' beam search under the KB constraint: the ``--search beam`` alternative to kgqa's own search.

``generate`` runs with two processors (the KB constraint and the relation look-ahead, sharing one ``DecodingStep``)
and a third that records each hypothesis' score as the search ranks it. length_penalty 0: a hypothesis' score is the
sum of its log-probs and never rises as it grows, so early_stopping=False (stop once no running beam can beat the
finished ones) is exact *for beam search*; beam search itself is approximate (kgqa.model.decode.search is exact).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel

from kgqa.model.candidate import Candidate, kb_candidate
from kgqa.model.decode.constrained import KBConstraintLogitsProcessor
from kgqa.model.decode.lookahead import RelationLookahead, RelationLookaheadLogitsProcessor
from kgqa.model.decode.scores import PathScoreRecorder
from kgqa.model.decode.step import DecodingStep
from kgqa.model.facts import QuestionFacts
from kgqa.model.options import DecodeOptions
from kgqa.model.targets import TargetCodec
from kgqa.trie import KBIndex, TokenConstraint
from kgqa.trie.keys import split_path_key


class TransformersBeamSearch:
    """Each question's distinct KB paths from ``generate``'s beams, best first."""

    def __init__(
        self,
        model: PreTrainedModel,
        codec: TargetCodec,
        constraint: TokenConstraint,
        index: KBIndex,
        lookahead: RelationLookahead,
        options: DecodeOptions,
    ) -> None:
        self.model = model
        self.codec = codec
        self.constraint = constraint
        self.index = index
        self.lookahead = lookahead
        self.options = options

    @torch.inference_mode()
    def search(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, questions: list[QuestionFacts], num_beams: int
    ) -> list[list[Candidate]]:
        """Each question's candidates for a tokenized batch."""
        input_ids, attention_mask = torch.from_numpy(input_ids), torch.from_numpy(attention_mask)
        processors, constraint = self._processors(questions, num_beams)
        # last: it sees the scores the search ranks by (transformers keeps them only with output_scores, at a cost)
        recorder = PathScoreRecorder(num_beams, self.codec.eos_token_id, normalize=num_beams == 1 and not processors)
        processors.append(recorder)
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=self._generation_config(num_beams),
            logits_processor=processors,
        )
        sequences = out[:, 1:].tolist()
        completed = constraint.completed if constraint else {}
        beams = []
        for q in range(len(questions)):
            rows = range(q * num_beams, (q + 1) * num_beams)
            hypotheses = [(sequences[r], recorder.score(q, sequences[r])) for r in rows]
            beams.append(self._candidates(q, hypotheses, recorder, completed))
        return beams

    def _processors(
        self, questions: list[QuestionFacts], num_beams: int
    ) -> tuple[LogitsProcessorList, KBConstraintLogitsProcessor | None]:
        options = self.options
        processors = LogitsProcessorList()
        if not options.constrained:
            return processors, None
        step = DecodingStep(self.constraint)  # each step's targets read once, for both processors
        constraint = KBConstraintLogitsProcessor(self.constraint, step, options.end_when_determined)
        processors.append(constraint)
        if options.lookahead:
            processors.append(
                RelationLookaheadLogitsProcessor(
                    self.lookahead, self.constraint, questions, num_beams, options.lookahead_strength, step
                )
            )
        return processors, constraint

    def _generation_config(self, num_beams: int) -> GenerationConfig:
        # A fresh generation config: a pretrained checkpoint's (forced BOS, no-repeat n-grams...) would fight the trie.
        # length_penalty 0: a hypothesis' score is the sum of its log-probs, its probability whatever its length, and
        # never rises as it grows; so early_stopping=False (stop once no running beam can beat the finished ones) is
        # exact. early_stopping=True would stop at the first num_beams finished, dropping better paths still running.
        beam_settings = {"early_stopping": False, "length_penalty": 0.0} if num_beams > 1 else {}
        return GenerationConfig(
            max_new_tokens=self.options.max_new_tokens,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            do_sample=False,
            **beam_settings,
            decoder_start_token_id=self.model.config.decoder_start_token_id,
            eos_token_id=self.codec.eos_token_id,
            pad_token_id=self.codec.pad_token_id,
        )

    def _candidates(
        self,
        q: int,
        hypotheses: list[tuple[list[int], float]],
        recorder: PathScoreRecorder,
        completed: dict[tuple[int, ...], str],
    ) -> list[Candidate]:
        """Distinct paths of the finished hypotheses, best first (those cut off before their end dropped).

        ``completed``: the constraint's record of hypotheses it ended early (one KB key left ahead) → that key.
        """
        found: list[Candidate] = []
        seen: set[tuple[str, str, str]] = set()
        eos = self.codec.eos_token_id
        for token_ids, score in sorted(hypotheses, key=lambda h: h[1], reverse=True):
            if not math.isfinite(score):
                continue
            key = completed.get(tuple(token_ids[: token_ids.index(eos)])) if eos in token_ids else None
            path = split_path_key(key, self.index.key_order) if key is not None else self.codec.decode(token_ids)
            objects = self.index.objects(path.name, path.relation, path.meaning) if path else []
            if not objects and self.options.constrained:
                continue  # cut off before its end (max_new_tokens): not a KB path
            if path is None or path in seen:
                continue
            seen.add(path)
            segments = recorder.segments(q, token_ids, self.codec.sep_token_id)
            found.append(kb_candidate(self.index, path, score, segments, beam_rank=len(found)))
        return found
