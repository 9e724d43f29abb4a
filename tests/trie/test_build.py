"""The index build in bounded memory: sorted runs spilled to disk, shards over key ranges, parallel shard builds.

Every test compares what indexes answer; a tiny memory budget forces a small KB into many runs and many shards.
"""

from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgqa.data.knowledge import iter_triples_at
from kgqa.trie import SEP, KBIndex, build_index, path_key
from kgqa.trie.build import NotEnoughDiskError, check_disk_space
from kgqa.trie.runs import iter_shard_input, merge_runs, write_sorted_runs
from tests.conftest import write_kb
from tests.trie.test_index import RANDOM_TRIPLE, kb_paths, walk

TINY_BUDGET = 4096  # a few dozen lines per sorted run, a few hundred bytes per shard


def answers(index: KBIndex, keys: set[str]) -> dict[str, object]:
    """Everything the index answers about these keys: next characters of every prefix (and a dead end after each),
    objects, triples and relations of every name, the set of paths by id, and the counts."""
    prefixes = {key[:depth] for key in keys for depth in range(len(key) + 1)} | {key + "x" for key in keys}
    names = {key.split(SEP)[0] for key in keys}
    return {
        "next": {p: index.next_codepoints(p).tolist() for p in sorted(prefixes)},
        "objects": {k: index.objects(*_lookup(k)) for k in sorted(keys)},
        "triples": {n: index.triples(n) for n in sorted(names)},
        "relations": {n: index.relations(n) for n in sorted(names)},
        "completion": {p: index.completion(p) for p in sorted(prefixes)},
        "names_in": index.names_in("".join(sorted(names))),
        "by_id": sorted(index.path_key_by_id(i) for i in range(len(index))),
        "counts": {k: v for k, v in index.manifest.counts.items() if k not in ("objects", "shards")},
    }


def _lookup(key: str) -> tuple[str, str, str]:
    name, relation, meaning = key.split(SEP)
    return name, relation, meaning


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(triples=st.lists(RANDOM_TRIPLE, min_size=1, max_size=80), threshold=st.integers(0, 6))
def test_property_many_shards_answer_as_one(
    tmp_path_factory: pytest.TempPathFactory, triples: list[tuple[str, str, str]], threshold: int
) -> None:
    directory = tmp_path_factory.mktemp("kb")
    lines = ["\t".join(t) for t in triples]
    kb = write_kb(directory / "kb.tsv", lines)
    build_index([kb], directory / "one", heavy_threshold=threshold, progress=False)
    build_index([kb], directory / "many", heavy_threshold=threshold, progress=False, memory_budget=TINY_BUDGET)
    one, many = KBIndex(directory / "one"), KBIndex(directory / "many")
    assert one.manifest.counts["shards"] == 1
    assert walk(many) == kb_paths(lines)
    keys = kb_paths(lines)
    assert answers(many, keys) == answers(one, keys)


def test_a_name_cut_by_shard_boundaries(tmp_path: Path) -> None:
    """One name with 60 relations spans several shards: its triples, relations and next characters are whole."""
    lines = [f"甲\t关系{i:02d}\t值{i}" for i in range(60)] + ["甲乙\t别名\t丙", "乙\t类型\t丁"]
    kb = write_kb(tmp_path / "kb.tsv", lines)
    build_index([kb], tmp_path / "one", heavy_threshold=4, progress=False)
    build_index([kb], tmp_path / "many", heavy_threshold=4, progress=False, memory_budget=TINY_BUDGET)
    one, many = KBIndex(tmp_path / "one"), KBIndex(tmp_path / "many")
    shards = many.manifest.shards
    assert len(shards) >= 4 and sum(s["first_key"].startswith("甲" + SEP) for s in shards) >= 3
    assert len(many.triples("甲")) == 60 and many.relations("甲") == [f"关系{i:02d}" for i in range(60)]
    assert many.manifest.counts["names"] == 3
    keys = kb_paths(lines)
    assert answers(many, keys) == answers(one, keys)
    for shard in shards:  # every first key, and the prefixes just before and after it
        key = shard["first_key"]
        for prefix in (key, key[:-1], key + "0"):
            assert np.array_equal(many.next_codepoints(prefix), one.next_codepoints(prefix))


