"""The exported graphs of a model directory and their manifest (``onnx.json``): which files, made from which weights,
with what settings. Read without torch; ``kgqa model export`` (``kgqa.model.runtime.export``) writes them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kgqa.data.report import sha256_file
from kgqa.model.runtime.spec import WEIGHTS_FILE, ModelFormatError

MANIFEST_FILE = "onnx.json"
MANIFEST_FORMAT = 1
GRAPH_FILES = {
    False: {"encoder": "encoder.onnx", "decoder": "decoder.onnx"},
    True: {"encoder": "encoder.int8.onnx", "decoder": "decoder.int8.onnx"},
}


def export_command(directory: str | Path) -> str:
    return f"kgqa model export --model {directory}"


def read_manifest(directory: str | Path, check_weights: bool = True) -> dict[str, Any]:
    """The manifest of ``directory``'s graphs; ModelFormatError, naming the command that redoes the export, when it
    is missing, of another format, or made from other weights than the directory's own."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    redo = f"run `{export_command(directory)}` (needs the [train] extra: torch and transformers)"
    if not path.is_file():
        raise ModelFormatError(
            f"{directory} has no ONNX export ({MANIFEST_FILE}); {redo}, or answer with --runtime torch"
        )
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{path} cannot be read ({exc}); {redo}") from exc
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelFormatError(
            f"{path} is of format {manifest.get('format')}, this kgqa reads {MANIFEST_FORMAT}; {redo}"
        )
    if check_weights:
        weights = directory / WEIGHTS_FILE
        if not weights.is_file() or sha256_file(weights) != manifest.get("weights_sha256"):
            raise ModelFormatError(
                f"the ONNX graphs in {directory} were exported from other weights than its {WEIGHTS_FILE} (a model "
                f"trained or changed since); {redo}"
            )
    return manifest


def graph_paths(directory: str | Path, quantized: bool) -> dict[str, Path]:
    """The encoder's and decoder's graph files (float32, or int8 with ``quantized``)."""
    return {part: Path(directory) / name for part, name in GRAPH_FILES[quantized].items()}
