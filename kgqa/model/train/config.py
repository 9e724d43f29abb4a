"""How a model is trained: one dataclass, read by ``kgqa train``'s flags for their defaults (no torch import)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    train_file: str
    index_dir: str
    out_dir: str
    dev_file: str | None = None
    init: str | None = None  # a local seq2seq checkpoint to fine-tune instead of training from scratch
    size: str = "small"
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 1e-3
    warmup_steps: int = 300
    weight_decay: float = 0.01
    augment_ratio: float = 1.0  # synthetic questions per real one, drawn afresh each epoch
    seed: int = 0
    patience: int = 2  # epochs without a better dev EM_O before stopping
    max_minutes: float | None = 45.0  # no new epoch starts if the last one's length would overrun this
    max_steps: int | None = None  # stop after this many optimizer steps (tests, smoke runs)
    dev_limit: int | None = None  # evaluate on the first N dev questions only
    eval_beams: int = 1
    eval_batch_size: int = 128
