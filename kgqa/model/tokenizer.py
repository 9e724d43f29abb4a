"""A character-level tokenizer: one token per character, saved and loaded as a transformers tokenizer.

Its vocabulary holds every character of the knowledge base (the index's alphabet) and of the training questions,
so every KB string can be spelled and the trie constraint is exact. Characters never seen map to ``<unk>``: a
question with an unseen character still encodes. White space is a character like any other (KB strings contain it).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK, SEP_TOKEN = "<pad>", "<s>", "</s>", "<unk>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, SEP_TOKEN)


def build_char_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A tokenizer whose vocabulary is the special tokens then every distinct character of ``texts``, sorted."""
    chars: set[str] = set()
    for text in texts:
        chars.update(text)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for ch in sorted(chars):
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    # Every character is its own pre-token (a class that matches newlines too).
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        sep_token=SEP_TOKEN,
        model_max_length=512,
    )


def load_tokenizer(directory: str | Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))


def single_char_vocab(tokenizer: PreTrainedTokenizerBase) -> dict[str, int]:
    """Character -> token id for every token that is exactly one character (what the trie constraint spells with)."""
    return {token: token_id for token, token_id in tokenizer.get_vocab().items() if len(token) == 1}
