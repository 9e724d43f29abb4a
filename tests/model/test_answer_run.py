"""Questions that join a running search between its steps get the answers they get alone (float32)."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.data import read_questions
from kgqa.model.answerer import AnswerRun, DecodeOptions, QuestionAnswerer
from kgqa.model.candidate import Candidate
from kgqa.model.modeling import read_training_info
from kgqa.trie import KBIndex
from tests.model.test_default_model import DEFAULT_MODEL

QUESTIONS = ["你知道守望星光是哪家公司出品的吗？", "龙编站的所属国家是哪里", "守望的拼音", "龙晶的繁体"]


def _until_done(run: AnswerRun, answers: dict[int, list[Candidate]]) -> int:
    steps = 0
    while run.active:
        answers |= run.step()
        steps += 1
    return steps


def _assert_same(joined: list[Candidate], alone: list[Candidate]) -> None:
    assert [(c.name, c.relation, c.meaning, c.object) for c in joined] == [
        (c.name, c.relation, c.meaning, c.object) for c in alone
    ]
    for a, b in zip(joined, alone, strict=True):
        assert a.log_probability == pytest.approx(b.log_probability, abs=1e-5)
        assert a.score == pytest.approx(b.score, abs=1e-4)


@pytest.fixture(scope="module")
def answerer(tiny_model: Path, tiny_index: KBIndex) -> QuestionAnswerer:
    return QuestionAnswerer.load(tiny_model, tiny_index, DecodeOptions(num_beams=4, use_ranker=False))


def test_questions_joining_mid_search_get_the_answers_they_get_alone(answerer: QuestionAnswerer) -> None:
    run = answerer.run()
    answers: dict[int, list[Candidate]] = {}
    first = run.add(QUESTIONS[:1], [4])
    for _ in range(2):  # the first question is searching when the others join
        answers |= run.step()
    assert run.active and first[0] not in answers
    later = run.add(QUESTIONS[1:], [4, 2, 1])
    assert _until_done(run, answers) >= 2
    assert set(answers) == {*first, *later}
    for i, question, k in zip([*first, *later], QUESTIONS, [4, 4, 2, 1], strict=True):
        alone = answerer.answer([question], top_k=k)[0]
        assert len(answers[i]) <= k
        _assert_same(answers[i], alone)
    assert sum(map(len, answers.values())) >= 6


def test_an_empty_question_is_answered_at_the_next_step_and_a_dropped_one_never(answerer: QuestionAnswerer) -> None:
    run = answerer.run()
    empty, dropped, kept = run.add(["   ", QUESTIONS[0], QUESTIONS[1]], [3, 3, 3])
    answers = run.step()
    assert answers[empty] == []
    run.drop([dropped])
    _until_done(run, answers)
    assert dropped not in answers
    _assert_same(answers[kept], answerer.answer([QUESTIONS[1]], top_k=3)[0])


def test_under_beam_search_a_step_answers_what_was_added_as_a_batch(answerer: QuestionAnswerer) -> None:
    beam = answerer.with_options(search="beam")
    run = beam.run()
    ids = run.add(QUESTIONS, [2] * len(QUESTIONS))
    answers = run.step()
    assert not run.active
    for i, batched in zip(ids, beam.answer(QUESTIONS, top_k=2), strict=True):
        _assert_same(answers[i], batched)


@pytest.mark.slow
def test_with_the_learned_ranker_joined_questions_are_ranked_as_alone(
    kgclue_sim_index: KBIndex, kgclue_dir: Path
) -> None:
    """The default model (anchored candidates, features, matcher, LightGBM), dev questions joining at three steps."""
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("no default model in models/kgqa-default (make train)")
    options = DecodeOptions.from_training_info(read_training_info(DEFAULT_MODEL))
    answerer = QuestionAnswerer.load(DEFAULT_MODEL, kgclue_sim_index, options, device="cpu")
    assert answerer.anchors_names
    questions = [q.question for q in read_questions(kgclue_dir / "dev.json")[:6]]
    run = answerer.run(explain=True)
    answers: dict[int, list[Candidate]] = {}
    ids = run.add(questions[:2], [3, 3])
    answers |= run.step()
    ids += run.add(questions[2:4], [1, 3])
    answers |= run.step()
    ids += run.add(questions[4:], [3, 2])
    _until_done(run, answers)
    for i, question, k in zip(ids, questions, [3, 3, 1, 3, 3, 2], strict=True):
        alone = answerer.answer([question], top_k=k, explain=True)[0]
        _assert_same(answers[i], alone)
        assert all(c.contributions for c in answers[i])
