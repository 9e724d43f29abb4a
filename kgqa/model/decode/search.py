"""Best-first search over the compiled index: the exact top-k KB paths under the model's scores.

A path's score is the sum of its tokens' log-probabilities, each renormalised over the tokens the KB allows there (and
divided by the look-ahead's α·Δ + 1 while a relation is spelled). Every term is ≤ 0, so a path's score never rises as
it grows. Hence best-first search (Meister, Vieira & Cotterell, "Best-First Beam Search", TACL 2020): always expand
the best open prefix; a complete path taken from the frontier scores at least as well as everything still open, and
everything still open bounds all its extensions. The first k complete paths taken are the exact top k.

What the KB decides costs nothing:
- **Jump-forward.** Where the KB allows one next character, its renormalised log-probability is exactly 0; the search
  appends the whole forced run without the model and feeds it in the next decoder call together with the chosen
  token. A prefix that only one KB key continues is complete at once: its score is final, no decoder call is made.
- **Allowed-only logits.** At a branching position only the allowed tokens' logits are computed.
- **Batched.** Each round expands, for every question of the batch, its best open prefixes in one decoder call.
- **Drafted.** Given a ``PathDraft`` (the question's own names' paths, fed once for their scores), a prefix it holds
  is expanded from it, without a decoder call: the search pays only for the prefixes off those paths.

Guarantee: the returned paths are the k best complete KB paths by score, best first (ties in order of discovery),
unless a question's expansion budget runs out (``SearchStats.budget_exhausted``): then the best found so far. Under a
``margin`` (relative threshold pruning, as in Freitag & Al-Onaizan, "Beam Search Strategies for Neural Machine
Translation", 2017): the first ``required`` of those k, then those of the rest that score within the margin of the
best, and none beyond it. Everything still open bounds its extensions, so once the best open prefix is below the
margin, no path within it is left to find; the 2nd–5th paths of a question often lie 10 nats below its best, in a
flat region where proving them exact takes most of the search's decoder calls.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kgqa.model.decode.children import RankedChildren
from kgqa.model.decode.incremental import (
    EncodedQuestions,
    IncrementalDecoder,
    StateRow,
    gather_rows,
    width_passes,
)
from kgqa.model.decode.lookahead import RelationLookaheadLogitsProcessor
from kgqa.model.decode.pathscore import DraftNode, PathDraft
from kgqa.model.facts import QuestionFacts
from kgqa.trie import TokenConstraint


@dataclass
class Prefix:
    """An open prefix (its next token is the model's choice) or a complete path (``key`` set)."""

    question: int
    score: float
    target: tuple[int, ...]  # target token ids so far (no decoder start), EOS last when complete
    steps: tuple[float, ...]  # each target token's score (0 where the KB forced it)
    text: str = ""  # the index key spelled so far
    key: str | None = None  # a complete path: its index key
    allowed: np.ndarray | None = None  # an open prefix: the token ids the KB allows next
    run: tuple[int, ...] = ()  # tokens not yet fed to the decoder (the chosen one and the forced ones after it)
    parent: StateRow | None = None  # the decoder state after the parent's run


@dataclass
class SearchStats:
    rounds: int = 0  # search steps (each expands every question's best open prefixes)
    calls: int = 0  # decoder calls (a step makes one per pass of runs of similar length, ``width_passes``)
    expanded: int = 0  # open prefixes fed to the decoder
    drafted: int = 0  # open prefixes expanded from the draft (no decoder call)
    fed_tokens: int = 0
    fed_positions: int = 0  # rows × the longest run of each call: the tokens and their padding
    logits: int = 0  # allowed-token logits computed
    cache_slots: int = 0  # cached key/value slots of the fed rows (rows × slots), what their attention reads
    cache_real: int = 0  # of those, the slots a row sees (the rest pad rows to the longest)
    budget_exhausted: int = 0  # questions whose search stopped before it was exact


@dataclass
class Found:
    """A complete path of a question: its target ids (EOS last), score, per-token scores and index key."""

    target: tuple[int, ...]
    score: float
    steps: tuple[float, ...]
    key: str


@dataclass
class _Frontier:
    heap: list = field(default_factory=list)
    found: list[Found] = field(default_factory=list)
    expanded: int = 0


@dataclass
class _Siblings:
    """The children of an expanded prefix, best first, made one at a time as the search reaches them."""

    parent: Prefix
    state: StateRow
    children: RankedChildren
    at: int = 0

    @property
    def score(self) -> float:
        return self.parent.score + self.children.at(self.at)[1]

    def next_child(self, search: BestFirstSearch) -> Prefix | None:
        """The child at ``at``; the cursor moves on to the next one and goes back on the frontier with its score."""
        token, value = self.children.at(self.at)
        self.at += 1
        frontier = search._frontiers[self.parent.question]
        if self.at < len(self.children) and self.children.at(self.at)[1] != float("-inf"):
            search._push(frontier, self)
        return search._child(self.parent, token, value, self.state)


class BestFirstSearch:
    """The exact top-k KB paths of a batch of questions (see the module's docstring)."""

    def __init__(
        self,
        decoder: IncrementalDecoder,
        constraint: TokenConstraint,
        lookahead: RelationLookaheadLogitsProcessor | None = None,
        max_target_tokens: int = 128,
        expansions_per_round: int = 0,
        budget: int = 0,
        margin: float = 0.0,
    ) -> None:
        self.decoder = decoder
        self.constraint = constraint
        self.lookahead = lookahead
        self.eos = constraint.eos_token_id
        self.max_target_tokens = max_target_tokens
        self.expansions_per_round = expansions_per_round  # 0: k
        self.budget = budget  # open prefixes expanded per question at most; 0: 64·k
        self.margin = margin  # past ``required`` paths, none scoring more than this below the best; 0: exact top k
        self._order = itertools.count()
        self._draft: PathDraft | None = None  # the running search's draft
        self.stats = SearchStats()

    def search(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, facts: Sequence[QuestionFacts], k: int
    ) -> list[list[Found]]:
        """Each question's k best complete paths, best first."""
        encoded = self.decoder.encode(input_ids, attention_mask)
        return self.search_encoded(encoded, facts, k)

    def search_encoded(
        self,
        encoded: EncodedQuestions,
        facts: Sequence[QuestionFacts],
        k: int,
        draft: PathDraft | None = None,
        required: int = 1,
    ) -> list[list[Found]]:
        """``search`` of questions already encoded (their cross-attention keys and values computed); the prefixes
        ``draft`` holds are expanded from it (the same scores, computed before). Under a ``margin``, the first
        ``required`` paths are found whatever they score; past them, only paths within the margin of the best."""
        per_round = self.expansions_per_round or k
        budget = self.budget or 64 * k
        frontiers = self._frontiers = [_Frontier() for _ in facts]
        self._draft = draft
        root_state = self.decoder.empty_state(1)
        for q, frontier in enumerate(frontiers):
            root = Prefix(q, 0.0, (), (), "", run=(self.decoder.start_token_id,), parent=StateRow(root_state, 0))
            root.allowed = self.constraint.allowed_after("")
            self._push(frontier, root)
        active = list(range(len(facts)))
        while active:
            batch: list[Prefix] = []
            still = []
            for q in active:
                frontier = frontiers[q]
                chosen = self._take(frontier, k, per_round, required)
                if chosen and frontier.expanded + len(chosen) > budget:
                    self.stats.budget_exhausted += 1
                    self._finish_early(frontier, k)
                    continue
                if chosen:
                    frontier.expanded += len(chosen)
                    batch += chosen
                    still.append(q)
            active = still
            if batch:
                self._expand(batch, encoded, facts, frontiers)
        return [frontier.found for frontier in frontiers]

    def _take(self, frontier: _Frontier, k: int, per_round: int, required: int) -> list[Prefix]:
        """Complete paths at the top of the frontier are final; then up to ``per_round`` open prefixes to expand.
        Once ``required`` paths are found, the search ends where the best open prefix falls below the margin."""
        chosen: list[Prefix] = []
        heap, found = frontier.heap, frontier.found
        while heap and len(found) < k and len(chosen) < per_round:
            if self.margin and len(found) >= required and -heap[0][0] < found[0].score - self.margin:
                heap.clear()  # all that is left scores (and leads to paths) further below the best than the margin
                break
            item = heap[0][2]
            if isinstance(item, _Siblings):  # the next child of an expanded prefix: made only when it is the best
                heapq.heappop(heap)
                child = item.next_child(self)
                if child is not None:
                    self._push(frontier, child)
                continue
            if item.key is not None:
                if chosen:  # an open prefix taken this round may still lead to a better path
                    break
                heapq.heappop(heap)
                found.append(Found(item.target, item.score, item.steps, item.key))
                continue
            heapq.heappop(heap)
            node = self._draft.node(item.question, item.target) if self._draft is not None else None
            if node is not None:
                frontier.expanded += 1
                self._expand_drafted(item, node)
                continue
            chosen.append(item)
        return chosen

    def _expand_drafted(self, prefix: Prefix, node: DraftNode) -> None:
        """``prefix``'s children from the draft's scores and state after it: no decoder call."""
        self.stats.drafted += 1
        siblings = _Siblings(prefix, node.state, RankedChildren(node.allowed, node.scores))
        if siblings.score != float("-inf"):
            self._push(self._frontiers[prefix.question], siblings)

    def _finish_early(self, frontier: _Frontier, k: int) -> None:
        """Out of budget: the best complete paths already on the frontier fill the rest (no longer exact)."""
        complete = sorted(
            (item for item in frontier.heap if isinstance(item[2], Prefix) and item[2].key is not None),
            key=lambda item: item[:2],
        )
        for _, _, prefix in complete[: k - len(frontier.found)]:
            frontier.found.append(Found(prefix.target, prefix.score, prefix.steps, prefix.key))
        frontier.heap.clear()

    def _push(self, frontier: _Frontier, item: Prefix | _Siblings) -> None:
        heapq.heappush(frontier.heap, (-item.score, next(self._order), item))

    def _expand(
        self,
        batch: list[Prefix],
        encoded: EncodedQuestions,
        facts: Sequence[QuestionFacts],
        frontiers: list[_Frontier],
    ) -> None:
        for rows in width_passes([len(prefix.run) for prefix in batch]):
            self._expand_rows([batch[i] for i in rows], encoded, facts, frontiers)
        self.stats.rounds += 1

    def _expand_rows(
        self,
        batch: list[Prefix],
        encoded: EncodedQuestions,
        facts: Sequence[QuestionFacts],
        frontiers: list[_Frontier],
    ) -> None:
        # the parents' decoder states, gathered by index (one selection per state the batch's parents share)
        past, order = gather_rows([prefix.parent for prefix in batch])
        batch = [batch[p] for p in order]
        questions = np.array([p.question for p in batch], dtype=np.int64)
        hidden, state = self.decoder.feed(past, [p.run for p in batch], questions, encoded)
        values = self.decoder.allowed_log_probs(hidden, [p.allowed for p in batch])
        self.stats.calls += 1
        self.stats.expanded += len(batch)
        self.stats.fed_tokens += sum(len(p.run) for p in batch)
        self.stats.fed_positions += len(batch) * max(len(p.run) for p in batch)
        self.stats.logits += sum(len(p.allowed) for p in batch)
        self.stats.cache_slots += past.valid.size
        self.stats.cache_real += int(past.valid.sum())
        for row, (prefix, scores) in enumerate(zip(batch, values, strict=True)):
            if self.lookahead is not None:
                scores = self.lookahead.reweighted(facts[prefix.question], prefix.target, prefix.allowed, scores)
            siblings = _Siblings(prefix, StateRow(state, row), RankedChildren(prefix.allowed, scores))
            if siblings.score != float("-inf"):
                self._push(frontiers[prefix.question], siblings)

    def _child(self, parent: Prefix, token: int, value: float, state: StateRow) -> Prefix | None:
        """The prefix after ``token``, carried through every token the KB forces after it."""
        constraint = self.constraint
        target = [*parent.target, token]
        steps = [*parent.steps, value]
        score = parent.score + value
        if token == self.eos:
            return Prefix(parent.question, score, tuple(target), tuple(steps), parent.text, key=parent.text)
        text = parent.text + constraint.char_of(token)
        run = [token]
        while True:
            if len(target) >= self.max_target_tokens:
                return None  # as long as decoding may write: no room left for its end
            allowed = constraint.allowed_after(text)
            if len(allowed) == 0:
                return None
            if len(allowed) > 1:
                return Prefix(
                    parent.question, score, tuple(target), tuple(steps), text, None, allowed, tuple(run), state
                )
            if allowed[0] == self.eos:
                return self._complete(parent.question, score, target, steps, text, text)
            key = constraint.completion_of(text)
            if key is not None:  # one key left ahead: complete now, at the same score
                return self._complete(parent.question, score, target, steps, text, key)
            forced = int(allowed[0])
            target.append(forced)
            steps.append(0.0)
            run.append(forced)
            text += constraint.char_of(forced)

    def _complete(
        self, question: int, score: float, target: list[int], steps: list[float], text: str, key: str
    ) -> Prefix | None:
        rest = [self.constraint.token_of(ch) for ch in key[len(text) :]] + [self.eos]
        if len(target) + len(rest) > self.max_target_tokens:
            return None
        return Prefix(question, score, tuple(target + rest), tuple(steps + [0.0] * len(rest)), key, key=key)
