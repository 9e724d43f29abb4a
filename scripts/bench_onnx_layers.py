"""transformers' BART layers run eagerly by torch against the same layers exported to ONNX Runtime: what a decoder
call costs in each, on the calls a question answered alone makes, and one the size a batch of 32 makes.

An experiment for a decision, not the product: the service runs the layers in torch. Three calls, float32, each
exported from the model's own modules (`torch.onnx.export`, its TorchScript exporter) and checked against them:
- the encoder on a dev question alone, with each decoder layer's cross-attention keys and values
  (`IncrementalDecoder.encode`);
- a decoder call on one row of 15 tokens with nothing cached (a lone question's tree pass feeds ~15);
- a decoder call on 10 rows of 20 tokens (about what a tree pass of a batch of 32 feeds).
The decoder's inputs are `IncrementalDecoder.feed`'s once its masks are built (a chain: each token sees those before
it, which costs what a tree does); the masks' building and everything after the layers are left out of both.
Medians of alternated calls. Prints a table and writes JSON. Needs the ``onnx`` extra:

    .venv/bin/pip install -e '.[onnx]'
    .venv/bin/python scripts/bench_onnx_layers.py --json bench/onnx-layers.json
"""

from __future__ import annotations

import argparse
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from kgqa.data import read_questions
from kgqa.data.locate import find_data_dir
from kgqa.data.report import markdown_table, write_json
from kgqa.model.decode.incremental import IncrementalDecoder
from kgqa.model.modeling import load_checkpoint


