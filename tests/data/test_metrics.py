from __future__ import annotations

import pylcs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kgqa.data.metrics import METRIC_KEYS, evaluate_answers, f1_sim, lcs_length, normalize
from kgqa.data.questions import Answer


def test_normalize_lowercases_and_collapses_white_space() -> None:
    assert normalize("  Hello \t  WORLD\n") == "hello world"


def test_hand_computed_cases() -> None:
    assert lcs_length("守望星光", "守星光") == 3
    assert f1_sim("守望星光", "守星光") == pytest.approx(2 * 3 / 7)
    assert f1_sim("", "") == 0.0  # as in the official script
    assert f1_sim("abc", "") == 0.0

    gold = [Answer("刘晓华（广东工业大学教授）", "主讲课程", "《固体物理》"), Answer("巫山县", "机构职能", "疾病预防")]
    predicted = [Answer("刘晓华（广东工业大学教授）", "主讲课程", "《固体物理》"), Answer("巫山县", "职能", "疾病")]
    m = evaluate_answers(predicted, gold)
    assert m["EM_S"] == 100.0
    assert m["EM_P"] == 50.0
    assert m["EM_O"] == 50.0
    assert m["EM_All"] == 50.0
    # second question: P "职能" vs "机构职能" -> 2*2/6; O "疾病" vs "疾病预防" -> 2*2/6
    assert m["F1_P"] == pytest.approx((1 + 4 / 6) / 2 * 100)
    assert m["F1_O"] == pytest.approx((1 + 4 / 6) / 2 * 100)
    # All: concatenations "巫山县职能疾病" (7) vs "巫山县机构职能疾病预防" (11), LCS 7
    assert m["F1_All"] == pytest.approx((1 + 14 / 18) / 2 * 100)
    assert m["score"] == pytest.approx((m["EM_O"] + m["F1_O"]) / 2)
    assert list(m) == list(METRIC_KEYS)


def test_missing_prediction_counts_as_empty() -> None:
    m = evaluate_answers([None], [Answer("a", "b", "c")])
    assert m == dict.fromkeys(METRIC_KEYS, 0.0)


def test_case_and_space_differences_are_exact_matches() -> None:
    m = evaluate_answers([Answer("iPhone  X", "品牌", "APPLE")], [Answer("iphone x", "品牌", "apple")])
    assert m["EM_All"] == 100.0


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="predictions"):
        evaluate_answers([], [Answer("a", "b", "c")])


def _lcs_by_dynamic_programme(a: str, b: str) -> int:
    """The textbook O(len a * len b) table, as a reference for the C++ one."""
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a, 1):
        for j, y in enumerate(b, 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x == y else max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


# characters beyond the Basic Multilingual Plane too (an open-vocabulary KB may hold CJK Extension B names)
@given(st.text(alphabet="abc守望星光 𠀀😀", max_size=30), st.text(alphabet="abc守望星光 𠀀😀", max_size=30))
def test_lcs_is_the_longest_common_subsequence_as_the_official_pylcs_counts_it(a: str, b: str) -> None:
    assert lcs_length(a, b) == _lcs_by_dynamic_programme(a, b) == pylcs.lcs(a, b)


def _official_evaluate(predicted: list[str], gold: list[str]) -> dict[str, float]:
    """A transcription of KgCLUE's evaluate_f1_em.evaluate over answer strings, with pylcs as it uses."""

    def f1(a: str, b: str) -> float:
        return 0.0 if not a and not b else 2.0 * pylcs.lcs(a, b) / (len(a) + len(b))

    metrics = {f"{i}_{j}": 0.0 for i in ["EM", "F1"] for j in ["All", "S", "P", "O"]}
    for source, target in zip(predicted, gold, strict=True):
        s1, p1, o1 = (normalize(x) for x in source.split(" ||| "))
        s2, p2, o2 = (normalize(x) for x in target.split(" ||| "))
        metrics["EM_S"] += s1 == s2
        metrics["EM_P"] += p1 == p2
        metrics["EM_O"] += o1 == o2
        metrics["EM_All"] += (s1, p1, o1) == (s2, p2, o2)
        metrics["F1_S"] += f1(s1, s2)
        metrics["F1_P"] += f1(p1, p2)
        metrics["F1_O"] += f1(o1, o2)
        metrics["F1_All"] += f1(s1 + p1 + o1, s2 + p2 + o2)
    metrics = {k: v / len(gold) for k, v in metrics.items()}
    metrics["EMF1"] = metrics["EM_O"] * 0.5 + metrics["F1_O"] * 0.5
    return {k: v * 100 for k, v in metrics.items()}


_part = st.text(alphabet="aAb 星光", max_size=6)
_answer = st.builds(Answer, _part, _part, _part)


@settings(max_examples=200)
@given(st.lists(st.tuples(_answer, _answer), min_size=1, max_size=8))
def test_agrees_with_the_official_script(pairs: list[tuple[Answer, Answer]]) -> None:
    predicted, gold = zip(*pairs, strict=True)
    ours = evaluate_answers(list(predicted), list(gold))
    official = _official_evaluate([a.format() for a in predicted], [a.format() for a in gold])
    for key in METRIC_KEYS[:-1]:
        assert ours[key] == pytest.approx(official[key])
    assert ours["score"] == pytest.approx(official["EMF1"])
