"""Open vocabulary: a character model loaded over a KB with characters it never saw reaches every KB path, exactly."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.modeling import build_model, load_checkpoint, save_checkpoint
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.model.vocabulary import extend_for_index, is_char_tokenizer, missing_characters
from kgqa.trie import VocabularyMismatchError
from tests.conftest import index_of_triples, save_word_piece_checkpoint

SEEN = "ab龙星"
UNSEEN = "㐆丮垚珰%℃"  # outside the tokenizer built from SEEN
WORD = st.text(alphabet=SEEN + UNSEEN, min_size=1, max_size=3)
TRIPLE = st.tuples(WORD, st.one_of(st.just(""), WORD), WORD, WORD)  # name, meaning, relation, object


def _narrow_model(root: Path, seed: int = 0) -> Path:
    """A random tiny model whose tokenizer knows only SEEN (and the question words)."""
    tokenizer = build_char_tokenizer([SEEN, "的是什么?"])
    torch.manual_seed(seed)
    save_checkpoint(build_model(tokenizer, "tiny"), tokenizer, root / "model", {})
    return root / "model"


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(triples=st.lists(TRIPLE, min_size=1, max_size=8), seed=st.integers(0, 2**16), data=st.data())
def test_every_kb_path_is_reachable_and_nothing_else(triples: list, seed: int, data: st.DataObject) -> None:
    """With as many beams as the KB has paths, beam search returns exactly the KB's paths, new characters or not."""
    with tempfile.TemporaryDirectory() as root:
        index = index_of_triples(triples, Path(root))
        paths = {(n, r, m) for n, m, r, _ in triples}
        beams = len(paths)
        options = DecodeOptions(num_beams=beams, end_when_determined=data.draw(st.booleans(), label="end_early"))
        # the torch runtime: no export per example (the ONNX runtime's new rows: tests/model/train/test_train.py)
        answerer = QuestionAnswerer.load(_narrow_model(Path(root), seed), index, options, runtime="torch")
        assert set(answerer.added_characters) == set(index.alphabet) - set(SEEN)
        question = data.draw(st.sampled_from(sorted({n for n, _, _ in paths}))) + "的是什么?"
        [candidates] = answerer.answer([question], top_k=beams)
        assert {(c.name, c.relation, c.meaning) for c in candidates} == paths
        for c in candidates:
            assert c.object in index.objects(c.name, c.relation, c.meaning)


def test_new_rows_are_distinct_drawn_like_trained_rows_and_the_same_on_every_load(tmp_path: Path) -> None:
    index = index_of_triples([("㐆星", "", "a垚", "x"), ("龙", "b", "星", "y")], tmp_path)
    model_dir = _narrow_model(tmp_path)
    loaded = [load_checkpoint(model_dir) for _ in range(2)]
    trained = build_char_tokenizer([SEEN, "的是什么?"])
    char_ids = [i for token, i in trained.get_vocab().items() if len(token) == 1]
    for model, tokenizer in loaded:
        assert extend_for_index(model, tokenizer, index) == ["㐆", "垚"]
        weight = model.get_input_embeddings().weight
        new = [tokenizer.convert_tokens_to_ids(ch) for ch in "㐆垚"]
        assert new == [len(trained), len(trained) + 1]
        assert not torch.equal(weight[new[0]], weight[new[1]])
        spread = weight[char_ids].std(dim=0)
        assert ((weight[new] - weight[char_ids].mean(dim=0)).abs() < 6 * spread).all()
        assert model.get_output_embeddings().weight.shape[0] == len(tokenizer)
        # the question's new character is that token, not <unk>
        assert tokenizer("㐆星")["input_ids"][:2] == [new[0], tokenizer.convert_tokens_to_ids("星")]
    assert torch.equal(loaded[0][0].get_input_embeddings().weight, loaded[1][0].get_input_embeddings().weight)


def test_a_kb_without_new_characters_changes_nothing(tmp_path: Path) -> None:
    index = index_of_triples([("龙星", "", "ab", "x"), ("龙", "b", "星", "y")], tmp_path)
    model, tokenizer = load_checkpoint(_narrow_model(tmp_path))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    vocab = tokenizer.get_vocab()
    assert missing_characters(tokenizer, index.alphabet) == []
    assert extend_for_index(model, tokenizer, index) == []
    assert tokenizer.get_vocab() == vocab
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_word_piece_tokenizer_that_cannot_spell_the_kb_is_refused(tmp_path: Path) -> None:
    index = index_of_triples([("㐆星", "", "ab", "x")], tmp_path)
    directory = save_word_piece_checkpoint(tmp_path / "wordpiece", ["a", "b", "星", "##b", "ab"])
    model, tokenizer = load_checkpoint(directory)
    assert not is_char_tokenizer(tokenizer)
    assert extend_for_index(model, tokenizer, index) == []  # not a character tokenizer: left as it is
    with pytest.raises(VocabularyMismatchError, match="no token for 1 character"):
        QuestionAnswerer.load(directory, index, runtime="torch")
