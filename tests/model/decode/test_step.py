from __future__ import annotations

import torch

from kgqa.model.decode.step import DecodingStep
from kgqa.model.targets import TargetCodec
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.trie import KBIndex, path_key


def test_targets_are_read_once_per_step_and_spelled_as_key_text(tiny_index: KBIndex) -> None:
    tokenizer = build_char_tokenizer([tiny_index.alphabet])
    codec = TargetCodec(tokenizer)
    step = DecodingStep(codec.constraint(tiny_index))
    target = codec.encode("龙编站", "坐标", "")
    input_ids = torch.tensor([[tokenizer.bos_token_id, *target[:4]], [tokenizer.bos_token_id, *target[:4]]])
    first = step.targets(input_ids)
    assert first == [tuple(target[:4])] * 2
    assert step.targets(input_ids) is first  # the same step: not read again
    assert step.targets(input_ids.clone()) is not first  # a new step's tensor is read
    assert step.text(tuple(target[:4])) == path_key("龙编站", "", "")[:4]
    assert step.text(tuple(target)) is None  # EOS is no key character
