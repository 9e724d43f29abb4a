"""What runs the model: ONNX Runtime wherever kgqa answers, torch (transformers' modules) as the reference and for
training. Both sit behind one small interface (``ModelLayers``), numpy arrays in and out; the search, the scoring and
the output layer (``spec.OutputLayer``) are written once above it.

``load_runtime`` reads a model directory for either: the tokenizer, the shape, the tied embeddings, and the layers
(the exported graphs of ``kgqa model export``, or the checkpoint loaded by transformers). Nothing here imports torch
or transformers unless the torch runtime is asked for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, get_args

import numpy as np

from kgqa.model.options import Runtime
from kgqa.model.runtime.spec import ModelFormatError, ModelSpec, OutputLayer

if TYPE_CHECKING:
    from kgqa.model.tokenizer import QuestionTokenizer

RUNTIMES: tuple[str, ...] = get_args(Runtime)
DEFAULT_RUNTIME = "onnx"

__all__ = ["DEFAULT_RUNTIME", "RUNTIMES", "ModelFormatError", "ModelLayers", "ModelRuntime", "load_runtime"]


class ModelLayers(Protocol):
    """The model's layers on a runtime."""

    name: str

    def encode(self, embeds: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        """The questions' scaled token embeddings (questions × length × d_model) and mask → each decoder layer's
        cross-attention keys, then values (questions × heads × length × head size)."""
        ...

    def decode(
        self,
        embeds: np.ndarray,
        positions: np.ndarray,
        self_mask: np.ndarray,
        cross_mask: np.ndarray,
        caches: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        """Fed tokens' scaled embeddings (rows × width × d_model) at ``positions`` (rows × width), additive masks
        (rows × 1 × width × (slots + width), rows × 1 × width × length), then each layer's past keys, past values,
        cross keys, cross values → the hidden states after every fed token, then each layer's keys and values, past
        and new (rows × heads × (slots + width) × head size)."""
        ...

    def set_threads(self, threads: int) -> None:
        """Threads for this process's calls (a worker's share of the cores)."""
        ...


@dataclass
class ModelRuntime:
    """A model ready to answer: tokenizer, shape, output layer and layers (and, on torch, the transformers model
    itself, for the reference beam search)."""

    spec: ModelSpec
    tokenizer: QuestionTokenizer
    output: OutputLayer
    layers: ModelLayers
    parameters: int  # as trained: before an index's new characters, before int8
    quantized: bool
    added_characters: list[str]
    model: Any = None  # transformers' model on the torch runtime, else None

    @property
    def name(self) -> str:
        return self.layers.name


def load_runtime(
    directory: str | Path,
    runtime: str = DEFAULT_RUNTIME,
    quantize: bool = False,
    threads: int | None = None,
    alphabet: str | set[str] | None = None,
) -> ModelRuntime:
    """The model of ``directory`` on ``runtime`` ("onnx" or "torch"); ``quantize``: int8 layers; ``alphabet``: the
    index's characters, those the tokenizer lacks added (``kgqa.model.vocabulary``). ModelFormatError (with the
    command that mends it) for a directory the runtime cannot run, an export missing or stale among them."""
    from kgqa.model.tokenizer import QuestionTokenizer

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    directory = Path(directory)
    spec = ModelSpec.read(directory)
    tokenizer = QuestionTokenizer.load(directory)
    if runtime == "torch":
        try:
            from kgqa.model.runtime.torch_layers import load_torch
        except ImportError as exc:  # an install for answering alone (make run, the Docker image)
            raise ModelFormatError(
                f"--runtime torch needs torch and transformers ({exc}); install the [train] extra "
                "(pip install -e '.[train]', or make setup-dev), or answer with --runtime onnx"
            ) from exc
        return load_torch(directory, spec, tokenizer, quantize, threads, alphabet)
    from kgqa.model.runtime.onnx_layers import OnnxLayers

    layers = OnnxLayers(directory, quantize, threads)
    output, added = OutputLayer.read(directory).extended(tokenizer, alphabet)
    return ModelRuntime(spec, tokenizer, output, layers, layers.parameters, quantize, added)
