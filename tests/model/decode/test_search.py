"""Best-first search returns the exact top-k KB paths under the model's scores, on either runtime: checked against
every path of small random KBs scored by transformers' teacher forcing through the processors beam search uses."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.decode import children as children_module
from kgqa.model.decode.children import RankedChildren
from kgqa.model.decode.constrained import KBConstraintLogitsProcessor
from kgqa.model.decode.lookahead import RelationLookaheadLogitsProcessor
from kgqa.model.decode.search import BestFirstSearch
from kgqa.model.decode.step import DecodingStep
from kgqa.model.modeling import build_model, load_checkpoint, save_checkpoint
from kgqa.model.runtime import RUNTIMES
from kgqa.model.runtime.export import export_model
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.trie import KBIndex, PathKey
from tests.conftest import index_of_triples

NAME_CHARS = "ab龙星光x"
WORD = st.text(alphabet=NAME_CHARS, min_size=1, max_size=4)
TRIPLE = st.tuples(WORD, st.one_of(st.just(""), WORD), WORD, WORD)  # name, meaning, relation, object
QUESTION = st.text(alphabet=NAME_CHARS + "的是什么?", min_size=1, max_size=10)
MODEL_SEEDS = (0, 1, 2)
# a random small KB, one of the untrained models, a runtime, the look-ahead on or off, and questions
RANDOM_SEARCH = {
    "triples": st.lists(TRIPLE, min_size=1, max_size=14),
    "seed": st.sampled_from(MODEL_SEEDS),
    "runtime": st.sampled_from(RUNTIMES),
    "lookahead": st.booleans(),
    "questions": st.lists(QUESTION, min_size=1, max_size=3),
}


@pytest.fixture(scope="module")
def random_models(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    """Untrained tiny models over every character the random KBs and questions use, saved and exported once."""
    tokenizer = build_char_tokenizer([NAME_CHARS, "的是什么?"])
    models = {}
    for seed in MODEL_SEEDS:
        torch.manual_seed(seed)
        models[seed] = tmp_path_factory.mktemp(f"random-{seed}") / "model"
        save_checkpoint(build_model(tokenizer, "tiny", dropout=0.0), tokenizer, models[seed], {})
        export_model(models[seed])
    return models


@functools.cache
def _torch_model(directory: Path) -> torch.nn.Module:
    return load_checkpoint(directory)[0].eval()


def _every_path_scored(
    answerer: QuestionAnswerer, questions: list[str], model: torch.nn.Module
) -> list[list[tuple[float, PathKey]]]:
    """Each question's every KB path with its score, best first, computed independently of the search: transformers'
    full forward pass (every position, the whole vocabulary), then the constraint and look-ahead processors beam search
    runs, summing the chosen tokens' values."""
    index, codec = answerer.index, answerer.codec
    paths = [index.path_by_id(i) for i in range(len(index))]
    targets = [codec.encode(p.name, p.relation, p.meaning) for p in paths]
    length = max(map(len, targets))
    labels = torch.tensor([t + [codec.pad_token_id] * (length - len(t)) for t in targets])
    start = torch.full((len(paths), 1), model.config.decoder_start_token_id)
    decoder_input = torch.cat([start, labels[:, :-1]], dim=1)
    out = []
    for question in questions:
        facts = answerer.facts(question)
        ids, mask = answerer.runtime.tokenizer.batch([question] * len(paths))
        with torch.inference_mode():
            logits = model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), decoder_input_ids=decoder_input
            ).logits
        step = DecodingStep(answerer.constraint)
        processors = [KBConstraintLogitsProcessor(answerer.constraint, step)]
        if answerer.options.lookahead:
            processors.append(
                RelationLookaheadLogitsProcessor(
                    answerer.proposer.lookahead,
                    answerer.constraint,
                    [facts] * len(paths),
                    strength=answerer.options.lookahead_strength,
                    step=step,
                )
            )
        totals = torch.zeros(len(paths))
        for t in range(length):
            scores = torch.log_softmax(logits[:, t], dim=-1)
            for processor in processors:
                scores = processor(decoder_input[:, : t + 1], scores)
            live = torch.tensor([t < len(target) for target in targets])
            totals += torch.where(live, scores[torch.arange(len(paths)), labels[:, t]], torch.zeros(len(paths)))
        out.append(sorted(zip(totals.tolist(), paths, strict=True), key=lambda sp: -sp[0]))
    return out


