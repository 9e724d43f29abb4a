"""Scores of given KB paths under the model, exactly as the search scores them.

The search finds the paths the model likes; name-anchored candidates (a KB name found in the question, with each of
its relations and meanings) are paths it may not have reached. To rank both on one scale, a given path is scored as
the search would have scored it: a question's paths are fed as one tree of their distinct prefixes, the batch's trees
in a few decoder calls (trees of similar width together: little padding), and only at
a branching position (the KB allows several tokens) are logits computed, for the allowed tokens alone, renormalised
over them and divided by the look-ahead; a position the KB forces is worth 0 without any computation. So a path the
search found gets the score the search gave it (tested).

Scores are split by segment — name (with its separator), relation (with its separator), meaning (with EOS) — for the
ranker's features.

The same pass is a *draft* for the search (``PathDraft``): at every branching prefix of the given paths it holds the
allowed tokens' scores and the decoder state after the prefix, so the search expands such a prefix without a
decoder call. Given the question's own names' paths, the search rarely needs one for its best path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kgqa.model.decode.incremental import (
    DecoderState,
    EncodedQuestions,
    IncrementalDecoder,
    StateRow,
    TreeLayout,
    tree_layout,
    width_passes,
)
from kgqa.model.decode.lookahead import RelationLookahead, RelationLookaheadLogitsProcessor
from kgqa.model.facts import QuestionFacts
from kgqa.model.segments import SegmentScores, split_segments
from kgqa.model.targets import TargetCodec
from kgqa.trie import PathKey, TokenConstraint


@dataclass
class DraftNode:
    """A branching prefix of a drafted path: the tokens the KB allows next, their scores (renormalised over them,
    divided by the look-ahead) and the decoder state after the prefix."""

    allowed: np.ndarray
    scores: np.ndarray
    state: StateRow


@dataclass
class PathDraft:
    """Given paths of each question of a batch, scored, with their branching prefixes (see the module's docstring)."""

    nodes: list[dict[tuple[int, ...], DraftNode]]  # per question: target ids of a prefix → its node
    scores: list[dict[PathKey, SegmentScores]]  # per question: a path's scores

    def node(self, question: int, target: tuple[int, ...]) -> DraftNode | None:
        return self.nodes[question].get(target)


LOGIT_ROWS = 1024  # branching prefixes whose allowed logits are computed together


@dataclass
class ScoringStats:
    """What scoring given paths cost, summed over the scorer's calls."""

    calls: int = 0  # decoder calls (passes of question trees of similar width)
    paths: int = 0
    fed_tokens: int = 0  # tree tokens fed (each distinct prefix of a question's paths once)
    fed_positions: int = 0  # rows × width of those calls: the tokens and the padding to each call's widest tree
    logits: int = 0  # allowed-token logits computed


class PathScorer:
    """Scores of KB paths for their questions, through the constraint's renormalisation and the look-ahead."""

    def __init__(
        self,
        decoder: IncrementalDecoder,
        codec: TargetCodec,
        constraint: TokenConstraint,
        lookahead: RelationLookahead | None,
        lookahead_strength: float,
    ) -> None:
        self.decoder = decoder
        self.codec = codec
        self.constraint = constraint
        self.lookahead = lookahead
        self.lookahead_strength = lookahead_strength
        self.stats = ScoringStats()
        self._first_places: dict[int, int] | None = None  # each first token's place among them

    def score(
        self, encoded: EncodedQuestions, questions: Sequence[QuestionFacts], paths: Sequence[Sequence[PathKey]]
    ) -> list[list[SegmentScores]]:
        """Scores of ``paths[q]`` for each question ``q`` of a batch (``encoded``: the batch's encoder output)."""
        draft = self.draft(encoded, questions, paths)
        return [[draft.scores[q][path] for path in own] for q, own in enumerate(paths)]

    def draft(
        self, encoded: EncodedQuestions, questions: Sequence[QuestionFacts], paths: Sequence[Sequence[PathKey]]
    ) -> PathDraft:
        """``paths[q]`` of each question scored, with their branching prefixes for the search."""
        draft = PathDraft([{} for _ in paths], [{} for _ in paths])
        rows = list(dict.fromkeys((q, path) for q, own in enumerate(paths) for path in own))
        if rows:
            self._score_rows(encoded, questions, rows, draft)
        return draft

    def _score_rows(
        self,
        encoded: EncodedQuestions,
        questions: Sequence[QuestionFacts],
        rows: list[tuple[int, PathKey]],
        draft: PathDraft,
    ) -> None:
        targets = [self.codec.encode(p.name, p.relation, p.meaning) for _, p in rows]
        self.stats.paths += len(rows)
        steps = [np.zeros(len(t), dtype=np.float64) for t in targets]
        branching = self._branching(targets, steps)
        if branching:
            last = [-1] * len(targets)  # each path's last branching position: the tokens after it are never fed
            for r, t, _, _ in branching:
                last[r] = max(last[r], t)
            node_at = self._tree(encoded, [q for q, _ in rows], targets, last)
            # a question's paths sharing a prefix (its name, a name and relation) share that position's logits
            distinct: dict[tuple[int, tuple[int, ...]], int] = {}
            allowed_at, slot = [], []
            for r, t, allowed, _ in branching:
                key = (rows[r][0], tuple(targets[r][:t]))
                if key not in distinct:
                    distinct[key] = len(allowed_at)
                    allowed_at.append(allowed)
                slot.append(distinct[key])
            fed = [node_at(q, prefix) for q, prefix in distinct]
            values = []
            for start in range(0, len(fed), LOGIT_ROWS):  # bounded: a wide question set gathers many output rows
                hidden = np.stack([hidden for hidden, _ in fed[start : start + LOGIT_ROWS]])
                values += self.decoder.allowed_log_probs(hidden, allowed_at[start : start + LOGIT_ROWS])
            self.stats.logits += sum(len(allowed) for allowed in allowed_at)
            lookahead = self._lookahead(questions)
            if lookahead is not None:
                values = [
                    lookahead.reweighted(questions[q], prefix, allowed, own)
                    for (q, prefix), allowed, own in zip(distinct, allowed_at, values, strict=True)
                ]
            for (q, prefix), allowed, own, (_, state) in zip(distinct, allowed_at, values, fed, strict=True):
                draft.nodes[q][prefix] = DraftNode(allowed, own, state)
            for (r, t, _, position), place in zip(branching, slot, strict=True):
                steps[r][t] = float(values[place][position])
        for (q, path), s, t in zip(rows, steps, targets, strict=True):
            draft.scores[q][path] = split_segments(s.tolist(), t, self.codec.sep_token_id)

    def _tree(self, encoded: EncodedQuestions, owners: list[int], targets: list[list[int]], last: list[int]):
        """Feeds ``targets`` (of questions ``owners``) up to ``last[row]``; returns ``node_at(question, prefix)``: the
        decoder's hidden state after a fed prefix of one of them, and the decoder state there.

        A question's paths are fed as one tree: each distinct prefix up to a path's last branching position (what
        follows is forced: never fed) is one token, which sees its own prefix alone (``tree_layout``). Paths of one
        name share its tokens, paths of one name and relation those too. The trees go in passes of similar width
        (``width_passes``), one decoder call each, so a narrow tree is not padded to the widest of the batch.
        """
        start = self.decoder.start_token_id
        row_of: dict[int, int] = {}
        node_of: dict[tuple[int, tuple[int, ...]], int] = {}  # (question, prefix) → its column in the question's row
        tokens: list[list[int]] = []
        parents: list[list[int]] = []
        for q, target, end in zip(owners, targets, last, strict=True):
            if q not in row_of:
                row_of[q] = len(tokens)
                tokens.append([start])
                parents.append([-1])
                node_of[(q, ())] = 0
            row = row_of[q]
            for i in range(1, end + 1):
                prefix = tuple(target[:i])
                if (q, prefix) not in node_of:
                    parents[row].append(node_of[(q, prefix[:-1])])
                    tokens[row].append(target[i - 1])
                    node_of[(q, prefix)] = len(tokens[row]) - 1
        questions = list(row_of)
        fed: dict[int, tuple[np.ndarray, DecoderState, TreeLayout, int]] = {}  # tree → its pass's output, its row
        for members in width_passes([len(own) for own in tokens]):
            layout = tree_layout([parents[tree] for tree in members])
            self.stats.calls += 1
            self.stats.fed_tokens += sum(len(tokens[tree]) for tree in members)
            self.stats.fed_positions += len(members) * layout.depth.shape[1]
            hidden, state = self.decoder.feed(
                self.decoder.empty_state(len(members)),
                [tokens[tree] for tree in members],
                np.array([questions[tree] for tree in members], dtype=np.int64),
                encoded,
                every_position=True,
                layout=layout,
            )
            for row, tree in enumerate(members):
                fed[tree] = (hidden, state, layout, row)

        def node_at(question: int, prefix: tuple[int, ...]) -> tuple[np.ndarray, StateRow]:
            hidden, state, layout, row = fed[row_of[question]]
            column = node_of[(question, prefix)]
            return hidden[row, column], StateRow(state, row, layout.sees[row, column], len(prefix) + 1)

        return node_at

    def _branching(self, targets: list[list[int]], steps: list[np.ndarray]) -> list[tuple[int, int, np.ndarray, int]]:
        """(row, position, allowed tokens, the token's place among them) of every position where the KB leaves a
        choice, and of the first (where the search starts, whatever the KB allows there); a token the KB does not
        allow scores -inf (such a path is not in the KB). Once one KB key is left ahead (as the search ends a prefix),
        the rest is that key or not in it."""
        constraint = self.constraint
        eos = constraint.eos_token_id
        # per prefix (a batch's paths share most): its text, the tokens the KB allows after it (and, once a path asks
        # which of several its token is, each one's place), the one key left ahead (asked only where one token is
        # allowed); a prefix's child is found by (prefix, token), without hashing the text again. The first
        # characters' places are the same for every batch: kept for the scorer's life (a reloaded KB comes with a new
        # scorer and constraint).
        root_allowed = constraint.allowed_after("")
        if self._first_places is None:
            self._first_places = _places(root_allowed)
        texts: list[str] = [""]
        allowed_of: list[np.ndarray | None] = [root_allowed]
        places_of: list[dict[int, int] | None] = [self._first_places]
        completions: list[str | bool | None] = [False]  # False: not looked up yet
        child_of: dict[tuple[int, int], int] = {}
        found = []
        for r, target in enumerate(targets):
            node = 0
            for t, token in enumerate(target):
                allowed = allowed_of[node]
                if allowed is None:
                    allowed = allowed_of[node] = constraint.allowed_after(texts[node])
                if len(allowed) == 1:
                    if allowed[0] != token:
                        steps[r][t:] = float("-inf")
                        break
                    place = 0
                else:
                    places = places_of[node]
                    if places is None:
                        places = places_of[node] = _places(allowed)
                    place = places.get(token)
                    if place is None:
                        steps[r][t:] = float("-inf")
                        break
                if len(allowed) > 1 or t == 0:
                    found.append((r, t, allowed, place))
                elif t + 1 < len(target) and target[-1] == eos:
                    key = completions[node]
                    if key is False:
                        key = completions[node] = constraint.completion_of(texts[node])
                    if key is not None and constraint.prefix_text(target[:-1]) == key:
                        break  # forced to its end: no choice left to find
                if token != eos:
                    child = child_of.get((node, token))
                    if child is None:
                        child = child_of[(node, token)] = len(texts)
                        texts.append(texts[node] + constraint.char_of(token))
                        allowed_of.append(None)
                        places_of.append(None)
                        completions.append(False)
                    node = child
        return found

    def _lookahead(self, questions: Sequence[QuestionFacts]) -> RelationLookaheadLogitsProcessor | None:
        if self.lookahead is None:
            return None
        return RelationLookaheadLogitsProcessor(self.lookahead, self.constraint, questions, 1, self.lookahead_strength)


def _places(allowed: np.ndarray) -> dict[int, int]:
    """Each allowed token's place in ``allowed``."""
    return dict(zip(allowed.tolist(), range(len(allowed)), strict=True))
