"""The answer's confidence and abstention: on a hand-made KB the shipped model abstains on a question whose entity
was removed and answers it once the entity is back; the confidence files refuse another ranker; ``kgqa predict
--abstain`` writes confidences, and without it the submission format stays as it was."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kgqa.cli import main
from kgqa.model.answerer import QuestionAnswerer, batch_plan
from kgqa.model.candidate import Candidate
from kgqa.model.modeling import read_training_info
from kgqa.model.options import DecodeOptions
from kgqa.model.rank.confidence import (
    NO_RIVAL,
    SCORE_COLUMNS,
    ConfidenceMismatchError,
    ConfidenceModel,
    fit_platt,
    platt,
    question_row,
)
from kgqa.trie import KBIndex
from tests.conftest import TINY_KB, index_of_lines

DEFAULT_MODEL = Path(__file__).resolve().parents[3] / "models" / "kgqa-default"
# common words of the questions as entities, as in the real KB: a question whose entity is gone still finds paths
BACKGROUND = [
    "守望\t拼音\tshǒu wàng",
    "星光\t拼音\txīng guāng",
    "星光\t释义\t星星的光芒",
    "歌手\t英文名\tsinger",
    "守望星\t类型\t游戏角色",
    "哪家\t释义\t哪一家",
]
ASKED = "守望星光的歌手是谁？"
ELSEWHERE = "龙编站的所属国家是哪里"

needs_default_model = pytest.mark.skipif(
    not ConfidenceModel.present(DEFAULT_MODEL), reason="no confidence in models/kgqa-default (make confidence)"
)


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory: pytest.TempPathFactory) -> tuple[KBIndex, KBIndex]:
    root = tmp_path_factory.mktemp("hand-made")
    full = index_of_lines(TINY_KB + BACKGROUND, root / "full")
    without = index_of_lines([line for line in TINY_KB if not line.startswith("守望星光")] + BACKGROUND, root / "less")
    return full, without


def _answerer(index: KBIndex) -> QuestionAnswerer:
    options = DecodeOptions.from_training_info(read_training_info(DEFAULT_MODEL))
    return QuestionAnswerer.load(DEFAULT_MODEL, index, options, quantize=True)


@needs_default_model
def test_a_removed_entity_abstains_and_answers_once_back(hand_made: tuple[KBIndex, KBIndex]) -> None:
    full, without = hand_made
    threshold = ConfidenceModel.threshold_of(DEFAULT_MODEL)
    gone = _answerer(without)
    assert gone.abstain_below == threshold
    [asked, elsewhere] = gone.answer([ASKED, ELSEWHERE], top_k=3)
    assert asked, "paths of other names are still proposed"
    assert not asked[0].name.startswith("守望星光")
    assert asked[0].abstains(threshold)
    assert all(c.confidence is None for c in asked[1:])  # the confidence is the top answer's
    assert not elsewhere[0].abstains(threshold) and elsewhere[0].object == "越南"

    [back] = _answerer(full).answer([ASKED], top_k=1)
    assert back[0].subject == "守望星光（韩玉玲、刘东考演唱歌曲）" and back[0].object == "韩玉玲"
    assert not back[0].abstains(threshold)
    assert back[0].confidence is not None and back[0].confidence > asked[0].confidence  # type: ignore[operator]

    never = gone.with_options(abstain_below=0.0)
    assert never.abstain_below == 0.0 and not never.answer([ASKED])[0][0].abstains(0.0)
    assert gone.with_options(use_ranker=False).abstain_below is None  # no ranker, no confidence: nothing withheld
    unshown = gone.with_options(confidence=False)  # where nothing shows it, it is not computed
    [quiet] = unshown.answer([ASKED], top_k=3)
    assert unshown.abstain_below is None and all(c.confidence is None for c in quiet)
    assert [(c.subject, c.relation, c.score) for c in quiet] == [(c.subject, c.relation, c.score) for c in asked]


@needs_default_model
def test_the_pressure_pass_is_paid_only_where_the_screen_is_unsure(hand_made: tuple[KBIndex, KBIndex]) -> None:
    full, _ = hand_made
    answerer = _answerer(full)
    confidence = answerer.ranker.confidence  # type: ignore[union-attr]
    assert confidence is not None and confidence.screen is not None and confidence.uses_pressure
    asked: list[int] = []
    pressure = answerer.proposer.pressure

    def counting(encoded, places, paths):  # type: ignore[no-untyped-def]
        asked.extend(places)
        return pressure(encoded, places, paths)

    answerer.proposer.pressure = counting  # type: ignore[method-assign]
    questions = ["守望星光的歌手是谁？", ELSEWHERE, "刘晓华主要讲什么课啊？", "你知道龙晶用繁体字怎么写吗？", "你好"]
    answers = answerer.answer(questions, top_k=1)
    assert all(a[0].confidence is not None for a in answers)
    assert len(asked) < len(questions)  # the screen settled the others
    [batch] = batch_plan(questions, answerer.options.batch_size)  # places are positions in the batch
    pressed = {batch[place] for place in asked}
    low, high = confidence.band
    for i, answer in enumerate(answers):  # a question without the pass keeps the screen's own confidence
        if i not in pressed:
            assert not low < answer[0].confidence < high  # type: ignore[operator]


@needs_default_model
def test_predict_abstain_writes_confidences_and_without_it_the_submission_format(
    hand_made: tuple[KBIndex, KBIndex], tmp_path: Path
) -> None:
    _, without = hand_made
    qa = tmp_path / "qa.json"
    qa.write_text(
        "".join(
            json.dumps({"id": i, "question": q}, ensure_ascii=False) + "\n" for i, q in enumerate([ASKED, ELSEWHERE])
        ),
        encoding="utf-8",
    )
    common = ["predict", "--model", str(DEFAULT_MODEL), "--index", str(without.directory), "--qa", str(qa)]
    common += ["--workers", "1", "--quantize"]
    assert main([*common, "--out", str(tmp_path / "plain.json")]) == 0
    assert main([*common, "--out", str(tmp_path / "abstain.json"), "--abstain"]) == 0
    plain = [json.loads(line) for line in (tmp_path / "plain.json").read_text(encoding="utf-8").splitlines()]
    abstain = [json.loads(line) for line in (tmp_path / "abstain.json").read_text(encoding="utf-8").splitlines()]
    assert [set(line) for line in plain] == [{"id", "answer"}] * 2
    assert all(line["answer"] for line in plain)  # one answer a question, whatever the confidence
    assert [set(line) for line in abstain] == [{"id", "answer", "confidence"}] * 2
    assert abstain[0]["answer"] == "" and 0 <= abstain[0]["confidence"] < ConfidenceModel.threshold_of(DEFAULT_MODEL)
    assert abstain[1]["answer"] == plain[1]["answer"] and abstain[1]["confidence"] >= ConfidenceModel.threshold_of(
        DEFAULT_MODEL
    )
    assert main([*common, "--out", str(tmp_path / "never.json"), "--abstain", "--abstain-below", "0"]) == 0
    never = [json.loads(line) for line in (tmp_path / "never.json").read_text(encoding="utf-8").splitlines()]
    assert [line["answer"] for line in never] == [line["answer"] for line in plain]


@needs_default_model
def test_a_confidence_fit_for_another_ranker_is_refused(tmp_path: Path, hand_made: tuple[KBIndex, KBIndex]) -> None:
    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL, model)
    with open(model / "ranker.txt", "a", encoding="utf-8") as f:
        f.write("\n")  # a refit ranker: other bytes
    with pytest.raises(ConfidenceMismatchError, match="kgqa ranker confidence"):
        ConfidenceModel.load(model, ())
    info = json.loads((model / "confidence.json").read_text(encoding="utf-8"))
    (model / "confidence.json").write_text(json.dumps(info | {"format": 99}), encoding="utf-8")
    with pytest.raises(ConfidenceMismatchError, match="format 99"):
        ConfidenceModel.load(model, ())


def test_question_row_margins() -> None:
    candidates = [
        Candidate("甲", "作者", "", "丙", 0.0),
        Candidate("甲", "出版社", "", "丁", 0.0),
        Candidate("乙", "作者", "", "戊", 0.0),
    ]
    features = np.arange(6, dtype=np.float32).reshape(3, 2)
    row, best = question_row(features, np.array([1.0, 3.0, 0.5]), candidates)
    assert best == 1
    extra = dict(zip(SCORE_COLUMNS, row[2:].tolist(), strict=True))
    assert row[:2].tolist() == [2.0, 3.0]  # the top candidate's features
    assert extra["score"] == 3.0 and extra["score_gap"] == 2.0 and extra["candidates"] == 3
    assert extra["gap_other_name"] == 2.5 and extra["gap_same_name"] == 2.0
    assert abs(extra["score_share"] - 1 / (1 + np.exp(-2) + np.exp(-2.5))) < 1e-6
    alone, _ = question_row(features[:1], np.array([1.0]), candidates[:1])
    assert alone[2 + SCORE_COLUMNS.index("score_gap")] == NO_RIVAL


def test_platt_scaling_calibrates_an_overconfident_score() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.05, 0.95, 4000)
    right = rng.uniform(size=truth.size) < truth
    overconfident = 1 / (1 + np.exp(-3 * np.log(truth / (1 - truth))))
    a, b = fit_platt(overconfident, right)
    assert abs(a - 1 / 3) < 0.05 and abs(b) < 0.1
    assert np.abs(platt(overconfident, a, b) - truth).max() < 0.05
