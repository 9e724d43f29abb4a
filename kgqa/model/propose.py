"""The proposer stage: a question's candidate KB paths, scored by the model, unranked.

The search (kgqa's best-first search over the index by default, transformers' beam search with ``search="beam"``)
gives each question's best paths; name-anchored paths (the question's longest KB names with the relations and
meanings the search did not reach) are scored the way the search scores, so both sit on one scale. Questions come
as ``QuestionFacts``, shared with the ranking stage.

Under the best-first search the anchored names' paths are scored first, as the search's draft: the search then
expands their prefixes without decoder calls, and the anchored candidates take their scores from the same pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from kgqa.model.candidate import Candidate, kb_candidate
from kgqa.model.decode.incremental import EncodedQuestions, IncrementalDecoder
from kgqa.model.decode.lookahead import RelationLookahead, RelationLookaheadLogitsProcessor
from kgqa.model.decode.pathscore import PathDraft, PathScorer
from kgqa.model.decode.pressure import pressure_rows
from kgqa.model.decode.search import BestFirstSearch, Found
from kgqa.model.facts import QuestionFacts
from kgqa.model.options import DecodeOptions
from kgqa.model.runtime import ModelRuntime
from kgqa.model.segments import SegmentScores, split_segments
from kgqa.model.targets import TargetCodec
from kgqa.trie import KBIndex, PathKey
from kgqa.trie.keys import split_path_key

if TYPE_CHECKING:
    from kgqa.model.decode.beam import TransformersBeamSearch


class Proposer:
    """Candidate paths of a batch of questions: the search's paths, then name-anchored ones."""

    def __init__(self, runtime: ModelRuntime, index: KBIndex, options: DecodeOptions) -> None:
        self.runtime = runtime
        self.tokenizer = runtime.tokenizer
        self.index = index
        self.options = options
        self.codec = TargetCodec(runtime.tokenizer, runtime.spec.target_order)
        self.constraint = self.codec.constraint(index)  # VocabularyMismatchError when the model cannot spell the KB
        self.lookahead = RelationLookahead(index)
        self.decoder = IncrementalDecoder(runtime)
        self.scorer = self._path_scorer()
        self._beam: TransformersBeamSearch | None = None
        self._check_search()

    def _check_search(self) -> None:
        """transformers' beam search (and unconstrained decoding) run on the torch runtime alone: refused at load."""
        options = self.options
        if (options.search == "beam" or not options.constrained) and self.runtime.model is None:
            raise ValueError(
                "transformers' beam search (--search beam, --unconstrained) runs on the torch runtime: add "
                "--runtime torch"
            )

    def with_options(self, options: DecodeOptions) -> Proposer:
        """The same model and constraint tables under other options (nothing is rebuilt)."""
        other = object.__new__(Proposer)
        other.__dict__.update(self.__dict__)
        other.options = options
        other.scorer = other._path_scorer()
        other._beam = None
        other._check_search()
        return other

    @property
    def beam(self) -> TransformersBeamSearch:
        """transformers' beam search under the options (``search="beam"``, or unconstrained), over the same
        constraint tables: the torch runtime's alone."""
        if self._beam is None:
            from kgqa.model.decode.beam import TransformersBeamSearch

            self._beam = TransformersBeamSearch(
                self.runtime.model, self.codec, self.constraint, self.index, self.lookahead, self.options
            )
        return self._beam

    def _path_scorer(self) -> PathScorer:
        """Scores of given paths under the options' look-ahead, as the search scores them."""
        options = self.options
        lookahead = self.lookahead if options.lookahead else None
        return PathScorer(self.decoder, self.codec, self.constraint, lookahead, options.lookahead_strength)

    def propose(self, questions: list[QuestionFacts], top_k: int, anchored: bool) -> list[list[Candidate]]:
        """Every candidate of each question, unranked: the search's (or beam's) paths, then (``anchored``)
        name-anchored ones."""
        return self.propose_encoded(questions, top_k, anchored)[0]

    def propose_encoded(
        self, questions: list[QuestionFacts], top_k: int, anchored: bool
    ) -> tuple[list[list[Candidate]], EncodedQuestions]:
        """``propose``, and the questions' encoder output (for ``pressure``)."""
        options = self.options
        num_beams = options.beam_width(top_k)
        input_ids, attention_mask = self.tokenizer.batch([facts.question for facts in questions])
        anchored = anchored and bool(options.anchor_names) and options.constrained
        if options.constrained and options.search == "best_first":
            encoded_questions = self.decoder.encode(input_ids, attention_mask)
            draft = None
            if anchored:  # every path the anchored candidates may take: at most num_beams of them are found
                drafted = [self._anchor_paths(facts, [], extra=num_beams) for facts in questions]
                draft = self.scorer.draft(encoded_questions, questions, drafted)
            search = BestFirstSearch(
                self.decoder,
                self.constraint,
                self._lookahead_processor(questions),
                max_target_tokens=options.max_new_tokens,
                # the margin is part of the learned ranker's candidate set (fit with it); the bonuses were tuned
                # on the whole top-k
                margin=options.search_margin if anchored else 0.0,
            )
            found = search.search_encoded(encoded_questions, questions, num_beams, draft, required=top_k)
            beams = [[self._found(f, rank) for rank, f in enumerate(own)] for own in found]
            return self._with_anchored(questions, beams, encoded_questions, anchored, draft), encoded_questions
        beams = self.beam.search(input_ids, attention_mask, questions, num_beams)
        encoded_questions = self.decoder.encode(input_ids, attention_mask)
        return self._with_anchored(questions, beams, encoded_questions, anchored), encoded_questions

    def pressure(self, encoded: EncodedQuestions, questions: Sequence[int], paths: Sequence[Candidate]) -> np.ndarray:
        """``PRESSURE_COLUMNS`` of each candidate ``paths[i]`` of question ``questions[i]`` of ``encoded``."""
        targets = [self.codec.encode(c.name, c.relation, c.meaning) for c in paths]
        segments = [c.segments for c in paths]
        sep = self.codec.sep_token_id
        return pressure_rows(self.decoder, encoded, questions, targets, segments, sep)

    def pressure_of(self, questions: list[QuestionFacts], paths: Sequence[Candidate]) -> np.ndarray:
        """``pressure`` of one candidate a question, the questions encoded here."""
        encoded_questions = self.decoder.encode(*self.tokenizer.batch([facts.question for facts in questions]))
        return self.pressure(encoded_questions, range(len(questions)), paths)

    def _with_anchored(
        self,
        questions: list[QuestionFacts],
        beams: list[list[Candidate]],
        encoded: EncodedQuestions,
        anchored: bool,
        draft: PathDraft | None = None,
    ) -> list[list[Candidate]]:
        if not anchored:
            return beams
        anchors = [self._anchor_paths(facts, beam) for facts, beam in zip(questions, beams, strict=True)]
        scored = self._scores(encoded, questions, anchors, draft)
        return [
            beam + self._anchored(paths, segments) for beam, paths, segments in zip(beams, anchors, scored, strict=True)
        ]

    def _scores(
        self,
        encoded: EncodedQuestions,
        questions: list[QuestionFacts],
        paths: list[list[PathKey]],
        draft: PathDraft | None,
    ) -> list[list[SegmentScores]]:
        """The paths' scores: from the draft (it holds every anchored path: the first ``anchor_paths`` of a name that
        the search did not reach are among its first ``anchor_paths + k``), else by the scorer."""
        if draft is None:
            return self.scorer.score(encoded, questions, paths)
        return [[draft.scores[q][p] for p in own] for q, own in enumerate(paths)]

    def _lookahead_processor(self, questions: list[QuestionFacts]) -> RelationLookaheadLogitsProcessor | None:
        """The look-ahead's divisors for the search (the processor's table, one row a question)."""
        if not self.options.lookahead:
            return None
        return RelationLookaheadLogitsProcessor(
            self.lookahead, self.constraint, questions, 1, self.options.lookahead_strength
        )

    def _found(self, found: Found, rank: int) -> Candidate:
        path = split_path_key(found.key, self.index.key_order)
        segments = split_segments(found.steps, found.target, self.codec.sep_token_id)
        return kb_candidate(self.index, path, found.score, segments, beam_rank=rank)

    def _anchor_paths(self, facts: QuestionFacts, beam: list[Candidate], extra: int = 0) -> list[PathKey]:
        """Paths the search did not reach of the longest KB names in the question that no longer name contains,
        closest to the question first (``extra`` more of each name than the anchored candidates take)."""
        seen = {(c.name, c.relation, c.meaning) for c in beam}
        paths: list[PathKey] = []
        for name in facts.outer_names[: self.options.anchor_names]:
            own = [(r, m) for r, m in facts.paths_by_share(name) if (name, r, m) not in seen]
            paths += [
                PathKey(name, r, m) for r, m in own[: self.options.anchor_paths + extra] if self.codec.can_spell(r + m)
            ]
        # no longer than decoding may write (max_new_tokens bounds every candidate alike)
        limit = self.options.max_new_tokens
        return [p for p in paths if self.codec.target_length(p) <= limit]

    def _anchored(self, paths: list[PathKey], scores: list[SegmentScores]) -> list[Candidate]:
        return [
            kb_candidate(self.index, path, segments.total, segments)
            for path, segments in zip(paths, scores, strict=True)
            if math.isfinite(segments.total)
        ]