class EncoderCall(torch.nn.Module):
    """``IncrementalDecoder.encode``: the encoder's output and each decoder layer's cross-attention keys, values."""

    def __init__(self, decoder: IncrementalDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        encoded = IncrementalDecoder.encode.__wrapped__(self.decoder, input_ids, attention_mask)
        return (encoded.hidden, *encoded.cross_keys, *encoded.cross_values)


class DecoderCall(torch.nn.Module):
    """``IncrementalDecoder.run_layers`` with nothing cached: the hidden states and the new keys and values."""

    def __init__(self, decoder: IncrementalDecoder) -> None:
        super().__init__()
        self.decoder = decoder

    def forward(
        self,
        ids: torch.Tensor,
        positions: torch.Tensor,
        self_mask: torch.Tensor,
        cross_mask: torch.Tensor,
        encoder_hidden: torch.Tensor,
        *cross: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        layers = len(cross) // 2
        keys, values = cross[:layers], cross[layers:]
        empty = keys[0][:, :, :0, :]
        hidden, own_keys, own_values = self.decoder.run_layers(
            ids,
            positions,
            self_mask,
            cross_mask,
            encoder_hidden,
            [(empty, empty)] * layers,
            list(zip(keys, values, strict=True)),
        )
        return (hidden, *own_keys, *own_values)


def decoder_inputs(
    rows: int, width: int, encoder_hidden: torch.Tensor, cross: list[torch.Tensor], vocabulary: int
) -> tuple[torch.Tensor, ...]:
    """A call's inputs: ``rows`` chains of ``width`` tokens, each row reading the question's keys and values."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocabulary, (rows, width), generator=generator)
    positions = torch.arange(width)[None].expand(rows, -1).contiguous()
    sees = torch.tril(torch.ones(width, width, dtype=torch.bool))
    blocked = torch.finfo(torch.float32).min
    self_mask = torch.zeros((rows, 1, width, width)).masked_fill(~sees, blocked)
    cross_mask = torch.zeros((rows, 1, width, cross[0].shape[2]))
    per_row = [t.expand(rows, *t.shape[1:]).contiguous() for t in (encoder_hidden, *cross)]
    return (ids, positions, self_mask, cross_mask, *per_row)


def median_ms(call: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def compare(
    name: str,
    module: torch.nn.Module,
    inputs: tuple[torch.Tensor, ...],
    names: list[str],
    axes: dict[str, dict[int, str]],
    work: Path,
) -> dict[str, float | str]:
    """``module`` on ``inputs`` in torch and, exported into ``work``, in ONNX Runtime: times and largest difference."""
    import onnxruntime

    # the exporter puts a module back in the mode it found it in, submodules too: a new one trains (dropout on)
    module.eval()
    path = work / f"{re.sub(r'[^a-z0-9]+', '-', name).strip('-')}.onnx"
    torch.onnx.export(module, inputs, str(path), dynamo=False, input_names=names, dynamic_axes=axes, opset_version=17)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    used = {i.name for i in session.get_inputs()}  # inputs the graph never reads are dropped by the export
    feed = {n: t.numpy() for n, t in zip(names, inputs, strict=True) if n in used}
    with torch.inference_mode():
        expected = module(*inputs)
        got = session.run(None, feed)
        difference = max(float((torch.from_numpy(g) - e).abs().max()) for g, e in zip(got, expected, strict=True))
        for _ in range(20):  # warm both
            module(*inputs)
            session.run(None, feed)
        eager, exported = [], []
        for _ in range(5):  # alternated rounds: the machine's drift falls on both
            eager.append(median_ms(lambda: module(*inputs), 60))
            exported.append(median_ms(lambda: session.run(None, feed), 60))
    torch_ms, onnx_ms = statistics.median(eager), statistics.median(exported)
    return {
        "call": name,
        "torch_ms": round(torch_ms, 3),
        "onnxruntime_ms": round(onnx_ms, 3),
        "ratio": round(onnx_ms / torch_ms, 2),
        "max_abs_difference": difference,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    model, tokenizer = load_checkpoint(args.model)
    model = model.float().eval()
    for parameter in model.parameters():  # the exporter takes weights as constants only without autograd
        parameter.requires_grad_(False)
    decoder = IncrementalDecoder(model)
    question = read_questions(find_data_dir() / "dev.json")[0].question
    encoded = tokenizer([question], return_tensors="pt")
    encoder_inputs = (encoded["input_ids"], encoded["attention_mask"])
    with torch.inference_mode():
        encoder_hidden, *cross = EncoderCall(decoder)(*encoder_inputs)
    layers = len(cross) // 2
    cross_names = [f"cross_key_{i}" for i in range(layers)] + [f"cross_value_{i}" for i in range(layers)]
    decoder_names = ["ids", "positions", "self_mask", "cross_mask", "encoder_hidden", *cross_names]
    decoder_axes = {
        "ids": {0: "rows", 1: "width"},
        "positions": {0: "rows", 1: "width"},
        "self_mask": {0: "rows", 2: "width", 3: "width"},
        "cross_mask": {0: "rows", 2: "width", 3: "length"},
        "encoder_hidden": {0: "rows", 1: "length"},
    } | {n: {0: "rows", 2: "length"} for n in cross_names}
    vocabulary = model.config.vocab_size
    rows = []
    with tempfile.TemporaryDirectory(prefix="kgqa-onnx-") as work:
        work_dir = Path(work)
        rows.append(
            compare(
                f"encoder, a question alone ({encoded['input_ids'].shape[1]} tokens)",
                EncoderCall(decoder),
                encoder_inputs,
                ["input_ids", "attention_mask"],
                {"input_ids": {0: "rows", 1: "length"}, "attention_mask": {0: "rows", 1: "length"}},
                work_dir,
            )
        )
        for count, width in ((1, 15), (10, 20)):
            rows.append(
                compare(
                    f"decoder, {count} × {width} tokens",
                    DecoderCall(decoder),
                    decoder_inputs(count, width, encoder_hidden, cross, vocabulary),
                    decoder_names,
                    decoder_axes,
                    work_dir,
                )
            )
    print(f"\nfloat32, {torch.get_num_threads()} threads each; medians of 5 alternated rounds of 60 calls\n")
    print(
        markdown_table(
            ["call", "torch (ms)", "ONNX Runtime (ms)", "× torch", "max abs difference"],
            [
                [r["call"], r["torch_ms"], r["onnxruntime_ms"], r["ratio"], f"{r['max_abs_difference']:.1e}"]
                for r in rows
            ],
        )
    )
    write_json(args.json, {"threads": torch.get_num_threads(), "calls": rows})


if __name__ == "__main__":
    main()
