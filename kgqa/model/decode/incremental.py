"""The decoder run one step of a search at a time, with a batched key/value cache reordered by index.

The layers run on a runtime (``kgqa.model.runtime``: ONNX Runtime, or torch as the reference) through two calls,
"encode these questions" and "feed these tokens after this cache"; everything around them is numpy and written once.
A search step feeds each row a *run* of tokens — the token it chose and the characters the KB then forces — in one
call, so rows feed different numbers of tokens: they are padded on the right, the cache keeps a validity mask per
row, and each row's positions continue from its own length. Only the hidden state after a row's last real token is
returned: the search asks the output layer about that position alone, and only for the tokens the KB allows there
(``allowed_log_probs``).

A run may also be a tree (``tree_layout``): several KB paths' distinct prefixes in one row, each token seeing only its
own ancestors, as in tree attention. Such a row then serves each prefix as a state (``StateRow`` with the prefix's
slots visible).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kgqa.model.runtime import ModelLayers, ModelRuntime

BLOCKED = np.finfo(np.float32).min  # an additive attention mask's "never": the softmax gives it no weight


@dataclass
class DecoderState:
    """The self-attention keys and values of a batch of rows after a step (one array pair a layer), which slots are
    real (``valid``: rows × slots) and how many real tokens each row has fed (its next position)."""

    keys: list[np.ndarray]  # per layer: rows × heads × slots × head size, float32
    values: list[np.ndarray]
    valid: np.ndarray  # rows × slots, bool
    lengths: np.ndarray  # rows, int64


class StateRow(NamedTuple):
    """Row ``row`` of ``state``; with ``visible``, read as seeing those slots alone, its next position ``length``. A
    row fed a tree of KB paths serves each of their prefixes this way: the slots of other branches are masked."""

    state: DecoderState
    row: int
    visible: np.ndarray | None = None  # bool, one per slot of ``state``
    length: int | None = None


@dataclass
class TreeLayout:
    """Runs fed as trees: each token's depth below its row's past, and which tokens of its run it sees."""

    depth: np.ndarray  # rows × width
    sees: np.ndarray  # rows × width × width, bool: itself and its ancestors


def tree_layout(parents: Sequence[Sequence[int]]) -> TreeLayout:
    """``parents[r][j]``: the token of row r's run that token j follows (-1: the row's past); a parent comes before
    its children. Padding sees the run's first token (a query that sees nothing would give NaN)."""
    width = max(map(len, parents))
    depth = np.zeros((len(parents), width), dtype=np.int64)
    sees = np.zeros((len(parents), width, width), dtype=bool)
    for r, own in enumerate(parents):
        for j, parent in enumerate(own):
            if parent >= 0:
                sees[r, j] = sees[r, parent]
                depth[r, j] = depth[r, parent] + 1
            sees[r, j, j] = True
        sees[r, len(own) :, 0] = True
    return TreeLayout(depth, sees)


@dataclass
class EncodedQuestions:
    """A batch of questions encoded: their mask and each decoder layer's cross-attention keys and values, computed
    once (every search step of every row of a question reuses them)."""

    mask: np.ndarray  # questions × length (1: a real token)
    cross_keys: list[np.ndarray]  # per layer: questions × heads × length × head size
    cross_values: list[np.ndarray]


