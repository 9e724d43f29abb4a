from __future__ import annotations

from kgqa.data import Answer, Question
from kgqa.model.train.augment import PathSampler, TemplateBank, synthesize
from kgqa.trie import KBIndex


def _q(question: str, subject: str, relation: str) -> Question:
    return Question(0, question, Answer(subject, relation, "x"))


def test_templates_mined_from_literal_mentions() -> None:
    bank = TemplateBank.mine(
        [
            _q("你知道守望星光的出品公司吗", "守望星光（歌曲）", "出品公司"),
            _q("你知道守望星光是哪家公司出品的吗", "守望星光（歌曲）", "出品公司"),
            _q("谁写了这本书", "某书", "作者"),  # the name is not in the question: no template
            _q("龙晶的作者是谁", "龙晶", "作"),  # one-character relation: relation-specific only
        ]
    )
    assert len(bank.generic) == 1 and len(bank) == 3
    assert bank.by_relation["出品公司"] and bank.by_relation["作"]


def test_synthetic_questions_name_their_kb_path(tiny_index: KBIndex) -> None:
    bank = TemplateBank.mine([_q("你知道守望星光的出品公司吗", "守望星光", "出品公司")])
    pairs = synthesize(bank, PathSampler(tiny_index), 50, seed=3)
    assert pairs == synthesize(bank, PathSampler(tiny_index), 50, seed=3)  # seeded
    for question, path in pairs:
        assert tiny_index.is_path(*path)
        assert path.name in question and path.relation in question
