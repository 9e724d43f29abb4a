"""Anchored candidates are scored on the search's scale: a path the search (or the beam) found, re-scored by
teacher forcing with allowed-only logits, gets the score the search gave it."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.decode.incremental import width_passes
from kgqa.trie import KBIndex, PathKey


@pytest.mark.parametrize(("search", "anchor_names"), [("best_first", 0), ("best_first", 3), ("beam", 0)])
def test_teacher_forced_scores_equal_the_search_scores(
    tiny_model: Path, tiny_index: KBIndex, search: str, anchor_names: int
) -> None:
    """With anchored names, the best-first search expands their paths' prefixes from the anchored pass (its draft)
    and the anchored candidates take their scores from it: every score is still the teacher-forced one."""
    options = DecodeOptions(num_beams=4, use_ranker=False, search=search, anchor_names=anchor_names)
    runtime = "torch" if search == "beam" else "onnx"  # transformers' beam search runs on the torch runtime
    answerer = QuestionAnswerer.load(tiny_model, tiny_index, options, runtime=runtime)
    questions = ["你知道守望星光是哪家公司出品的吗？", "龙编站的所属国家是哪里", "守望的拼音"]
    proposed = answerer.propose(questions)
    encoded_questions = answerer.proposer.decoder.encode(*answerer.runtime.tokenizer.batch(questions))
    paths = [[PathKey(c.name, c.relation, c.meaning) for c in candidates] for candidates in proposed]
    facts = [answerer.facts(q) for q in questions]
    scored = answerer.proposer.scorer.score(encoded_questions, facts, paths)
    assert sum(map(len, paths)) >= (12 if anchor_names else 6)
    for candidates, segments in zip(proposed, scored, strict=True):
        for c, s in zip(candidates, segments, strict=True):
            assert s.total == pytest.approx(c.log_probability, abs=1e-4)
            assert c.segments is not None
            assert (s.name, s.relation, s.meaning) == pytest.approx(
                (c.segments.name, c.segments.relation, c.segments.meaning), abs=1e-4
            )


def test_a_path_outside_the_kb_scores_minus_infinity(tiny_model: Path, tiny_index: KBIndex) -> None:
    answerer = QuestionAnswerer.load(tiny_model, tiny_index, DecodeOptions(use_ranker=False))
    encoded_questions = answerer.proposer.decoder.encode(*answerer.runtime.tokenizer.batch(["守望的拼音"]))
    inside, outside = answerer.proposer.scorer.score(
        encoded_questions, [answerer.facts("守望的拼音")], [[PathKey("守望", "拼音", ""), PathKey("守望", "歌手", "")]]
    )[0]
    assert inside.total > float("-inf") and outside.total == float("-inf")


@settings(max_examples=200, deadline=None)
@given(widths=st.lists(st.integers(1, 60), min_size=1, max_size=8), limit=st.sampled_from([40, 120, 8192]))
def test_width_passes_feed_the_fewest_positions_plus_a_cost_a_call(widths: list[int], limit: int) -> None:
    """Against every split of the trees, sorted by width, into consecutive passes: the chosen one costs least."""
    cost = 32

    def total(passes: list[list[int]]) -> int:
        return sum(cost + len(own) * max(widths[tree] for tree in own) for own in passes)

    def allowed(passes: list[list[int]]) -> bool:  # a pass over the limit only for a tree alone
        return all(len(own) == 1 or len(own) * max(widths[tree] for tree in own) <= limit for own in passes)

    passes = width_passes(widths, limit, cost)
    assert sorted(tree for own in passes for tree in own) == list(range(len(widths)))
    assert allowed(passes)
    order = sorted(range(len(widths)), key=lambda tree: widths[tree])
    best = min(
        total(split)
        for cuts in itertools.product([False, True], repeat=len(order) - 1)
        if allowed(split := _split(order, cuts))
    )
    assert total(passes) == best


def _split(order: list[int], cuts: tuple[bool, ...]) -> list[list[int]]:
    passes = [[order[0]]]
    for tree, cut in zip(order[1:], cuts, strict=True):
        if cut:
            passes.append([])
        passes[-1].append(tree)
    return passes