def _random_answerer(triples: list, root: Path, model: Path, runtime: str, k: int, lookahead: bool) -> QuestionAnswerer:
    """An untrained tiny model on ``runtime`` over an index of ``triples``, searching for the top ``k``, no ranker."""
    options = DecodeOptions(num_beams=k, lookahead=lookahead, use_ranker=False)
    return QuestionAnswerer.load(model, index_of_triples(triples, root), options, runtime=runtime)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    **RANDOM_SEARCH,
    k=st.integers(1, 6),
    ranked_ahead=st.sampled_from([1, 2, children_module.RANKED_AHEAD]),
)
def test_search_returns_the_exact_top_k(
    random_models: dict[int, Path],
    triples: list,
    seed: int,
    runtime: str,
    k: int,
    lookahead: bool,
    questions: list[str],
    ranked_ahead: int,
) -> None:
    with tempfile.TemporaryDirectory() as root, pytest.MonkeyPatch.context() as patch:
        patch.setattr(children_module, "RANKED_AHEAD", ranked_ahead)  # children ranked lazily past the first one or two
        answerer = _random_answerer(triples, Path(root), random_models[seed], runtime, k, lookahead)
        results = answerer.answer(questions, top_k=k)
        for candidates, every in zip(
            results, _every_path_scored(answerer, questions, _torch_model(random_models[seed])), strict=True
        ):
            expected = every[:k]
            assert len(candidates) == min(k, len(every))
            for c, (score, _) in zip(candidates, expected, strict=True):
                assert c.log_probability == pytest.approx(score, abs=1e-4)  # the k best scores, in order
            by_path = {path: score for score, path in every}
            for c in candidates:  # each one's search score is its teacher-forced score
                assert c.log_probability == pytest.approx(by_path[PathKey(c.name, c.relation, c.meaning)], abs=1e-4)
                assert c.segments is not None and c.segments.total == pytest.approx(c.log_probability, abs=1e-4)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(**RANDOM_SEARCH, k=st.integers(1, 6), required=st.integers(1, 6), margin=st.floats(0.01, 3.0))
def test_a_margin_returns_the_exact_top_k_down_to_it(
    random_models: dict[int, Path],
    triples: list,
    seed: int,
    runtime: str,
    k: int,
    required: int,
    lookahead: bool,
    questions: list[str],
    margin: float,
) -> None:
    """Under a margin the search returns the exact top k's first ``required`` paths, then those of the rest that
    score within the margin of the best, in order, and none of the others (an untrained model's scores spread over a
    few nats: margins up to 3 cut)."""
    with tempfile.TemporaryDirectory() as root:
        answerer = _random_answerer(triples, Path(root), random_models[seed], runtime, k, lookahead)
        proposer = answerer.proposer
        facts = [answerer.facts(q) for q in questions]
        encoded = proposer.decoder.encode(*answerer.runtime.tokenizer.batch(questions))
        searcher = BestFirstSearch(
            proposer.decoder, proposer.constraint, proposer._lookahead_processor(facts), margin=margin
        )
        results = searcher.search_encoded(encoded, facts, k, required=required)
        for own, every in zip(
            results, _every_path_scored(answerer, questions, _torch_model(random_models[seed])), strict=True
        ):
            expected = [score for score, _ in every[:k]]
            floor = expected[0] - margin
            found = [f.score for f in own]
            assert found == pytest.approx(expected[: len(found)], abs=1e-4)
            assert len(found) >= min(required, len(expected))
            assert all(score >= floor - 1e-4 for score in found[required:])  # within the margin (up to rounding)
            assert all(score < floor + 1e-4 for score in expected[len(found) :])  # what is left out, beyond it


