"""Answer questions: encode, generate KB paths under the trie constraint, look up their objects.

Questions are batched (sorted by length, so padding is small) and decoded with transformers' ``generate``; the
constraint is one LogitsProcessor. Each question gets up to ``top_k`` distinct KB paths, best first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
from tqdm.auto import tqdm
from transformers import GenerationConfig, LogitsProcessorList, PreTrainedModel, PreTrainedTokenizerBase

from kgqa.data import lcs_length, normalize
from kgqa.model.candidate import Candidate
from kgqa.model.decode.constrained import KBConstraintLogitsProcessor
from kgqa.model.decode.lookahead import RelationLookahead, RelationLookaheadLogitsProcessor
from kgqa.model.decode.pathscore import PathScorer
from kgqa.model.decode.scores import PathScoreRecorder
from kgqa.model.decode.step import DecodingStep
from kgqa.model.modeling import default_device, load_checkpoint, quantize_for_cpu, target_order
from kgqa.model.rank.features import FeatureExtractor
from kgqa.model.rank.matcher import MATCHER_FILE, RelationMatcher
from kgqa.model.rank.ranker import LearnedRanker
from kgqa.model.rank.rerank import RerankWeights, rerank
from kgqa.model.segments import SegmentScores
from kgqa.model.targets import TargetCodec
from kgqa.model.vocabulary import extend_for_index
from kgqa.trie import KBIndex, PathKey
from kgqa.trie.keys import split_path_key


@dataclass(frozen=True)
class DecodeOptions:
    num_beams: int = 5
    constrained: bool = True  # off only for the ablation: then the output may be no KB path at all
    lookahead: bool = True
    lookahead_strength: float = 1.0  # α in p ** (1 / (α·Δ + 1)); 1 is the published formula
    end_when_determined: bool = True  # end a hypothesis once one KB key is left ahead (same score, fewer steps)
    rerank_relation_weight: float = 0.0  # see kgqa.model.rank.rerank; chosen by `kgqa tune`
    rerank_name_weight: float = 0.0
    anchor_names: int = 0  # name-anchored candidates, for the learned ranker: this many longest KB names (0: none)
    anchor_paths: int = 32  # at most this many paths of each anchored name (those closest to the question first)
    use_ranker: bool = True  # rank by the model directory's learned ranker when it has one (kgqa.model.rank.ranker)
    batch_size: int = 64
    max_new_tokens: int = 128
    max_question_chars: int = 200  # longer questions are cut (KgCLUE's longest is 54)

    # what `kgqa tune` chooses and stores under "decoding" in a model's kgqa.json
    # and `kgqa ranker fit` the candidate set its ranker was fit on
    TUNED: ClassVar[tuple[str, ...]] = (
        "lookahead_strength",
        "rerank_relation_weight",
        "rerank_name_weight",
        "anchor_names",
        "anchor_paths",
    )

    def beam_width(self, top_k: int) -> int:
        """The beam for ``top_k`` answers: ``num_beams``, widened when more are asked for (the one rule)."""
        return max(self.num_beams, top_k)

    def clean(self, question: str) -> str:
        """What is decoded of a question: without outer white space, cut to ``max_question_chars``."""
        return question.strip()[: self.max_question_chars]

    @classmethod
    def from_training_info(cls, info: dict[str, Any], **changes: Any) -> DecodeOptions:
        """The options a model was tuned with (its ``kgqa.json``), with ``changes`` on top."""
        tuned = {k: v for k, v in info.get("decoding", {}).items() if k in cls.TUNED}
        return cls(**(tuned | changes))


def batch_plan(questions: Sequence[str], batch_size: int) -> list[list[int]]:
    """Which questions decode together: the non-empty ones, longest first (little padding), ``batch_size`` a batch.

    Answers can depend on the batch (padding, and int8 layers quantize each batch's activations with one scale), so
    every engine that must answer exactly as ``answer`` does (kgqa.model.ray_engine) batches by this plan.
    """
    order = sorted((i for i, q in enumerate(questions) if q), key=lambda i: len(questions[i]), reverse=True)
    return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]


class QuestionAnswerer:
    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        index: KBIndex,
        options: DecodeOptions | None = None,
        ranker: LearnedRanker | None = None,
        matcher: RelationMatcher | None = None,
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.index = index
        self.options = options or DecodeOptions()
        self.codec = TargetCodec(tokenizer, target_order(model))
        self.constraint = self.codec.constraint(index)  # VocabularyMismatchError when the model cannot spell the KB
        self.lookahead = RelationLookahead(index)
        self.scorer = self._path_scorer()
        self.features = FeatureExtractor(index, matcher)
        self.ranker = ranker
        self.added_characters: list[str] = []  # index characters the model was extended by (kgqa.model.vocabulary)
        self.parameters = model.num_parameters()

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        index: KBIndex | str | Path,
        options: DecodeOptions | None = None,
        device: torch.device | str | None = None,
        quantize: bool = False,
    ) -> QuestionAnswerer:
        """``quantize``: int8 Linear layers on the CPU (see ``quantize_for_cpu``).

        The model directory's learned ranker (and its relation matcher) are loaded unless ``options.use_ranker`` is
        off; RankerMismatchError when they were fit for another model.
        """
        model, tokenizer = load_checkpoint(model_dir)
        parameters = model.num_parameters()  # as trained: before rows are added, before int8 packs the weights
        index = index if isinstance(index, KBIndex) else KBIndex(index)
        added = extend_for_index(model, tokenizer, index)  # before quantizing: new rows in the float weights
        model = quantize_for_cpu(model) if quantize else model.to(device or default_device())
        use_ranker = (options or DecodeOptions()).use_ranker and LearnedRanker.present(model_dir)
        matcher = RelationMatcher.load(model_dir) if use_ranker and RelationMatcher.present(model_dir) else None
        answerer = cls(model, tokenizer, index, options, matcher=matcher)
        answerer.added_characters = added
        answerer.parameters = parameters
        if use_ranker:
            matcher_file = Path(model_dir) / MATCHER_FILE if matcher is not None else None
            answerer.ranker = LearnedRanker.load(model_dir, answerer.features.names, matcher_file)
        return answerer

    def with_options(self, **changes: object) -> QuestionAnswerer:
        """The same model, index and constraint tables, other decoding options (nothing is rebuilt)."""
        other = copy.copy(self)
        other.options = replace(self.options, **changes)
        other.scorer = other._path_scorer()
        return other

    def _path_scorer(self) -> PathScorer:
        """Teacher-forced scores under the options' look-ahead, as beam search scores (see ``_propose``)."""
        options = self.options
        lookahead = self.lookahead if options.lookahead else None
        return PathScorer(self.model, self.codec, self.constraint, lookahead, options.lookahead_strength)

    def with_matcher(self, matcher: RelationMatcher | None) -> QuestionAnswerer:
        """The same answerer whose features include ``matcher``'s scores (for fitting a ranker; no ranker then)."""
        other = copy.copy(self)
        other.features = FeatureExtractor(self.index, matcher)
        other.ranker = None
        return other

    def answer(
        self, questions: Sequence[str], top_k: int | Sequence[int] = 1, progress: bool = False
    ) -> list[list[Candidate]]:
        """Up to ``top_k`` candidates per question (one number, or one per question), best first; an empty list when
        no KB path fits. A batch decodes with the beam of its largest top_k; each question's list is cut to its own."""
        top_ks = [top_k] * len(questions) if isinstance(top_k, int) else list(top_k)
        # name-anchored candidates only where the learned ranker orders them: it was fit on them; the bonuses were
        # tuned on the beam alone (so --no-ranker is the beam as before)
        anchored = self.ranker is not None and self.options.use_ranker

        def run(texts: list[str], rows: list[int]) -> list[list[Candidate]]:
            ks = [top_ks[i] for i in rows]
            return self._rank(texts, self._propose(texts, max(ks), anchored), ks)

        return self._batched(questions, run, progress)

    def propose(self, questions: Sequence[str], progress: bool = False) -> list[list[Candidate]]:
        """Every candidate path of each question, unranked (the beam's best first, then name-anchored ones)."""
        return self._batched(questions, lambda texts, rows: self._propose(texts, 1, anchored=True), progress)

    def _batched(
        self,
        questions: Sequence[str],
        run: Callable[[list[str], list[int]], list[list[Candidate]]],
        progress: bool,
    ) -> list[list[Candidate]]:
        """``run(texts, rows)`` on each batch of ``batch_plan``: the cleaned questions and their places in the input."""
        results: list[list[Candidate]] = [[] for _ in questions]
        cleaned = [self.options.clean(q) for q in questions]
        batches = batch_plan(cleaned, self.options.batch_size)
        with tqdm(total=sum(map(len, batches)), desc="answering", unit="q", disable=not progress) as bar:
            for batch in batches:
                for i, candidates in zip(batch, run([cleaned[i] for i in batch], batch), strict=True):
                    results[i] = candidates
                bar.update(len(batch))
        return results

    @torch.inference_mode()
    def _propose(self, questions: list[str], top_k: int, anchored: bool) -> list[list[Candidate]]:
        """Every candidate of each question, unranked: the beam's distinct paths, then name-anchored ones."""
        options = self.options
        num_beams = options.beam_width(top_k)
        encoded = self.tokenizer(questions, padding=True, return_tensors="pt", add_special_tokens=True)
        device = self.model.device
        processors = LogitsProcessorList()
        constraint: KBConstraintLogitsProcessor | None = None
        if options.constrained:
            step = DecodingStep(self.constraint)  # each step's targets read once, for both processors
            constraint = KBConstraintLogitsProcessor(self.constraint, step, options.end_when_determined)
            processors.append(constraint)
            if options.lookahead:
                processors.append(
                    RelationLookaheadLogitsProcessor(
                        self.lookahead, self.constraint, questions, num_beams, options.lookahead_strength, step
                    )
                )
        # last: it sees the scores the search ranks by (transformers keeps them only with output_scores, at a cost)
        recorder = PathScoreRecorder(num_beams, self.codec.eos_token_id, normalize=num_beams == 1 and not processors)
        processors.append(recorder)
        # A fresh generation config: a pretrained checkpoint's (forced BOS, no-repeat n-grams...) would fight the trie.
        # length_penalty 0: a hypothesis' score is the sum of its log-probs, its probability whatever its length, and
        # never rises as it grows; so early_stopping=False (stop once no running beam can beat the finished ones) is
        # exact. early_stopping=True would stop at the first num_beams finished, dropping better paths still running.
        beam_settings = {"early_stopping": False, "length_penalty": 0.0} if num_beams > 1 else {}
        config = GenerationConfig(
            max_new_tokens=options.max_new_tokens,
            num_beams=num_beams,
            num_return_sequences=num_beams,
            do_sample=False,
            **beam_settings,
            decoder_start_token_id=self.model.config.decoder_start_token_id,
            eos_token_id=self.codec.eos_token_id,
            pad_token_id=self.codec.pad_token_id,
        )
        input_ids = encoded["input_ids"].to(device)
        attention_mask = encoded["attention_mask"].to(device)
        encoder_outputs = self.model.get_encoder()(input_ids=input_ids, attention_mask=attention_mask)
        # kept aside: generate expands encoder_outputs to one row per beam in place
        encoder_hidden = encoder_outputs.last_hidden_state
        out = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            encoder_outputs=encoder_outputs,
            generation_config=config,
            logits_processor=processors,
        )
        sequences = out[:, 1:].tolist()
        beams = []
        for q in range(len(questions)):
            rows = range(q * num_beams, (q + 1) * num_beams)
            hypotheses = [(sequences[r], recorder.score(q, sequences[r])) for r in rows]
            beams.append(self._candidates(q, hypotheses, recorder, constraint.completed if constraint else {}))
        if not (anchored and options.anchor_names and options.constrained):
            return beams
        anchors = [self._anchor_paths(question, beam) for question, beam in zip(questions, beams, strict=True)]
        scored = self.scorer.score(encoder_hidden, attention_mask, questions, anchors)
        return [
            beam + self._anchored(paths, segments) for beam, paths, segments in zip(beams, anchors, scored, strict=True)
        ]

    def _rank(self, questions: list[str], proposed: list[list[Candidate]], top_ks: list[int]) -> list[list[Candidate]]:
        """Each question's candidates, ordered, cut to its own top_k (the one cut)."""
        options = self.options
        ranker = self.ranker if options.use_ranker else None
        if ranker is not None:
            rows = self.features.rows_many(questions, proposed)
            return [ranker.rank(candidates, r, k) for candidates, r, k in zip(proposed, rows, top_ks, strict=True)]
        weights = RerankWeights(options.rerank_relation_weight, options.rerank_name_weight)
        return [
            rerank(question, candidates, self.index, weights)[:k]
            for question, candidates, k in zip(questions, proposed, top_ks, strict=True)
        ]

    def _anchor_paths(self, question: str, beam: list[Candidate]) -> list[PathKey]:
        """Paths of the longest KB names in the question that the beam did not reach, closest to the question first."""
        seen = {(c.name, c.relation, c.meaning) for c in beam}
        text = normalize(question)
        paths: list[PathKey] = []
        for name in self.index.names_in(question)[: self.options.anchor_names]:
            own = sorted(
                {(t.relation, t.meaning) for t in self.index.triples(name)} - {(r, m) for n, r, m in seen if n == name},
                key=lambda rm: (-lcs_length(normalize(rm[0]), text) / max(1, len(rm[0])), rm),
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
            obj = objects[0] if objects else ""
            segments = recorder.segments(q, token_ids, self.codec.sep_token_id)
            found.append(
                Candidate(
                    path.name,
                    path.relation,
                    path.meaning,
                    obj,
                    score,
                    log_probability=score,
                    segments=segments,
                    beam_rank=len(found),
                )
            )
        return found
