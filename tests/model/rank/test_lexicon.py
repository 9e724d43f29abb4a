"""The question-path lexicon and the KB-kind features: computed on hand-made data with known values, and reading
characters and KB counts, never which relation a path has."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from kgqa.data import Answer, Question
from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.model.rank.features import FeatureExtractor
from kgqa.model.rank.lexicon import FLOOR, Lexicon, path_tokens, question_tokens, train_lexicon
from tests.conftest import VILLAGES_AND_A_FILM, index_of_lines


def _question(text: str, subject: str, relation: str, obj: str) -> Question:
    return Question("q", text, Answer(subject, relation, obj))


TRAIN = [
    _question("甲是什么时候出生的", "甲", "出生日期", "1990年"),
    _question("乙是什么时候出生的", "乙", "出生时间", "1980年"),
    _question("丙在哪里", "丙", "地址", "北京"),
    _question("丁在哪里", "丁", "所在地", "上海"),
]


def test_tokens() -> None:
    assert question_tokens("甲在哪里", "甲") == ["在", "哪", "里", "在哪", "哪里"]
    assert path_tokens("地址", "2010年B") == ["地", "址", "o:0", "o:0", "o:0", "o:0", "o:年", "o:a"]


def test_lexicon_learns_which_path_tokens_explain_which_words(tmp_path: Path) -> None:
    lexicon = train_lexicon(TRAIN, iterations=10, progress=False)
    # 生 and 出 occur only with the two birth relations: they explain 出生; 在哪 only with the two place relations
    assert lexicon.table["生"].get("出生", 0.0) > lexicon.table["地"].get("出生", 0.0)
    when = question_tokens("戊是什么时候出生的", "戊")
    born, place = path_tokens("出生地", "2001年"), path_tokens("所在地", "广州")
    assert lexicon.score(when, born) > lexicon.score(when, place)
    # an empty path explains words by the empty token alone; a word nothing explains costs log(FLOOR)
    assert lexicon.score(["从未见过"], []) == pytest.approx(math.log(FLOOR))
    lexicon.save(tmp_path)
    again = Lexicon.load(tmp_path)
    assert again.score(when, born) == lexicon.score(when, born)
    (tmp_path / "lexicon.json").write_text('{"format": 99, "table": {}}', encoding="utf-8")
    with pytest.raises(ValueError, match="kgqa ranker lexicon"):
        Lexicon.load(tmp_path)


def test_a_question_scorer_gives_the_plain_sum_to_the_bit() -> None:
    """One scorer for many paths (each path token's column looked up once) adds what the plain formula adds, in the
    same order: the same float, not merely a close one (the ranker's input must not move)."""
    lexicon = train_lexicon(TRAIN, iterations=5, progress=False)
    words = question_tokens("戊是什么时候出生的在哪里", "戊")
    paths = [path_tokens(r, o) for r, o in (("出生日期", "2001年"), ("地址", "北京"), ("出生地", "2001年"), ("无", ""))]

    def plain(path: list[str]) -> float:
        columns = [lexicon.table.get(x, {}) for x in (*path, "")]
        share = 1.0 / len(columns)
        return sum(math.log(FLOOR + share * sum(c.get(q, 0.0) for c in columns)) for q in words) / len(words)

    score = lexicon.scorer(words)
    assert [score(path) for path in paths] == [plain(path) for path in paths]
    assert lexicon.scorer([])(paths[0]) == 0.0


KB = [
    *VILLAGES_AND_A_FILM,
    "七里村（2012年电影）\t导演\t李四",
]


CANDIDATES = [
    Candidate("五里村", "面积", "湖南省岳阳市村庄", "5平方公里", -0.5, log_probability=-0.5, beam_rank=0),
    Candidate("五里村", "面积", "2010年电影", "不详", -0.7, log_probability=-0.7, beam_rank=1),
    Candidate("五里村", "导演", "2010年电影", "张三", -2.0, log_probability=-2.0, beam_rank=2),
]


def test_kind_and_lexicon_features_on_a_hand_made_kb(tmp_path: Path) -> None:
    index = index_of_lines(KB, tmp_path)
    lexicon = train_lexicon(TRAIN, iterations=5, progress=False)
    extractor = FeatureExtractor(index, lexicon=lexicon)
    question = "五里村有多大面积？"
    rows = extractor.rows_many([QuestionFacts(question, index)], [CANDIDATES])[0]
    f = {name: rows[:, i] for i, name in enumerate(extractor.names)}
    assert extractor.names[-2:] == ("lexicon", "lexicon_gap")
    # 6 paths, 3 relations: 面积 3, 导演 2, 人口 1; meanings ending 村庄 hold 面积 twice of 3, 电影 面积 once of 3
    assert f["kind_prior"][0] == pytest.approx(math.log(4 / 9))
    assert f["kind_fit"][0] == pytest.approx(math.log(3 / 6))
    assert f["kind_fit"][1] == pytest.approx(math.log(2 / 6))
    assert f["kind_fit"][2] == pytest.approx(math.log(3 / 6))  # 导演 held by 2 of the 3 电影 paths
    assert f["kind_lift"][0] == pytest.approx(math.log(3 / 6) - math.log(4 / 9), abs=1e-6)
    # among the homonyms holding 面积, the village's kind holds it most: its gap is 0, the film's below
    assert f["kind_lift_gap"][0] == 0.0 and f["kind_lift_gap"][1] < 0.0 and f["kind_lift_gap"][2] == 0.0
    words = question_tokens(question, "五里村")
    expected = [lexicon.score(words, path_tokens(c.relation, c.object)) for c in CANDIDATES]
    assert np.allclose(f["lexicon"], expected, atol=1e-5)
    assert f["lexicon_gap"].max() == 0.0


def _renamed(line: str, names: dict[str, str]) -> str:
    head, relation, obj = line.split("\t")
    return f"{head}\t{names[relation]}\t{obj}"


def test_kind_features_move_with_a_renamed_relation(tmp_path: Path) -> None:
    """Every relation renamed consistently in the KB and the candidates: the KB-kind columns do not change (they read
    counts, not which relation it is), and neither does the ranking they give."""
    names = {"面积": "占地", "人口": "居民数", "导演": "执导"}
    first = index_of_lines(KB, tmp_path / "a")
    second = index_of_lines([_renamed(line, names) for line in KB], tmp_path / "b")
    renamed = [
        Candidate(c.name, names[c.relation], c.meaning, c.object, c.score, log_probability=c.log_probability)
        for c in CANDIDATES
    ]
    question = "五里村有多大？"
    rows_a = FeatureExtractor(first).rows_many([QuestionFacts(question, first)], [CANDIDATES])[0]
    rows_b = FeatureExtractor(second).rows_many([QuestionFacts(question, second)], [renamed])[0]
    kind = [i for i, n in enumerate(FeatureExtractor(first).names) if n.startswith("kind")]
    assert np.array_equal(rows_a[:, kind], rows_b[:, kind])
    assert list(np.argsort(-rows_a[:, kind].sum(axis=1))) == list(np.argsort(-rows_b[:, kind].sum(axis=1)))
