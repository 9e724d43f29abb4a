"""The ONNX runtime against the torch reference: export → load → answer, the same candidates on the test KB, a stale,
missing or corrupt export refused with the command that mends it, and no torch or transformers where kgqa answers."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.modeling import load_checkpoint, save_checkpoint
from kgqa.model.runtime import ModelFormatError, load_runtime
from kgqa.model.runtime.export import export_model
from kgqa.model.runtime.graphs import MANIFEST_FILE
from kgqa.trie import KBIndex
from tests.conftest import TINY_QA

REPO = Path(__file__).resolve().parents[3]


def test_both_runtimes_give_the_same_candidates_on_the_test_kb(tiny_model: Path, tiny_index: KBIndex) -> None:
    """The trained tiny model (exported by training): each question's top 3, the same paths in the same order, their
    scores equal to 1e-4."""
    questions = [q for q, _ in TINY_QA]
    options = DecodeOptions(num_beams=3, use_ranker=False)
    answers = {
        runtime: QuestionAnswerer.load(tiny_model, tiny_index, options, runtime=runtime).answer(questions, top_k=3)
        for runtime in ("torch", "onnx")
    }
    for reference, exported in zip(answers["torch"], answers["onnx"], strict=True):
        assert [c.as_answer() for c in exported] == [c.as_answer() for c in reference]
        assert [c.log_probability for c in exported] == pytest.approx([c.log_probability for c in reference], abs=1e-4)
    assert sum(map(len, answers["onnx"])) >= len(questions)


def _copy(model: Path, to: Path) -> Path:
    shutil.copytree(model, to, ignore=shutil.ignore_patterns("last"))
    return to


def test_a_stale_export_is_refused_with_the_command_that_redoes_it(tiny_model: Path, tmp_path: Path) -> None:
    """Weights changed after the export (a model trained again): the graphs are not what the weights say."""
    copy = _copy(tiny_model, tmp_path / "model")
    model, tokenizer = load_checkpoint(tiny_model)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(1.5)
    save_checkpoint(model, tokenizer, tmp_path / "other", {})
    shutil.copy(tmp_path / "other" / "model.safetensors", copy / "model.safetensors")
    with pytest.raises(ModelFormatError, match=f"exported from other weights.*kgqa model export --model {copy}"):
        load_runtime(copy, "onnx")
    load_runtime(copy, "torch")  # the reference still loads: it reads the weights themselves


def test_a_missing_or_corrupt_export_is_refused(tiny_model: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_model, tmp_path / "model")
    (copy / "decoder.int8.onnx").write_bytes(b"not a graph")
    load_runtime(copy, "onnx")  # the float32 graphs are whole
    with pytest.raises(ModelFormatError, match=r"decoder\.int8\.onnx cannot be loaded.*kgqa model export"):
        load_runtime(copy, "onnx", quantize=True)
    (copy / MANIFEST_FILE).unlink()
    with pytest.raises(ModelFormatError, match=r"no ONNX export.*kgqa model export.*--runtime torch"):
        load_runtime(copy, "onnx")


def test_the_manifest_records_the_weights_and_the_export(tiny_model: Path) -> None:
    manifest = json.loads((tiny_model / MANIFEST_FILE).read_text(encoding="utf-8"))
    assert len(manifest["weights_sha256"]) == 64
    assert set(manifest["graphs"]) == {"encoder.onnx", "decoder.onnx", "encoder.int8.onnx", "decoder.int8.onnx"}
    for part in ("encoder", "decoder"):  # the export checks itself against torch on sample calls
        assert manifest["sample_calls"][part]["float32_max_abs_difference"] < 1e-4
    assert str(tiny_model) not in json.dumps(manifest)  # no machine paths in a committed file


NO_TORCH = """
import sys
{body}
loaded = sorted(name for name in ("torch", "transformers") if name in sys.modules)
assert not loaded, f"imported {{loaded}}"
"""


@pytest.mark.parametrize(
    "body",
    [
        "import kgqa.service.app",
        "from kgqa.cli import main\n"
        "assert main(['ask', '--model', {model!r}, '--index', {index!r}, '守望星光的歌手是谁？']) == 0",
    ],
    ids=["import the service", "kgqa ask"],
)
def test_answering_imports_neither_torch_nor_transformers(tiny_model: Path, tiny_index: KBIndex, body: str) -> None:
    code = NO_TORCH.format(body=body.format(model=str(tiny_model), index=str(tiny_index.directory)))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]


def test_an_export_without_int8_leaves_no_stale_int8_graphs(tiny_model: Path, tmp_path: Path) -> None:
    copy = _copy(tiny_model, tmp_path / "model")
    manifest = export_model(copy, quantize=False)
    assert set(manifest["graphs"]) == {"encoder.onnx", "decoder.onnx"}
    assert not (copy / "encoder.int8.onnx").exists()
    load_runtime(copy, "onnx")
    with pytest.raises(ModelFormatError, match=r"no encoder\.int8\.onnx of this export.*without --no-int8"):
        load_runtime(copy, "onnx", quantize=True)
