"""`kgqa predict --engine ray` answers exactly as the local engine (real local Ray); `--shard` splits the work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgqa.cli import main
from kgqa.data.locate import find_data_dir
from kgqa.data.questions import parse_shard, take_shard
from kgqa.trie import KBIndex

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "kgqa-default"


@given(items=st.lists(st.integers(), max_size=50), count=st.integers(1, 12))
def test_shards_cover_every_question_once_in_order(items: list[int], count: int) -> None:
    shards = [take_shard(items, index, count) for index in range(count)]
    assert [x for shard in shards for x in shard] == items
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("spec", ["3/3", "-1/2", "1/0", "a/b", "2"])
def test_a_bad_shard_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="I/N"):
        parse_shard(spec)


def test_sharded_prediction_files_concatenate_to_the_whole(
    tiny_model: Path, tiny_index: KBIndex, tiny_qa: Path, tmp_path: Path
) -> None:
    argv = ["predict", "--model", str(tiny_model), "--index", str(tiny_index.directory), "--qa", str(tiny_qa)]
    lines = []
    for index in range(3):
        assert main([*argv, "--shard", f"{index}/3", "--out", str(tmp_path / f"{index}.json")]) == 0
        lines += (tmp_path / f"{index}.json").read_text(encoding="utf-8").splitlines()
    ids = [line.split(",")[0] for line in lines]
    assert ids == [f'{{"id": {i}' for i in range(8)]  # every question once, in the file's order


def test_ray_engine_answers_exactly_as_the_local_engine(kgclue_sim_index: KBIndex, tmp_path: Path) -> None:
    """300 dev questions through Ray Data on a local 2-CPU Ray, against the local engine: identical files."""
    ray = pytest.importorskip("ray", reason="Ray is the optional kgqa[ray] extra (make setup installs it)")
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("no default model")
    qa = tmp_path / "dev300.json"
    dev = find_data_dir(download=False) / "dev.json"  # the real dev file, found as the product finds it
    qa.write_text("".join(dev.read_text(encoding="utf-8").splitlines(keepends=True)[:300]), encoding="utf-8")
    argv = ["predict", "--model", str(DEFAULT_MODEL), "--index", str(kgclue_sim_index.directory), "--qa", str(qa)]
    argv += ["--quantize"]
    assert main([*argv, "--out", str(tmp_path / "local.json")]) == 0
    assert main([*argv, "--abstain", "--out", str(tmp_path / "local-abstain.json")]) == 0
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        assert main([*argv, "--engine", "ray", "--actors", "2", "--out", str(tmp_path / "ray.json")]) == 0
        ray_abstain = ["--engine", "ray", "--actors", "2", "--abstain", "--out", str(tmp_path / "ray-abstain.json")]
        assert main([*argv, *ray_abstain]) == 0
    finally:
        ray.shutdown()
    local = (tmp_path / "local.json").read_text(encoding="utf-8")
    assert len(local.splitlines()) == 300
    assert (tmp_path / "ray.json").read_text(encoding="utf-8") == local
    # the confidences too: the same numbers, and so the same abstentions
    abstaining = (tmp_path / "local-abstain.json").read_text(encoding="utf-8")
    assert '"confidence"' in abstaining and (tmp_path / "ray-abstain.json").read_text(encoding="utf-8") == abstaining


def test_without_ray_the_error_says_how_to_install_it(tiny_model: Path, tiny_index: KBIndex, tiny_qa: Path) -> None:
    code = (
        "import sys; sys.modules['ray'] = None\n"  # as if Ray were not installed
        "from kgqa.cli import main\n"
        f"sys.exit(main(['predict', '--engine', 'ray', '--model', {str(tiny_model)!r}, "
        f"'--index', {str(tiny_index.directory)!r}, '--qa', {str(tiny_qa)!r}, '--out', '/dev/null']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "pip install 'kgqa[ray]'" in done.stderr
