"""Answer questions: a proposer stage (KB paths the model decodes under the trie, plus name-anchored ones) and a
ranking stage (the learned ranker, or the model's score with rule bonuses), over questions' shared facts.

Questions are batched (sorted by length, so padding is small). Each question gets up to ``top_k`` distinct KB
paths, best first.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.model.options import DecodeOptions
from kgqa.model.propose import Proposer
from kgqa.model.rank import MATCHER_FILE, MATCHER_INFO
from kgqa.model.rank.confidence import ConfidenceModel
from kgqa.model.rank.features import FeatureExtractor
from kgqa.model.rank.lexicon import LEXICON_FILE, Lexicon
from kgqa.model.rank.ranker import LearnedRanker
from kgqa.model.rank.rerank import RerankWeights
from kgqa.model.rank.semantic import SemanticFeatures
from kgqa.model.rank.stage import RankingStage
from kgqa.model.runtime import DEFAULT_RUNTIME, ModelRuntime, load_runtime
from kgqa.model.targets import TargetCodec
from kgqa.trie import KBIndex, TokenConstraint

if TYPE_CHECKING:
    from kgqa.model.rank.matcher import RelationMatcher

__all__ = ["DecodeOptions", "QuestionAnswerer", "batch_plan"]


def _load_matcher(model_dir: str | Path) -> RelationMatcher:
    """The optional neural relation matcher (torch: imported only for a model that has one)."""
    from kgqa.model.rank.matcher import RelationMatcher

    return RelationMatcher.load(model_dir)


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
        runtime: ModelRuntime,
        index: KBIndex,
        options: DecodeOptions | None = None,
        ranker: LearnedRanker | None = None,
        matcher: RelationMatcher | None = None,
        lexicon: Lexicon | None = None,
        semantic: SemanticFeatures | None = None,
    ) -> None:
        self.runtime = runtime
        self.index = index
        self.options = options or DecodeOptions()
        self.proposer = Proposer(runtime, index, self.options)
        self.features = FeatureExtractor(index, matcher, lexicon, semantic)
        self.ranker = ranker

    @classmethod
    def from_model(
        cls, model: Any, tokenizer: Any, index: KBIndex, options: DecodeOptions | None = None, **scorers: Any
    ) -> QuestionAnswerer:
        """A transformers model in memory (being trained, or built by a test) on the torch runtime."""
        from kgqa.model.runtime.torch_layers import torch_runtime

        return cls(torch_runtime(model, tokenizer, index.alphabet), index, options, **scorers)

    @property
    def added_characters(self) -> list[str]:
        """Index characters the model was extended by (kgqa.model.vocabulary)."""
        return self.runtime.added_characters

    @property
    def parameters(self) -> int:
        return self.runtime.parameters

    @property
    def codec(self) -> TargetCodec:
        return self.proposer.codec

    @property
    def constraint(self) -> TokenConstraint:
        return self.proposer.constraint

    @classmethod
    def load(
        cls,
        model_dir: str | Path,
        index: KBIndex | str | Path,
        options: DecodeOptions | None = None,
        quantize: bool = False,
        runtime: str = DEFAULT_RUNTIME,
        threads: int | None = None,
    ) -> QuestionAnswerer:
        """The model on ``runtime`` (``kgqa.model.runtime``: "onnx", or "torch", the reference); ``quantize``: its int8
        layers; ``threads``: the runtime's threads in this process (None: its default).

        The model directory's learned ranker (and its relation matcher and lexicon, where it has them, and the word
        files and neighbours, where the ranker was fit with them) are loaded unless ``options.use_ranker`` is off;
        RankerMismatchError when they were fit for another model.
        """
        index = index if isinstance(index, KBIndex) else KBIndex(index)
        loaded = load_runtime(model_dir, runtime, quantize, threads, alphabet=index.alphabet)
        use_ranker = (options or DecodeOptions()).use_ranker and LearnedRanker.present(model_dir)
        matcher = _load_matcher(model_dir) if use_ranker and (Path(model_dir) / MATCHER_INFO).is_file() else None
        lexicon = Lexicon.load(model_dir) if use_ranker and Lexicon.present(model_dir) else None
        # the word files and neighbours are read only for a ranker fit with them (one fit without may sit beside them)
        fit_with = LearnedRanker.fit_with(model_dir) if use_ranker else set()
        semantic = None
        if "words" in fit_with and SemanticFeatures.present(model_dir):
            semantic = SemanticFeatures.load(model_dir, neighbours="neighbours" in fit_with)
        answerer = cls(loaded, index, options, matcher=matcher, lexicon=lexicon, semantic=semantic)
        if use_ranker:
            model_dir = Path(model_dir)
            answerer.ranker = LearnedRanker.load(
                model_dir,
                answerer.features.names,
                model_dir / MATCHER_FILE if matcher is not None else None,
                model_dir / LEXICON_FILE if lexicon is not None else None,
                **({f"{k}_file": f for k, f in semantic.files(model_dir).items()} if semantic is not None else {}),
            )
            if answerer.options.confidence and ConfidenceModel.present(model_dir):
                answerer.ranker.confidence = ConfidenceModel.load(model_dir, answerer.ranker.feature_names)
        return answerer

    @property
    def abstain_below(self) -> float | None:
        """The confidence below which an answer is withheld: the options' (a setting), else the confidence model's
        own; None without a confidence model (nothing is withheld then)."""
        confidence = self.ranker.confidence if self.ranker is not None and self.options.use_ranker else None
        if confidence is None or not self.options.confidence:
            return None
        return self.options.abstain_below if self.options.abstain_below is not None else confidence.threshold

    def with_options(self, **changes: object) -> QuestionAnswerer:
        """The same model, index and constraint tables, other decoding options (nothing is rebuilt)."""
        other = copy.copy(self)
        other.options = replace(self.options, **changes)
        other.proposer = self.proposer.with_options(other.options)
        return other

    def with_scorers(
        self, matcher: RelationMatcher | None, lexicon: Lexicon | None, semantic: SemanticFeatures | None = None
    ) -> QuestionAnswerer:
        """The same answerer whose features include ``matcher``'s, ``lexicon``'s and ``semantic``'s columns (for
        fitting a ranker; no ranker then)."""
        other = copy.copy(self)
        other.features = FeatureExtractor(self.index, matcher, lexicon, semantic)
        other.ranker = None
        return other

    def ranking(self) -> RankingStage:
        """The ranking stage under the current options: the learned ranker, else the tuned rule bonuses."""
        options = self.options
        ranker = self.ranker if options.use_ranker else None
        weights = RerankWeights(options.rerank_relation_weight, options.rerank_name_weight)
        return RankingStage(self.features, ranker, weights)

    def facts(self, question: str) -> QuestionFacts:
        return QuestionFacts(question, self.index)

    def answer(
        self,
        questions: Sequence[str],
        top_k: int | Sequence[int] = 1,
        progress: bool = False,
        explain: bool = False,
    ) -> list[list[Candidate]]:
        """Up to ``top_k`` candidates per question (one number, or one per question), best first; an empty list when
        no KB path fits. A batch is searched for its largest top_k; each question's list is cut to its own.
        ``explain``: each candidate also carries what moved the learned ranker's score, by feature group."""
        top_ks = [top_k] * len(questions) if isinstance(top_k, int) else list(top_k)
        # name-anchored candidates only where the learned ranker orders them: it was fit on them; the bonuses were
        # tuned on the searched paths alone (so --no-ranker ranks those alone)
        anchored = self.ranker is not None and self.options.use_ranker
        ranking = self.ranking()
        confidence = self.options.confidence

        def run(facts: list[QuestionFacts], rows: list[int]) -> list[list[Candidate]]:
            ks = [top_ks[i] for i in rows]
            proposed, encoded = self.proposer.propose_encoded(facts, max(ks), anchored)

            def pressure(places: Sequence[int], paths: Sequence[Candidate]) -> np.ndarray:
                return self.proposer.pressure(encoded, places, paths)

            return ranking.rank(facts, proposed, ks, explain, pressure if confidence else None, confidence)

        return self._batched(questions, run, progress)

    def propose(self, questions: Sequence[str], progress: bool = False) -> list[list[Candidate]]:
        """Every candidate path of each question, unranked (the search's best first, then name-anchored ones)."""
        return self._batched(questions, lambda facts, rows: self.proposer.propose(facts, 1, anchored=True), progress)

    def _batched(
        self,
        questions: Sequence[str],
        run: Callable[[list[QuestionFacts], list[int]], list[list[Candidate]]],
        progress: bool,
    ) -> list[list[Candidate]]:
        """``run(facts, rows)`` on each batch of ``batch_plan``: the cleaned questions' facts and their places."""
        results: list[list[Candidate]] = [[] for _ in questions]
        cleaned = [self.options.clean(q) for q in questions]
        batches = batch_plan(cleaned, self.options.batch_size)
        with tqdm(total=sum(map(len, batches)), desc="answering", unit="q", disable=not progress) as bar:
            for batch in batches:
                facts = [self.facts(cleaned[i]) for i in batch]
                for i, candidates in zip(batch, run(facts, batch), strict=True):
                    results[i] = candidates
                bar.update(len(batch))
        return results
