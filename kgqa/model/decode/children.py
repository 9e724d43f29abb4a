"""A prefix's children for the best-first search: its allowed tokens ranked by score, lazily."""

from __future__ import annotations

import numpy as np

RANKED_AHEAD = 32  # children ranked when a prefix is expanded; the rest only if the search gets that far


class RankedChildren:
    """A prefix's allowed tokens in the order of a stable sort by score, best first (ties in token order), ranked
    lazily: the first ``ahead`` at once, the rest only when the search gets that far. A name's first character has
    thousands of children (20,000 at 20M triples), of which the search takes a few."""

    def __init__(self, tokens: np.ndarray, scores: np.ndarray, ahead: int | None = None) -> None:
        ahead = RANKED_AHEAD if ahead is None else ahead
        self._length = len(scores)
        self._rest: tuple[np.ndarray, np.ndarray] | None = None
        if len(scores) <= ahead:
            order = np.argsort(-scores, kind="stable")
            self.tokens, self.scores = tokens[order], scores[order]
            return
        # the stable order's first ``ahead``: every score above the cut, then the ties at it in token order
        cut = np.partition(scores, len(scores) - ahead)[len(scores) - ahead]
        above, tied = np.flatnonzero(scores > cut), np.flatnonzero(scores == cut)
        first = np.sort(np.concatenate([above, tied[: ahead - len(above)]]))
        first = first[np.argsort(-scores[first], kind="stable")]
        self.tokens, self.scores = tokens[first], scores[first]
        rest = np.ones(len(scores), dtype=bool)
        rest[first] = False
        self._rest = (tokens[rest], scores[rest])  # still in token order, so ranked later as one stable sort would

    def __len__(self) -> int:
        return self._length

    def at(self, place: int) -> tuple[int, float]:
        """The token at ``place`` of the order and its score."""
        if place >= len(self.scores) and self._rest is not None:
            tokens, scores = self._rest
            order = np.argsort(-scores, kind="stable")
            self.tokens = np.concatenate([self.tokens, tokens[order]])
            self.scores = np.concatenate([self.scores, scores[order]])
            self._rest = None
        return int(self.tokens[place]), float(self.scores[place])
