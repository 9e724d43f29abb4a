from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from kgqa.trie.engines import task_runner
from kgqa.trie.read import plan_pieces, read_into_runs
from tests.conftest import write_kb


@pytest.mark.parametrize("jobs", [1, 2])
def test_progress_adds_up_to_the_files_and_moves_within_a_piece_read_here(tmp_path: Path, jobs: int) -> None:
    kb = write_kb(tmp_path / "kb.tsv", [f"名{i}\t关系\t值{i}" for i in range(140_000)])
    (tmp_path / "spill").mkdir()
    steps: list[int] = []
    with task_runner("local", jobs) as runner:
        runs, counter = read_into_runs(
            [kb], tmp_path / "spill", 2**30, "name,relation,meaning", runner, jobs, steps.append
        )
    assert runs.triples == counter.kept == 140_000
    assert sum(steps) == kb.stat().st_size and min(steps) >= 0
    assert len(steps) >= (3 if jobs == 1 else 1)  # in this process: every 64k lines, not only at a piece's end


def test_pieces_cover_a_plain_file_and_take_a_gzip_file_whole(tmp_path: Path) -> None:
    plain = write_kb(tmp_path / "kb.tsv", [f"名{i}\t关系\t值{i}" for i in range(100)])
    packed = tmp_path / "kb.tsv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    pieces = plan_pieces([plain, packed], 300)
    plain_pieces = [p for p in pieces if p.file_number == 0]
    assert [p.start for p in plain_pieces] == list(range(0, plain.stat().st_size, 300))
    assert plain_pieces[-1].stop is None and sum(p.disk_bytes for p in plain_pieces) == plain.stat().st_size
    assert [(p.start, p.stop, p.disk_bytes) for p in pieces if p.file_number == 1] == [(0, None, packed.stat().st_size)]
