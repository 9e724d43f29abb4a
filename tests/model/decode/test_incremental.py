"""The incremental decoder, on each runtime: a run fed in one call equals one token at a time and transformers' own
forward pass; logits computed only for the allowed tokens equal the masked full softmax; ONNX Runtime's numbers are
torch's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from kgqa.model.decode.incremental import IncrementalDecoder, StateRow, gather_rows, tree_layout
from kgqa.model.modeling import build_model, load_checkpoint
from kgqa.model.runtime import load_runtime
from kgqa.model.runtime.torch_layers import torch_runtime
from kgqa.model.tokenizer import build_char_tokenizer

QUESTIONS = ["守望星光的出品公司是什么", "歌手"]


def _question(decoder: IncrementalDecoder, texts: list[str]):
    ids, mask = decoder.runtime.tokenizer.batch(texts)
    return (ids, mask), decoder.encode(ids, mask)


def test_a_run_in_one_call_equals_one_token_at_a_time_and_the_full_forward(
    decoder: IncrementalDecoder, random_tiny_model_dir: Path
) -> None:
    (ids, mask), questions = _question(decoder, QUESTIONS)
    target = [decoder.start_token_id, 5, 9, 7, 11, 6]
    rows = [0, 1]
    # the whole run at once, for both questions
    at_once, _ = decoder.feed(decoder.empty_state(2), [target, target[:3]], rows, questions)
    # one token at a time
    state = decoder.empty_state(2)
    for t in range(len(target)):
        hidden, state = decoder.feed(state, [[target[t]], [target[min(t, 2)]]], rows, questions)
        if t == 2:
            second_row = hidden[1]
    assert np.allclose(at_once[0], hidden[0], atol=1e-5)
    assert np.allclose(at_once[1], second_row, atol=1e-5)
    # uneven runs after uneven pasts: [2 tokens then 4] and [5 then 1], against transformers' own forward
    _, state = decoder.feed(decoder.empty_state(2), [target[:2], target[:5]], rows, questions)
    last, _ = decoder.feed(state, [target[2:6], target[5:6]], rows, questions)
    model, _ = load_checkpoint(random_tiny_model_dir)
    with torch.inference_mode():
        full = model(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            decoder_input_ids=torch.tensor([target, target]),
        ).logits.numpy()
    for row in range(2):
        logits = last[row] @ decoder.output_weight.T + decoder.output_bias
        assert np.allclose(logits, full[row, -1], atol=1e-4)


def test_onnx_runtime_gives_torchs_logits(random_tiny_model_dir: Path) -> None:
    """The exported graphs against the modules they were traced from, on calls of other shapes than the trace's:
    the logits of a batch's tree pass and of a step after it equal to 1e-4."""
    decoders = {name: IncrementalDecoder(load_runtime(random_tiny_model_dir, name)) for name in ("torch", "onnx")}
    got = {}
    for name, decoder in decoders.items():
        _, questions = _question(decoder, [*QUESTIONS, "类型是什么"])
        start = decoder.start_token_id
        layout = tree_layout([[-1, 0, 1, 1, 2], [-1, 0], [-1, 0, 0]])
        hidden, state = decoder.feed(
            decoder.empty_state(3),
            [[start, 5, 9, 7, 11], [start, 8], [start, 6, 10]],
            [0, 1, 2],
            questions,
            every_position=True,
            layout=layout,
        )
        past, _ = gather_rows([StateRow(state, 0, layout.sees[0, 2], 3), StateRow(state, 2)])
        after, _ = decoder.feed(past, [[12, 6], [7]], [0, 2], questions)
        got[name] = [hidden @ decoder.output_weight.T + decoder.output_bias, after @ decoder.output_weight.T]
    for reference, exported in zip(got["torch"], got["onnx"], strict=True):
        assert np.abs(reference - exported).max() <= 1e-4


def test_rows_are_selected_by_index_with_repeats(decoder: IncrementalDecoder) -> None:
    _, questions = _question(decoder, ["守望星光"])
    _, state = decoder.feed(decoder.empty_state(1), [[decoder.start_token_id, 5]], [0], questions)
    twice, _ = gather_rows([StateRow(state, 0), StateRow(state, 0)])
    hidden, _ = decoder.feed(twice, [[6], [7, 8]], [0, 0], questions)
    alone, _ = decoder.feed(state, [[7, 8]], [0], questions)
    assert np.allclose(hidden[1], alone[0], atol=1e-5)


def test_allowed_only_log_probs_equal_the_masked_full_softmax(decoder: IncrementalDecoder) -> None:
    hidden = np.random.default_rng(1).standard_normal((4, decoder.output_weight.shape[1])).astype(np.float32)
    vocab = decoder.output_weight.shape[0]
    rng = np.random.default_rng(0)
    # narrow rows (a gather of output rows) and one allowing nearly everything (one matmul)
    allowed = [np.array([3]), rng.choice(vocab, 5, replace=False), rng.choice(vocab, vocab - 2, replace=False)]
    allowed.append(np.array([7, 2]))
    values = decoder.allowed_log_probs(hidden, allowed)
    full = torch.from_numpy(hidden @ decoder.output_weight.T + decoder.output_bias)
    for row, ids in enumerate(allowed):
        expected = torch.log_softmax(full[row, torch.from_numpy(ids)], dim=-1).numpy()
        assert np.allclose(values[row], expected, atol=1e-5)
    assert values[0][0] == 0.0  # one allowed token: log 1, the KB decided it


