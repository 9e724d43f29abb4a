"""Which relations entities of a kind hold, counted over the whole KB when the index is built.

A meaning's head word ends it (湖南省长沙市村庄, 浙江大学教授, 2010年电影), so its last characters say what kind of
entity it is. The index keeps, for every meaning ending (its last ``SUFFIX_CHARS`` characters, and its last one; ""
for a head without a meaning), how many entities with it hold each relation (distinct KB paths: an entity with
several objects for one relation counts once), with the totals by relation and by ending. From those counts,
``RelationStats.fit`` says how much likelier a relation is for that kind of entity than over the whole KB: any KB gets
them at build time, with no training, and they move with the KB (a renamed relation keeps its counts).

The counts live in one memory-mapped marisa trie (``relation_stats.marisa``): a 20.56M-triple KB has 3.4M (ending,
relation) pairs, which as Python dictionaries took seconds to load and hundreds of MB in every worker.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import marisa_trie

from kgqa.trie.keys import SEP

STATS_FILE = "relation_stats.marisa"
SUFFIX_CHARS = 2
_FORMAT = "<Q"


def _pair(kind: str, part: str, relation: str) -> str:
    return f"{kind}{SEP}{part}{SEP}{relation}"  # the KB's own separator: in no name, ending or relation


class RelationCounter:
    """Counts paths while an index is built, then writes them for ``RelationStats``."""

    def __init__(self) -> None:
        self.pairs: Counter[tuple[str, str]] = Counter()  # (ending, relation) -> paths

    def add(self, relation: str, meaning: str) -> None:
        self.pairs[(meaning[-SUFFIX_CHARS:], relation)] += 1  # runs for every path of a build: no call

    def save(self, directory: Path) -> None:
        # the pairs go to the trie as they are; only the smaller totals are gathered first (keys as tuples, not text)
        ones: Counter[tuple[str, str]] = Counter()
        relations: Counter[str] = Counter()
        endings: Counter[str] = Counter()
        for (suffix, relation), n in self.pairs.items():
            ones[(suffix[-1:], relation)] += n
            relations[relation] += n
            endings[suffix] += n
        last: Counter[str] = Counter()
        for suffix, n in endings.items():
            last[suffix[-1:]] += n

        def records() -> Iterator[tuple[str, tuple[int]]]:
            yield from ((_pair("2", suffix, relation), (n,)) for (suffix, relation), n in self.pairs.items())
            yield from ((_pair("1", one, relation), (n,)) for (one, relation), n in ones.items())
            yield from ((_pair("r", "", relation), (n,)) for relation, n in relations.items())
            yield from ((_pair("s2", suffix, ""), (n,)) for suffix, n in endings.items())
            yield from ((_pair("s1", one, ""), (n,)) for one, n in last.items())
            yield _pair("n", "", ""), (sum(relations.values()),)
            yield _pair("v", "", ""), (len(relations),)

        marisa_trie.RecordTrie(_FORMAT, records()).save(str(directory / STATS_FILE))


class RelationStats:
    """The counts of an index (memory-mapped), asked per relation and meaning."""

    def __init__(self, trie: marisa_trie.RecordTrie) -> None:
        self._trie = trie
        self.paths = self._count("n", "", "")
        self.vocabulary = max(1, self._count("v", "", ""))

    @classmethod
    def load(cls, directory: Path) -> RelationStats:
        """OSError or ValueError when the file is missing or unreadable."""
        trie = marisa_trie.RecordTrie(_FORMAT)
        trie.mmap(str(directory / STATS_FILE))
        return cls(trie)

    def _count(self, kind: str, part: str, relation: str) -> int:
        found = self._trie.get(_pair(kind, part, relation))
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
