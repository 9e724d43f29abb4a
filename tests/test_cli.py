"""The ``kgqa`` command line, run as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import write_kb


def kgqa(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kgqa", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def test_help_lists_the_commands() -> None:
    result = kgqa("--help")
    assert result.returncode == 0
    for command in ("prepare", "index", "data", "metrics", "bench"):
        assert command in result.stdout


def test_build_info_query_verify(tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "kb.tsv", ["守望星光（歌曲）\t歌手\t韩玉玲", "守望星光\t类型\t歌曲", "broken line"])
    index = tmp_path / "index"
    built = kgqa("index", "build", "--kb", str(kb), "--out", str(index))
    assert built.returncode == 0, built.stderr
    assert "2 triples" in built.stdout
    assert "skipped 1 (1 column count)" in built.stdout
    assert "kb.tsv:3: column count" in built.stdout
    assert "index build" in built.stderr  # the progress bar

    info = kgqa("index", "info", str(index))
    assert info.returncode == 0 and "format version 4" in info.stdout

    triples = kgqa("index", "triples", str(index), "守望星光")
    assert triples.stdout.splitlines() == ["守望星光\t类型\t歌曲", "守望星光（歌曲）\t歌手\t韩玉玲"]
    assert kgqa("index", "triples", str(index), "无此名").returncode == 1

    nxt = kgqa("index", "next", str(index), "守望星光|")
    assert nxt.stdout.strip() == "2 allowed: 歌 类"

    assert kgqa("index", "verify", str(index)).returncode == 0
    (index / "shards/00000/objects.zlib").write_bytes(b"x" * (index / "shards/00000/objects.zlib").stat().st_size)
    verify = kgqa("index", "verify", str(index))
    assert verify.returncode == 1 and "shards/00000/objects.zlib" in verify.stderr


def test_errors_are_messages_not_tracebacks(tmp_path: Path) -> None:
    missing = kgqa("index", "info", str(tmp_path / "nope"))
    assert missing.returncode == 2
    assert missing.stderr.startswith("kgqa: error: no index directory")
    assert "Traceback" not in missing.stderr
    no_kb = kgqa("index", "build", "--kb", str(tmp_path / "nope.tsv"), "--out", str(tmp_path / "i"))
    assert no_kb.returncode == 2 and "knowledge file not found" in no_kb.stderr


def test_metrics_command(tmp_path: Path, kgclue_dir: Path) -> None:
    gold = kgclue_dir / "dev.json"
    lines = gold.read_text(encoding="utf-8").splitlines()
    # predict the gold answer for the first half, nothing for the rest
    pred = tmp_path / "pred.json"
    pred.write_text("\n".join(line for line in lines[:1000]) + "\n", encoding="utf-8")
    result = kgqa("metrics", "--pred", str(pred), "--gold", str(gold), "--json", str(tmp_path / "m.json"))
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["EM_All"] == 50.0 and metrics["score"] == 50.0
    assert "1000 gold questions have no prediction" in result.stderr


def test_prepare_builds_the_index_of_the_found_kb(tmp_path: Path) -> None:
    # A data directory without a knowledge file: prepare falls back to the answer triples of the question files.
    data = tmp_path / "data" / "kgclue"
    data.mkdir(parents=True)
    for name in ("train.json", "dev.json", "test.json"):
        (data / name).write_text(
            '{"id": 0, "question": "龙晶繁体怎么写", "answer": "龙晶（游戏） ||| 繁体 ||| 龍晶"}\n', encoding="utf-8"
        )
    # found in the working directory (./data/kgclue): no KGQA_DATA_DIR of the caller's may point elsewhere
    env = {name: value for name, value in os.environ.items() if name != "KGQA_DATA_DIR"}
    result = kgqa("prepare", "--out", str(tmp_path / "idx"), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "answer triples" in result.stdout
    again = kgqa("prepare", "--out", str(tmp_path / "idx"), cwd=tmp_path, env=env)
    assert "up to date" in again.stdout


def test_bench_synth_kb_and_index(tmp_path: Path) -> None:
    kb = tmp_path / "synth.tsv.gz"
    synth = kgqa("bench", "synth-kb", "--triples", "20000", "--seed", "3", "--out", str(kb))
    assert synth.returncode == 0, synth.stderr
    out = tmp_path / "bench.json"
    bench = kgqa(
        "bench",
        "index",
        "--kb",
        str(kb),
        "--work",
        str(tmp_path / "work"),
        "--queries",
        "50",
        "--baseline-seconds",
        "1",
        "--json",
        str(out),
    )
    assert bench.returncode == 0, bench.stderr
    result = json.loads(out.read_text())
    assert result["answers_differing_from_baseline"] == 0
    assert result["counts"]["triples"] > 15000
    assert [row["depth"] for row in result["depths"]][:3] == [0, 1, 2]
    assert "| depth |" in bench.stdout
