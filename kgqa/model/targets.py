"""The decoder's target: ``name [SEP] relation [SEP] meaning [EOS]`` spelled one character per token.

(Or ``name [SEP] meaning [SEP] relation [EOS]`` with an index built in that key order, for the ablation: the target
order is the index's key order.)

Targets are spelled with the tokenizer's single-character tokens, whatever the tokenizer does to running text, so a
target's token sequence is exactly its index key's character sequence and the trie constraint stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kgqa.model.tokenizer import QuestionTokenizer, single_char_vocab
from kgqa.trie import SEP, KBIndex, PathKey, TokenConstraint, VocabularyMismatchError, path_key, split_path_key
from kgqa.trie.keys import NAME_RELATION_MEANING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class TargetCodec:
    """Encodes KB paths as target token ids and decodes generated ids back to paths."""

    def __init__(
        self, tokenizer: PreTrainedTokenizerBase | QuestionTokenizer, key_order: str = NAME_RELATION_MEANING
    ) -> None:
        self.key_order = key_order
        if tokenizer.sep_token_id is None or tokenizer.eos_token_id is None:
            raise VocabularyMismatchError("the tokenizer needs a separator and an end-of-sequence token")
        self.char_to_id = single_char_vocab(tokenizer)
        self.id_to_char = {i: ch for ch, i in self.char_to_id.items()}
        self.sep_token_id: int = tokenizer.sep_token_id
        self.eos_token_id: int = tokenizer.eos_token_id
        self.pad_token_id: int = tokenizer.pad_token_id
        self._key_char_ids = {**self.char_to_id, SEP: self.sep_token_id}  # a key's characters, separators included

    def encode(self, name: str, relation: str, meaning: str = "") -> list[int]:
        """Target ids of a path, ending with EOS. KeyError if a character has no token (check with ``can_spell``)."""
        ids = list(map(self._key_char_ids.__getitem__, path_key(name, relation, meaning, self.key_order)))
        ids.append(self.eos_token_id)
        return ids

    @staticmethod
    def target_length(path: PathKey) -> int:
        """The number of target ids of ``path`` (``encode``'s length): a token per character, two separators, EOS."""
        return len(path.name) + len(path.relation) + len(path.meaning) + 3

    def can_spell(self, text: str) -> bool:
        return all(ch in self.char_to_id for ch in text)

    def decode(self, token_ids: Sequence[int]) -> PathKey | None:
        """The path spelled by generated ids (up to EOS, pads ignored); None if they do not spell three parts."""
        chars: list[str] = []
        for token_id in token_ids:
            token_id = int(token_id)
            if token_id == self.eos_token_id:
                break
            if token_id == self.pad_token_id:
                continue
            if token_id == self.sep_token_id:
                chars.append(SEP)
            elif token_id in self.id_to_char:
                chars.append(self.id_to_char[token_id])
            else:
                return None
        key = "".join(chars)
        if key.count(SEP) != 2:
            return None
        path = split_path_key(key, self.key_order)
        return path if path.name and path.relation else None

    def constraint(self, index: KBIndex) -> TokenConstraint:
        """The index's allowed next tokens in this vocabulary; refuses a vocabulary missing KB characters."""
        if index.key_order != self.key_order:
            raise VocabularyMismatchError(
                f"the index at {index.directory} spells paths in the order {index.key_order}, the model in the order "
                f"{self.key_order}; use an index built with --key-order {self.key_order}"
            )
        return TokenConstraint(index, self.char_to_id, self.sep_token_id, self.eos_token_id)
