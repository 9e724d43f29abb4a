"""A synthetic knowledge base shaped like KgCLUE's, for measuring the index at full scale (20.56M triples).

Shape, at ``--triples 20559652`` (KgCLUE's figures; smaller sizes scale the counts down):
- 3.12M heads, 1 + Poisson(5.6) triples each (6.6 on average);
- names built from a Zipf-distributed word list, so that names share prefixes as real ones do (中国…, 北京…);
  ~27% of heads are ambiguous names carrying ``（meaning）``, 2 + Poisson(0.5) heads per ambiguous name;
- 245,838 relations with a Zipf long tail (a few relations are on most heads, most are rare);
- objects: half from a pool of common values (Zipf), half fresh strings with long-tailed lengths (median ~20
  characters, mean ~37, up to 1000), so that objects dominate the bytes as descriptions do in KgCLUE.
Characters are CJK ideographs by Zipf frequency, with some Latin letters and digits. Seeded: same arguments, same file.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

import numpy as np

KGCLUE_TRIPLES = 20_559_652
KGCLUE_HEADS = 3_121_457
KGCLUE_RELATIONS = 245_838
AMBIGUOUS_HEAD_SHARE = 0.27
_CJK = np.arange(0x4E00, 0x9FA6)
_LATIN = np.array([ord(c) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"])


class _Sampler:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        chars = np.concatenate([self.rng.permutation(_CJK), _LATIN])
        weights = 1.0 / np.arange(1, len(chars) + 1) ** 1.05
        self.chars = chars
        self.char_cdf = np.cumsum(weights) / weights.sum()

    def zipf_indices(self, n: int, size: int, exponent: float = 1.0) -> np.ndarray:
        """``size`` indices into ``range(n)``, index k with probability proportional to 1 / (k + 1) ** exponent."""
        weights = 1.0 / np.arange(1, n + 1) ** exponent
        cdf = np.cumsum(weights) / weights.sum()
        return np.minimum(np.searchsorted(cdf, self.rng.random(size)), n - 1)

    def strings(self, lengths: np.ndarray) -> list[str]:
        codes = self.chars[
            np.minimum(np.searchsorted(self.char_cdf, self.rng.random(int(lengths.sum()))), len(self.chars) - 1)
        ]
        text = "".join(map(chr, codes))
        ends = np.cumsum(lengths)
        return [text[end - length : end] for end, length in zip(ends.tolist(), lengths.tolist(), strict=True)]

    def words(self, n: int) -> list[str]:
        lengths = self.rng.choice([1, 2, 3, 4], size=n, p=[0.12, 0.55, 0.25, 0.08])
        return list(dict.fromkeys(self.strings(lengths)))

    def compose(self, words: list[str], n: int, word_counts: list[int], p: list[float], exponent: float) -> list[str]:
        """``n`` strings each made of 1..k words drawn by Zipf rank from ``words``."""
        counts = self.rng.choice(word_counts, size=n, p=p)
        picks = self.zipf_indices(len(words), int(counts.sum()), exponent).tolist()
        out, position = [], 0
        for count in counts.tolist():
            out.append("".join(words[i] for i in picks[position : position + count]))
            position += count
        return out

    def distinct(self, make: Callable[[int], list[str]], n: int) -> list[str]:
        found: dict[str, None] = {}
        while len(found) < n:
            found.update(dict.fromkeys(make(int((n - len(found)) * 1.2) + 16)))
        return list(found)[:n]


def _open_text(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "wt", encoding="utf-8", compresslevel=1)
    return open(path, "w", encoding="utf-8")


def write_synthetic_kb(
    out: str | Path, triples: int = KGCLUE_TRIPLES, seed: int = 0, progress: Callable[[int], None] | None = None
) -> dict[str, int]:
    """Write a synthetic knowledge file of about ``triples`` lines (gzip if ``out`` ends in .gz); returns counts."""
    scale = triples / KGCLUE_TRIPLES
    sampler = _Sampler(seed)
    rng = sampler.rng
    head_count = max(1, round(KGCLUE_HEADS * scale))
    relation_count = max(8, round(KGCLUE_RELATIONS * scale))

    words = sampler.words(max(1000, round(400_000 * scale**0.5)))
    # ambiguous names have 2 + Poisson(0.5) heads (2.5 on average); pick their share so 27% of heads carry a meaning
    ambiguous_share = AMBIGUOUS_HEAD_SHARE / (2.5 - 1.5 * AMBIGUOUS_HEAD_SHARE)
    name_count = max(1, round(head_count / (1 + 1.5 * ambiguous_share)))
    names = sampler.distinct(lambda n: sampler.compose(words, n, [1, 2, 3, 4], [0.25, 0.45, 0.2, 0.1], 0.9), name_count)
    relations = sampler.distinct(lambda n: sampler.compose(words, n, [1, 2, 3], [0.35, 0.5, 0.15], 1.0), relation_count)
    pool = sampler.distinct(
        lambda n: sampler.compose(words, n, [1, 2, 3, 4, 6], [0.2, 0.35, 0.25, 0.12, 0.08], 1.0),
        max(100, round(2_000_000 * scale)),
    )
    meanings = sampler.distinct(
        lambda n: sampler.compose(words, n, [2, 3, 4, 5, 6], [0.15, 0.3, 0.3, 0.15, 0.1], 1.0),
        max(100, round(500_000 * scale)),
    )

    written = heads_written = ambiguous_heads = 0
    with _open_text(Path(out)) as f:
        for start in range(0, len(names), 50_000):
            batch = names[start : start + 50_000]
            ambiguous = rng.random(len(batch)) < ambiguous_share
            heads: list[str] = []
            for name, is_ambiguous in zip(batch, ambiguous.tolist(), strict=True):
                if is_ambiguous:
                    chosen = rng.choice(len(meanings), size=2 + rng.poisson(0.5), replace=False)
                    heads += [f"{name}（{meanings[m]}）" for m in chosen.tolist()]
                    ambiguous_heads += len(chosen)
                else:
                    heads.append(name)
            per_head = 1 + rng.poisson(5.6, size=len(heads))
            total = int(per_head.sum())
            relation_ids = sampler.zipf_indices(len(relations), total, 1.0).tolist()
            fresh = rng.random(total) < 0.5
            pool_ids = sampler.zipf_indices(len(pool), total, 0.8).tolist()
            fresh_objects = iter(
                sampler.strings(np.clip(rng.lognormal(3.0, 1.1, int(fresh.sum())), 1, 1000).astype(np.int64))
            )
            lines, position = [], 0
            for head, count in zip(heads, per_head.tolist(), strict=True):
                for k in range(position, position + count):
                    obj = next(fresh_objects) if fresh[k] else pool[pool_ids[k]]
                    lines.append(f"{head}\t{relations[relation_ids[k]]}\t{obj}\n")
                position += count
            f.write("".join(lines))
            written += total
            heads_written += len(heads)
            if progress is not None:
                progress(total)
    return {
        "triples": written,
        "heads": heads_written,
        "ambiguous_heads": ambiguous_heads,
        "names": len(names),
        "relations": len(relations),
    }
