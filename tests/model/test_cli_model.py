"""`kgqa evaluate`, `kgqa predict` and `kgqa baseline`: output formats, from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgqa.cli import main
from kgqa.data import METRIC_KEYS, parse_answer, split_head
from kgqa.trie import KBIndex


def test_evaluate_prints_and_writes_the_official_metrics(
    tiny_model: Path, tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "metrics.json"
    argv = ["evaluate", "--model", str(tiny_model), "--index", str(tiny_index.directory), "--qa", str(tiny_qa)]
    assert main([*argv, "--json", str(out), "--beams", "2"]) == 0
    printed = capsys.readouterr().out
    assert all(key in printed for key in METRIC_KEYS)
    result = json.loads(out.read_text())
    assert set(METRIC_KEYS) <= set(result)
    assert all(0.0 <= result[k] <= 100.0 for k in METRIC_KEYS)
    assert result["questions"] == 8 and result["decoding"]["num_beams"] == 2


def test_predict_writes_the_submission_format(
    tiny_model: Path, tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path
) -> None:
    out = tmp_path / "pred.json"
    argv = ["predict", "--model", str(tiny_model), "--index", str(tiny_index.directory), "--qa", str(tiny_qa)]
    assert main([*argv, "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["id"] for r in lines] == list(range(8))
    for record in lines:
        assert set(record) == {"id", "answer"}
        answer = parse_answer(record["answer"])
        name, meaning = split_head(answer.subject)
        assert answer.object in tiny_index.objects(name, answer.predicate, meaning)
    # the file is what `kgqa metrics` reads
    assert main(["metrics", "--pred", str(out), "--gold", str(tiny_qa)]) == 0


def test_baseline_command(tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path) -> None:
    out = tmp_path / "peer.json"
    assert main(["baseline", "--index", str(tiny_index.directory), "--qa", str(tiny_qa), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["EM_O"] >= 50.0  # the peer answers most of these literal questions


def test_unfit_model_fails_with_a_clear_message(
    tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "evaluate",
        "--model",
        str(tmp_path / "nothing"),
        "--index",
        str(tiny_index.directory),
        "--qa",
        str(tiny_qa),
    ]
    assert main(argv) == 2
    assert "not a model checkpoint" in capsys.readouterr().err