class IncrementalDecoder:
    """Feeds runs of target tokens to the decoder and keeps the cache of each row (see the module's docstring)."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.layers: ModelLayers = runtime.layers
        self.spec = runtime.spec
        self.start_token_id = self.spec.start_token_id
        self.pad_token_id = self.spec.pad_token_id

    @property
    def output_weight(self) -> np.ndarray:
        """The tied output matrix, float32 (vocabulary × d_model)."""
        return self.runtime.output.weight

    @property
    def output_bias(self) -> np.ndarray:
        return self.runtime.output.bias

    def encode(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> EncodedQuestions:
        """The questions' cross-attention keys and values for every decoder layer."""
        input_ids = np.asarray(input_ids, dtype=np.int64)
        attention_mask = np.ascontiguousarray(attention_mask, dtype=np.int64)
        embeds = self.runtime.output.embed(input_ids, self.spec.embed_scale)
        cross = self.layers.encode(embeds, attention_mask)
        layers = len(cross) // 2
        return EncodedQuestions(attention_mask, cross[:layers], cross[layers:])

    def empty_state(self, rows: int) -> DecoderState:
        """The state before the first token: nothing cached."""
        spec = self.spec
        empty = np.zeros((rows, spec.decoder_heads, 0, spec.head_dim), dtype=np.float32)
        return DecoderState(
            [empty] * spec.decoder_layers,
            [empty] * spec.decoder_layers,
            np.zeros((rows, 0), dtype=bool),
            np.zeros(rows, dtype=np.int64),
        )

    def feed(
        self,
        past: DecoderState,
        runs: Sequence[Sequence[int]],
        questions: Sequence[int] | np.ndarray,
        encoded: EncodedQuestions,
        every_position: bool = False,
        layout: TreeLayout | None = None,
    ) -> tuple[np.ndarray, DecoderState]:
        """Feed ``runs[r]`` (at least one token) after row ``r`` of ``past``, a row of question ``questions[r]``.

        Returns the decoder's hidden state after each row's last fed token (rows × d_model; with ``every_position``,
        after each fed token: rows × width × d_model) and the state after the runs. With ``layout`` each run is a
        tree (``tree_layout``): a token sees the row's past and its own ancestors, at its depth's position.
        """
        rows = len(runs)
        questions = np.asarray(questions, dtype=np.int64)
        width = max(len(run) for run in runs)
        ids = np.full((rows, width), self.pad_token_id, dtype=np.int64)
        for r, run in enumerate(runs):
            ids[r, : len(run)] = run
        widths = np.fromiter((len(run) for run in runs), dtype=np.int64, count=rows)
        offsets = np.arange(width)
        new_valid = offsets[None, :] < widths[:, None]
        if layout is None:
            # each row's positions continue from its own length (padding reuses its last position; it is masked)
            depth = np.minimum(offsets[None, :], (widths - 1)[:, None])
            within = (offsets[None, :] <= offsets[:, None])[None, :, :]  # new query j sees new keys up to j
        else:
            depth, within = layout.depth, layout.sees
        positions = past.lengths[:, None] + depth
        valid = np.concatenate([past.valid, new_valid], axis=1)
        sees = np.concatenate(
            [np.broadcast_to(past.valid[:, None, :], (rows, width, past.valid.shape[1])), within & new_valid[:, None]],
            axis=2,
        )
        self_mask = np.where(sees, np.float32(0), BLOCKED).astype(np.float32)[:, None]
        question_mask = encoded.mask[questions].astype(bool)
        cross_mask = np.where(question_mask, np.float32(0), BLOCKED).astype(np.float32)[:, None, None, :]
        cross_mask = np.ascontiguousarray(np.broadcast_to(cross_mask, (rows, 1, width, question_mask.shape[1])))
        caches = [
            *past.keys,
            *past.values,
            *[k[questions] for k in encoded.cross_keys],
            *[v[questions] for v in encoded.cross_values],
        ]
        embeds = self.runtime.output.embed(ids, self.spec.embed_scale)
        hidden, *own = self.layers.decode(embeds, positions, self_mask, cross_mask, caches)
        layers = len(own) // 2
        last = hidden if every_position else hidden[np.arange(rows), widths - 1]
        return last, DecoderState(own[:layers], own[layers:], valid, past.lengths + widths)

    def allowed_log_probs(self, hidden: np.ndarray, allowed: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Log-probabilities of each row's allowed tokens, renormalised over them: logits only for those tokens (rows
        of the tied output matrix), never a full-vocabulary row. Equal to the masked full softmax."""
        counts = np.fromiter((len(a) for a in allowed), dtype=np.int64, count=len(allowed))
        wide = counts > self.output_weight.shape[0] // 32  # many allowed (a name's first character): one matmul
        out: list[np.ndarray] = [np.empty(0, dtype=np.float32)] * len(allowed)
        # wide and narrow rows apart (each row is renormalised over its own tokens: the same numbers), so no index
        # runs over every logit of the batch (a batch's first characters are 650,000 of them at 20M triples)
        for rows, logits_of in (
            (np.flatnonzero(wide), self._wide_logits),
            (np.flatnonzero(~wide & (counts > 0)), self._narrow_logits),
        ):
            if len(rows):
                ids = np.concatenate([allowed[r] for r in rows]).astype(np.int64, copy=False)
                logits = logits_of(hidden, rows, counts[rows], ids)
                for r, values in zip(rows.tolist(), _log_softmax_rows(logits, counts[rows]), strict=True):
                    out[r] = values
        return out

    def _wide_logits(self, hidden: np.ndarray, rows: np.ndarray, counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Rows ``rows``' logits of ``ids`` (``counts`` a row), from one matmul over the whole output matrix."""
        vocabulary = self.output_weight.shape[0]
        dense = hidden[rows] @ self.output_weight.T + self.output_bias
        flat = np.repeat(np.arange(len(rows)) * vocabulary, counts) + ids  # positions in dense, flattened
        return dense.reshape(-1)[flat]

    def _narrow_logits(self, hidden: np.ndarray, rows: np.ndarray, counts: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """Rows ``rows``' logits of ``ids`` (``counts`` a row), from those rows of the output matrix alone."""
        own = hidden[np.repeat(rows, counts)]
        return np.einsum("ij,ij->i", own, self.output_weight[ids]) + self.output_bias[ids]

    def full_log_probs(self, hidden: np.ndarray) -> np.ndarray:
        """Log-probabilities over the whole vocabulary (rows × vocabulary), as the model without the KB gives them."""
        logits = hidden @ self.output_weight.T + self.output_bias
        top = logits.max(axis=1, keepdims=True)
        return logits - (top + np.log(np.exp(logits - top).sum(axis=1, keepdims=True)))


PASS_POSITIONS = 8192  # positions (rows × the longest run) fed in one decoder call at most
PASS_COST = 32  # a decoder call's fixed cost, in fed positions (about what 32 more positions cost on a CPU)


def width_passes(widths: Sequence[int], limit: int = PASS_POSITIONS, cost: int = PASS_COST) -> list[list[int]]:
    """Which rows feed together, given each row's run (or tree) width: sorted by width, cut where the positions fed
    (each call padded to its widest row) plus ``cost`` a call are fewest, no call over ``limit`` positions (a wider
    row goes alone). Rows by index, each call's in order of width."""
    order = sorted(range(len(widths)), key=lambda row: widths[row])
    best = [0] + [float("inf")] * len(order)  # best[j]: the least cost of the first j rows in that order
    cut = [0] * (len(order) + 1)
    for j in range(1, len(order) + 1):
        widest = widths[order[j - 1]]
        for i in range(j - 1, -1, -1):
            if (j - i) * widest > limit and i < j - 1:
                break
            total = best[i] + cost + (j - i) * widest
            if total < best[j]:
                best[j], cut[j] = total, i
    passes, j = [], len(order)
    while j:
        passes.append(order[cut[j] : j])
        j = cut[j]
    return passes[::-1]


def _log_softmax_rows(logits: np.ndarray, counts: np.ndarray) -> list[np.ndarray]:
    """``logits`` of consecutive rows (``counts`` a row, each ≥ 1), each renormalised over its own: log-softmax by
    row."""
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rows = np.repeat(np.arange(len(counts)), counts)
    row_max = np.maximum.reduceat(logits, starts)
    sums = np.add.reduceat(np.exp(logits - row_max[rows]), starts)
    values = (logits - (row_max + np.log(sums))[rows]).astype(np.float32, copy=False)
    return np.split(values, starts[1:])


def gather_rows(rows: Sequence[StateRow]) -> tuple[DecoderState, list[int]]:
    """One batch of the given rows, each holding only its real (visible) slots, packed to the left and padded to the
    most any of them holds, and the order they come in: ``order[i]`` is the place in ``rows`` of the batch's row
    ``i``. A row read from a tree (``visible``) or from a padded batch sees a few of its state's slots: a child of a
    name's first character in a tree of 40 tokens keeps 2. Positions were added before the keys and values were
    made, so where a slot sits does not matter to attention."""
    groups: dict[int, tuple[DecoderState, list[StateRow], list[int]]] = {}
    for place, state_row in enumerate(rows):
        group = groups.setdefault(id(state_row.state), (state_row.state, [], []))
        group[1].append(state_row)
        group[2].append(place)
    real: list[list[np.ndarray]] = []  # per group, per row: the slots it sees
    lengths: list[list[int]] = []
    for state, own, _ in groups.values():
        real.append([np.flatnonzero(state.valid[r.row] if r.visible is None else r.visible) for r in own])
        lengths.append([int(state.lengths[r.row]) if r.visible is None else r.length for r in own])
    slots = max(len(seen) for own in real for seen in own)
    parts = []
    for (state, own, _), seen, length in zip(groups.values(), real, lengths, strict=True):
        heads, width = state.keys[0].shape[1], state.valid.shape[1]
        where = np.zeros((len(own), min(slots, width)), dtype=np.int64)  # padding takes slot 0 (masked)
        packed = np.zeros(where.shape, dtype=bool)
        for i, kept in enumerate(seen):
            where[i, : len(kept)] = kept
            packed[i, : len(kept)] = True
        at = np.array([r.row for r in own], dtype=np.int64)
        # one row of the flattened (rows·heads·slots) × head size array per slot kept: a single copy
        flat = ((at[:, None, None] * heads + np.arange(heads)[None, :, None]) * width + where[:, None, :]).reshape(-1)
        shape = (len(own), heads, where.shape[1])
        keys = [k.reshape(-1, k.shape[-1])[flat].reshape(*shape, k.shape[-1]) for k in state.keys]
        values = [v.reshape(-1, v.shape[-1])[flat].reshape(*shape, v.shape[-1]) for v in state.values]
        parts.append(DecoderState(keys, values, packed, np.array(length, dtype=np.int64)))
    return concat_states(parts), [place for *_, places in groups.values() for place in places]


def concat_states(states: Sequence[DecoderState]) -> DecoderState:
    """Rows of several states in one batch, slots padded on the right (masked) to the longest."""
    if len(states) == 1:
        return states[0]
    slots = max(s.valid.shape[1] for s in states)

    def pad(a: np.ndarray) -> np.ndarray:
        missing = slots - a.shape[2]
        return np.pad(a, ((0, 0), (0, 0), (0, missing), (0, 0))) if missing else a

    layers = len(states[0].keys)
    return DecoderState(
        [np.concatenate([pad(s.keys[i]) for s in states]) for i in range(layers)],
        [np.concatenate([pad(s.values[i]) for s in states]) for i in range(layers)],
        np.concatenate([np.pad(s.valid, ((0, 0), (0, slots - s.valid.shape[1]))) for s in states]),
        np.concatenate([s.lengths for s in states]),
    )
