from __future__ import annotations

from pathlib import Path

from kgqa.bench.synthetic import write_synthetic_kb
from kgqa.data.knowledge import SkipCounter, iter_triples, split_head


def test_synthetic_kb_is_seeded_and_kgclue_shaped(tmp_path: Path) -> None:
    counts = write_synthetic_kb(tmp_path / "a.tsv", triples=60_000, seed=7)
    write_synthetic_kb(tmp_path / "b.tsv", triples=60_000, seed=7)
    assert (tmp_path / "a.tsv").read_bytes() == (tmp_path / "b.tsv").read_bytes()
    assert 50_000 < counts["triples"] < 70_000

    counter = SkipCounter()
    triples = list(iter_triples(tmp_path / "a.tsv", counter))
    assert counter.skipped_total == 0
    heads = {t.head for t in triples}
    with_meaning = sum(1 for h in heads if split_head(h)[1])
    assert 0.22 < with_meaning / len(heads) < 0.32  # KgCLUE: ~27% of heads carry a meaning
    assert 5.5 < len(triples) / len(heads) < 7.5  # KgCLUE: 6.6 triples per head
    relation_counts: dict[str, int] = {}
    for t in triples:
        relation_counts[t.relation] = relation_counts.get(t.relation, 0) + 1
    frequencies = sorted(relation_counts.values(), reverse=True)
    assert frequencies[0] > 20 * frequencies[len(frequencies) // 2]  # a long tail


def test_gzip_output(tmp_path: Path) -> None:
    write_synthetic_kb(tmp_path / "kb.tsv.gz", triples=2_000, seed=1)
    assert (tmp_path / "kb.tsv.gz").read_bytes()[:2] == b"\x1f\x8b"
    assert sum(1 for _ in iter_triples(tmp_path / "kb.tsv.gz")) > 1_000
