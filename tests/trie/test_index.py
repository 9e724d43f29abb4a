from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgqa.data.knowledge import iter_triples, join_head, split_head
from kgqa.trie import (
    END,
    END_CODE,
    SEP,
    KBIndex,
    build_index,
    path_key,
    split_path_key,
)
from tests.conftest import TINY_KB, write_kb

KB = [
    *TINY_KB[:7],  # 守望星光 (three heads), 守望, 龙晶（游戏） 繁体 and 别名
    "龙晶（游戏）\t繁体\t龍晶",  # duplicate triple: stored once
    "龙晶（游戏）\t别名\t晶龙",  # two objects for one path
    "bad line without tabs",
]


def walk(index: KBIndex, prefix: str = "") -> set[str]:
    """Every complete key reachable by following the allowed next characters from ``prefix``."""
    found = set()
    for ch in index.next_chars(prefix):
        if ch == END:
            found.add(prefix)
        else:
            found |= walk(index, prefix + ch)
    return found


def kb_paths(lines: list[str]) -> set[str]:
    paths = set()
    for line in lines:
        parts = line.split("\t")
        if len(parts) == 3 and all(p.strip() for p in parts):
            name, meaning = split_head(parts[0].strip())
            paths.add(path_key(name, parts[1].strip(), meaning))
    return paths


@pytest.fixture(params=[0, 2, 1000], ids=["all-heavy", "mixed", "all-light"])
def index(request: pytest.FixtureRequest, tmp_path: Path) -> KBIndex:
    kb = write_kb(tmp_path / "kb.tsv", KB)
    build_index([kb], tmp_path / "index", heavy_threshold=request.param, progress=False)
    return KBIndex(tmp_path / "index")


def test_walk_reaches_exactly_the_kb_paths(index: KBIndex) -> None:
    assert walk(index) == kb_paths(KB)


def test_allowed_next_at_each_level(index: KBIndex) -> None:
    assert index.next_chars("") == sorted({"守", "龙"})
    assert index.next_chars("守望") == [SEP, "星"]  # "守望" is a name and a prefix of "守望星光"
    assert index.next_chars(path_key("守望星光", "出品公司", "")[:-1]) == [SEP]
    assert index.next_chars(path_key("守望星光", "出品公司", "")) == sorted({"韩", "2"})
    assert index.next_chars(path_key("守望星光", "类型", "")) == [END]
    assert index.next_chars("不存在") == []
    assert index.next_codepoints("不存在").dtype == np.uint32


def test_objects_and_triples(index: KBIndex) -> None:
    assert index.objects("守望星光", "出品公司", "韩玉玲、刘东考演唱歌曲") == ["韩玉玲原创音乐"]
    assert sorted(index.objects("龙晶", "别名", "游戏")) == ["晶龙", "龙之晶"]
    assert index.objects("龙晶", "繁体", "游戏") == ["龍晶"]
    assert index.objects("龙晶", "繁体") == []  # meaning is part of the path
    triples = index.triples("守望星光")
    assert [(t.head, t.relation, t.object) for t in triples] == [
        ("守望星光", "类型", "歌曲"),
        ("守望星光（2002年电视剧人物）", "出品公司", "另一家公司"),
        ("守望星光（韩玉玲、刘东考演唱歌曲）", "出品公司", "韩玉玲原创音乐"),
        ("守望星光（韩玉玲、刘东考演唱歌曲）", "歌手", "韩玉玲"),
    ]
    assert index.triples("守") == []  # a name, not a prefix of names
    # the same paths without their objects, in the same order (龙晶's two objects of 别名 make one path)
    assert index.paths("守望星光") == [(t.name, t.relation, t.meaning) for t in triples]
    assert index.paths("龙晶") == list(dict.fromkeys((t.name, t.relation, t.meaning) for t in index.triples("龙晶")))
    assert index.paths("守") == [] and index.paths("守望星光\x00") == []
    assert index.relations("守望") and not index.relations("守")
    assert index.manifest.counts["triples"] == 8
    assert index.manifest.read["skipped_by_reason"] == {"column count": 1}


