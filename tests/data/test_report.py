from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgqa.data.report import markdown_table, write_json


def test_markdown_table_aligns_numbers_right() -> None:
    table = markdown_table(["system", "EM_O", "seconds"], [["kgqa", "95.60", "30.5"], ["peer", "80.35", 0.6]])
    assert table.splitlines() == [
        "| system | EM_O | seconds |",
        "| --- | ---: | ---: |",
        "| kgqa | 95.60 | 30.5 |",
        "| peer | 80.35 | 0.6 |",
    ]


def test_write_json_makes_parents_keeps_unicode_and_skips_none(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    target = tmp_path / "a" / "b.json"
    write_json(target, {"问题": 1})
    assert json.loads(target.read_text(encoding="utf-8")) == {"问题": 1}
    assert "问题" in target.read_text(encoding="utf-8")
    assert f"written {target}" in capsys.readouterr().out
    write_json(None, {"x": 1})  # no path: nothing written, no error
