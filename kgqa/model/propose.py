"""The proposer stage: a question's candidate KB paths, scored by the model, unranked.

The beam searches the trie under the constraint and look-ahead processors; name-anchored paths (the question's
longest KB names with their relations and meanings the beam did not reach) are scored by teacher forcing through the
same processors, so both sit on one scale. Questions come as ``QuestionFacts``, shared with the ranking stage.
"""

from __future__ import annotations

import math

import torch
from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from kgqa.model.candidate import Candidate
from kgqa.model.decode.constrained import KBConstraintLogitsProcessor
from kgqa.model.decode.lookahead import RelationLookahead, RelationLookaheadLogitsProcessor
from kgqa.model.decode.pathscore import PathScorer
from kgqa.model.decode.scores import PathScoreRecorder
from kgqa.model.decode.step import DecodingStep
from kgqa.model.facts import QuestionFacts
from kgqa.model.modeling import target_order
from kgqa.model.options import DecodeOptions
from kgqa.model.segments import SegmentScores
from kgqa.model.targets import TargetCodec
from kgqa.trie import KBIndex, PathKey
from kgqa.trie.keys import split_path_key


class Proposer:
    """Candidate paths of a batch of questions: the beam's distinct paths, then name-anchored ones."""

    def __init__(
        self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, index: KBIndex, options: DecodeOptions
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.index = index
        self.options = options
        self.codec = TargetCodec(tokenizer, target_order(model))
        self.constraint = self.codec.constraint(index)  # VocabularyMismatchError when the model cannot spell the KB
        self.lookahead = RelationLookahead(index)
        self.scorer = self._path_scorer()

    def with_options(self, options: DecodeOptions) -> Proposer:
        """The same model and constraint tables under other options (nothing is rebuilt)."""
        other = object.__new__(Proposer)
        other.__dict__.update(self.__dict__)
        other.options = options
        other.scorer = other._path_scorer()
        return other

    def _path_scorer(self) -> PathScorer:
        """Teacher-forced scores under the options' look-ahead, as beam search scores."""
        options = self.options
        lookahead = self.lookahead if options.lookahead else None
        return PathScorer(self.model, self.codec, self.constraint, lookahead, options.lookahead_strength)

    @torch.inference_mode()
    def propose(self, questions: list[QuestionFacts], top_k: int, anchored: bool) -> list[list[Candidate]]:
        """Every candidate of each question, unranked: the beam's distinct paths, then (``anchored``) name-anchored."""
        options = self.options
        num_beams = options.beam_width(top_k)
        texts = [facts.question for facts in questions]
        encoded = self.tokenizer(texts, padding=True, return_tensors="pt", add_special_tokens=True)
        processors, constraint = self._processors(questions, num_beams)
        # last: it sees the scores the search ranks by (transformers keeps them only with output_scores, at a cost)
        recorder = PathScoreRecorder(num_beams, self.codec.eos_token_id, normalize=num_beams == 1 and not processors)
        processors.append(recorder)
        device = self.model.device
        input_ids = encoded["input_ids"].to(device)
        attention_mask = encoded["attention_mask"].to(device)
        encoder_outputs = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        # kept aside: generate expands encoder_outputs to one row per beam in place
        encoder_hidden = encoder_outputs.last_hidden_state
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_outputs=encoder_outputs,
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
        if not (anchored and options.anchor_names and options.constrained):
            return beams
        anchors = [self._anchor_paths(facts, beam) for facts, beam in zip(questions, beams, strict=True)]
        scored = self.scorer.score(encoder_hidden, attention_mask, questions, anchors)
        return [
            beam + self._anchored(paths, segments) for beam, paths, segments in zip(beams, anchors, scored, strict=True)
        ]

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

    def _anchor_paths(self, facts: QuestionFacts, beam: list[Candidate]) -> list[PathKey]:
        """Paths of the longest KB names in the question that the beam did not reach, closest to the question first."""
        seen = {(c.name, c.relation, c.meaning) for c in beam}
        paths: list[PathKey] = []
        for name in facts.names[: self.options.anchor_names]:
            own = sorted(
                {(t.relation, t.meaning) for t in facts.triples(name)} - {(r, m) for n, r, m in seen if n == name},
                key=lambda rm: (-facts.share(rm[0]), rm),
            )
            paths += [PathKey(name, r, m) for r, m in own[: self.options.anchor_paths] if self.codec.can_spell(r + m)]
        # no longer than decoding may write (max_new_tokens bounds every candidate alike)
        limit = self.options.max_new_tokens
        return [p for p in paths if len(self.codec.encode(p.name, p.relation, p.meaning)) <= limit]

    def _anchored(self, paths: list[PathKey], scores: list[SegmentScores]) -> list[Candidate]:
        found = []
        for path, segments in zip(paths, scores, strict=True):
            if not math.isfinite(segments.total):
                continue
            objects = self.index.objects(path.name, path.relation, path.meaning)
            found.append(
                Candidate(
                    path.name,
                    path.relation,
                    path.meaning,
                    objects[0] if objects else "",
                    segments.total,
                    log_probability=segments.total,
                    segments=segments,
                )
            )
        return found

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
            found.append(
                Candidate(
                    path.name,
                    path.relation,
                    path.meaning,
                    objects[0] if objects else "",
                    score,
                    log_probability=score,
                    segments=segments,
                    beam_rank=len(found),
                )
            )
        return found
