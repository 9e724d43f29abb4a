"""A character-level tokenizer: one token per character, saved as a transformers tokenizer, read for answering by
the tokenizers library alone (``QuestionTokenizer``: no transformers where kgqa answers).

Its vocabulary holds every character of the knowledge base (the index's alphabet) and of the training questions,
so every KB string can be spelled and the trie constraint is exact. Characters never seen map to ``<unk>``: a
question with an unseen character still encodes. White space is a character like any other (KB strings contain it).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

PAD, BOS, EOS, UNK, SEP_TOKEN = "<pad>", "<s>", "</s>", "<unk>", "<sep>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK, SEP_TOKEN)


def build_char_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A tokenizer whose vocabulary is the special tokens then every distinct character of ``texts``, sorted."""
    from transformers import PreTrainedTokenizerFast

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


def single_char_vocab(tokenizer: PreTrainedTokenizerBase | QuestionTokenizer) -> dict[str, int]:
    """Character -> token id for every token that is exactly one character (what the trie constraint spells with)."""
    return {token: token_id for token, token_id in tokenizer.get_vocab().items() if len(token) == 1}


class QuestionTokenizer:
    """A saved tokenizer (``tokenizer.json`` and the special tokens of ``tokenizer_config.json``) as answering uses
    it: questions to padded id arrays, and the vocabulary the KB constraint spells with. The ids are those the
    transformers tokenizer it was saved from gives (the same tokenizers library underneath)."""

    def __init__(self, backend: Tokenizer, special: dict[str, str]) -> None:
        self.backend_tokenizer = backend
        self.special = special
        self._vocab: dict[str, int] | None = None

    @classmethod
    def load(cls, directory: str | Path) -> QuestionTokenizer:
        directory = Path(directory)
        path = directory / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{directory} has no tokenizer.json; train a model with `kgqa train`")
        config_path = directory / "tokenizer_config.json"
        config: dict[str, Any] = json.loads(config_path.read_text("utf-8")) if config_path.is_file() else {}
        special = {}
        for name, default in (("pad", PAD), ("bos", BOS), ("eos", EOS), ("unk", UNK), ("sep", SEP_TOKEN)):
            token = config.get(f"{name}_token", default)
            special[name] = token["content"] if isinstance(token, dict) else token
        backend = Tokenizer.from_file(str(path))
        backend.no_padding()
        backend.no_truncation()
        return cls(backend, special)

    @classmethod
    def from_transformers(cls, tokenizer: PreTrainedTokenizerBase) -> QuestionTokenizer:
        """The same tokenizer as a transformers one in memory (a model being trained): its backend, copied."""
        backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        backend.no_padding()
        backend.no_truncation()
        special = {
            name: str(getattr(tokenizer, f"{name}_token", None) or default)
            for name, default in (("pad", PAD), ("bos", BOS), ("eos", EOS), ("unk", UNK), ("sep", SEP_TOKEN))
        }
        return cls(backend, special)

    def _id(self, name: str) -> int | None:
        return self.backend_tokenizer.token_to_id(self.special[name])

    @property
    def pad_token_id(self) -> int:
        found = self._id("pad")
        return 0 if found is None else found

    @property
    def eos_token_id(self) -> int | None:
        return self._id("eos")

    @property
    def sep_token_id(self) -> int | None:
        return self._id("sep")

    def __len__(self) -> int:
        return self.backend_tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> dict[str, int]:
        if self._vocab is None:
            self._vocab = self.backend_tokenizer.get_vocab(with_added_tokens=True)
        return self._vocab

    def add_characters(self, characters: Sequence[str]) -> list[int]:
        """A token for each character (matched as it is in the text, like the vocabulary's own); their ids."""
        self.backend_tokenizer.add_tokens([AddedToken(ch, normalized=False, special=False) for ch in characters])
        self._vocab = None
        return [self.backend_tokenizer.token_to_id(ch) for ch in characters]

    def batch(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask (questions × the longest), padded on the right."""
        encodings = self.backend_tokenizer.encode_batch(list(texts))
        width = max((len(e.ids) for e in encodings), default=0)
        ids = np.full((len(encodings), width), self.pad_token_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        return ids, mask
