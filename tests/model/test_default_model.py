"""The committed default model (models/kgqa-default) loads, spells only KB paths, and still answers dev questions."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.data import evaluate_answers, read_questions
from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.candidate import top_answers
from kgqa.model.modeling import read_training_info
from kgqa.trie import KBIndex

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "models" / "kgqa-default"


@pytest.mark.slow
def test_default_model_on_the_first_200_dev_questions(kgclue_sim_index: KBIndex, kgclue_dir: Path) -> None:
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("no default model in models/kgqa-default (make train)")
    options = DecodeOptions.from_training_info(read_training_info(DEFAULT_MODEL))
    answerer = QuestionAnswerer.load(DEFAULT_MODEL, kgclue_sim_index, options)
    questions = read_questions(kgclue_dir / "dev.json")[:200]
    results = answerer.answer([q.question for q in questions], top_k=3)
    for candidates in results:
        assert candidates  # a KB path always fits a KgCLUE question
        for c in candidates:
            assert c.object in kgclue_sim_index.objects(c.name, c.relation, c.meaning)
    metrics = evaluate_answers(top_answers(results), [q.answer for q in questions])
    # a regression floor well under the README's measured figure, not the figure itself
    assert metrics["EM_O"] >= 75.0


@pytest.mark.slow
def test_unconstrained_decoding_may_leave_the_kb_but_never_invents_objects(
    kgclue_sim_index: KBIndex, kgclue_dir: Path
) -> None:
    """Without the trie the model spells what it likes: a path outside the KB gets no object, one inside gets its
    KB object (the tiny test model spells nothing splittable unconstrained, so this runs on the default model)."""
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("no default model in models/kgqa-default (make train)")
    options = DecodeOptions(constrained=False, use_ranker=False)
    answerer = QuestionAnswerer.load(DEFAULT_MODEL, kgclue_sim_index, options, runtime="torch")
    questions = [q.question for q in read_questions(kgclue_dir / "dev.json")[:40]]
    candidates = [c for cs in answerer.answer(questions, top_k=3) for c in cs]
    assert len(candidates) >= 40, "unconstrained decoding gave too few splittable paths to check"
    for c in candidates:
        assert c.object == "" or c.object in kgclue_sim_index.objects(c.name, c.relation, c.meaning)


@pytest.mark.slow
def test_the_shipped_search_margin_keeps_a_requests_top_k_exact(kgclue_sim_index: KBIndex, kgclue_dir: Path) -> None:
    """The default model searches under a margin (kgqa.json): past a request's top_k it drops only paths more than the
    margin below the best; a request's own top_k paths are the exact search's."""
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("no default model in models/kgqa-default (make train)")
    options = DecodeOptions.from_training_info(read_training_info(DEFAULT_MODEL))
    assert options.search_margin > 0
    answerer = QuestionAnswerer.load(DEFAULT_MODEL, kgclue_sim_index, options)
    exact = answerer.with_options(search_margin=0.0)
    facts = [answerer.facts(q.question) for q in read_questions(kgclue_dir / "dev.json")[:24]]

    def searched(who: QuestionAnswerer, top_k: int) -> list[list[tuple[str, str, str, float]]]:
        proposed = who.proposer.propose(facts, top_k, anchored=True)
        return [[(c.name, c.relation, c.meaning, c.score) for c in own if c.beam_rank is not None] for own in proposed]

    cut = 0
    for top_k in (1, 3):
        for margined, whole in zip(searched(answerer, top_k), searched(exact, top_k), strict=True):
            assert len(whole) == options.num_beams
            # the same paths; scores up to rounding (rows are fed in other company, padded otherwise)
            assert [path[:3] for path in margined] == [path[:3] for path in whole[: len(margined)]]
            assert [path[3] for path in margined] == pytest.approx(
                [path[3] for path in whole[: len(margined)]], abs=1e-4
            )
            assert len(margined) >= top_k
            best = whole[0][3]
            assert all(path[3] < best - options.search_margin for path in whole[len(margined) :])
            cut += len(whole) - len(margined)
    assert cut > 0  # the margin dropped some: otherwise this checked nothing