def test_a_wide_row_and_narrow_rows_beside_it_give_the_numbers_each_gives_alone() -> None:
    """Rows allowing many tokens (one matmul) and rows allowing few (their own output rows) are renormalised apart,
    each over its own tokens: a row's log-probabilities are the same to the bit beside rows of the other kind."""
    tokenizer = build_char_tokenizer([chr(0x4E00 + i) for i in range(200)])
    torch.manual_seed(0)
    decoder = IncrementalDecoder(torch_runtime(build_model(tokenizer, "tiny", dropout=0.0).eval(), tokenizer))
    vocab = decoder.output_weight.shape[0]
    assert vocab // 32 >= 2  # rows of one or two allowed tokens are narrow, the one of vocab - 3 wide
    hidden = np.random.default_rng(2).standard_normal((3, decoder.output_weight.shape[1])).astype(np.float32)
    allowed = [np.array([9, 4]), np.random.default_rng(1).choice(vocab, vocab - 3, replace=False), np.array([5])]
    together = decoder.allowed_log_probs(hidden, allowed)
    wide = decoder.allowed_log_probs(hidden[[1]], [allowed[1]])
    narrow = decoder.allowed_log_probs(hidden[[0, 2]], [allowed[0], allowed[2]])
    assert np.array_equal(together[1], wide[0])
    assert np.array_equal(together[0], narrow[0]) and np.array_equal(together[2], narrow[1])


def test_a_tree_in_one_call_equals_each_path_alone_and_serves_each_prefix_as_a_state(
    decoder: IncrementalDecoder,
) -> None:
    """Paths 5-9-7, 5-9-11 and 5-6 fed as one tree (shared prefixes once): each node's hidden state is its path's,
    and a row read at a node (its ancestors visible) continues as that path's own state does."""
    _, questions = _question(decoder, QUESTIONS)
    start = decoder.start_token_id
    tokens = [[start, 5, 9, 7, 11, 6], [start, 8]]
    parents = [[-1, 0, 1, 2, 2, 1], [-1, 0]]  # row 0: start → 5 → 9 → {7, 11}; 5 → 6. row 1: start → 8
    layout = tree_layout(parents)
    hidden, state = decoder.feed(decoder.empty_state(2), tokens, [0, 1], questions, every_position=True, layout=layout)
    paths = {3: [start, 5, 9, 7], 4: [start, 5, 9, 11], 5: [start, 5, 6]}
    for column, path in paths.items():
        alone, _ = decoder.feed(decoder.empty_state(1), [path], [0], questions)
        assert np.allclose(hidden[0, column], alone[0], atol=1e-5)
    short, _ = decoder.feed(decoder.empty_state(1), [[start, 8]], [1], questions)
    assert np.allclose(hidden[1, 1], short[0], atol=1e-5)
    # the node 5-9-11 as a state: what follows it is what follows that path fed alone
    past, _ = gather_rows([StateRow(state, 0, layout.sees[0, 4], 4)])
    assert past.valid.shape[1] == 4 and bool(past.valid.all())  # the node's own 4 slots, not the tree's 6
    after, _ = decoder.feed(past, [[6, 7]], [0], questions)
    expected, _ = decoder.feed(decoder.empty_state(1), [[start, 5, 9, 11, 6, 7]], [0], questions)
    assert np.allclose(after[0], expected[0], atol=1e-5)
    # nodes of both rows and a row of another state, gathered together: each continues as its path alone
    _, chain = decoder.feed(decoder.empty_state(1), [[start, 8, 6]], [1], questions)
    rows = [StateRow(state, 0, layout.sees[0, 5], 3), StateRow(chain, 0), StateRow(state, 1, layout.sees[1, 0], 1)]
    past, order = gather_rows(rows)
    assert past.valid.shape[1] == 3
    assert dict(zip(order, past.valid.sum(axis=1).tolist(), strict=True)) == {0: 3, 1: 3, 2: 1}
    owner = {0: 0, 1: 1, 2: 1}  # the question each row belongs to
    runs = {0: [7], 1: [9], 2: [5, 9]}
    after, _ = decoder.feed(past, [runs[place] for place in order], [owner[place] for place in order], questions)
    alone = {0: [start, 5, 6, 7], 1: [start, 8, 6, 9], 2: [start, 5, 9]}
    for row, place in enumerate(order):
        expected, _ = decoder.feed(decoder.empty_state(1), [alone[place]], [owner[place]], questions)
        assert np.allclose(after[row], expected[0], atol=1e-5)


@pytest.mark.parametrize("quantize", [False, True])
def test_int8_layers_stay_near_the_float_ones(random_tiny_model_dir: Path, quantize: bool) -> None:
    """Each runtime's int8 layers (torch's dynamic quantization; ONNX Runtime's quantizer) against float32 torch."""
    reference = IncrementalDecoder(load_runtime(random_tiny_model_dir, "torch"))
    for name in ("torch", "onnx"):
        decoder = IncrementalDecoder(load_runtime(random_tiny_model_dir, name, quantize=quantize))
        _, questions = _question(decoder, QUESTIONS)
        _, expected_questions = _question(reference, QUESTIONS)
        run = [[decoder.start_token_id, 5, 9], [decoder.start_token_id, 8]]
        hidden, _ = decoder.feed(decoder.empty_state(2), run, [0, 1], questions)
        expected, _ = reference.feed(reference.empty_state(2), run, [0, 1], expected_questions)
        tolerance = 0.5 if quantize else 1e-4
        assert np.abs(hidden - expected).max() <= tolerance
