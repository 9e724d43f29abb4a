"""The index's allowed next characters as token ids of a character-level tokenizer.

The index is keyed by characters; this adapter maps them to ids through the tokenizer's vocabulary once, into a
code-point lookup table, so a query costs one index lookup plus one vectorised gather.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from kgqa.trie.index import KBIndex
from kgqa.trie.keys import END_CODE, SEP, SEP_CODE

_CODE_POINTS = 0x110000


class VocabularyMismatchError(ValueError):
    """The tokenizer cannot spell every KB string: masks built from it would silently drop KB paths."""


class TokenConstraint:
    """Allowed next token ids for a partial target ``name [SEP] relation [SEP] meaning [EOS]``."""

    def __init__(self, index: KBIndex, vocab: Mapping[str, int], sep_token_id: int, eos_token_id: int) -> None:
        """``vocab``: single characters → token ids (the target codec's map, shared, not copied)."""
        longer = [token for token in vocab if len(token) != 1][:3]
        if longer:
            raise ValueError(f"the constraint spells with single characters; the vocabulary has {longer}")
        missing = sorted({ch for ch in index.alphabet if ch not in vocab})
        if missing:
            sample = "".join(missing[:20])
            raise VocabularyMismatchError(
                f"the tokenizer has no token for {len(missing)} character(s) of the index at {index.directory} "
                f"(e.g. {sample!r}), and it is not kgqa's character tokenizer (that one gains missing characters at "
                "load); serve an index of the KB the model can spell, or train a kgqa model on this index"
            )
        self.index = index
        self.sep_token_id = sep_token_id
        self.eos_token_id = eos_token_id
        self._code_to_id = np.full(_CODE_POINTS, -1, dtype=np.int64)
        self._id_to_char: dict[int, str] = {}
        self.char_to_id = vocab
        for token, token_id in vocab.items():
            self._code_to_id[ord(token)] = token_id
            self._id_to_char[token_id] = token
        self._code_to_id[SEP_CODE] = sep_token_id
        self._code_to_id[END_CODE] = eos_token_id
        self._id_to_char[sep_token_id] = SEP
        self._first: np.ndarray | None = None  # the tokens allowed first: asked for by every question

    def prefix_text(self, token_ids: Sequence[int]) -> str | None:
        """The index key spelled by ``token_ids``; None if one of them is not a character or SEP (e.g. EOS)."""
        try:
            return "".join([self._id_to_char[int(i)] for i in token_ids])
        except KeyError:
            return None

    def char_of(self, token_id: int) -> str:
        """The character (or SEP) a token spells; KeyError for any other token (EOS, padding)."""
        return self._id_to_char[token_id]

    def token_of(self, char: str) -> int:
        """The token of a key's character (or SEP)."""
        return int(self._code_to_id[ord(char)])

    def completion(self, token_ids: Sequence[int]) -> str | None:
        """The one index key that ``token_ids`` (a target so far) can still become, or None (none, several, or EOS)."""
        return self.completion_of(self.prefix_text(token_ids))

    def completion_of(self, prefix: str | None) -> str | None:
        """:meth:`completion` of a prefix already spelled as text (``prefix_text``)."""
        return None if prefix is None else self.index.completion(prefix)

    def allowed_token_ids(self, token_ids: Sequence[int]) -> np.ndarray:
        """Token ids allowed after ``token_ids`` (the target so far, without the decoder start token)."""
        return self.allowed_after(self.prefix_text(token_ids))

    def allowed_after(self, prefix: str | None) -> np.ndarray:
        """:meth:`allowed_token_ids` of a prefix already spelled as text (``prefix_text``; None allows nothing)."""
        if prefix is None:
            return np.empty(0, dtype=np.int64)
        if prefix == "":  # thousands of first characters (20,000 at 20M triples), the same for every question
            if self._first is None:
                self._first = self._code_to_id[self.index.next_codepoints("")]
                self._first.setflags(write=False)  # shared by every caller
            return self._first
        return self._code_to_id[self.index.next_codepoints(prefix)]
