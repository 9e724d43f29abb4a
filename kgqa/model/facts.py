"""What one question says about the KB, computed once and shared by every stage that asks.

Anchoring (which names' paths to add), the look-ahead (which relation characters to favour), the rule-based
re-ranking and the ranker's features all ask the same things of a question: which KB names it contains, what those
names hold, and how much of a relation the question spells. ``QuestionFacts`` answers each once per question.
"""

from __future__ import annotations

from kgqa.data import lcs_length, normalize
from kgqa.trie import KBIndex, PathKey


class QuestionFacts:
    """One question against one index; everything is computed on first use and kept."""

    def __init__(self, question: str, index: KBIndex) -> None:
        self.question = question
        self.text = normalize(question)
        self._index = index
        self._names: list[str] | None = None
        self._outer: list[str] | None = None
        self._paths: dict[str, list[PathKey]] = {}
        self._rest: dict[str, str] = {}
        self._lcs: dict[tuple[str, str | None], int] = {}
        self._by_share: dict[str, list[tuple[str, str]]] = {}

    @property
    def names(self) -> list[str]:
        """The KB names found in the question, longest first."""
        if self._names is None:
            self._names = self._index.names_in(self.question)
        return self._names

    @property
    def outer_names(self) -> list[str]:
        """The KB names in the question that no longer one found there contains, longest first."""
        if self._outer is None:
            kept: list[str] = []
            for name in self.names:
                if not any(name in longer for longer in kept):
                    kept.append(name)
            self._outer = kept
        return self._outer

    @property
    def longest_name(self) -> int:
        return len(self.names[0]) if self.names else 0

    def paths(self, name: str) -> list[PathKey]:
        """Every path of ``name``, sorted by meaning then relation (one index walk a name; no object read)."""
        found = self._paths.get(name)
        if found is None:
            found = self._paths[name] = self._index.paths(name)
        return found

    def paths_by_share(self, name: str) -> list[tuple[str, str]]:
        """The (relation, meaning) pairs of ``name``, those whose relation the question spells most first (``share``;
        ties in order)."""
        found = self._by_share.get(name)
        if found is None:
            pairs = [(p.relation, p.meaning) for p in self.paths(name)]  # distinct: one name's keys
            found = self._by_share[name] = sorted(pairs, key=lambda rm: (-self.share(rm[0]), rm))
        return found

    def rest(self, name: str) -> str:
        """The question without its first occurrence of ``name``: what is left to spell the relation."""
        found = self._rest.get(name)
        if found is None:
            found = self._rest[name] = self.text.replace(normalize(name), "", 1)
        return found

    def lcs(self, part: str, without: str | None = None) -> int:
        """LCS of ``part`` with the question (with the rest of it after ``without``, a name, when given)."""
        key = (part, without)
        found = self._lcs.get(key)
        if found is None:
            whole = self.rest(without) if without is not None else self.text
            found = self._lcs[key] = lcs_length(normalize(part), whole)
        return found

    def share(self, part: str, without: str | None = None) -> float:
        """How much of ``part`` (a relation, a meaning) the question spells, in order: LCS over its length, 0–1."""
        length = len(normalize(part))
        return self.lcs(part, without) / length if length else 0.0
