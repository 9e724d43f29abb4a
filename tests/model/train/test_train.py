"""Training: checkpoints, logs, seeding, resuming, --init from a local checkpoint, and refusing unfit tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from kgqa.model.answerer import QuestionAnswerer
from kgqa.model.modeling import build_model, read_training_info, save_checkpoint
from kgqa.model.runtime import RUNTIMES
from kgqa.model.runtime.export import export_model
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.model.train.trainer import STATE_FILE, TrainConfig, train
from kgqa.trie import KBIndex, VocabularyMismatchError


def _config(tiny_index: KBIndex, tiny_qa: Path, out: Path, **changes: object) -> TrainConfig:
    settings: dict = {
        "train_file": str(tiny_qa),
        "dev_file": str(tiny_qa),
        "index_dir": str(tiny_index.directory),
        "out_dir": str(out),
        "size": "tiny",
        "epochs": 1,
        "batch_size": 8,
        "max_minutes": None,
    }
    settings.update(changes)
    return TrainConfig(**settings)


def test_training_writes_best_model_log_and_resumable_state(tiny_model: Path) -> None:
    info = read_training_info(tiny_model)
    assert [r["epoch"] for r in info["log"]] == [1, 2]
    assert all("EM_O" in r["dev"] and r["train_loss"] > 0 for r in info["log"])
    assert info["stop_reason"] == "epochs done"
    assert (tiny_model / "train_log.jsonl").read_text().count("\n") == 2
    with safe_open(str(tiny_model / "model.safetensors"), "pt") as f:  # the kept model is float16
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}  # noqa: SIM118
    assert (tiny_model / "last" / STATE_FILE).is_file()


def test_training_is_seeded(tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path) -> None:
    runs = [train(_config(tiny_index, tiny_qa, tmp_path / f"run{i}", max_steps=3), progress=False) for i in range(2)]
    assert runs[0]["log"][0]["train_loss"] == runs[1]["log"][0]["train_loss"]


def test_an_interrupted_run_resumes_where_it_stopped(tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path) -> None:
    first = train(_config(tiny_index, tiny_qa, tmp_path / "m", epochs=2, max_steps=2), progress=False)
    assert [r["epoch"] for r in first["log"]] == [1]
    resumed = train(_config(tiny_index, tiny_qa, tmp_path / "m", epochs=2), progress=False)
    assert [r["epoch"] for r in resumed["log"]] == [1, 2]
    assert resumed["log"][0] == first["log"][0]


def test_init_from_a_saved_checkpoint(tiny_model: Path, tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path) -> None:
    summary = train(_config(tiny_index, tiny_qa, tmp_path / "tuned", init=str(tiny_model), max_steps=2), progress=False)
    assert summary["config"]["init"] == tiny_model.name  # recorded portably: outside the working directory, its name
    answerer = QuestionAnswerer.load(tmp_path / "tuned", tiny_index)
    expected = QuestionAnswerer.load(tiny_model, tiny_index).runtime.tokenizer.get_vocab()
    assert answerer.runtime.tokenizer.get_vocab() == expected
    for candidates in answerer.answer(["龙编站的坐标"]):
        assert all(tiny_index.is_path(c.name, c.relation, c.meaning) for c in candidates)


def test_a_character_model_missing_kb_characters_is_extended_at_load_and_for_init(
    tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path
) -> None:
    tokenizer = build_char_tokenizer(["守望星光的歌手是谁"])  # not every KB character
    save_checkpoint(build_model(tokenizer, "tiny"), tokenizer, tmp_path / "narrow", {})
    export_model(tmp_path / "narrow")
    answers = {}
    for runtime in RUNTIMES:  # the same new rows on either runtime: the same answers
        answerer = QuestionAnswerer.load(tmp_path / "narrow", tiny_index, runtime=runtime)
        assert set(answerer.added_characters) == set(tiny_index.alphabet) - set("守望星光的歌手是谁")
        answers[runtime] = answerer.answer(["龙编站的坐标"], top_k=3)
        for candidates in answers[runtime]:
            assert candidates and all(tiny_index.is_path(c.name, c.relation, c.meaning) for c in candidates)
    assert [[c.as_answer() for c in own] for own in answers["onnx"]] == [
        [c.as_answer() for c in own] for own in answers["torch"]
    ]
    train(_config(tiny_index, tiny_qa, tmp_path / "out", init=str(tmp_path / "narrow"), max_steps=2), progress=False)
    assert QuestionAnswerer.load(tmp_path / "out", tiny_index).added_characters == []  # saved with its new tokens


def test_training_log_lines_are_json(tiny_model: Path) -> None:
    lines = (tiny_model / "train_log.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2  # one line per epoch: the tiny model trains 2 (tests/conftest.py)
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    for line in lines:
        assert json.loads(line)["examples"] > 0


def test_meaning_first_target_order(tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path) -> None:
    """The ablation order: trained and decoded on an index keyed name, meaning, relation; answers are still KB
    triples, and the model refuses an index spelled in the other order."""
    from kgqa.trie import build_index
    from kgqa.trie.keys import NAME_MEANING_RELATION
    from tests.conftest import TINY_KB, write_kb

    build_index(
        [write_kb(tmp_path / "kb.tsv", TINY_KB)], tmp_path / "nmr", progress=False, key_order=NAME_MEANING_RELATION
    )
    nmr = KBIndex(tmp_path / "nmr")
    train(_config(nmr, tiny_qa, tmp_path / "m", epochs=1), progress=False)
    answerer = QuestionAnswerer.load(tmp_path / "m", nmr)
    assert answerer.codec.key_order == NAME_MEANING_RELATION
    for candidates in answerer.answer(["刘晓华主要讲什么课啊？", "龙编站的坐标"], top_k=3):
        assert candidates and all(c.object in nmr.objects(c.name, c.relation, c.meaning) for c in candidates)
    with pytest.raises(VocabularyMismatchError, match="order"):
        QuestionAnswerer.load(tmp_path / "m", tiny_index)


def test_recorded_paths_hold_no_machine_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kgqa.json is committed: its paths are relative to the working directory, or file names."""
    from kgqa.model.train.trainer import TrainConfig, portable_path, recorded_config

    monkeypatch.chdir(tmp_path)
    outside = tmp_path.parent / "elsewhere" / "train.json"
    assert portable_path(str(outside)) == "train.json"
    assert portable_path(str(tmp_path / "indexes" / "kb")) == "indexes/kb"
    assert portable_path("models/m") == "models/m"
    config = TrainConfig(train_file=str(outside), index_dir="indexes/kb", out_dir=str(tmp_path / "models" / "m"))
    recorded = recorded_config(config)
    assert (recorded["train_file"], recorded["index_dir"], recorded["out_dir"]) == (
        "train.json",
        "indexes/kb",
        "models/m",
    )
    assert recorded["dev_file"] is None and recorded["init"] is None
