"""The heavy-prefix table: the sorted next characters of every prefix with more than ``heavy_threshold`` keys below it.

Any other prefix has few keys below it, so enumerating them is cheap; a heavy one (the root has millions) is answered
from this table (``heavy.marisa`` + ``heavy_children.offsets.npy`` / ``heavy_children.codes.npy``).

Shards hold contiguous key ranges, so a prefix whose keys lie in one shard is found there whole; only a prefix of a
shard's first or last key (an *edge* prefix) can have keys in several. So each shard keeps its own table of its heavy
prefixes that are not edge prefixes, and reports every edge prefix with its count and next characters there;
:func:`merge_heavy` adds the edges' counts up and unites their next characters into the small top-level table. A
heavy prefix is in exactly one table, and the tables together are exactly the table of the unsharded key set; their
size, and the memory to build them, is per shard, not per KB.
"""

from __future__ import annotations

import array
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

import marisa_trie
import numpy as np

from kgqa.trie.keys import END_CODE

MAX_CODE_POINT = 0x10FFFF


@dataclass
class HeavyReport:
    """Prefixes explored in one shard: each with the number of the shard's keys below it and their next characters."""

    prefixes: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    children: list[array.array] = field(default_factory=list)


def explore_heavy(keys: list[str], threshold: int) -> HeavyReport:
    """Every prefix of the sorted distinct ``keys`` with more than ``threshold`` keys below it, and every prefix of
    the first and the last key, with their counts and sorted next-character code points.

    Walks the keys depth-first; a node's children are found by binary search for the end of each run of equal next
    characters, so the work is proportional to the number of reported nodes' children, not of keys.
    """
    report = HeavyReport()
    n = len(keys)
    stack = [("", 0, n)] if n else []
    while stack:
        prefix, lo, hi = stack.pop()
        depth = len(prefix)
        codes = array.array("I")
        i = lo
        if len(keys[i]) == depth:  # keys are distinct, so at most one ends here, and it sorts first
            codes.append(END_CODE)
            i += 1
        while i < hi:
            code = ord(keys[i][depth])
            j = hi if code == MAX_CODE_POINT else bisect_left(keys, prefix + chr(code + 1), i, hi)
            codes.append(code)
            if j - i > threshold or i == 0 or j == n:  # heavy, or on an edge of the shard
                stack.append((prefix + chr(code), i, j))
            i = j
        report.prefixes.append(prefix)
        report.counts.append(hi - lo)
        report.children.append(codes)
    return report


def split_edges(report: HeavyReport, first_key: str, last_key: str, threshold: int) -> tuple[HeavyReport, HeavyReport]:
    """(the shard's own heavy prefixes, the edge prefixes): the first are whole in this shard, the second are the
    prefixes of its first and last key, heavy here or not (their keys may continue in the next shards)."""
    own, edges = HeavyReport(), HeavyReport()
    for prefix, count, codes in zip(report.prefixes, report.counts, report.children, strict=True):
        if first_key.startswith(prefix) or last_key.startswith(prefix):
            target = edges
        elif count > threshold:
            target = own
        else:
            continue
        target.prefixes.append(prefix)
        target.counts.append(count)
        target.children.append(codes)
    return own, edges


def merge_heavy(reports: list[HeavyReport], threshold: int) -> tuple[list[str], list[array.array]]:
    """The heavy prefixes among the shards' edge reports, over the union of their keys, sorted, with their sorted next
    characters."""
    counts: dict[str, int] = {}
    children: dict[str, array.array] = {}
    for report in reports:
        for prefix, count, codes in zip(report.prefixes, report.counts, report.children, strict=True):
            if prefix in counts:
                counts[prefix] += count
                children[prefix] = array.array("I", sorted(set(children[prefix]) | set(codes)))
            else:
                counts[prefix] = count
                children[prefix] = codes
    heavy = sorted(prefix for prefix, count in counts.items() if count > threshold)
    return heavy, [children[prefix] for prefix in heavy]


def save_heavy(prefixes: list[str], children: list[array.array], directory: Path) -> int:
    trie = marisa_trie.Trie(prefixes)
    trie.save(str(directory / "heavy.marisa"))
    # marisa assigns its own key ids: lay the children out in id order so that id -> offsets[id]:offsets[id + 1].
    lengths = np.zeros(len(prefixes) + 1, dtype=np.int64)
    order = np.empty(len(prefixes), dtype=np.int64)
    for position, prefix in enumerate(prefixes):
        key_id = trie[prefix]
        order[key_id] = position
        lengths[key_id + 1] = len(children[position])
    offsets = np.cumsum(lengths).astype(np.uint32 if lengths.sum() < 2**32 else np.uint64)
    codes = np.empty(int(offsets[-1]), dtype=np.uint32)
    for key_id, position in enumerate(order):
        codes[offsets[key_id] : offsets[key_id + 1]] = children[position]
    np.save(directory / "heavy_children.offsets.npy", offsets)
    np.save(directory / "heavy_children.codes.npy", codes)
    return len(prefixes)
