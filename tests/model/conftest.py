"""The model tests use the tiny KB, questions and model of tests/conftest.py; a random tiny model is also exported,
so the decoder's tests run on both runtimes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from kgqa.model.decode.incremental import IncrementalDecoder
from kgqa.model.modeling import build_model, save_checkpoint
from kgqa.model.runtime import RUNTIMES, load_runtime
from kgqa.model.runtime.export import export_model
from kgqa.model.tokenizer import build_char_tokenizer

TINY_TEXTS = ["守望星光出品公司歌手类型的是什么"]


@pytest.fixture(scope="session")
def random_tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny model (seeded), saved and exported: both runtimes run the same weights."""
    tokenizer = build_char_tokenizer(TINY_TEXTS)
    torch.manual_seed(0)
    model = build_model(tokenizer, "tiny", dropout=0.0).eval()
    directory = tmp_path_factory.mktemp("random-tiny") / "model"
    save_checkpoint(model, tokenizer, directory, {})
    export_model(directory)
    return directory


@pytest.fixture(scope="session", params=RUNTIMES)
def decoder(request: pytest.FixtureRequest, random_tiny_model_dir: Path) -> IncrementalDecoder:
    """The random tiny model's incremental decoder on each runtime."""
    return IncrementalDecoder(load_runtime(random_tiny_model_dir, request.param))
