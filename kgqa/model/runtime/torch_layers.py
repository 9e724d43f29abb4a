"""The model's layers in torch, from transformers' BART modules, fed as the runtime interface feeds them: numpy in,
numpy out. The same two modules are what ``kgqa model export`` traces into ONNX graphs, so the reference runtime and
the exported one compute one function.

- ``EncoderGraph``: the question's scaled token embeddings and mask → each decoder layer's cross-attention keys and
  values (the encoder's layers called as ``BartEncoder.forward`` calls them, without its wrappers).
- ``DecoderGraph``: the fed tokens' scaled embeddings, their positions and masks, each layer's cached keys and values
  and the question's cross-attention ones → the hidden states after every fed token and each layer's keys and values,
  past and new.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import DynamicCache, EncoderDecoderCache, PreTrainedModel
from transformers.masking_utils import create_bidirectional_mask

from kgqa.model.runtime import ModelRuntime
from kgqa.model.runtime.spec import ModelSpec, OutputLayer
from kgqa.model.tokenizer import QuestionTokenizer


class EncoderGraph(torch.nn.Module):
    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.encoder = model.get_encoder()
        self.cross = [layer.encoder_attn for layer in model.get_decoder().layers]

    def forward(self, embeds: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoder = self.encoder
        hidden = encoder.layernorm_embedding(embeds + encoder.embed_positions(embeds[:, :, -1]).to(embeds.device))
        mask = create_bidirectional_mask(config=encoder.config, inputs_embeds=embeds, attention_mask=attention_mask)
        for layer in encoder.layers:
            hidden = layer(hidden, mask)
        keys, values = [], []
        for attention in self.cross:
            shape = (*hidden.shape[:-1], -1, attention.head_dim)
            keys.append(attention.k_proj(hidden).view(shape).transpose(1, 2))
            values.append(attention.v_proj(hidden).view(shape).transpose(1, 2))
        return (*keys, *values)


class DecoderGraph(torch.nn.Module):
    def __init__(self, model: PreTrainedModel) -> None:
        super().__init__()
        self.decoder = model.get_decoder()

    def forward(
        self,
        embeds: torch.Tensor,
        positions: torch.Tensor,
        self_mask: torch.Tensor,
        cross_mask: torch.Tensor,
        *caches: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        """``caches``: each layer's past keys, then past values, then cross keys, then cross values."""
        layers = len(self.decoder.layers)
        past_keys, past_values = caches[:layers], caches[layers : 2 * layers]
        cross_keys, cross_values = caches[2 * layers : 3 * layers], caches[3 * layers :]
        cache = EncoderDecoderCache(
            DynamicCache(list(zip(past_keys, past_values, strict=True))),
            DynamicCache(list(zip(cross_keys, cross_values, strict=True))),
        )
        decoder = self.decoder
        offset = getattr(decoder.embed_positions, "offset", 0)  # BART's learned positions start at 2
        hidden = embeds + torch.nn.functional.embedding(positions + offset, decoder.embed_positions.weight)
        hidden = decoder.layernorm_embedding(hidden)
        for layer in decoder.layers:
            # the encoder's output is required, not read: its keys and values are cached (any tensor will do)
            hidden = layer(
                hidden,
                self_mask,
                cross_keys[0],
                encoder_attention_mask=cross_mask,
                past_key_values=cache,
                use_cache=True,
            )
        own = cache.self_attention_cache.layers
        return (hidden, *[layer.keys for layer in own], *[layer.values for layer in own])


class TorchLayers:
    """The reference runtime: the model's modules run eagerly by torch (float32, or int8 Linear layers)."""

    name = "torch"

    def __init__(self, model: PreTrainedModel, threads: int | None = None) -> None:
        self.model = model.eval()
        self.encoder_graph = EncoderGraph(model).eval()
        self.decoder_graph = DecoderGraph(model).eval()
        self.device = model.get_input_embeddings().weight.device  # a model in training may sit on a GPU
        if threads:
            torch.set_num_threads(threads)

    def set_threads(self, threads: int) -> None:
        torch.set_num_threads(threads)

    @torch.inference_mode()
    def encode(self, embeds: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        out = self.encoder_graph(*(self._tensor(a) for a in (embeds, attention_mask)))
        return [t.cpu().numpy() for t in out]

    @torch.inference_mode()
    def decode(
        self,
        embeds: np.ndarray,
        positions: np.ndarray,
        self_mask: np.ndarray,
        cross_mask: np.ndarray,
        caches: Sequence[np.ndarray],
    ) -> list[np.ndarray]:
        inputs = [self._tensor(a) for a in (embeds, positions, self_mask, cross_mask, *caches)]
        return [t.cpu().numpy() for t in self.decoder_graph(*inputs)]

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        # a read-only array (a broadcast, a cached row) is copied: torch tensors are writable
        return torch.from_numpy(array if array.flags.writeable else array.copy()).to(self.device)


def output_layer_of(model: PreTrainedModel) -> OutputLayer:
    """The model's tied embeddings and output bias (an int8 model quantizes its Linear layers, never these)."""
    weight = model.get_input_embeddings().weight.detach().float().cpu().numpy()
    bias = getattr(model, "final_logits_bias", None)
    bias = bias[0].detach().float().cpu().numpy() if bias is not None else np.zeros(len(weight), np.float32)
    return OutputLayer(weight.copy(), bias.copy())


def load_torch(
    directory: Path,
    spec: ModelSpec,
    tokenizer: QuestionTokenizer,
    quantize: bool,
    threads: int | None,
    alphabet: str | set[str] | None,
) -> ModelRuntime:
    """The checkpoint loaded by transformers, on the CPU: the reference runtime (``load_runtime``)."""
    from kgqa.model.modeling import load_checkpoint, quantize_for_cpu

    model, _ = load_checkpoint(directory)
    parameters = model.num_parameters()  # as trained: before rows are added, before int8 packs the weights
    output, added = output_layer_of(model).extended(tokenizer, alphabet)
    if added:  # the same rows in the model, for transformers' own generate (the reference beam search)
        with torch.no_grad():
            model.resize_token_embeddings(len(output.weight), mean_resizing=False)
            model.get_input_embeddings().weight.copy_(torch.from_numpy(output.weight))
            if isinstance(getattr(model, "final_logits_bias", None), torch.Tensor):
                model.final_logits_bias.copy_(torch.from_numpy(output.bias)[None])
    model = quantize_for_cpu(model) if quantize else model.cpu()
    return ModelRuntime(spec, tokenizer, output, TorchLayers(model, threads), parameters, quantize, added, model)


def torch_runtime(model: PreTrainedModel, tokenizer: Any, alphabet: str | set[str] | None = None) -> ModelRuntime:
    """A model in memory (being trained, or built by a test) with its transformers tokenizer, as a runtime."""
    spec = ModelSpec.of_config(model.config.to_dict())
    question_tokenizer = QuestionTokenizer.from_transformers(tokenizer)
    output, added = output_layer_of(model).extended(question_tokenizer, alphabet)
    return ModelRuntime(
        spec, question_tokenizer, output, TorchLayers(model), model.num_parameters(), False, added, model
    )
