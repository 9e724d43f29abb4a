"""Open vocabulary: a character model serves any KB, whatever characters the KB holds that training never saw.

The trie constraint spells KB paths one character per token, so a KB character without a token would make every path
through it unreachable. For kgqa's own character tokenizer, ``extend_for_index`` adds a token for each index
character the tokenizer lacks and grows the embedding and output rows to match (BART ties them). Each new row is
drawn like the trained character rows (their mean plus noise of their per-dimension spread, as transformers'
``mean_resizing`` does), seeded by the character's code point: new characters stay distinct from each other, so the
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

import torch
from tokenizers import AddedToken
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from kgqa.model.tokenizer import SPECIAL_TOKENS, single_char_vocab
from kgqa.trie import KBIndex

log = logging.getLogger("kgqa.model")


def is_char_tokenizer(tokenizer: PreTrainedTokenizerBase) -> bool:
    """True for kgqa's character tokenizer: a word-level vocabulary over text split into single characters."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or type(backend.model).__name__ != "WordLevel":
        return False
    return all(len(token) == 1 or token in SPECIAL_TOKENS for token in tokenizer.get_vocab())


def missing_characters(tokenizer: PreTrainedTokenizerBase, index: KBIndex) -> list[str]:
    """The index's characters the tokenizer has no single-character token for, sorted."""
    vocab = single_char_vocab(tokenizer)
    return sorted(ch for ch in index.alphabet if ch not in vocab)


@torch.no_grad()
def extend_for_index(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, index: KBIndex) -> list[str]:
    """Add tokens and embedding rows for the index's characters ``tokenizer`` lacks; returns the characters added.

    Only for a character tokenizer (``is_char_tokenizer``) and an unquantized model; anything else is returned
    unchanged with ``[]``, and the constraint decides whether it can spell the KB.
    """
    missing = missing_characters(tokenizer, index)
    if not missing or not is_char_tokenizer(tokenizer):
        return []
    trained = sorted(single_char_vocab(tokenizer).values())
    # normalized=False: the character is matched as it is in the text, like the vocabulary's own characters
    tokenizer.add_tokens([AddedToken(ch, normalized=False, special=False) for ch in missing])
    rows = torch.tensor(tokenizer.convert_tokens_to_ids(missing))
    size = max(len(tokenizer), model.get_input_embeddings().num_embeddings)
    model.resize_token_embeddings(size, mean_resizing=False)
    # input and output rows (one tensor when tied, as BART's are: setting it twice is harmless)
    for embeddings in (model.get_input_embeddings(), model.get_output_embeddings()):
        if embeddings is not None:
            embeddings.weight[rows] = _rows_like(embeddings.weight[trained], missing)
    bias = getattr(model, "final_logits_bias", None)  # BART's output bias (zeros unless a checkpoint trained it)
    if isinstance(bias, torch.Tensor) and bias.shape[-1] == size:
        bias[..., rows] = bias[..., trained].mean(dim=-1, keepdim=True)
    log.info("vocabulary extended by %d character(s) of the index (e.g. %r)", len(missing), "".join(missing[:10]))
    return missing


def _rows_like(trained: torch.Tensor, characters: list[str]) -> torch.Tensor:
    """One row per character, drawn like the trained rows (their mean and per-dimension spread), seeded by the
    character's code point: the same character gets the same row whatever else the index adds."""
    mean, spread = trained.mean(dim=0), trained.std(dim=0)
    noise = [torch.randn(trained.shape[1], generator=torch.Generator().manual_seed(ord(ch))) for ch in characters]
    return mean + torch.stack(noise).to(trained.dtype) * spread
