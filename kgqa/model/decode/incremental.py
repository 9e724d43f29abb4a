"""The BART decoder run one step of a search at a time, with a batched key/value cache reordered by index.

transformers stays the model definition: its embeddings, decoder layers (with their attention implementation) and
cache classes. What is ours is how rows are fed. A search step feeds each row a *run* of tokens — the token it chose
and the characters the KB then forces — in one call, so rows feed different numbers of tokens: they are padded on the
right, the cache keeps a validity mask per row, and each row's positions continue from its own length. Only the
hidden state after a row's last real token is returned: the search asks the output layer about that position alone,
and only for the tokens the KB allows there (``allowed_log_probs``).

A run may also be a tree (``tree_layout``): several KB paths' distinct prefixes in one row, each token seeing only its
own ancestors, as in tree attention. Such a row then serves each prefix as a state (``StateRow`` with the prefix's
slots visible).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask


@dataclass
class DecoderState:
    """The self-attention keys and values of a batch of rows after a step (one tensor pair a layer), which slots are
    real (``valid``: rows × slots) and how many real tokens each row has fed (its next position)."""

    keys: list[torch.Tensor]  # per layer: rows × heads × slots × head size
    values: list[torch.Tensor]
    valid: torch.Tensor  # rows × slots, bool
    lengths: torch.Tensor  # rows, long


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
    """The encoder's output for a batch of questions, with each decoder layer's cross-attention keys and values
    computed once (every search step of every row of a question reuses them)."""

    hidden: torch.Tensor  # questions × length × d_model
    mask: torch.Tensor  # questions × length (1: a real token)
    cross_keys: list[torch.Tensor]  # per layer: questions × heads × length × head size
    cross_values: list[torch.Tensor]


class IncrementalDecoder:
    """Feeds runs of target tokens to a BART decoder and keeps the cache of each row (see the module's docstring)."""

    def __init__(self, model: PreTrainedModel) -> None:
        if not model.config.tie_word_embeddings:
            raise ValueError("allowed-only logits need the output layer tied to the token embeddings")
        self.model = model
        self.decoder = model.get_decoder()
        self.start_token_id = int(model.config.decoder_start_token_id)
        self.pad_token_id = int(model.config.pad_token_id)
        # the tied output matrix in float (an int8 model quantizes its output Linear, never the embedding it shares)
        self.output_weight = model.get_input_embeddings().weight
        self.output_bias = model.final_logits_bias[0]
        self.device = self.output_weight.device  # index tensors come from the CPU; the search's state lives here

    @torch.inference_mode()
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncodedQuestions:
        """The encoder's output, its layers called as ``BartEncoder.forward`` calls them (the same embeddings, mask
        and layers, so the same numbers) without the wrappers around that forward, which cost a question answered
        alone as much as a third of the encoder (1.2 of 4.2 ms on a 2-core CPU)."""
        input_ids, attention_mask = input_ids.to(self.device), attention_mask.to(self.device)
        encoder = self.model.get_encoder()
        embeds = encoder.embed_tokens(input_ids)
        hidden = encoder.layernorm_embedding(embeds + encoder.embed_positions(embeds[:, :, -1]).to(embeds.device))
        mask = create_bidirectional_mask(config=encoder.config, inputs_embeds=embeds, attention_mask=attention_mask)
        for layer in encoder.layers:
            hidden = layer(hidden, mask)
        return self.cross_attention(hidden, attention_mask)

    def cross_attention(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> EncodedQuestions:
        keys, values = [], []
        for layer in self.decoder.layers:
            attention = layer.encoder_attn
            shape = (*hidden.shape[:-1], -1, attention.head_dim)
            keys.append(attention.k_proj(hidden).view(shape).transpose(1, 2))
            values.append(attention.v_proj(hidden).view(shape).transpose(1, 2))
        return EncodedQuestions(hidden, attention_mask, keys, values)

    def empty_state(self, rows: int) -> DecoderState:
        """The state before the first token: nothing cached."""
        layers = len(self.decoder.layers)
        attention = self.decoder.layers[0].self_attn
        empty = torch.zeros(
            (rows, attention.num_heads, 0, attention.head_dim), dtype=self.output_weight.dtype, device=self.device
        )
        return DecoderState(
            [empty] * layers,
            [empty] * layers,
            torch.zeros((rows, 0), dtype=torch.bool, device=self.device),
            torch.zeros(rows, dtype=torch.long, device=self.device),
        )

    @torch.inference_mode()
    def feed(
        self,
        past: DecoderState,
        runs: Sequence[Sequence[int]],
        questions: torch.Tensor,
        encoded: EncodedQuestions,
        every_position: bool = False,
        layout: TreeLayout | None = None,
    ) -> tuple[torch.Tensor, DecoderState]:
        """Feed ``runs[r]`` (at least one token) after row ``r`` of ``past``, a row of question ``questions[r]``.

        Returns the decoder's hidden state after each row's last fed token (rows × d_model; with ``every_position``,
        after each fed token: rows × width × d_model) and the state after the runs. With ``layout`` each run is a
        tree (``tree_layout``): a token sees the row's past and its own ancestors, at its depth's position.
        """
        rows = len(runs)
        device = self.device
        questions = questions.to(device)
        width = max(len(run) for run in runs)
        ids = torch.tensor([[*run, *[self.pad_token_id] * (width - len(run))] for run in runs], dtype=torch.long)
        ids = ids.to(device)
        widths = torch.tensor([len(run) for run in runs], dtype=torch.long, device=device)
        offsets = torch.arange(width, device=device)
        new_valid = offsets[None, :] < widths[:, None]
        if layout is None:
            # each row's positions continue from its own length (padding reuses its last position; it is masked)
            depth = torch.minimum(offsets[None, :], (widths - 1)[:, None])
            within = (offsets[None, :] <= offsets[:, None])[None, :, :]  # new query j sees new keys up to j
        else:
            depth = torch.from_numpy(layout.depth).to(device)
            within = torch.from_numpy(layout.sees).to(device)
        positions = past.lengths[:, None] + depth
        valid = torch.cat([past.valid, new_valid], dim=1)
        sees = torch.cat([past.valid[:, None, :].expand(rows, width, -1), within & new_valid[:, None, :]], dim=2)
        dtype = self.output_weight.dtype
        blocked = torch.finfo(dtype).min
        self_mask = torch.zeros(sees.shape, dtype=dtype, device=device).masked_fill(~sees, blocked)[:, None]
        question_mask = encoded.mask[questions].bool()
        cross_mask = torch.zeros((rows, 1, width, question_mask.shape[1]), dtype=dtype, device=device)
        cross_mask = cross_mask.masked_fill(~question_mask[:, None, None, :], blocked)

        hidden, keys, values = self.run_layers(
            ids,
            positions,
            self_mask,
            cross_mask,
            encoded.hidden[questions],
            list(zip(past.keys, past.values, strict=True)),
            [(k[questions], v[questions]) for k, v in zip(encoded.cross_keys, encoded.cross_values, strict=True)],
        )
        last = hidden if every_position else hidden[torch.arange(rows, device=device), widths - 1]
        return last, DecoderState(keys, values, valid, past.lengths + widths)

    def run_layers(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        self_mask: torch.Tensor,
        cross_mask: torch.Tensor,
        encoder_hidden: torch.Tensor,
        past: list[tuple[torch.Tensor, torch.Tensor]],
        cross: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """:meth:`feed` once its inputs are laid out: the decoder's embeddings and layers over ``ids`` at
        ``positions`` after each layer's ``past`` keys and values, reading the question's ``cross`` ones. Returns
        the hidden states after every fed token and each layer's keys and values, past and new."""
        cache = EncoderDecoderCache(DynamicCache(past), DynamicCache(cross))
        decoder = self.decoder
        hidden = decoder.embed_tokens(ids) + nn_embedding(decoder.embed_positions, positions)
        hidden = decoder.layernorm_embedding(hidden)
        for layer in decoder.layers:  # the encoder's output is required, unused: its keys and values are cached
            hidden = layer(
                hidden,
                self_mask,
                encoder_hidden,
                encoder_attention_mask=cross_mask,
                past_key_values=cache,
                use_cache=True,
            )
        own = cache.self_attention_cache.layers
        return hidden, [layer.keys for layer in own], [layer.values for layer in own]

    @torch.inference_mode()
    def allowed_log_probs(self, hidden: torch.Tensor, allowed: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Log-probabilities of each row's allowed tokens, renormalised over them: logits only for those tokens (rows
        of the tied output matrix), never a full-vocabulary row. Equal to the masked full softmax."""
        counts = np.fromiter((len(a) for a in allowed), dtype=np.int64, count=len(allowed))
        wide = counts > self.output_weight.shape[0] // 32  # many allowed (a name's first character): one matmul
        out: list[np.ndarray] = [np.empty(0)] * len(allowed)
        # wide and narrow rows apart (each row is renormalised over its own tokens: the same numbers), so no index
        # runs over every logit of the batch (a batch's first characters are 650,000 of them at 20M triples)
        for rows, logits_of in (
            (np.flatnonzero(wide), self._wide_logits),
            (np.flatnonzero(~wide), self._narrow_logits),
        ):
            if len(rows):
                ids = np.concatenate([allowed[r] for r in rows]).astype(np.int64, copy=False)
                logits = logits_of(hidden, rows, counts[rows], ids)
                for r, values in zip(rows.tolist(), _log_softmax_rows(logits, counts[rows]), strict=True):
                    out[r] = values
        return out

    def _wide_logits(self, hidden: torch.Tensor, rows: np.ndarray, counts: np.ndarray, ids: np.ndarray) -> torch.Tensor:
        """Rows ``rows``' logits of ``ids`` (``counts`` a row), from one matmul over the whole output matrix."""
        device = hidden.device
        vocabulary = self.output_weight.shape[0]
        dense = hidden[torch.from_numpy(rows).to(device)] @ self.output_weight.T + self.output_bias
        flat = np.repeat(np.arange(len(rows)) * vocabulary, counts) + ids  # positions in dense, flattened
        return dense.reshape(-1)[torch.from_numpy(flat).to(device)]

    def _narrow_logits(
        self, hidden: torch.Tensor, rows: np.ndarray, counts: np.ndarray, ids: np.ndarray
    ) -> torch.Tensor:
        """Rows ``rows``' logits of ``ids`` (``counts`` a row), from those rows of the output matrix alone."""
        device = hidden.device
        token = torch.from_numpy(ids).to(device)
        own = hidden[torch.from_numpy(np.repeat(rows, counts)).to(device)]
        return (own * self.output_weight[token]).sum(dim=-1) + self.output_bias[token]


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


def _log_softmax_rows(logits: torch.Tensor, counts: np.ndarray) -> list[np.ndarray]:
    """``logits`` of consecutive rows (``counts`` a row), each renormalised over its own: log-softmax by row."""
    device = logits.device
    rows = torch.from_numpy(np.repeat(np.arange(len(counts)), counts)).to(device)
    row_max = torch.full((len(counts),), float("-inf"), dtype=logits.dtype, device=device).scatter_reduce(
        0, rows, logits, reduce="amax"
    )
    sums = torch.zeros_like(row_max).index_add_(0, rows, torch.exp(logits - row_max[rows]))
    values = (logits - (row_max + torch.log(sums))[rows]).cpu().numpy()
    return np.split(values, np.cumsum(counts)[:-1])


def nn_embedding(embedding: torch.nn.Embedding, positions: torch.Tensor) -> torch.Tensor:
    """BART's learned positions for a rows × width grid of per-row positions (its module takes one range for all)."""
    offset = getattr(embedding, "offset", 0)
    return torch.nn.functional.embedding(positions + offset, embedding.weight)


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
        valid, length = state.valid.cpu().numpy(), state.lengths.cpu().numpy()
        real.append([np.flatnonzero(valid[r.row] if r.visible is None else r.visible) for r in own])
        lengths.append([int(length[r.row]) if r.visible is None else r.length for r in own])
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
        # one row of the flattened (rows·heads·slots) × head size tensor per slot kept: a single copy
        flat = ((at[:, None, None] * heads + np.arange(heads)[None, :, None]) * width + where[:, None, :]).reshape(-1)
        device = state.valid.device
        index = torch.from_numpy(flat).to(device)
        shape = (len(own), heads, where.shape[1])
        keys = [k.reshape(-1, k.shape[-1]).index_select(0, index).view(*shape, k.shape[-1]) for k in state.keys]
        values = [v.reshape(-1, v.shape[-1]).index_select(0, index).view(*shape, v.shape[-1]) for v in state.values]
        lengths_of = torch.tensor(length, dtype=torch.long, device=device)
        parts.append(DecoderState(keys, values, torch.from_numpy(packed).to(device), lengths_of))
    return concat_states(parts), [place for *_, places in groups.values() for place in places]


def concat_states(states: Sequence[DecoderState]) -> DecoderState:
    """Rows of several states in one batch, slots padded on the right (masked) to the longest."""
    if len(states) == 1:
        return states[0]
    slots = max(s.valid.shape[1] for s in states)

    def pad(t: torch.Tensor) -> torch.Tensor:
        missing = slots - t.shape[2]
        return torch.nn.functional.pad(t, (0, 0, 0, missing)) if missing else t

    layers = len(states[0].keys)
    return DecoderState(
        [torch.cat([pad(s.keys[i]) for s in states]) for i in range(layers)],
        [torch.cat([pad(s.values[i]) for s in states]) for i in range(layers)],
        torch.cat([torch.nn.functional.pad(s.valid, (0, slots - s.valid.shape[1])) for s in states]),
        torch.cat([s.lengths for s in states]),
    )
