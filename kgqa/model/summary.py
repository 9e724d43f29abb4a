"""What a model directory is, in a few fields: architecture, size, how it was trained, its dev figures.

Read from the files ``kgqa train``, ``kgqa tune`` and ``kgqa ranker fit`` write (``config.json``, ``kgqa.json``,
``ranker.json``); the service's ``GET /v1/info`` and the model card report these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kgqa.model.checkpoint import read_training_info
from kgqa.model.rank.ranker import RANKER_INFO

# the training settings worth showing (the rest are paths and evaluation knobs)
_TRAINING_FIELDS = ("size", "train_file", "dev_file", "epochs", "batch_size", "learning_rate", "augment_ratio", "seed")


def model_summary(model_dir: Path) -> dict[str, Any]:
    """``{name, architecture, training, dev}`` of a model directory (fields absent where unknown)."""
    model_dir = Path(model_dir)
    config_file = model_dir / "config.json"
    config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else {}
    info = read_training_info(model_dir)
    log = info.get("log", [])
    settings = info.get("config", {})
    best = max((entry for entry in log if entry.get("best")), key=lambda e: e.get("epoch", 0), default=None)
    summary: dict[str, Any] = {
        "name": model_dir.name,
        "architecture": {
            key: config[key]
            for key in ("model_type", "d_model", "encoder_layers", "decoder_layers", "vocab_size")
            if key in config
        },
        "training": {key: settings[key] for key in _TRAINING_FIELDS if key in settings}
        | {
            "epochs_run": len(log),
            "minutes": log[-1].get("elapsed_minutes") if log else None,
            "stop_reason": info.get("stop_reason"),
        },
        "dev": {},
    }
    if best is not None:
        summary["dev"]["greedy_best_epoch"] = {"epoch": best.get("epoch"), **best.get("dev", {})}
    decoding = {k: v for k, v in info.get("decoding", {}).items() if k != "grid"}
    if decoding:
        summary["dev"]["decoding_tuned"] = decoding
    ranker_file = model_dir / RANKER_INFO
    if ranker_file.is_file():
        ranker = json.loads(ranker_file.read_text(encoding="utf-8"))
        folds = ranker.get("out_of_fold", {})
        summary["dev"]["ranker_out_of_fold"] = {
            "fit_on": ranker.get("fit_on"),
            "folds": folds.get("folds"),
            "rows": [row for row in folds.get("rows", []) if "without" not in row.get("ranking", "")],
        }
    return summary