def test_a_small_budget_spills_many_runs_and_the_merge_restores_order(tmp_path: Path) -> None:
    lines = [f"名{i % 37}\t关系{i % 5}\t值{i % 11}" for i in range(500)] + ["名1\t关系1\t值1"]  # duplicates
    kb = write_kb(tmp_path / "kb.tsv", lines)
    (tmp_path / "spill").mkdir()
    runs = write_sorted_runs(iter_triples_at(kb), tmp_path / "spill", 2048, "name,relation,meaning")
    assert len(runs.paths) > 10 and runs.triples == 501
    shards = list(merge_runs(runs.paths, tmp_path / "spill", 300))
    assert len(shards) > 5
    assert not list((tmp_path / "spill").glob("merged-*"))  # few runs: merged at once
    merged: dict[str, list[str]] = {}
    for shard in shards:
        grouped = dict(iter_shard_input(shard.path))
        assert len(grouped) == shard.keys and sum(map(len, grouped.values())) == shard.lines
        merged.update(grouped)
    assert list(merged) == sorted(merged)
    expected: dict[str, list[str]] = {}
    for i in range(500):  # in file order, without duplicates
        key = path_key(f"名{i % 37}", f"关系{i % 5}")
        if f"值{i % 11}" not in expected.setdefault(key, []):
            expected[key].append(f"值{i % 11}")
    assert merged == expected


def test_more_runs_than_the_merge_opens_at_once_are_merged_in_passes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [f"名{i % 97}\t关系{i % 5}\t值{i % 13}" for i in range(3000)]
    kb = write_kb(tmp_path / "kb.tsv", lines)
    build_index([kb], tmp_path / "direct", progress=False, memory_budget=TINY_BUDGET)
    monkeypatch.setattr("kgqa.trie.runs.MERGE_FAN_IN", 4)  # 375 runs: four passes, against one (fan-in 256)
    build_index([kb], tmp_path / "passes", progress=False, memory_budget=TINY_BUDGET)
    assert _files(tmp_path / "passes") == _files(tmp_path / "direct")
    (tmp_path / "spill").mkdir()
    runs = write_sorted_runs(iter_triples_at(kb), tmp_path / "spill", 2048, "name,relation,meaning")
    assert len(runs.paths) > 16
    list(merge_runs(runs.paths, tmp_path / "spill", 300))
    assert list((tmp_path / "spill").glob("merged-*")) and not list((tmp_path / "spill").glob("run-*"))


def test_objects_keep_the_files_order(tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "kb.tsv", ["甲\t别名\t戊", "乙\t别名\t甲", "甲\t别名\t丙", "甲\t别名\t戊", "甲\t别名\t丁"])
    build_index([kb], tmp_path / "index", progress=False, memory_budget=TINY_BUDGET)
    assert KBIndex(tmp_path / "index").objects("甲", "别名") == ["戊", "丙", "丁"]


def _files(index_dir: Path) -> dict[str, object]:
    """Every file's size and sha256, and what the read counted (skips with their line numbers)."""
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    return {"files": manifest["files"], "read": manifest["read"]}


def _shardy_kb(path: Path) -> Path:
    return write_kb(path, [f"名{i:03d}\t关系{i % 7}\t值{i * 7919 % 1000}" for i in range(400)])


def _shardy_kbs(directory: Path) -> list[Path]:
    """A plain file with skipped lines among its 400 (read in many byte ranges) and a gzip file (read whole)."""
    lines = [f"名{i:03d}\t关系{i % 7}\t值{i * 7919 % 1000}" if i % 97 else f"坏行{i}" for i in range(400)]
    plain = write_kb(directory / "kb.tsv", lines)
    packed = directory / "more.tsv.gz"
    packed.write_bytes(gzip.compress("".join(f"名{i:03d}\t别名\t值{i}\n" for i in range(0, 400, 3)).encode()))
    return [plain, packed]


