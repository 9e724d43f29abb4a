from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kgqa.trie import IndexLoadError, KBIndex, build_index
from kgqa.trie.manifest import FORMAT_VERSION, Manifest
from tests.conftest import TINY_KB, write_kb


@pytest.fixture
def built(tmp_path: Path) -> Path:
    kb = write_kb(tmp_path / "kb.tsv", ["甲\t关系\t乙", "甲（意思）\t关系\t丙", "丁\t别的\t戊"])
    build_index([kb], tmp_path / "index", heavy_threshold=1, progress=False)
    return tmp_path / "index"


def test_manifest_records_sources_counts_and_files(built: Path) -> None:
    manifest = Manifest.read(built)
    assert manifest.format_version == FORMAT_VERSION
    assert manifest.sources[0]["size"] == (built.parent / "kb.tsv").stat().st_size
    assert len(manifest.sources[0]["sha256"]) == 64
    assert manifest.counts["triples"] == 3
    assert manifest.counts["names"] == 2
    assert manifest.counts["relations"] == 2
    assert manifest.read["skipped"] == 0
    assert manifest.build_seconds > 0
    assert "shards/00000/paths.marisa" in manifest.files
    assert manifest.shards == [{"dir": "shards/00000", "first_key": manifest.shards[0]["first_key"], "paths": 3}]
    assert manifest.verify_checksums(built) == []


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(IndexLoadError, match="kgqa index build"):
        KBIndex(tmp_path / "nope")


def test_missing_manifest_means_unfinished(built: Path) -> None:
    (built / "manifest.json").unlink()
    with pytest.raises(IndexLoadError, match=r"not a finished kgqa index.*rebuild"):
        KBIndex(built)


def test_corrupt_manifest(built: Path) -> None:
    (built / "manifest.json").write_text("{not json")
    with pytest.raises(IndexLoadError, match="corrupt"):
        KBIndex(built)


def test_other_format_version(built: Path) -> None:
    data = json.loads((built / "manifest.json").read_text())
    data["format_version"] = FORMAT_VERSION + 1
    (built / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexLoadError, match=f"version {FORMAT_VERSION + 1}.*rebuild"):
        KBIndex(built)


def test_not_a_kgqa_index(built: Path) -> None:
    (built / "manifest.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(IndexLoadError, match="not a kgqa index"):
        KBIndex(built)


def test_missing_file(built: Path) -> None:
    (built / "shards/00000/objects.zlib").unlink()
    with pytest.raises(IndexLoadError, match=r"objects\.zlib is missing"):
        KBIndex(built)


def test_truncated_file(built: Path) -> None:
    path = built / "shards/00000/paths.marisa"
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(IndexLoadError, match="truncated or corrupt"):
        KBIndex(built)


def test_file_from_another_index_is_refused(built: Path, tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "other.tsv", [f"名{i}\t关系\t值" for i in range(50)])
    build_index([kb], tmp_path / "other", progress=False)
    copied = ("shards/00000/paths.marisa", "shards/00000/path_objects.offsets.npy")
    for name in copied:
        shutil.copy(tmp_path / "other" / name, built / name)
    data = json.loads((built / "manifest.json").read_text())
    for name in copied:  # sizes made to agree: only the counts can tell
        data["files"][name]["size"] = (built / name).stat().st_size
    (built / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(IndexLoadError, match="does not match its manifest"):
        KBIndex(built)


def test_flipped_byte_is_found_by_verify(built: Path) -> None:
    path = built / "shards/00000/objects.zlib"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert Manifest.read(built).verify_checksums(built) == ["shards/00000/objects.zlib"]


def test_garbage_trie_file_fails_with_a_message(built: Path) -> None:
    path = built / "heavy.marisa"
    path.write_bytes(b"\0" * path.stat().st_size)
    with pytest.raises(IndexLoadError, match=r"cannot be read|does not match"):
        KBIndex(built)


def test_rebuild_replaces_an_existing_index(built: Path) -> None:
    kb = write_kb(built.parent / "kb2.tsv", ["新\t关系\t值"])
    build_index([kb], built, progress=False)
    assert KBIndex(built).triples("新")[0].object == "值"
    assert not KBIndex(built).relations("甲")


def test_a_killed_build_leaves_nothing_that_outlives_the_next_build(tmp_path: Path) -> None:
    abandoned = tmp_path / ".index.building-999999999"  # no such process
    abandoned.mkdir()
    (abandoned / "paths.marisa").write_bytes(b"partial")
    kb = write_kb(tmp_path / "kb.tsv", ["甲\t关系\t乙"])
    build_index([kb], tmp_path / "index", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "kb.tsv"]


def test_an_index_loaded_before_a_rebuild_in_place_keeps_its_own_files(built: Path) -> None:
    """What a running service relies on: its mappings survive `kgqa index build --out` over its directory."""
    before = KBIndex(built)
    old_triples = before.triples("甲")
    assert old_triples
    build_index([write_kb(built.parent / "kb3.tsv", ["新\t关系\t值"])], built, progress=False)
    after = KBIndex(built)
    assert before.triples("甲") == old_triples and not before.relations("新")
    assert after.relations("新") and after.checksum != before.checksum
    assert not list(built.parent.glob(f".{built.name}.*"))  # the replaced directory is gone


def test_built_from_compares_source_paths_and_sizes(tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "kb.tsv", TINY_KB)
    build_index([kb], tmp_path / "index", progress=False)
    manifest = KBIndex(tmp_path / "index").manifest
    assert manifest.built_from([kb])
    assert not manifest.built_from([kb, kb])
    write_kb(kb, [*TINY_KB, "新\t名\t字"])  # the file changed: another size
    assert not manifest.built_from([kb])
