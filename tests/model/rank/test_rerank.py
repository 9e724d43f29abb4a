from __future__ import annotations

import json
import math
from pathlib import Path

from kgqa.cli import main
from kgqa.model.candidate import Candidate
from kgqa.model.facts import QuestionFacts
from kgqa.model.rank.rerank import RerankWeights, rerank
from kgqa.trie import KBIndex


def _c(name: str, relation: str, log_probability: float) -> Candidate:
    return Candidate(name, relation, "", "x", log_probability, log_probability=log_probability)


def test_relation_bonus_prefers_the_relation_the_question_spells(tiny_index: KBIndex) -> None:
    question = "龙编站的所属国家是哪里"
    candidates = [_c("龙编站", "坐标", math.log(0.6)), _c("龙编站", "所属国家", math.log(0.4))]
    assert (
        rerank(QuestionFacts(question, tiny_index), candidates, RerankWeights()) == candidates
    )  # no weights: unchanged
    reranked = rerank(QuestionFacts(question, tiny_index), candidates, RerankWeights(relation=1.0))
    assert [c.relation for c in reranked] == ["所属国家", "坐标"]
    assert reranked[0].score == math.log(0.4) + 1.0 and reranked[0].log_probability == math.log(0.4)


def test_name_bonus_prefers_the_longest_kb_name_in_the_question(tiny_index: KBIndex) -> None:
    question = "守望星光的拼音"  # 守望 and 守望星光 are both names
    candidates = [_c("守望", "拼音", math.log(0.5)), _c("守望星光", "类型", math.log(0.45))]
    reranked = rerank(QuestionFacts(question, tiny_index), candidates, RerankWeights(name=1.0))
    assert reranked[0].name == "守望星光"
    assert reranked[1].score == math.log(0.5) + 0.5  # half the longest name's length


def test_tune_records_its_choice_and_evaluate_uses_it(
    tiny_model: Path, tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    argv = ["tune", "--model", str(model), "--index", str(tiny_index.directory), "--qa", str(tiny_qa)]
    assert main([*argv, "--beams", "2", "--strengths", "1", "4", "--relation-weights", "0", "2"]) == 0
    decoding = json.loads((model / "kgqa.json").read_text())["decoding"]
    assert len(decoding["grid"]) == 2 * 2 * 3
    chosen = max(decoding["grid"], key=lambda r: r["EM_O"])
    assert decoding["lookahead_strength"] in (1, 4) and chosen["EM_O"] == max(r["EM_O"] for r in decoding["grid"])
    out = tmp_path / "m.json"
    evaluate = ["evaluate", "--model", str(model), "--index", str(tiny_index.directory), "--qa", str(tiny_qa)]
    assert main([*evaluate, "--json", str(out)]) == 0
    used = json.loads(out.read_text())["decoding"]
    assert used["lookahead_strength"] == decoding["lookahead_strength"]
    assert used["rerank_relation_weight"] == decoding["rerank_relation_weight"]
