"""QuestionFacts: what a question says about the KB, computed once and shared by anchoring, look-ahead and ranking."""

from __future__ import annotations

from kgqa.data import lcs_length
from kgqa.model.facts import QuestionFacts
from kgqa.trie import KBIndex


class CountingIndex:
    """The tiny index, counting the walks the facts ask of it."""

    def __init__(self, index: KBIndex) -> None:
        self.index = index
        self.calls: dict[str, int] = {"names_in": 0, "paths": 0}

    def names_in(self, text: str) -> list[str]:
        self.calls["names_in"] += 1
        return self.index.names_in(text)

    def paths(self, name: str) -> list:
        self.calls["paths"] += 1
        return self.index.paths(name)


def test_each_fact_is_computed_once(tiny_index: KBIndex) -> None:
    counting = CountingIndex(tiny_index)
    facts = QuestionFacts("守望星光的出品公司是哪家", counting)  # type: ignore[arg-type]
    assert facts.names == facts.names and facts.names[0] == "守望星光" and "守望" in facts.names
    assert facts.longest_name == len("守望星光")
    assert facts.paths("守望星光") == facts.paths("守望星光") == tiny_index.paths("守望星光")
    assert counting.calls == {"names_in": 1, "paths": 1}


def test_share_is_lcs_over_the_normalised_length(tiny_index: KBIndex) -> None:
    facts = QuestionFacts("守望星光的 出品公司 是哪家", tiny_index)
    assert facts.text == "守望星光的 出品公司 是哪家"
    assert facts.share("出品公司") == 1.0
    assert facts.share("歌手") == 0.0 and facts.share("") == 0.0
    assert facts.lcs("公司出品") == lcs_length("公司出品", facts.text) == 2
    # without the name, what is left of the question: 星光 is no longer there to match
    assert facts.rest("守望星光") == "的 出品公司 是哪家"
    assert facts.share("星光", without="守望星光") == 0.0 < facts.share("星光")
    assert QuestionFacts("守望星光的mv", tiny_index).share("MV") == 1.0  # case folded, as the official metric does


def test_outer_names_leave_out_names_inside_longer_ones(tmp_path) -> None:
    from tests.conftest import index_of_triples

    index = index_of_triples(
        [(n, "", "类型", "x") for n in ("京剧演员", "京剧", "演员", "张玲", "大学", "毕业")], tmp_path
    )
    facts = QuestionFacts("京剧演员张玲是哪所大学毕业的？", index)
    assert set(facts.names) == {"京剧演员", "京剧", "演员", "张玲", "大学", "毕业"}
    # longest first; 京剧 and 演员 are inside 京剧演员
    assert facts.outer_names[0] == "京剧演员" and set(facts.outer_names) == {"京剧演员", "张玲", "大学", "毕业"}
