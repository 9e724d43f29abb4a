"""The encoder-decoder: a BART built from a config (trained from scratch) or any local seq2seq checkpoint.

Checkpoints are transformers directories (``config.json``, ``model.safetensors``, tokenizer files) written by
``save_pretrained``, plus ``kgqa.json`` with how the model was trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForSeq2SeqLM,
    BartConfig,
    BartForConditionalGeneration,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from kgqa.model.checkpoint import (  # noqa: F401 - the record's helpers, where training imports them
    TRAINING_INFO_FILE,
    CheckpointError,
    read_training_info,
    write_training_info,
)
from kgqa.model.tokenizer import SEP_TOKEN, load_tokenizer
from kgqa.trie.keys import NAME_RELATION_MEANING

# Sizes by measurement on dev (docs/evaluation.md, "Model size"): "small" is the default; "tiny" is for tests.
MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "heads": 2, "ffn": 64},
    "small": {"d_model": 256, "encoder_layers": 3, "decoder_layers": 3, "heads": 4, "ffn": 1024},
    "base": {"d_model": 384, "encoder_layers": 4, "decoder_layers": 4, "heads": 6, "ffn": 1536},
}
MAX_POSITIONS = 256


def build_model(tokenizer: PreTrainedTokenizerBase, size: str = "small", dropout: float = 0.1) -> PreTrainedModel:
    """A randomly initialised BART sized by ``MODEL_SIZES[size]`` over ``tokenizer``'s vocabulary."""
    dims = MODEL_SIZES[size]
    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=dims["d_model"],
        encoder_layers=dims["encoder_layers"],
        decoder_layers=dims["decoder_layers"],
        encoder_attention_heads=dims["heads"],
        decoder_attention_heads=dims["heads"],
        encoder_ffn_dim=dims["ffn"],
        decoder_ffn_dim=dims["ffn"],
        max_position_embeddings=MAX_POSITIONS,
        dropout=dropout,
        attention_dropout=0.0,
        activation_dropout=0.0,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.bos_token_id,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        scale_embedding=True,
    )
    return BartForConditionalGeneration(config)


def load_checkpoint(directory: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Model and tokenizer from a local checkpoint directory; a separator token is added if the tokenizer lacks one."""
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise CheckpointError(
            f"{directory} is not a model checkpoint (no config.json); train one with `kgqa train --out {directory}` "
            "or pass the directory of a local transformers seq2seq checkpoint"
        )
    try:
        tokenizer = load_tokenizer(directory)
        model = AutoModelForSeq2SeqLM.from_pretrained(str(directory), dtype=torch.float32)
    except (OSError, ValueError, KeyError) as exc:
        raise CheckpointError(f"cannot load the checkpoint at {directory}: {exc}") from exc
    if not model.config.is_encoder_decoder:
        raise CheckpointError(f"{directory} holds a {model.config.model_type} model, not an encoder-decoder")
    if tokenizer.sep_token_id is None:
        tokenizer.add_special_tokens({"sep_token": SEP_TOKEN})
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    return model, tokenizer


def save_checkpoint(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, directory: str | Path, info: dict[str, Any]
) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(directory), safe_serialization=True)
    tokenizer.save_pretrained(str(directory))
    write_training_info(directory, info)


def target_order(model: PreTrainedModel) -> str:
    """The order the model was trained to spell paths in (recorded in its config by ``kgqa train``)."""
    return getattr(model.config, "kgqa_target_order", NAME_RELATION_MEANING)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def quantize_for_cpu(model: PreTrainedModel) -> PreTrainedModel:
    """int8 weights for every Linear layer (dynamic quantization): on a 2-core CPU decoding runs ~1.4-2× faster.

    For inference on the CPU only; dev accuracy with and without is in docs/evaluation.md. torch marks this
    eager-mode API deprecated in favour of torchao (not a dependency here); it works in the pinned torch.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return torch.ao.quantization.quantize_dynamic(model.cpu(), {torch.nn.Linear}, dtype=torch.qint8)
