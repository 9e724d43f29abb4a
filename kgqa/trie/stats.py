"""Which relations entities of a kind hold, counted over the whole KB when the index is built.

A meaning's head word ends it (湖南省长沙市村庄, 浙江大学教授, 2010年电影), so its last characters say what kind of
entity it is. The index keeps, for every meaning ending (its last ``SUFFIX_CHARS`` characters; "" for a head without a
meaning), how many entities with it hold each relation (distinct KB paths: an entity with several objects for one
relation counts once). From those counts, ``RelationStats.fit`` says how much likelier a relation is for that kind
of entity than over the whole KB: any KB gets them at build time, with no training, and they move with the KB (a
renamed relation keeps its counts).
"""

from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from pathlib import Path

STATS_FILE = "relation_stats.json"
SUFFIX_CHARS = 2


def meaning_suffix(meaning: str, chars: int = SUFFIX_CHARS) -> str:
    return meaning[-chars:] if meaning else ""


class RelationStats:
    """Paths by (meaning ending, relation); relation totals and one-character endings derived from them."""

    def __init__(self, by_suffix: dict[str, dict[str, int]] | None = None) -> None:
        self.by_suffix: dict[str, Counter[str]] = defaultdict(Counter)
        for suffix, counts in (by_suffix or {}).items():
            self.by_suffix[suffix].update(counts)
        self._derived: tuple[Counter[str], dict[str, int], dict[str, Counter[str]], dict[str, int], int] | None = None

    def add(self, relation: str, meaning: str) -> None:
        self.by_suffix[meaning[-SUFFIX_CHARS:]][relation] += 1  # runs for every path of a build: no call
        self._derived = None

    @property
    def relations(self) -> Counter[str]:
        """Paths of each relation."""
        return self._tables()[0]

    def fit(self, relation: str, meaning: str) -> dict[str, float]:
        """How the KB's entities of ``meaning``'s kind hold ``relation`` (add-one smoothed log-probabilities):
        ``prior`` over the whole KB, ``kind`` given the meaning's last two characters, ``kind1`` given its last one,
        and the lifts ``kind - prior``, ``kind1 - prior``. Without a meaning, the kind is the prior."""
        relations, suffix_totals, by_last, last_totals, triples = self._tables()
        vocabulary = max(1, len(relations))
        prior = math.log((relations.get(relation, 0) + 1) / (triples + vocabulary))
        if not meaning:
            return {"prior": prior, "kind": prior, "kind1": prior, "lift": 0.0, "lift1": 0.0}
        two, one = meaning_suffix(meaning), meaning_suffix(meaning, 1)
        kind = math.log((self.by_suffix.get(two, {}).get(relation, 0) + 1) / (suffix_totals.get(two, 0) + vocabulary))
        kind1 = math.log((by_last.get(one, {}).get(relation, 0) + 1) / (last_totals.get(one, 0) + vocabulary))
        return {"prior": prior, "kind": kind, "kind1": kind1, "lift": kind - prior, "lift1": kind1 - prior}

    def _tables(self) -> tuple[Counter[str], dict[str, int], dict[str, Counter[str]], dict[str, int], int]:
        if self._derived is None:
            relations: Counter[str] = Counter()
            by_last: dict[str, Counter[str]] = defaultdict(Counter)
            for suffix, counts in self.by_suffix.items():
                relations.update(counts)
                by_last[suffix[-1:]].update(counts)
            suffix_totals = {s: sum(c.values()) for s, c in self.by_suffix.items()}
            last_totals = {s: sum(c.values()) for s, c in by_last.items()}
            self._derived = (relations, suffix_totals, by_last, last_totals, sum(relations.values()))
        return self._derived

    def save(self, directory: Path) -> None:
        table = {suffix: dict(counts) for suffix, counts in sorted(self.by_suffix.items())}
        text = json.dumps({"suffix_chars": SUFFIX_CHARS, "by_suffix": table}, ensure_ascii=False, sort_keys=True)
        (directory / STATS_FILE).write_text(text + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path) -> RelationStats:
        """ValueError or OSError when the file is missing, unreadable or of another layout."""
        data = json.loads((directory / STATS_FILE).read_text(encoding="utf-8"))
        if data.get("suffix_chars") != SUFFIX_CHARS:
            raise ValueError(
                f"{STATS_FILE} counts endings of {data.get('suffix_chars')} characters, not {SUFFIX_CHARS}"
            )
        return cls(data["by_suffix"])
