from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.model.targets import TargetCodec
from kgqa.model.tokenizer import build_char_tokenizer, load_tokenizer
from kgqa.trie import KBIndex, PathKey


def test_one_token_per_character_and_round_trip(tmp_path: Path) -> None:
    texts = ["守望星光（韩玉玲）", "Harry Potter", "21°2′22.9″N", "a\tb\nc"]
    tokenizer = build_char_tokenizer(texts)
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) == len(text)
        assert tokenizer.decode(ids) == text
    tokenizer.save_pretrained(str(tmp_path))
    reloaded = load_tokenizer(tmp_path)
    assert reloaded.get_vocab() == tokenizer.get_vocab()
    assert reloaded("Harry Potter")["input_ids"] == tokenizer("Harry Potter")["input_ids"]


def test_unseen_characters_become_unk_and_still_encode() -> None:
    tokenizer = build_char_tokenizer(["守望"])
    ids = tokenizer("守望星", add_special_tokens=False)["input_ids"]
    assert ids[-1] == tokenizer.unk_token_id and len(ids) == 3


def test_target_codec_round_trip_and_rejects_non_paths() -> None:
    codec = TargetCodec(build_char_tokenizer(["守望星光出品公司歌曲 ab"]))
    ids = codec.encode("守望星光", "出品公司", "歌曲")
    assert ids[-1] == codec.eos_token_id and ids.count(codec.sep_token_id) == 2
    assert codec.decode(ids) == PathKey("守望星光", "出品公司", "歌曲")
    assert codec.decode(codec.encode("a b", "b", "")) == PathKey("a b", "b", "")
    assert codec.decode(ids[:4]) is None  # no separators
    assert codec.decode([codec.sep_token_id, codec.sep_token_id, codec.eos_token_id]) is None  # empty name


@pytest.mark.slow
def test_round_trip_of_every_string_of_the_kgclue_sim_kb(kgclue_sim_index: KBIndex) -> None:
    """Every name, relation and meaning of the KB is spelled by the tokenizer, one token a character, and back."""
    index = kgclue_sim_index
    tokenizer = build_char_tokenizer([index.alphabet])
    codec = TargetCodec(tokenizer)
    codec.constraint(index)  # does not refuse
    strings: set[str] = set()
    for path_id in range(len(index)):
        path = index.path_by_id(path_id)
        assert codec.decode(codec.encode(*path)) == path
        strings.update(part for part in path if part)
    strings_list = sorted(strings)
    encoded = tokenizer(strings_list, add_special_tokens=False)["input_ids"]
    for text, ids in zip(strings_list, encoded, strict=True):
        assert len(ids) == len(text) and tokenizer.unk_token_id not in ids
    decoded = tokenizer.batch_decode(encoded)
    assert decoded == strings_list