@given(
    scores=st.lists(st.sampled_from([0.0, -0.5, -1.0, -2.5, float("-inf")]) | st.floats(-9, 0), max_size=60),
    ahead=st.integers(1, 8),
)
def test_children_ranked_lazily_come_in_the_full_stable_order(scores: list[float], ahead: int) -> None:
    values = np.array(scores, dtype=np.float64)
    tokens = np.arange(100, 100 + len(scores))
    order = np.argsort(-values, kind="stable")  # best first, ties in token order
    ranked = RankedChildren(tokens, values, ahead)
    assert len(ranked) == len(scores)
    expected = list(zip(tokens[order].tolist(), values[order].tolist(), strict=True))
    assert [ranked.at(i) for i in range(len(scores))] == expected


def test_a_question_gets_the_same_paths_alone_and_in_a_batch(tiny_model: Path, tiny_index: KBIndex) -> None:
    """float32: which questions share a search step does not change a question's paths or scores."""
    answerer = QuestionAnswerer.load(tiny_model, tiny_index, DecodeOptions(num_beams=4, use_ranker=False))
    questions = ["你知道守望星光是哪家公司出品的吗？", "龙编站的所属国家是哪里", "守望的拼音", "龙晶的繁体"]
    together = answerer.answer(questions, top_k=4)
    assert sum(map(len, together)) >= 8
    for question, batched in zip(questions, together, strict=True):
        alone = answerer.answer([question], top_k=4)[0]
        assert [(c.name, c.relation, c.meaning) for c in alone] == [(c.name, c.relation, c.meaning) for c in batched]
        for a, b in zip(alone, batched, strict=True):
            assert a.log_probability == pytest.approx(b.log_probability, abs=1e-5)


def test_search_finds_what_beam_search_finds_or_better(tiny_model: Path, tiny_index: KBIndex) -> None:
    """Beam search is approximate: the exact search's i-th best path scores at least as well as the beam's i-th."""
    questions = ["你知道守望星光是哪家公司出品的吗？", "龙编站的所属国家是哪里", "守望的拼音", "守望星光的歌手"]
    options = DecodeOptions(num_beams=3, use_ranker=False)
    exact = QuestionAnswerer.load(tiny_model, tiny_index, options, runtime="torch")  # beam search's runtime
    beam = exact.with_options(search="beam")
    checked = 0
    for found, beamed in zip(exact.answer(questions, top_k=3), beam.answer(questions, top_k=3), strict=True):
        assert len(found) >= len(beamed)
        for f, b in zip(found, beamed, strict=False):
            assert f.log_probability >= b.log_probability - 1e-4
            checked += 1
    assert checked >= 6


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    **RANDOM_SEARCH,
    k=st.integers(1, 5),
    drafted=st.lists(st.integers(0, 13), max_size=8),
)
def test_a_draft_changes_no_path_or_score_and_a_whole_kb_draft_needs_no_decoder_call(
    random_models: dict[int, Path],
    triples: list,
    seed: int,
    runtime: str,
    k: int,
    lookahead: bool,
    questions: list[str],
    drafted: list[int],
) -> None:
    """The search expands a drafted prefix from the draft's scores instead of the decoder: the same exact top k."""
    with tempfile.TemporaryDirectory() as root:
        answerer = _random_answerer(triples, Path(root), random_models[seed], runtime, k, lookahead)
        proposer, index = answerer.proposer, answerer.index
        facts = [answerer.facts(q) for q in questions]
        encoded = proposer.decoder.encode(*answerer.runtime.tokenizer.batch(questions))
        every = [index.path_by_id(i) for i in range(len(index))]
        some = [every[i % len(every)] for i in drafted]

        def search(paths: list[PathKey] | None) -> tuple[list, BestFirstSearch]:
            draft = proposer.scorer.draft(encoded, facts, [paths] * len(facts)) if paths is not None else None
            searcher = BestFirstSearch(proposer.decoder, proposer.constraint, proposer._lookahead_processor(facts))
            return searcher.search_encoded(encoded, facts, k, draft), searcher

        plain, _ = search(None)
        for paths in (some, every):
            found, searcher = search(paths)
            for own, expected in zip(found, plain, strict=True):
                assert [f.key for f in own] == [e.key for e in expected]
                assert [f.score for f in own] == pytest.approx([e.score for e in expected], abs=1e-5)
        assert searcher.stats.calls == 0 and searcher.stats.drafted > 0