# Random small KBs: short names over a tiny alphabet make names share prefixes, homonyms and multi-object paths.
_text = st.text(alphabet="ab（）c", min_size=1, max_size=4)
RANDOM_TRIPLE = st.tuples(
    _text, st.text(alphabet="xyz", min_size=1, max_size=3), st.text(alphabet="op", min_size=1, max_size=2)
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(triples=st.lists(RANDOM_TRIPLE, min_size=1, max_size=40), threshold=st.integers(0, 6))
def test_property_walk_equals_kb_and_objects_round_trip(
    tmp_path_factory: pytest.TempPathFactory, triples: list[tuple[str, str, str]], threshold: int
) -> None:
    directory = tmp_path_factory.mktemp("kb")
    lines = ["\t".join(t) for t in triples]
    kb = write_kb(directory / "kb.tsv", lines)
    build_index([kb], directory / "index", heavy_threshold=threshold, progress=False)
    index = KBIndex(directory / "index")
    assert walk(index) == kb_paths(lines)
    expected: dict[tuple[str, str, str], set[str]] = {}
    for head, relation, tail in iter_triples(kb):
        expected.setdefault((*split_head(head), relation), set()).add(tail)
    for (name, meaning, relation), tails in expected.items():
        assert set(index.objects(name, relation, meaning)) == tails
        assert {(t.head, t.relation, t.object) for t in index.triples(name)} >= {
            (join_head(name, meaning), relation, tail) for tail in tails
        }
        assert (name, relation, meaning) in index.paths(name)


def test_index_is_memory_mapped(index: KBIndex) -> None:
    maps = Path("/proc/self/maps").read_text()
    read_whole = {"alphabet.txt", "relation_stats/parts.json"}  # small: read at load, not mapped
    mapped = [name for name in index.manifest.files if name not in read_whole]
    assert "shards/00000/paths.marisa" in mapped and "heavy.marisa" in mapped
    for name in mapped:
        assert str(index.directory / name) in maps


def test_build_fails_cleanly_on_a_kb_with_no_valid_line(tmp_path: Path) -> None:
    kb = write_kb(tmp_path / "kb.tsv", ["no tabs here", "a\tb"])
    with pytest.raises(ValueError, match="no valid triple"):
        build_index([kb], tmp_path / "index", progress=False)
    assert not (tmp_path / "index").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["kb.tsv"]  # no half-built directory left behind


def test_several_kb_files_make_one_index(tmp_path: Path) -> None:
    first = write_kb(tmp_path / "a.tsv", KB[:4])
    second = write_kb(tmp_path / "b.tsv", KB[4:])
    build_index([first, second], tmp_path / "index", progress=False)
    index = KBIndex(tmp_path / "index")
    assert walk(index) == kb_paths(KB)
    assert len(index.manifest.sources) == 2


@pytest.mark.slow
def test_every_kgclue_answer_is_a_path_of_the_sim_kb_index(kgclue_sim_index: KBIndex, kgclue_dir: Path) -> None:
    from kgqa.data.questions import read_questions

    index = kgclue_sim_index
    assert index.manifest.counts["triples"] == 2_412_328
    questions = read_questions(kgclue_dir / "train.json") + read_questions(kgclue_dir / "dev.json")
    for q in questions:
        name, meaning = split_head(q.answer.subject)
        assert q.answer.object in index.objects(name, q.answer.predicate, meaning), q
        key = path_key(name, q.answer.predicate, meaning)
        # each step of the gold target is allowed by the index
        for depth in range(len(key)):
            assert ord(key[depth]) in index.next_codepoints(key[:depth])
        assert END_CODE in index.next_codepoints(key)


def test_meaning_first_key_order_answers_the_same_questions(tmp_path: Path) -> None:
    """The ablation order keys name SEP meaning SEP relation; lookups still take and return canonical parts."""
    from kgqa.trie.keys import NAME_MEANING_RELATION

    kb = write_kb(tmp_path / "kb.tsv", KB)
    build_index([kb], tmp_path / "nmr", progress=False, key_order=NAME_MEANING_RELATION)
    build_index([kb], tmp_path / "nrm", progress=False)
    nmr, nrm = KBIndex(tmp_path / "nmr"), KBIndex(tmp_path / "nrm")
    assert nmr.key_order == NAME_MEANING_RELATION
    assert walk(nmr) == {path_key(*split_path_key(k), NAME_MEANING_RELATION) for k in kb_paths(KB)}
    assert nmr.next_chars("守望星光" + SEP) == [SEP, "2", "韩"] and nrm.next_chars("守望星光" + SEP) == [
        "出",
        "歌",
        "类",
    ]
    for name in ("守望星光", "龙晶", "守望"):
        assert nmr.triples(name) == nrm.triples(name)
        assert nmr.relations(name) == nrm.relations(name)
    assert nmr.relations("守望星光", "2002年电视剧人物") == ["出品公司"]
    assert nmr.objects("龙晶", "别名", "游戏") == nrm.objects("龙晶", "别名", "游戏")
    assert {nmr.path_by_id(i) for i in range(len(nmr))} == {nrm.path_by_id(i) for i in range(len(nrm))}


def test_queries_holding_a_nul_match_nothing(kgclue_sim_index: KBIndex) -> None:
    """marisa-trie cuts strings at NUL: unguarded, triples("\\x00") listed the whole KB and get("a\\x00b") found "a"."""
    index = kgclue_sim_index
    name, relation, meaning = "守望星光", "出品公司", "韩玉玲、刘东考演唱歌曲"
    assert index.objects(name, relation, meaning) == ["韩玉玲原创音乐"]
    assert index.triples("\x00") == [] and index.triples(name + "\x00") == []
    assert not index.relations("\x00") and not index.relations(name + "\x00x")
    assert index.relations("\x00") == [] and index.relations(name + "\x00") == []
    assert index.objects(name + "\x00x", relation, meaning) == []
    assert not index.is_path(name, relation, meaning + "\x00x")
    assert len(index.next_codepoints("\x00")) == 0 and len(index.next_codepoints(name + "\x00")) == 0
    assert "\x00" not in "".join(index.names_in("你知道\x00守望星光是哪家公司出品的吗"))
