from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.data.knowledge import iter_triples
from kgqa.data.questions import Answer, QuestionFileError, parse_answer, read_questions, write_answer_kb


def test_parse_answer() -> None:
    assert parse_answer("龙晶（游戏） ||| 繁体 ||| 龍晶") == Answer("龙晶（游戏）", "繁体", "龍晶")
    assert parse_answer("a|||b ||| c") == Answer("a", "b", "c")
    with pytest.raises(ValueError, match="S \\|\\|\\| P"):
        parse_answer("a ||| b")


def test_real_question_files(kgclue_dir: Path) -> None:
    train = read_questions(kgclue_dir / "train.json")
    dev = read_questions(kgclue_dir / "dev.json")
    test = read_questions(kgclue_dir / "test.json")
    assert (len(train), len(dev), len(test)) == (
        18_000,
        2_000,
        3_000,
    )  # the README says 2,999 lines: the last has no newline
    assert all(q.answer is not None for q in train + dev)
    assert all(q.answer is None for q in test)
    assert dev[0].question == "刘晓华主要讲什么课啊？"
    assert dev[0].answer == Answer("刘晓华（广东工业大学教授）", "主讲课程", "《固体物理》")
    # the README's fact: dev's relations are (nearly) all unseen in train
    unseen = {q.answer.predicate for q in dev} - {q.answer.predicate for q in train}
    assert len(unseen) >= 200


def test_malformed_question_line_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "q.json"
    path.write_text('{"id": 0, "question": "q", "answer": "a ||| b ||| c"}\n\n{"id": 1}\n', encoding="utf-8")
    with pytest.raises(QuestionFileError, match=r"q\.json:3"):
        read_questions(path)


def test_answer_kb_round_trips_through_the_kb_reader(tmp_path: Path, kgclue_dir: Path) -> None:
    questions = read_questions(kgclue_dir / "dev.json")
    count = write_answer_kb(questions, tmp_path / "kb.tsv")
    triples = list(iter_triples(tmp_path / "kb.tsv"))
    assert len(triples) == count
    assert {tuple(t) for t in triples} == {tuple(q.answer) for q in questions}
