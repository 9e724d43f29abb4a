"""The KB's relation statistics: counted at index build from the knowledge files alone, and moving with the KB."""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest

from kgqa.trie import KBIndex, RelationStats, build_index
from kgqa.trie.build import MIN_MEMORY_BUDGET
from kgqa.trie.manifest import IndexLoadError
from kgqa.trie.stats import PARTS_FILE, STATS_DIR, RelationCounter, StatsSummary
from tests.conftest import VILLAGES_AND_A_FILM, index_of_lines, write_kb

KB = [
    *VILLAGES_AND_A_FILM,
    "五里村（2010年电影）\t导演\t张三",  # a repeated line counts once: the build drops duplicate triples
    "五里村（2010年电影）\t导演\t李四",  # so does a second object: an entity holds a relation or not
    "五里\t面积\t1平方公里",
]


def test_counts_by_meaning_ending_on_a_hand_made_kb(tmp_path: Path) -> None:
    stats = index_of_lines(KB, tmp_path).relation_stats
    assert (stats.count("村庄", "面积"), stats.count("村庄", "人口"), stats.count("村庄", "导演")) == (2, 1, 0)
    assert (stats.count("电影", "导演"), stats.count("电影", "面积")) == (1, 1)
    assert stats.count("", "面积") == 1
    assert [stats.relation_paths(r) for r in ("面积", "人口", "导演", "作者")] == [4, 1, 1, 0]
    assert stats.paths == 6 and stats.vocabulary == 3
    # add-one smoothed over the 3 relations: 6 paths in all, 3 of them of meanings ending in 村庄
    fit = stats.fit("面积", "湖南省长沙市村庄")
    assert fit["prior"] == pytest.approx(math.log(5 / 9))
    assert fit["kind"] == pytest.approx(math.log(3 / 6))
    assert fit["kind1"] == pytest.approx(math.log(3 / 6))  # 庄: the same triples
    assert fit["lift"] == pytest.approx(fit["kind"] - fit["prior"])
    assert stats.fit("导演", "某某电影")["lift"] > stats.fit("导演", "某某村庄")["lift"]
    unseen = stats.fit("导演", "一首歌曲")  # an ending the KB never holds: the prior, smoothed
    assert unseen["kind"] == pytest.approx(math.log(1 / 3))
    assert stats.fit("面积", "") == stats.fit("面积", "") and stats.fit("面积", "")["lift"] == 0.0


def test_statistics_change_with_the_kb(tmp_path: Path) -> None:
    first = index_of_lines(KB, tmp_path / "a").relation_stats
    more_films = KB + [f"电影{i}（2011年电影）\t导演\t李{i}" for i in range(5)]
    second = index_of_lines(more_films, tmp_path / "b").relation_stats
    assert second.fit("导演", "2012年电影")["kind"] > first.fit("导演", "2012年电影")["kind"]
    assert second.count("电影", "导演") == 6 and first.count("电影", "导演") == 1


def test_counted_saved_and_loaded(tmp_path: Path) -> None:
    (tmp_path / "spill").mkdir()
    counter = RelationCounter(tmp_path / "spill", budget_bytes=10**6)
    for relation, meaning in [("面积", "某村庄"), ("面积", "他村庄"), ("人口", ""), ("面积", "小庄")]:
        counter.add(relation, meaning)
    assert counter.save(tmp_path) == StatsSummary(paths=4, relations=2, pairs=3)
    stats = RelationStats.load(tmp_path)
    assert stats.count("村庄", "面积") == 2 and stats.count("小庄", "面积") == 1 and stats.count("", "人口") == 1
    # the one-character ending 庄 pools 村庄 and 小庄: 3 paths, all 面积, of 2 relations
    assert stats.fit("面积", "新庄")["kind1"] == pytest.approx(math.log(4 / 5))
    assert stats.fit("面积", "新庄")["kind"] == pytest.approx(math.log(1 / 2))  # 新庄: no path, smoothed


def test_an_index_without_its_statistics_says_to_rebuild(tmp_path: Path) -> None:
    index_of_lines(KB, tmp_path)
    (tmp_path / "index" / STATS_DIR / PARTS_FILE).unlink()
    with pytest.raises(IndexLoadError, match="rebuild"):
        KBIndex(tmp_path / "index")


def _records(stats: RelationStats) -> dict[str, int]:
    return {key: int(value[0]) for trie in stats._tries for key, value in trie.items()}


def test_counted_in_a_tiny_budget_the_statistics_are_the_unbounded_ones(tmp_path: Path) -> None:
    """A budget of a few records: the counts spill to many runs, merge in several passes and come out in many parts;
    every record, the path total and the relation count are those of a build that never spills, and those of a
    plain count of the KB's distinct paths."""
    rng = random.Random(0)
    endings = "村庄市县区镇电影歌曲教授演员公司大学"
    lines = [
        f"名{rng.randrange(300)}（{rng.choice(endings)}{rng.choice(endings)}）\t关系{rng.randrange(60)}\t{i}"
        for i in range(1500)
    ]
    kb = write_kb(tmp_path / "kb.tsv", lines)
    build_index([kb], tmp_path / "tiny", progress=False, memory_budget=MIN_MEMORY_BUDGET)
    build_index([kb], tmp_path / "roomy", progress=False)
    tiny, roomy = KBIndex(tmp_path / "tiny"), KBIndex(tmp_path / "roomy")
    parts = json.loads((tmp_path / "tiny" / STATS_DIR / PARTS_FILE).read_text(encoding="utf-8"))
    assert len(parts["first_keys"]) > 100  # a record or so a part
    assert len(json.loads((tmp_path / "roomy" / STATS_DIR / PARTS_FILE).read_text(encoding="utf-8"))["first_keys"]) == 5
    assert _records(tiny.relation_stats) == _records(roomy.relation_stats)
    assert (tiny.relation_stats.paths, tiny.relation_stats.vocabulary) == (
        roomy.relation_stats.paths,
        roomy.relation_stats.vocabulary,
    )
    paths = {(line.split("\t")[0], line.split("\t")[1]) for line in lines}
    expected = Counter((head[-3:-1], relation) for head, relation in paths)
    assert {(e, r): tiny.relation_stats.count(e, r) for e, r in expected} == dict(expected)
    assert tiny.relation_stats.paths == len(paths)
    assert tiny.relation_stats.vocabulary == len({r for _, r in paths}) == tiny.manifest.counts["relations"]
