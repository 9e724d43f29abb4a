"""Answering in forked worker processes: the answers of one process, a worker's death reported, none outliving it."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kgqa.model import workers
from kgqa.model.answerer import QuestionAnswerer
from kgqa.model.options import DecodeOptions
from kgqa.trie import KBIndex
from tests.conftest import TINY_QA, write_qa

QUESTIONS = [question for question, _ in TINY_QA] * 3 + ["", "  守望星光是谁出品的  "]


@pytest.fixture(scope="module")
def answerer(tiny_model: Path, tiny_index: KBIndex) -> QuestionAnswerer:
    # batches of 4: the 25 non-empty questions make 7, spread over the workers
    return QuestionAnswerer.load(tiny_model, tiny_index.directory, DecodeOptions(batch_size=4))


def test_workers_answer_as_one_process(answerer: QuestionAnswerer) -> None:
    alone = answerer.answer(QUESTIONS, top_k=3)
    spread = workers.answer_in_workers(answerer, QUESTIONS, 2, top_k=3)
    assert [[c.as_answer() for c in found] for found in spread] == [[c.as_answer() for c in found] for found in alone]
    assert [c.score for found in spread for c in found] == pytest.approx(
        [c.score for found in alone for c in found], abs=1e-5
    )
    assert spread[len(TINY_QA) * 3] == [] and all(len(found) <= 3 for found in spread)
    assert not multiprocessing.active_children()


def _die(questions: list[str], top_k: int) -> list:
    os._exit(3)  # as the OOM killer would end a worker: no exception, no result


def test_a_worker_that_dies_fails_the_run_with_a_message(
    answerer: QuestionAnswerer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "_answer_batch", _die)  # looked up by name in the forked workers
    with pytest.raises(RuntimeError, match="worker process answering questions died"):
        workers.answer_in_workers(answerer, QUESTIONS, 2)
    assert not multiprocessing.active_children()


def test_workers_do_not_outlive_a_killed_predict(tiny_model: Path, tiny_index: KBIndex, tmp_path: Path) -> None:
    """SIGKILL `kgqa predict --workers 2` mid-run: its workers are gone with it."""
    qa = write_qa(tmp_path / "qa.json", TINY_QA * 400)
    argv = ["predict", "--model", str(tiny_model), "--index", str(tiny_index.directory), "--qa", str(qa)]
    argv += ["--out", str(tmp_path / "pred.json"), "--workers", "2", "--batch-size", "4"]
    parent = subprocess.Popen([sys.executable, "-m", "kgqa.cli", *argv], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        children: set[int] = set()
        while len(children) < 2 and time.monotonic() < deadline and parent.poll() is None:
            children = _children(parent.pid)
            time.sleep(0.05)
        assert len(children) == 2, "the workers never started"
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while children and time.monotonic() < deadline:
        children = {pid for pid in children if _running(pid)}
        time.sleep(0.05)
    assert not children, f"workers {sorted(children)} outlived their parent"


@pytest.mark.parametrize("count", ["-1", "two"])
def test_a_bad_worker_count_is_refused_with_a_message(count: str, capsys: pytest.CaptureFixture[str]) -> None:
    from kgqa.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--model", "m", "--qa", "q.json", "--out", "o.json", "--workers", count])
    assert exit_info.value.code == 2
    assert "a number of processes, 0 for one per CPU" in capsys.readouterr().err


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
