"""``kgqa data unanswerable``: removals reach every homonym, the rest stays answerable, the same seed the same
bytes."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from kgqa.data import Question, parse_answer, split_head
from kgqa.data.unanswerable import MIX_KB, MIX_QUESTIONS, make_mix, plan_mix, read_out_of_scope

KB = [
    "甲（歌手）\t代表作品\t甲之歌",
    "甲（歌手）\t国籍\t中国",
    "甲（城市）\t面积\t100平方公里",
    "甲（城市）\t代表作品\t城市之歌",
    "乙\t作者\t丙",
    "乙\t出版社\t某出版社",
    "丁（电影）\t导演\t戊",
    "丁（电影）\t主演\t己",
    "丁（小说）\t导演\t另一人",
    "庚\t面积\t5平方公里",
    "庚\t人口\t800人",
    "辛\t拼音\txīn",
    "辛\t部首\t辛",
]
QUESTIONS = [
    Question(0, "甲的代表作品是什么？", parse_answer("甲（歌手） ||| 代表作品 ||| 甲之歌")),
    Question(1, "乙的作者是谁？", parse_answer("乙 ||| 作者 ||| 丙")),
    Question(2, "丁的导演是谁？", parse_answer("丁（电影） ||| 导演 ||| 戊")),
    Question(3, "庚的面积多大？", parse_answer("庚 ||| 面积 ||| 5平方公里")),
    Question(4, "辛怎么读？", parse_answer("辛 ||| 拼音 ||| xīn")),
    Question(5, "甲在哪个国家？", parse_answer("甲（歌手） ||| 国籍 ||| 中国")),
]


def _write_kb(path: Path) -> Path:
    path.write_text("".join(line + "\n" for line in KB), encoding="utf-8")
    return path


def _kb_lines(path: Path) -> list[tuple[str, str, str]]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split("\t")) for line in f]  # type: ignore[misc]


def test_removals_reach_every_homonym_and_leave_out_answerable_questions_that_lost_their_triple(
    tmp_path: Path,
) -> None:
    kb = _write_kb(tmp_path / "kb.tsv")
    manifest = make_mix(
        QUESTIONS, [kb], tmp_path / "mix", seed=3, entity_share=1 / 3, relation_share=1 / 3, progress=False
    )
    lines = [json.loads(line) for line in (tmp_path / "mix" / MIX_QUESTIONS).read_text(encoding="utf-8").splitlines()]
    kept = _kb_lines(tmp_path / "mix" / MIX_KB)
    entity = [line for line in lines if line["kind"] == "entity"]
    relation = [line for line in lines if line["kind"] == "relation"]
    assert len(entity) == 2 and len(relation) == 2
    for line in entity:
        name = split_head(parse_answer(line["removed"]).subject)[0]
        assert line["answer"] is None
        assert not [t for t in kept if split_head(t[0])[0] == name]  # every homonym, every triple
    for line in relation:
        removed = parse_answer(line["removed"])
        name = split_head(removed.subject)[0]
        of_name = [t for t in kept if split_head(t[0])[0] == name]
        assert of_name, "a relation-missing entity keeps its other relations"
        assert all(t[1] != removed.predicate for t in of_name)  # gone from every homonym
    answerable = {line["id"] for line in lines if line["kind"] == "answerable"}
    left_out = set(manifest["left_out_ids"])
    assert not answerable & left_out
    assert answerable | left_out | {line["id"] for line in entity + relation} == {q.id for q in QUESTIONS}
    for line in lines:
        if line["kind"] == "answerable":
            answer = parse_answer(line["answer"])
            assert (answer.subject, answer.predicate, answer.object) in kept
    scope = [line for line in lines if line["kind"] == "out_of_scope"]
    assert len(scope) == len(read_out_of_scope()) >= 200
    assert (
        manifest["kb_triples_kept"] + manifest["kb_triples_removed"]
        == len(KB)
        == len(kept) + manifest["kb_triples_removed"]
    )


def test_same_seed_same_files_another_seed_other_questions(tmp_path: Path) -> None:
    kb = _write_kb(tmp_path / "kb.tsv")
    outs = []
    for run, seed in (("a", 1), ("b", 1), ("c", 2)):
        make_mix(QUESTIONS, [kb], tmp_path / run, seed=seed, entity_share=1 / 3, relation_share=1 / 3, progress=False)
        outs.append({name: (tmp_path / run / name).read_bytes() for name in (MIX_QUESTIONS, MIX_KB)})
    assert outs[0] == outs[1]
    assert outs[0][MIX_QUESTIONS] != outs[2][MIX_QUESTIONS]


def test_a_relation_missing_question_needs_a_name_with_another_relation() -> None:
    relations = {"甲": {"代表作品", "国籍", "面积"}, "乙": {"作者"}, "丁": {"导演", "主演"}}
    questions = QUESTIONS[:3]
    for seed in range(10):
        plan = plan_mix(questions, relations, entity_share=0.0, relation_share=1.0, seed=seed)
        assert "乙" not in {split_head(q.answer.subject)[0] for q in plan.relation}  # type: ignore[union-attr]
        assert len(plan.relation) == 2


def test_out_of_scope_questions_are_distinct_in_six_kinds() -> None:
    pairs = read_out_of_scope()
    assert len({q for q, _ in pairs}) == len(pairs) >= 200
    assert len({section for _, section in pairs}) == 6
