"""The decoder's target: a path spelled one character a token, decoded back; the codec and constraint share a map."""

from __future__ import annotations

import pytest

from kgqa.model.targets import TargetCodec
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.trie import KBIndex, PathKey
from kgqa.trie.keys import NAME_MEANING_RELATION, NAME_RELATION_MEANING


@pytest.fixture(scope="module")
def tokenizer(tiny_index: KBIndex):
    return build_char_tokenizer([tiny_index.alphabet])


@pytest.mark.parametrize("order", [NAME_RELATION_MEANING, NAME_MEANING_RELATION])
def test_encode_spells_the_key_and_decode_reads_it_back(tokenizer, order: str) -> None:
    codec = TargetCodec(tokenizer, order)
    path = PathKey("守望星光", "出品公司", "韩玉玲、刘东考演唱歌曲")
    ids = codec.encode(*path)
    assert ids[-1] == codec.eos_token_id and ids.count(codec.sep_token_id) == 2
    assert codec.target_length(path) == len(ids)
    second = "出品公司" if order == NAME_RELATION_MEANING else "韩玉玲、刘东考演唱歌曲"
    assert ids[: len("守望星光") + 1 + len(second)] == [
        *(codec.char_to_id[c] for c in "守望星光"),
        codec.sep_token_id,
        *(codec.char_to_id[c] for c in second),
    ]
    assert codec.decode(ids) == path
    assert codec.decode([*ids, codec.pad_token_id, codec.pad_token_id]) == path  # what follows EOS is ignored


def test_decode_refuses_what_is_not_a_whole_path(tokenizer) -> None:
    codec = TargetCodec(tokenizer)
    ids = codec.encode("龙编站", "坐标", "")
    assert codec.decode(ids) == PathKey("龙编站", "坐标", "")
    assert codec.decode(ids[:4]) is None  # the name and a separator only
    assert codec.decode([codec.sep_token_id, *ids]) is None  # four parts
    assert codec.decode([codec.sep_token_id, codec.sep_token_id, codec.eos_token_id]) is None  # no name, no relation
    assert codec.decode([len(tokenizer) + 5, *ids]) is None  # an id that is no character


def test_encode_raises_for_a_character_without_a_token(tokenizer) -> None:
    codec = TargetCodec(tokenizer)
    assert not codec.can_spell("𠀀")
    with pytest.raises(KeyError):
        codec.encode("𠀀", "坐标")


def test_the_constraint_spells_with_the_codecs_own_map(tokenizer, tiny_index: KBIndex) -> None:
    codec = TargetCodec(tokenizer)
    assert codec.constraint(tiny_index).char_to_id is codec.char_to_id
