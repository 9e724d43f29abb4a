"""``kgqa model export``: the model's layers traced from transformers' modules into two ONNX graphs (float32, and int8
by ONNX Runtime's dynamic quantizer), checked against torch on sample calls, with a manifest (``onnx.json``) that
records the weights they came from. Needs torch and transformers (the [train] extra); answering then needs neither.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kgqa.data.report import sha256_file, write_json
from kgqa.model.runtime.graphs import GRAPH_FILES, MANIFEST_FILE, MANIFEST_FORMAT
from kgqa.model.runtime.spec import WEIGHTS_FILE, ModelSpec
from kgqa.model.runtime.torch_layers import DecoderGraph, EncoderGraph

OPSET = 17
# sample questions of unlike length: the trace sees padding (a mask it cannot leave out) and two questions
SAMPLE_QUESTIONS = ("你知道守望星光是哪家公司出品的吗？", "龙晶的别名")


def _names(layers: int) -> dict[str, list[str]]:
    def per_layer(stem: str) -> list[str]:
        return [f"{stem}_{i}" for i in range(layers)]

    return {
        "cross": per_layer("cross_key") + per_layer("cross_value"),
        "past": per_layer("past_key") + per_layer("past_value"),
        "present": per_layer("key") + per_layer("value"),
    }


def _samples(directory: Path, spec: ModelSpec, model: Any) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
    """An encoder call on the sample questions and a decoder call of 3 rows × 4 tokens after 2 cached slots."""
    from kgqa.model.tokenizer import QuestionTokenizer

    ids, mask = QuestionTokenizer.load(directory).batch(SAMPLE_QUESTIONS)
    embeds = model.get_input_embeddings()(torch.from_numpy(ids)).detach()
    encoder_inputs = (embeds, torch.from_numpy(mask))
    with torch.inference_mode():
        cross = EncoderGraph(model)(*encoder_inputs)
    rows, width, slots = 3, 4, 2
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, model.config.vocab_size, (rows, width), generator=generator)
    decoder_embeds = model.get_input_embeddings()(tokens).detach()
    positions = slots + torch.arange(width)[None].expand(rows, -1).contiguous()
    sees = torch.cat([torch.ones(width, slots, dtype=torch.bool), torch.tril(torch.ones(width, width)).bool()], 1)
    blocked = torch.finfo(torch.float32).min
    self_mask = torch.zeros((rows, 1, width, slots + width)).masked_fill(~sees, blocked)
    question_of = torch.tensor([0, 1, 1])
    cross_mask = torch.zeros((rows, 1, width, mask.shape[1])).masked_fill(
        ~torch.from_numpy(mask)[question_of].bool()[:, None, None, :], blocked
    )
    shape = (rows, spec.decoder_heads, slots, spec.head_dim)
    past = [torch.randn(shape, generator=generator) for _ in range(2 * spec.decoder_layers)]
    decoder_inputs = (decoder_embeds, positions, self_mask, cross_mask, *past, *[c[question_of] for c in cross])
    return encoder_inputs, decoder_inputs


def _largest_difference(path: Path, module: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    got = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    with torch.inference_mode():
        expected = module(*inputs)
    return max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected, strict=True))


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The tracer's warnings (branches on shapes it records as constants: the trace is checked against torch on
    other shapes instead) and the quantizer's advice, out of the way of what the export prints."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


def export_model(directory: str | Path, quantize: bool = True) -> dict[str, Any]:
    """Write the graphs and ``onnx.json`` into ``directory``; returns the manifest. The files are written beside and
    renamed into place, the manifest last: a reader sees the old export or the new one."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from kgqa.model.modeling import load_checkpoint

    directory = Path(directory)
    spec = ModelSpec.read(directory)
    model, _ = load_checkpoint(directory)
    model = model.float().eval()
    for parameter in model.parameters():  # the exporter takes weights as constants only without autograd
        parameter.requires_grad_(False)
    parameters = model.num_parameters()
    graphs = _graphs(directory, spec, model)
    report: dict[str, Any] = {}
    written: list[tuple[Path, Path]] = []
    with tempfile.TemporaryDirectory(prefix=".export-", dir=directory) as work, _quiet():
        for part, (module, inputs, input_names, output_names, axes) in graphs.items():
            float_path = Path(work) / GRAPH_FILES[False][part]
            torch.onnx.export(
                module,
                inputs,
                str(float_path),
                dynamo=False,
                input_names=input_names,
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=OPSET,
            )
            report[part] = {"float32_max_abs_difference": _largest_difference(float_path, module, inputs)}
            written.append((float_path, directory / GRAPH_FILES[False][part]))
            if quantize:
                int8_path = Path(work) / GRAPH_FILES[True][part]
                quantize_dynamic(str(float_path), str(int8_path), weight_type=QuantType.QInt8)
                report[part]["int8_max_abs_difference"] = _largest_difference(int8_path, module, inputs)
                written.append((int8_path, directory / GRAPH_FILES[True][part]))
        for source, target in written:
            os.replace(source, target)
    if not quantize:  # int8 graphs of an earlier export would not be these weights'
        for name in GRAPH_FILES[True].values():
            (directory / name).unlink(missing_ok=True)
    manifest = _manifest(directory, parameters, quantize, [target for _, target in written], report)
    write_json(directory / MANIFEST_FILE, manifest, announce=False)
    return manifest


def _manifest(
    directory: Path, parameters: int, quantize: bool, graphs: list[Path], report: dict[str, Any]
) -> dict[str, Any]:
    import onnxruntime
    import transformers

    return {
        "format": MANIFEST_FORMAT,
        "weights": WEIGHTS_FILE,
        "weights_sha256": sha256_file(directory / WEIGHTS_FILE),
        "parameters": parameters,
        "opset": OPSET,
        "int8": quantize,
        "int8_settings": "onnxruntime.quantization.quantize_dynamic, weights QInt8, activations per call"
        if quantize
        else None,
        "graphs": {path.name: sha256_file(path) for path in graphs},
        "sample_calls": report,
        "exported_with": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "onnxruntime": onnxruntime.__version__,
        },
    }


def _graphs(directory: Path, spec: ModelSpec, model: Any) -> dict[str, tuple]:
    """Per graph: the module, its sample inputs, input and output names, and which axes vary."""
    names = _names(spec.decoder_layers)
    encoder_inputs, decoder_inputs = _samples(directory, spec, model)
    return {
        "encoder": (
            EncoderGraph(model).eval(),
            encoder_inputs,
            ["embeds", "attention_mask"],
            names["cross"],
            {"embeds": {0: "questions", 1: "length"}, "attention_mask": {0: "questions", 1: "length"}}
            | {n: {0: "questions", 2: "length"} for n in names["cross"]},
        ),
        "decoder": (
            DecoderGraph(model).eval(),
            decoder_inputs,
            ["embeds", "positions", "self_mask", "cross_mask", *names["past"], *names["cross"]],
            ["hidden", *names["present"]],
            {
                "embeds": {0: "rows", 1: "width"},
                "positions": {0: "rows", 1: "width"},
                "self_mask": {0: "rows", 2: "width", 3: "seen"},
                "cross_mask": {0: "rows", 2: "width", 3: "length"},
                "hidden": {0: "rows", 1: "width"},
            }
            | {n: {0: "rows", 2: "slots"} for n in names["past"]}
            | {n: {0: "rows", 2: "length"} for n in names["cross"]}
            | {n: {0: "rows", 2: "seen"} for n in names["present"]},
        ),
    }
