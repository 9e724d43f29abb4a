"""Which relations entities of a kind hold, counted over the whole KB when the index is built.

A meaning's head word ends it (湖南省长沙市村庄, 浙江大学教授, 2010年电影), so its last characters say what kind of
entity it is. The index keeps, for every meaning ending (its last ``SUFFIX_CHARS`` characters, and its last one; ""
for a head without a meaning), how many entities with it hold each relation (distinct KB paths: an entity with
several objects for one relation counts once), with the totals by relation and by ending. From those counts,
``RelationStats.fit`` says how much likelier a relation is for that kind of entity than over the whole KB: any KB gets
them at build time, with no training, and they move with the KB (a renamed relation keeps its counts).

The counts live in memory-mapped marisa tries, each over one key range (``relation_stats/NNNNN.marisa``, their first
keys in ``relation_stats/parts.json``): a 20.56M-triple KB has 3.4M (ending, relation) pairs, which as Python
dictionaries took seconds to load and hundreds of MB in every worker. Counting them holds a bounded dictionary: it is
spilled to sorted runs when full, the runs are merged (equal records summed), and the merged stream is cut into parts
of a bounded number of records, so what the build holds does not grow with the KB.
"""

from __future__ import annotations

import heapq
import json
import math
from bisect import bisect_right
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import marisa_trie

from kgqa.trie.keys import SEP
from kgqa.trie.runs import merge_down

STATS_DIR = "relation_stats"
PARTS_FILE = "parts.json"
SUFFIX_CHARS = 2
_FORMAT = "<Q"
# What a record costs in memory while counted (a dict entry, its key) or while a part's trie is built (the records
# marisa is given): an estimate on the high side, so the budget holds.
RECORD_BYTES = 320
_COUNT_SEP = "\x1e"  # below every character a record holds (SEP is 0x1f): lines sort as their records


def _pair(kind: str, part: str, relation: str) -> str:
    return f"{kind}{SEP}{part}{SEP}{relation}"  # the KB's own separator: in no name, ending or relation


class _SpillingCounter:
    """Sums counts by key in a dictionary of at most ``limit`` keys, spilling it to a sorted run file when full;
    ``merged()`` gives every key once, in sorted order, with its total."""

    def __init__(self, directory: Path, name: str, limit: int) -> None:
        self.directory, self.name, self.limit = directory, name, max(1, limit)
        self.counts: Counter = Counter()
        self.runs: list[Path] = []

    def add(self, key: object, n: int = 1) -> None:
        counts = self.counts
        counts[key] += n
        if len(counts) >= self.limit:
            self.spill()

    def spill(self) -> None:
        if not self.counts:
            return
        path = self.directory / f"{self.name}-{len(self.runs):05d}"
        lines = sorted(f"{self._text(key)}{_COUNT_SEP}{n}\n" for key, n in self.counts.items())
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
        self.runs.append(path)
        self.counts = Counter()

    @staticmethod
    def _text(key: object) -> str:
        return key if isinstance(key, str) else _pair("2", *key)  # type: ignore[misc]

    def merged(self) -> Iterator[tuple[str, int]]:
        self.spill()
        # at most MERGE_FAN_IN files open: groups merged into longer runs first (UTF-8 byte order is the lines' order)
        runs, self.runs = merge_down(self.runs, self.directory, f"{self.name}-merged"), []
        yield from _summed(runs)


def _summed(runs: list[Path]) -> Iterator[tuple[str, int]]:
    """The runs' lines merged, each key once with its counts summed; the runs are removed once read."""
    files = [open(run, encoding="utf-8") for run in runs]  # noqa: SIM115 -- closed below
    try:
        key, total = None, 0
        for line in heapq.merge(*files):
            cut = line.index(_COUNT_SEP)
            if line[:cut] != key:
                if key is not None:
                    yield key, total
                key, total = line[:cut], 0
            total += int(line[cut + 1 :])
        if key is not None:
            yield key, total
    finally:
        for f in files:
            f.close()
        for run in runs:
            run.unlink(missing_ok=True)


@dataclass(frozen=True)
class StatsSummary:
    paths: int
    relations: int  # distinct relation names
    pairs: int  # distinct (ending, relation) pairs


