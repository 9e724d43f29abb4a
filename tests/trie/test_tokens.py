"""TokenConstraint: the index's allowed next characters as token ids of a character tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.trie import END_CODE, SEP, KBIndex, TokenConstraint, VocabularyMismatchError, build_index, path_key
from tests.conftest import TINY_KB, write_kb


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> KBIndex:
    root: Path = tmp_path_factory.mktemp("tokens")
    build_index([write_kb(root / "kb.tsv", TINY_KB[:7])], root / "index", progress=False)
    return KBIndex(root / "index")


def test_token_constraint_maps_characters_to_ids(index: KBIndex) -> None:
    vocab = {ch: i + 10 for i, ch in enumerate(sorted(set(index.alphabet) | set("多余")))}
    tokens = TokenConstraint(index, vocab, sep_token_id=1, eos_token_id=2)
    assert sorted(tokens.allowed_token_ids([])) == sorted([vocab["守"], vocab["龙"]])
    spelled = [vocab[c] for c in "守望"]
    assert sorted(tokens.allowed_token_ids(spelled)) == sorted([1, vocab["星"]])
    full = [vocab[c] if c != SEP else 1 for c in path_key("守望星光", "类型", "")]
    assert tokens.allowed_token_ids(full).tolist() == [2]
    assert tokens.allowed_token_ids([*full, 2]).tolist() == []  # after EOS nothing is allowed
    assert END_CODE not in tokens.allowed_token_ids([])


def test_token_constraint_refuses_a_vocabulary_that_cannot_spell_the_kb(index: KBIndex) -> None:
    vocab = {ch: i for i, ch in enumerate(index.alphabet) if ch != "晶"}
    with pytest.raises(VocabularyMismatchError, match="晶"):
        TokenConstraint(index, vocab, sep_token_id=1, eos_token_id=2)


def test_prefix_text_and_its_shortcuts_agree_with_the_token_id_calls(index: KBIndex) -> None:
    vocab = {ch: i + 10 for i, ch in enumerate(sorted(index.alphabet))}
    tokens = TokenConstraint(index, vocab, sep_token_id=1, eos_token_id=2)
    assert tokens.char_to_id is vocab  # kept, not copied: the codec and the constraint share one map
    ids = [vocab[c] if c != SEP else 1 for c in path_key("守望星光", "歌", "")[:-1]]
    text = tokens.prefix_text(ids)
    assert text == path_key("守望星光", "歌", "")[:-1]
    assert tokens.allowed_after(text).tolist() == tokens.allowed_token_ids(ids).tolist() == [vocab["手"]]
    assert (
        tokens.completion_of(text) == tokens.completion(ids) == path_key("守望星光", "歌手", "韩玉玲、刘东考演唱歌曲")
    )
    assert tokens.prefix_text([*ids, 2]) is None  # EOS spells no key character
    assert tokens.allowed_after(None).tolist() == [] and tokens.completion_of(None) is None


def test_a_vocabulary_with_longer_tokens_is_refused(index: KBIndex) -> None:
    vocab = {ch: i + 10 for i, ch in enumerate(sorted(index.alphabet))} | {"守望": 9999}
    with pytest.raises(ValueError, match="single characters"):
        TokenConstraint(index, vocab, sep_token_id=1, eos_token_id=2)
