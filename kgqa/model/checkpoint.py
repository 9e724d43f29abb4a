"""A model directory's own record, ``kgqa.json`` (how the model was trained and, once tuned, its decoding settings),
read and written without torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

TRAINING_INFO_FILE = "kgqa.json"


class CheckpointError(ValueError):
    """A model directory that is not a usable seq2seq checkpoint; the message says what to do."""


def write_training_info(directory: str | Path, info: dict[str, Any]) -> None:
    text = json.dumps(info, indent=2, ensure_ascii=False) + "\n"
    (Path(directory) / TRAINING_INFO_FILE).write_text(text, encoding="utf-8")


def read_training_info(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / TRAINING_INFO_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
