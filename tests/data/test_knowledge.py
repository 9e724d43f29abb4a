from __future__ import annotations

import gzip
import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgqa.data.knowledge import SkipCounter, Triple, iter_triples, iter_triples_at, join_head, split_head


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        ("守望星光（韩玉玲、刘东考演唱歌曲）", ("守望星光", "韩玉玲、刘东考演唱歌曲")),
        ("武汉交通职业学院计算机协会", ("武汉交通职业学院计算机协会", "")),
        ("A（B（C））", ("A", "B（C）")),  # nested: the meaning keeps its inner parentheses
        ("A（B）（C）", ("A（B）", "C")),  # two groups: only the last is the meaning
        ("（上）", ("（上）", "")),  # the group is the whole head: no name to split off
        ("A（）", ("A（）", "")),  # empty group is not a meaning
        ("A）", ("A）", "")),  # merely ends in a parenthesis, unbalanced
        ("A（B）C）", ("A（B）C）", "")),  # unbalanced at the end
        ("A(B)", ("A(B)", "")),  # half-width parentheses are part of names
        ("三国演义（上）", ("三国演义", "上")),
    ],
)
def test_split_head(head: str, expected: tuple[str, str]) -> None:
    assert split_head(head) == expected
    assert join_head(*expected) == head


@given(st.text(alphabet=st.sampled_from(list("ab（）(）x "))))
def test_join_inverts_split_for_any_head(head: str) -> None:
    name, meaning = split_head(head)
    assert join_head(name, meaning) == head
    assert name or not head


@given(st.text(alphabet="abc", min_size=1), st.text(alphabet="ab（）", min_size=1))
def test_split_inverts_join_for_balanced_meanings(name: str, meaning: str) -> None:
    depth, balanced = 0, True
    for ch in meaning:
        depth += {"（": 1, "）": -1}.get(ch, 0)
        balanced &= depth >= 0
    if balanced and depth == 0:
        assert split_head(join_head(name, meaning)) == (name, meaning)


GOOD = ["守望星光（韩玉玲演唱歌曲）\t出品公司\t韩玉玲原创音乐", "龙晶（游戏）\t繁体\t龍晶"]


def _write(path: Path, lines: list[bytes], gz: bool = False) -> Path:
    data = b"".join(lines)
    if gz:
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def test_plain_and_gzip_read_the_same(tmp_path: Path) -> None:
    lines = [(line + "\n").encode() for line in GOOD]
    plain = list(iter_triples(_write(tmp_path / "kb.txt", lines)))
    # gzip is recognised by its magic bytes, whatever the file is called
    gzipped = list(iter_triples(_write(tmp_path / "kb.txt.renamed", lines, gz=True)))
    assert (
        plain
        == gzipped
        == [Triple("守望星光（韩玉玲演唱歌曲）", "出品公司", "韩玉玲原创音乐"), Triple("龙晶（游戏）", "繁体", "龍晶")]
    )


MIXED_LINES = [
    b"a\tb\tc\n",
    b"only\ttwo\n",  # column count
    b"a\tb\tc\td\n",  # column count
    b"a\t \tc\n",  # empty field after stripping
    b"\xff\xfe\tb\tc\n",  # bad UTF-8
    b"a\x1fb\tr\tt\n",  # control character (the index's separator)
    b"a\tr\rs\tt\n",  # control character inside a field
    b"\n",  # blank
    b"x \t r \t y\r\n",  # CRLF and padding are tolerated
    b"v\x0b\tr\t\x1cw\n",  # so are control characters that are white space at a field's edge (strip removes them)
    b"last\tline\twithout newline",
]


def test_malformed_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    lines = MIXED_LINES
    counter = SkipCounter()
    triples = list(iter_triples(_write(tmp_path / "kb.tsv", lines), counter))
    assert triples == [
        Triple("a", "b", "c"),
        Triple("x", "r", "y"),
        Triple("v", "r", "w"),
        Triple("last", "line", "without newline"),
    ]
    assert counter.lines == 11
    assert counter.kept == 4
    assert counter.skipped == {
        "column count": 2,
        "empty field": 1,
        "bad utf-8": 1,
        "control character": 2,
        "blank line": 1,
    }
    assert counter.examples[0] == "kb.tsv:2: column count"


def test_truncated_gzip_raises_rather_than_passing_silently(tmp_path: Path) -> None:
    path = _write(tmp_path / "kb.gz", [(line + "\n").encode() for line in GOOD * 1000], gz=True)
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(EOFError):
        list(iter_triples(path))


def test_progress_reports_bytes_on_disk(tmp_path: Path) -> None:
    path = _write(tmp_path / "kb.gz", [(line + "\n").encode() for line in GOOD], gz=True)
    seen: list[int] = []
    list(iter_triples(path, on_progress=seen.append))
    assert seen[-1] == path.stat().st_size


@pytest.mark.slow
def test_kgclue_sim_kb_reads_cleanly(kgclue_kb: Path) -> None:
    counter = SkipCounter()
    heads_with_meaning = sum(1 for head, _, _ in iter_triples(kgclue_kb, counter) if split_head(head)[1])
    assert counter.kept == counter.lines == 2_412_328
    assert 0 < heads_with_meaning < counter.kept


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cuts=st.lists(st.integers(0, sum(map(len, MIXED_LINES)) + 3), max_size=8))
def test_byte_ranges_read_each_line_once_whatever_the_cuts(tmp_path: Path, cuts: list[int]) -> None:
    path = _write(tmp_path / "kb.tsv", MIXED_LINES)
    whole = SkipCounter()
    expected = list(iter_triples_at(path, counter=whole))
    bounds = sorted({0, *cuts})
    found, counter = [], SkipCounter()
    for start, stop in zip(bounds, [*bounds[1:], None], strict=True):
        piece = SkipCounter()
        found += iter_triples_at(path, start, stop, piece)
        counter.add(piece, line_base=counter.lines)
    assert found == expected
    starts = list(itertools.accumulate(map(len, MIXED_LINES), initial=0))
    assert [offset for offset, _ in expected] == [starts[i] for i in (0, 8, 9, 10)]  # the valid lines' first bytes
    assert counter.as_dict() == whole.as_dict()


def test_a_gzip_file_is_read_whole(tmp_path: Path) -> None:
    path = _write(tmp_path / "kb.gz", [(line + "\n").encode() for line in GOOD], gz=True)
    with pytest.raises(ValueError, match="read whole"):
        list(iter_triples_at(path, 0, 10))
    offsets = [offset for offset, _ in iter_triples_at(path)]
    assert offsets == [0, len(GOOD[0].encode()) + 1]
