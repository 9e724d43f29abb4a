"""What the search needs to know of a model, read without torch or transformers: its shape (``config.json``) and the
tied token-embedding matrix with the output bias (``model.safetensors``), as float32 numpy arrays.

The embedding lookup and the output layer run here, in numpy, whatever runs the layers: the search asks the output
layer only about the tokens the KB allows, and an index's new characters (``kgqa.model.vocabulary``) add rows here
without touching an exported graph.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from kgqa.trie.keys import NAME_RELATION_MEANING

if TYPE_CHECKING:
    from kgqa.model.tokenizer import QuestionTokenizer

WEIGHTS_FILE = "model.safetensors"
EMBEDDING_KEY = "model.shared.weight"
BIAS_KEY = "final_logits_bias"


class ModelFormatError(ValueError):
    """A model directory this runtime cannot read; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """The encoder-decoder's shape and special tokens, from its ``config.json``."""

    d_model: int
    decoder_layers: int
    decoder_heads: int
    start_token_id: int
    pad_token_id: int
    embed_scale: float
    target_order: str

    @property
    def head_dim(self) -> int:
        return self.d_model // self.decoder_heads

    @classmethod
    def read(cls, directory: str | Path) -> ModelSpec:
        path = Path(directory) / "config.json"
        if not path.is_file():
            raise ModelFormatError(
                f"{directory} is not a model checkpoint (no config.json); train one with `kgqa train --out {directory}`"
            )
        return cls.of_config(json.loads(path.read_text(encoding="utf-8")), directory)

    @classmethod
    def of_config(cls, config: dict, directory: str | Path = "the model") -> ModelSpec:
        """From a ``config.json``'s fields."""
        if config.get("model_type") != "bart" or not config.get("tie_word_embeddings", True):
            raise ModelFormatError(
                f"{directory} holds a {config.get('model_type')} model; kgqa's runtimes run BART models with the "
                "output layer tied to the token embeddings"
            )
        d_model = int(config["d_model"])
        return cls(
            d_model=d_model,
            decoder_layers=int(config["decoder_layers"]),
            decoder_heads=int(config["decoder_attention_heads"]),
            # BART's defaults where a checkpoint leaves them out (as transformers' BartConfig has them)
            start_token_id=int(_given(config, "decoder_start_token_id", 2)),
            pad_token_id=int(_given(config, "pad_token_id", 1)),
            embed_scale=math.sqrt(d_model) if config.get("scale_embedding", False) else 1.0,
            target_order=config.get("kgqa_target_order", NAME_RELATION_MEANING),
        )


@dataclass
class OutputLayer:
    """The tied token embeddings (vocabulary × d_model) and the output bias, float32: the decoder's input rows and
    its output layer."""

    weight: np.ndarray
    bias: np.ndarray

    @classmethod
    def read(cls, directory: str | Path) -> OutputLayer:
        from safetensors import safe_open

        path = Path(directory) / WEIGHTS_FILE
        if not path.is_file():
            raise ModelFormatError(f"{directory} has no {WEIGHTS_FILE}; train a model with `kgqa train`")
        with safe_open(str(path), framework="numpy") as weights:
            weight = weights.get_tensor(EMBEDDING_KEY).astype(np.float32)
            names = set(weights.keys())
            bias = weights.get_tensor(BIAS_KEY)[0].astype(np.float32) if BIAS_KEY in names else None
        return cls(weight, bias if bias is not None else np.zeros(len(weight), dtype=np.float32))

    def embed(self, ids: np.ndarray, scale: float) -> np.ndarray:
        """The scaled token embeddings of ``ids`` (any shape), as BART's ``embed_tokens`` gives them."""
        return self.weight[ids] * np.float32(scale)

    def extended(self, tokenizer: QuestionTokenizer, alphabet: str | set[str] | None) -> tuple[OutputLayer, list[str]]:
        """This layer with a row for each of ``alphabet``'s characters the tokenizer lacks (``kgqa.model.vocabulary``),
        and those characters."""
        from kgqa.model.vocabulary import extend_output

        weight, bias, added = extend_output(self.weight, self.bias, tokenizer, alphabet)
        return OutputLayer(weight, bias), added


def _given(config: dict, key: str, default: int) -> int:
    value = config.get(key)
    return default if value is None else value
