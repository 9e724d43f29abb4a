"""Open vocabulary: a character model serves any KB, whatever characters the KB holds that training never saw.

The trie constraint spells KB paths one character per token, so a KB character without a token would make every path
through it unreachable. For kgqa's own character tokenizer, ``extend_for_index`` adds a token for each index
character the tokenizer lacks and grows the embedding and output rows to match (BART ties them). Each new row is
drawn like the trained character rows (their mean plus noise of their per-dimension spread, as transformers'
``mean_resizing`` does), seeded by the character's code point (numpy's generator: every runtime draws the same
rows): new characters stay distinct from each other, so the
question's new character and the decoder's copy of it match the way trained characters do. (All-equal mean rows
answered 86.4 EM_O on the seeded unseen-character dev set where these answer 96.0: docs/evaluation.md, "Any knowledge
base".)
The question then encodes the new character as itself, not as ``<unk>``. Deterministic, so every process that loads
the same model over the same index decodes alike; a no-op when the index adds nothing.

Other tokenizers (word pieces) are left as they are: ``TokenConstraint`` then refuses a KB they cannot spell, which
is right, since a word-piece model's new characters have no place in its segmentation.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np

from kgqa.model.tokenizer import SPECIAL_TOKENS, QuestionTokenizer, single_char_vocab
from kgqa.trie import KBIndex

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger("kgqa.model")


def is_char_tokenizer(tokenizer: PreTrainedTokenizerBase | QuestionTokenizer) -> bool:
    """True for kgqa's character tokenizer: a word-level vocabulary over text split into single characters."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordLevel":
        return False
    return all(len(token) == 1 or token in SPECIAL_TOKENS for token in tokenizer.get_vocab())


def missing_characters(
    tokenizer: PreTrainedTokenizerBase | QuestionTokenizer, alphabet: set[str] | frozenset[str]
) -> list[str]:
    """The characters of ``alphabet`` (an index's) the tokenizer has no single-character token for, sorted."""
    vocab = single_char_vocab(tokenizer)
    return sorted(ch for ch in alphabet if ch not in vocab)


def extend_output(
    weight: np.ndarray, bias: np.ndarray, tokenizer: QuestionTokenizer, alphabet: str | set[str] | None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The tied embeddings ``weight`` and output ``bias`` with a row for each character of ``alphabet`` the character
    tokenizer lacks (added to it too), and the characters added; unchanged with ``[]`` for another tokenizer, whose
    constraint then decides."""
    if alphabet is None or not is_char_tokenizer(tokenizer):
        return weight, bias, []
    missing = missing_characters(tokenizer, alphabet)
    if not missing:
        return weight, bias, []
    trained = sorted(single_char_vocab(tokenizer).values())
    ids = tokenizer.add_characters(missing)
    size = max(len(tokenizer), len(weight))
    grown = np.zeros((size, weight.shape[1]), dtype=np.float32)
    grown_bias = np.zeros(size, dtype=np.float32)
    grown[: len(weight)], grown_bias[: len(bias)] = weight, bias
    grown[ids] = rows_like(weight[trained], missing)
    grown_bias[ids] = bias[trained].mean()
    log.info("vocabulary extended by %d character(s) of the index (e.g. %r)", len(missing), "".join(missing[:10]))
    return grown, grown_bias, missing


def rows_like(trained: np.ndarray, characters: list[str]) -> np.ndarray:
    """One row per character, drawn like the trained rows (their mean and per-dimension spread), seeded by the
    character's code point: the same character gets the same row whatever else the index adds."""
    mean, spread = trained.mean(axis=0), trained.std(axis=0, ddof=1)
    noise = np.stack([np.random.default_rng(ord(ch)).standard_normal(trained.shape[1]) for ch in characters])
    return (mean + noise.astype(np.float32) * spread).astype(np.float32)


def extend_for_index(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, index: KBIndex) -> list[str]:
    """For training a transformers model over an index: add tokens and embedding rows (``rows_like``) for the
    index's characters ``tokenizer`` lacks; returns the characters added. Only for a character tokenizer; anything
    else is returned unchanged with ``[]``, and the constraint decides whether it can spell the KB."""
    import torch
    from tokenizers import AddedToken

    missing = missing_characters(tokenizer, index.alphabet)
    if not missing or not is_char_tokenizer(tokenizer):
        return []
    trained = sorted(single_char_vocab(tokenizer).values())
    # normalized=False: the character is matched as it is in the text, like the vocabulary's own characters
    tokenizer.add_tokens([AddedToken(ch, normalized=False, special=False) for ch in missing])
    rows = torch.tensor(tokenizer.convert_tokens_to_ids(missing))
    size = max(len(tokenizer), model.get_input_embeddings().num_embeddings)
    with torch.no_grad():
        new = torch.from_numpy(rows_like(model.get_input_embeddings().weight[trained].float().numpy(), missing))
        model.resize_token_embeddings(size, mean_resizing=False)
        # input and output rows (one tensor when tied, as BART's are: setting it twice is harmless)
        for embeddings in (model.get_input_embeddings(), model.get_output_embeddings()):
            if embeddings is not None:
                embeddings.weight[rows] = new.to(embeddings.weight.dtype)
        bias = getattr(model, "final_logits_bias", None)  # BART's output bias (zeros unless a checkpoint trained it)
        if isinstance(bias, torch.Tensor) and bias.shape[-1] == size:
            bias[..., rows] = bias[..., trained].mean(dim=-1, keepdim=True)
    log.info("vocabulary extended by %d character(s) of the index (e.g. %r)", len(missing), "".join(missing[:10]))
    return missing