def test_parallel_builds_write_byte_identical_files(tmp_path: Path) -> None:
    kbs = _shardy_kbs(tmp_path)
    build_index(kbs, tmp_path / "one", progress=False, memory_budget=TINY_BUDGET)
    build_index(kbs, tmp_path / "three", progress=False, memory_budget=TINY_BUDGET, jobs=3)
    one = KBIndex(tmp_path / "one").manifest
    assert one.counts["shards"] > 10 and one.read["skipped"] == 5
    assert one.read["examples"][0] == "kb.tsv:1: column count"  # line numbers as in one pass, whatever the pieces
    assert _files(tmp_path / "three") == _files(tmp_path / "one")
    assert KBIndex(tmp_path / "one").objects("名003", "别名") == ["值3"]


def test_ray_builds_write_byte_identical_files(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is the optional kgqa[ray] extra (make setup installs it)")
    kbs = _shardy_kbs(tmp_path)
    build_index(kbs, tmp_path / "local", progress=False, memory_budget=TINY_BUDGET)
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        build_index(kbs, tmp_path / "ray", progress=False, memory_budget=TINY_BUDGET, engine="ray", jobs=2)
    finally:
        ray.shutdown()
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_build_leaves_no_temporary_files_and_the_old_index(tmp_path: Path, stop: signal.Signals) -> None:
    kb = write_kb(tmp_path / "kb.tsv", [f"名{i}\t关系{i % 13}\t值{i}" for i in range(200_000)])
    build_index([write_kb(tmp_path / "old.tsv", ["旧\t关系\t值"])], tmp_path / "index", progress=False)
    old_checksum = KBIndex(tmp_path / "index").checksum
    command = [sys.executable, "-m", "kgqa", "index", "build", "--kb", str(kb), "--out", str(tmp_path / "index")]
    # SIGINT as a terminal's Ctrl-C delivers it, even where this test runs with it ignored (a background job)
    restore_sigint = lambda: signal.signal(signal.SIGINT, signal.default_int_handler)  # noqa: E731
    build = subprocess.Popen([*command, "--memory-budget", "256K", "--jobs", "2", "--quiet"], preexec_fn=restore_sigint)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob(".index.spill-*/run-*"))) < 3:  # runs are being spilled
            assert build.poll() is None and time.monotonic() < deadline, "the build ended before it was interrupted"
            time.sleep(0.05)
        build.send_signal(stop)
        assert build.wait(timeout=60) != 0
    finally:
        build.kill()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "kb.tsv", "old.tsv"]
    assert KBIndex(tmp_path / "index").checksum == old_checksum
    assert KBIndex(tmp_path / "index").triples("旧")


def test_a_kb_that_cannot_fit_the_disk_fails_before_reading(tmp_path: Path) -> None:
    huge = tmp_path / "huge.tsv"
    with open(huge, "wb") as f:
        f.truncate(8 * 2**40)  # a sparse file: 8 TiB by its size, nothing on disk
    with pytest.raises(NotEnoughDiskError, match=r"needs about .* GiB free beside .* GiB is free there"):
        build_index([huge], tmp_path / "index", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["huge.tsv"]
    check_disk_space([_shardy_kb(tmp_path / "kb.tsv")], tmp_path)  # a small one fits


def test_the_cli_takes_a_memory_budget_and_jobs(tmp_path: Path) -> None:
    kb = _shardy_kb(tmp_path / "kb.tsv")
    out = tmp_path / "index"
    done = subprocess.run(
        [sys.executable, "-m", "kgqa", "index", "build", "--kb", str(kb), "--out", str(out), "--memory-budget", "8K"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "error::ResourceWarning"},
    )
    assert done.returncode == 0, done.stderr
    assert KBIndex(out).manifest.counts["shards"] > 1
    bad = subprocess.run(
        [sys.executable, "-m", "kgqa", "index", "build", "--kb", str(kb), "--out", str(out), "--memory-budget", "lots"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "not a size: 'lots'" in bad.stderr
