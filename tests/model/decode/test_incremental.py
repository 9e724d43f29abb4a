"""The incremental decoder: a run fed in one call equals one token at a time and the model's own forward pass; logits
computed only for the allowed tokens equal the masked full softmax."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kgqa.model.decode.incremental import IncrementalDecoder, StateRow, gather_rows, tree_layout
from kgqa.model.modeling import build_model, quantize_for_cpu
from kgqa.model.tokenizer import build_char_tokenizer


@pytest.fixture(scope="module")
def decoder() -> IncrementalDecoder:
    tokenizer = build_char_tokenizer(["守望星光出品公司歌手类型的是什么"])
    torch.manual_seed(0)
    model = build_model(tokenizer, "tiny", dropout=0.0).eval()
    decoder = IncrementalDecoder(model)
    decoder.tokenizer = tokenizer  # type: ignore[attr-defined]
    return decoder


def _question(decoder: IncrementalDecoder, texts: list[str]):
    encoded = decoder.tokenizer(texts, padding=True, return_tensors="pt")  # type: ignore[attr-defined]
    return encoded, decoder.encode(encoded["input_ids"], encoded["attention_mask"])


def test_a_run_in_one_call_equals_one_token_at_a_time_and_the_full_forward(decoder: IncrementalDecoder) -> None:
    encoded, questions = _question(decoder, ["守望星光的出品公司是什么", "歌手"])
    target = [decoder.start_token_id, 5, 9, 7, 11, 6]
    rows = torch.tensor([0, 1])
    # the whole run at once, for both questions
    at_once, _ = decoder.feed(decoder.empty_state(2), [target, target[:3]], rows, questions)
    # one token at a time
    state = decoder.empty_state(2)
    for t in range(len(target)):
        hidden, state = decoder.feed(state, [[target[t]], [target[min(t, 2)]]], rows, questions)
        if t == 2:
            second_row = hidden[1]
    assert torch.allclose(at_once[0], hidden[0], atol=1e-5)
    assert torch.allclose(at_once[1], second_row, atol=1e-5)
    # uneven runs after uneven pasts: [2 tokens then 4] and [5 then 1], against transformers' own forward
    _, state = decoder.feed(decoder.empty_state(2), [target[:2], target[:5]], rows, questions)
    last, _ = decoder.feed(state, [target[2:6], target[5:6]], rows, questions)
    with torch.inference_mode():
        full = decoder.model(
            encoder_outputs=(questions.hidden,),
            attention_mask=encoded["attention_mask"],
            decoder_input_ids=torch.tensor([target, target]),
        ).logits
        for row in range(2):
            logits = last[row] @ decoder.output_weight.T + decoder.output_bias
            assert torch.allclose(logits, full[row, -1], atol=1e-4)


@pytest.mark.parametrize("quantize", [False, True])
def test_the_encoder_layers_called_directly_give_the_encoders_own_output(quantize: bool) -> None:
    """``encode`` calls the encoder's embeddings, mask and layers itself: the very numbers of its forward, padding
    included, in float32 and under int8 Linear layers."""
    tokenizer = build_char_tokenizer(["守望星光出品公司歌手类型的是什么"])
    torch.manual_seed(0)
    model = build_model(tokenizer, "tiny", dropout=0.0).eval()
    if quantize:
        model = quantize_for_cpu(model)
    decoder = IncrementalDecoder(model)
    for texts in (["守望星光的出品公司是什么"], ["守望星光的出品公司是什么", "歌手", "类型是什么"]):
        batch = tokenizer(texts, padding=True, return_tensors="pt")
        encoded = decoder.encode(batch["input_ids"], batch["attention_mask"])
        with torch.inference_mode():
            own = model.get_encoder()(**batch).last_hidden_state
        assert torch.equal(encoded.hidden, own)


def test_rows_are_selected_by_index_with_repeats(decoder: IncrementalDecoder) -> None:
    _, questions = _question(decoder, ["守望星光"])
    _, state = decoder.feed(decoder.empty_state(1), [[decoder.start_token_id, 5]], torch.tensor([0]), questions)
    twice, _ = gather_rows([StateRow(state, 0), StateRow(state, 0)])
    hidden, _ = decoder.feed(twice, [[6], [7, 8]], torch.tensor([0, 0]), questions)
    alone, _ = decoder.feed(state, [[7, 8]], torch.tensor([0]), questions)
    assert torch.allclose(hidden[1], alone[0], atol=1e-5)


def test_allowed_only_log_probs_equal_the_masked_full_softmax(decoder: IncrementalDecoder) -> None:
    generator = torch.Generator().manual_seed(1)
    hidden = torch.randn((4, decoder.output_weight.shape[1]), generator=generator)
    vocab = decoder.output_weight.shape[0]
    rng = np.random.default_rng(0)
    # narrow rows (a gather of output rows) and one allowing nearly everything (one matmul)
    allowed = [np.array([3]), rng.choice(vocab, 5, replace=False), rng.choice(vocab, vocab - 2, replace=False)]
    allowed.append(np.array([7, 2]))
    values = decoder.allowed_log_probs(hidden, allowed)
    with torch.inference_mode():
        full = hidden @ decoder.output_weight.T + decoder.output_bias
    for row, ids in enumerate(allowed):
        expected = torch.log_softmax(full[row, torch.from_numpy(ids)], dim=-1).numpy()
        assert np.allclose(values[row], expected, atol=1e-5)
    assert values[0][0] == 0.0  # one allowed token: log 1, the KB decided it


def test_a_wide_row_and_narrow_rows_beside_it_give_the_numbers_each_gives_alone() -> None:
    """Rows allowing many tokens (one matmul) and rows allowing few (their own output rows) are renormalised apart,
    each over its own tokens: a row's log-probabilities are the same to the bit beside rows of the other kind."""
    tokenizer = build_char_tokenizer([chr(0x4E00 + i) for i in range(200)])
    torch.manual_seed(0)
    decoder = IncrementalDecoder(build_model(tokenizer, "tiny", dropout=0.0).eval())
    vocab = decoder.output_weight.shape[0]
    assert vocab // 32 >= 2  # rows of one or two allowed tokens are narrow, the one of vocab - 3 wide
    hidden = torch.randn((3, decoder.output_weight.shape[1]), generator=torch.Generator().manual_seed(2))
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
    _, questions = _question(decoder, ["守望星光的出品公司是什么", "歌手"])
    start = decoder.start_token_id
    tokens = [[start, 5, 9, 7, 11, 6], [start, 8]]
    parents = [[-1, 0, 1, 2, 2, 1], [-1, 0]]  # row 0: start → 5 → 9 → {7, 11}; 5 → 6. row 1: start → 8
    layout = tree_layout(parents)
    hidden, state = decoder.feed(
        decoder.empty_state(2), tokens, torch.tensor([0, 1]), questions, every_position=True, layout=layout
    )
    paths = {3: [start, 5, 9, 7], 4: [start, 5, 9, 11], 5: [start, 5, 6]}
    for column, path in paths.items():
        alone, _ = decoder.feed(decoder.empty_state(1), [path], torch.tensor([0]), questions)
        assert torch.allclose(hidden[0, column], alone[0], atol=1e-5)
    short, _ = decoder.feed(decoder.empty_state(1), [[start, 8]], torch.tensor([1]), questions)
    assert torch.allclose(hidden[1, 1], short[0], atol=1e-5)
    # the node 5-9-11 as a state: what follows it is what follows that path fed alone
    past, _ = gather_rows([StateRow(state, 0, layout.sees[0, 4], 4)])
    assert past.valid.shape[1] == 4 and bool(past.valid.all())  # the node's own 4 slots, not the tree's 6
    after, _ = decoder.feed(past, [[6, 7]], torch.tensor([0]), questions)
    expected, _ = decoder.feed(decoder.empty_state(1), [[start, 5, 9, 11, 6, 7]], torch.tensor([0]), questions)
    assert torch.allclose(after[0], expected[0], atol=1e-5)
    # nodes of both rows and a row of another state, gathered together: each continues as its path alone
    _, chain = decoder.feed(decoder.empty_state(1), [[start, 8, 6]], torch.tensor([1]), questions)
    rows = [StateRow(state, 0, layout.sees[0, 5], 3), StateRow(chain, 0), StateRow(state, 1, layout.sees[1, 0], 1)]
    past, order = gather_rows(rows)
    assert past.valid.shape[1] == 3
    assert dict(zip(order, past.valid.sum(dim=1).tolist(), strict=True)) == {0: 3, 1: 3, 2: 1}
    owner = {0: 0, 1: 1, 2: 1}  # the question each row belongs to
    runs = {0: [7], 1: [9], 2: [5, 9]}
    owners = torch.tensor([owner[place] for place in order])
    after, _ = decoder.feed(past, [runs[place] for place in order], owners, questions)
    alone = {0: [start, 5, 6, 7], 1: [start, 8, 6, 9], 2: [start, 5, 9]}
    for row, place in enumerate(order):
        expected, _ = decoder.feed(decoder.empty_state(1), [alone[place]], torch.tensor([owner[place]]), questions)
        assert torch.allclose(after[row], expected[0], atol=1e-5)