class RelationCounter:
    """Counts paths while an index is built, in about ``budget_bytes`` of memory whatever the KB (see the module's
    docstring), spilling into ``spill``; ``save`` writes them for ``RelationStats``."""

    def __init__(self, spill: Path, budget_bytes: int) -> None:
        self.limit = max(1, budget_bytes // RECORD_BYTES)
        self.pairs = _SpillingCounter(spill, "stats-pairs", self.limit)  # (ending, relation) -> paths
        self.totals = _SpillingCounter(spill, "stats-totals", self.limit)
        self.paths = 0

    def add(self, relation: str, meaning: str) -> None:
        self.pairs.add((meaning[-SUFFIX_CHARS:], relation))  # runs for every path of a build: no other call
        self.paths += 1

    def save(self, directory: Path) -> StatsSummary:
        """The parts: the pairs' records as they come out of their merge, then the totals gathered from them."""
        parts = _PartWriter(directory / STATS_DIR, self.limit)
        pairs = relations = 0
        for key, n in self.pairs.merged():
            _, suffix, relation = key.split(SEP)
            parts.add(key, n)
            pairs += 1
            one = suffix[-1:]
            self.totals.add(_pair("1", one, relation), n)
            self.totals.add(_pair("r", "", relation), n)
            self.totals.add(_pair("s2", suffix, ""), n)
            self.totals.add(_pair("s1", one, ""), n)
        for key, n in self.totals.merged():
            parts.add(key, n)
            relations += key.startswith("r" + SEP)
        parts.close(paths=self.paths, relations=relations)
        return StatsSummary(self.paths, relations, pairs)


class _PartWriter:
    """Sorted records into tries of at most ``limit`` records, a part never holding two kinds of record (so the
    parts' key ranges never overlap, whichever stream wrote them)."""

    def __init__(self, directory: Path, limit: int) -> None:
        directory.mkdir()
        self.directory, self.limit = directory, limit
        self.records: list[tuple[str, tuple[int]]] = []
        self.first_keys: list[str] = []

    def add(self, key: str, n: int) -> None:
        if self.records and (len(self.records) >= self.limit or _kind(self.records[-1][0]) != _kind(key)):
            self._flush()
        self.records.append((key, (n,)))

    def _flush(self) -> None:
        if self.records:
            self.first_keys.append(self.records[0][0])
            trie = marisa_trie.RecordTrie(_FORMAT, self.records)
            trie.save(str(self.directory / _part_name(len(self.first_keys) - 1)))
            self.records = []

    def close(self, paths: int, relations: int) -> None:
        self._flush()
        order = sorted(range(len(self.first_keys)), key=self.first_keys.__getitem__)
        for new, old in enumerate(order):  # numbered in key order
            (self.directory / _part_name(old)).rename(self.directory / f"{_part_name(new)}.sorted")
        for new in range(len(order)):
            (self.directory / f"{_part_name(new)}.sorted").rename(self.directory / _part_name(new))
        listing = {"first_keys": [self.first_keys[i] for i in order], "paths": paths, "relations": relations}
        (self.directory / PARTS_FILE).write_text(json.dumps(listing, ensure_ascii=False), encoding="utf-8")


def _kind(key: str) -> str:
    return key[: key.index(SEP)]


def _part_name(number: int) -> str:
    return f"{number:05d}.marisa"


class RelationStats:
    """The counts of an index (memory-mapped), asked per relation and meaning."""

    def __init__(self, tries: list[marisa_trie.RecordTrie], first_keys: list[str], paths: int, relations: int) -> None:
        self._tries = tries
        self._first_keys = first_keys
        self.paths = paths
        self.vocabulary = max(1, relations)

    @classmethod
    def load(cls, directory: Path) -> RelationStats:
        """OSError or ValueError when the files are missing or unreadable."""
        listing = json.loads((directory / STATS_DIR / PARTS_FILE).read_text(encoding="utf-8"))
        tries = []
        for number in range(len(listing["first_keys"])):
            trie = marisa_trie.RecordTrie(_FORMAT)
            trie.mmap(str(directory / STATS_DIR / _part_name(number)))
            tries.append(trie)
        return cls(tries, listing["first_keys"], int(listing["paths"]), int(listing["relations"]))

    def _count(self, kind: str, part: str, relation: str) -> int:
        key = _pair(kind, part, relation)
        at = bisect_right(self._first_keys, key) - 1  # the part whose range holds the key, if any does
        found = self._tries[at].get(key) if at >= 0 else None
        return int(found[0][0]) if found else 0

    def count(self, meaning_suffix: str, relation: str) -> int:
        """Paths of ``relation`` whose meaning ends with ``meaning_suffix`` (its last two characters, or "")."""
        return self._count("2", meaning_suffix, relation)

    def relation_paths(self, relation: str) -> int:
        return self._count("r", "", relation)

    def fit(self, relation: str, meaning: str) -> dict[str, float]:
        """How the KB's entities of ``meaning``'s kind hold ``relation`` (add-one smoothed log-probabilities):
        ``prior`` over the whole KB, ``kind`` given the meaning's last two characters, ``kind1`` given its last one,
        and the lifts ``kind - prior``, ``kind1 - prior``. Without a meaning, the kind is the prior."""
        vocabulary = self.vocabulary
        prior = math.log((self.relation_paths(relation) + 1) / (self.paths + vocabulary))
        if not meaning:
            return {"prior": prior, "kind": prior, "kind1": prior, "lift": 0.0, "lift1": 0.0}
        two, one = meaning[-SUFFIX_CHARS:], meaning[-1:]
        kind = math.log((self._count("2", two, relation) + 1) / (self._count("s2", two, "") + vocabulary))
        kind1 = math.log((self._count("1", one, relation) + 1) / (self._count("s1", one, "") + vocabulary))
        return {"prior": prior, "kind": kind, "kind1": kind1, "lift": kind - prior, "lift1": kind1 - prior}
