"""Training: real KgCLUE questions plus fresh KB-synthesised ones each epoch; dev EM_O each epoch; early stopping.

Seeded and resumable: every epoch writes ``OUT/last/`` (weights in float32, optimizer, schedule, RNG states, log),
and a run started with the same ``--out`` continues from there. The best epoch on dev is written to ``OUT/`` itself,
in float16 (half the size, same answers), with ``kgqa.json`` saying how it was trained and how it scored.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq, set_seed

from kgqa.data import Question, evaluate_answers, read_questions, split_head
from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.candidate import top_answers
from kgqa.model.modeling import (
    build_model,
    default_device,
    load_checkpoint,
    save_checkpoint,
    target_order,
    write_training_info,
)
from kgqa.model.runtime.export import export_model
from kgqa.model.targets import TargetCodec
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.model.train.augment import PathSampler, TemplateBank, synthesize
from kgqa.model.train.config import TrainConfig
from kgqa.model.vocabulary import extend_for_index
from kgqa.trie import KBIndex

MAX_QUESTION_TOKENS = 120
MAX_TARGET_TOKENS = 120
STATE_FILE = "trainer_state.pt"


Example = tuple[list[int], list[int]]  # (question ids, target ids)


def _real_examples(questions: Sequence[Question], index: KBIndex, codec: TargetCodec, tokenizer: Any) -> list[Example]:
    examples, off_kb = [], 0
    for q in questions:
        if q.answer is None:
            continue
        name, meaning = split_head(q.answer.subject)
        if not index.is_path(name, q.answer.predicate, meaning):
            off_kb += 1  # cannot be a constrained target
            continue
        target = codec.encode(name, q.answer.predicate, meaning)
        examples.append((tokenizer(q.question)["input_ids"][:MAX_QUESTION_TOKENS], target))
    if off_kb:
        print(f"{off_kb} training answers are not KB paths of this index: left out")
    return [e for e in examples if len(e[1]) <= MAX_TARGET_TOKENS and e[0]]


def _batches(examples: list[Example], batch_size: int, rng: random.Random) -> list[list[Example]]:
    """Shuffled batches of similar lengths (sorted within random chunks), so padding is small."""
    order = list(range(len(examples)))
    rng.shuffle(order)
    chunk = batch_size * 50
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start : start + chunk], key=lambda i: len(examples[i][0]) + len(examples[i][1]))
        batches += [[examples[i] for i in part[s : s + batch_size]] for s in range(0, len(part), batch_size)]
    rng.shuffle(batches)
    return batches


def _collate(batch: list[Example], collator: DataCollatorForSeq2Seq, device: torch.device) -> dict[str, torch.Tensor]:
    """Padded inputs, their attention mask, and labels padded with -100 (ignored by the loss)."""
    features = collator([{"input_ids": source, "labels": target} for source, target in batch])
    return {name: features[name].to(device) for name in ("input_ids", "attention_mask", "labels")}


def evaluate_model(
    answerer: QuestionAnswerer, questions: Sequence[Question], progress: bool = False
) -> dict[str, float]:
    predictions = answerer.answer([q.question for q in questions], top_k=1, progress=progress)
    return evaluate_answers(top_answers(predictions), [q.answer for q in questions])


@dataclass
class _Run:
    """What a training run carries from epoch to epoch (restored from ``OUT/last/`` when it resumes)."""

    config: TrainConfig
    model: Any
    tokenizer: Any
    index: KBIndex
    codec: TargetCodec
    collator: DataCollatorForSeq2Seq
    device: torch.device
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    real: list[Example]
    bank: TemplateBank
    sampler: PathSampler | None
    synthetic_count: int
    steps_per_epoch: int
    dev_questions: list[Question]
    log: list[dict[str, Any]] = field(default_factory=list)
    start_epoch: int = 0
    step: int = 0
    best: float = -1.0
    bad_epochs: int = 0
    elapsed: float = 0.0
    epoch_loss: float | None = None  # the last epoch's mean loss, unrounded (the score without dev questions)


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) into ``config.out_dir``; returns the training summary also written to ``kgqa.json``."""
    run = _set_up(config, progress)
    print(
        f"training {sum(p.numel() for p in run.model.parameters()) / 1e6:.1f}M parameters on {run.device}: "
        f"{len(run.real):,} real + {run.synthetic_count:,} synthetic questions an epoch ({len(run.bank):,} templates), "
        f"{run.steps_per_epoch} steps an epoch, up to {config.epochs} epochs"
    )
    stop_reason = "epochs done"
    for epoch in range(run.start_epoch, config.epochs):
        epoch_start = time.monotonic()
        record = _train_epoch(run, epoch, progress)
        _evaluate_and_save(run, epoch, record, epoch_start, progress)
        if config.max_steps and run.step >= config.max_steps:
            stop_reason = "max steps"
            break
        if run.dev_questions and run.bad_epochs >= config.patience:
            stop_reason = f"no better dev EM_O for {run.bad_epochs} epochs"
            break
        epoch_seconds = time.monotonic() - epoch_start
        if config.max_minutes is not None and run.elapsed + epoch_seconds > config.max_minutes * 60:
            stop_reason = f"another epoch would overrun {config.max_minutes} minutes"
            break
    best = run.best
    summary = {"config": recorded_config(config), "log": run.log, "best_dev_EM_O": best if run.dev_questions else None}
    summary["stop_reason"] = stop_reason
    out_dir = Path(config.out_dir)
    write_training_info(out_dir, summary)
    export_model(out_dir)  # the graphs ONNX Runtime answers with (kgqa.model.runtime)
    print(f"stopped: {stop_reason}; best dev EM_O {best:.2f}; {run.elapsed / 60:.1f} min; model in {out_dir}")
    return summary


def _set_up(config: TrainConfig, progress: bool) -> _Run:
    """The model (new, ``--init``, or resumed from ``OUT/last/``), its data, optimizer and schedule."""
    last_dir = Path(config.out_dir) / "last"
    device = default_device()
    set_seed(config.seed)  # Python's, NumPy's and torch's generators
    index = KBIndex(config.index_dir)
    train_questions = read_questions(config.train_file)
    dev_questions = read_questions(config.dev_file)[: config.dev_limit] if config.dev_file else []

    state: dict[str, Any] | None = None
    if (last_dir / STATE_FILE).is_file():
        model, tokenizer = load_checkpoint(last_dir)
        state = torch.load(last_dir / STATE_FILE, weights_only=False)
        print(f"resuming from {last_dir} after epoch {state['epoch']}")
    elif config.init:
        model, tokenizer = load_checkpoint(config.init)
        extend_for_index(model, tokenizer, index)  # a character model fine-tuned on a KB with new characters
    else:
        tokenizer = build_char_tokenizer([index.alphabet] + [q.question for q in train_questions])
        model = build_model(tokenizer, config.size)
    if state is not None and target_order(model) != index.key_order:
        raise ValueError(
            f"{last_dir} was trained on targets in the order {target_order(model)}, the index spells "
            f"{index.key_order}: resume with the same index, or train into another --out"
        )
    model.config.kgqa_target_order = index.key_order  # the target order is the index's key order
    codec = TargetCodec(tokenizer, index.key_order)
    codec.constraint(index)  # refuses a tokenizer that cannot spell every KB string, before any training
    model.to(device).train()
    collator = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")

    real = _real_examples(train_questions, index, codec, tokenizer)
    bank = TemplateBank.mine(train_questions)
    sampler = PathSampler(index, progress=progress) if config.augment_ratio > 0 and len(bank) else None
    synthetic_count = int(config.augment_ratio * len(real)) if sampler else 0
    steps_per_epoch = math.ceil((len(real) + synthetic_count) / config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = min(config.warmup_steps, max(1, total_steps // 10))

    # linear warm-up from the first step (transformers' get_linear_schedule_with_warmup starts at 0, one step later:
    # kept as trained, so a resumed run and the default model's schedule stay what they were), then linear decay
    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    run = _Run(
        config, model, tokenizer, index, codec, collator, device, optimizer, scheduler, real, bank, sampler,
        synthetic_count, steps_per_epoch, dev_questions,
    )  # fmt: skip
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        run.start_epoch, run.step, run.best = state["epoch"], state["step"], state["best"]
        run.bad_epochs, run.elapsed, run.log = state["bad_epochs"], state["elapsed"], state["log"]
        random.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])
    return run


def _train_epoch(run: _Run, epoch: int, progress: bool) -> dict[str, Any]:
    """One pass over the real questions and this epoch's synthetic ones; the epoch's log record so far."""
    config, codec, tokenizer = run.config, run.codec, run.tokenizer
    epoch_start = time.monotonic()
    rng = random.Random(config.seed * 1000 + epoch)
    examples = list(run.real)
    if run.sampler is not None:
        for question, path in synthesize(run.bank, run.sampler, run.synthetic_count, seed=config.seed * 1000 + epoch):
            if codec.can_spell(path.name + path.relation + path.meaning):
                target = codec.encode(*path)
                if len(target) <= MAX_TARGET_TOKENS:
                    examples.append((tokenizer(question)["input_ids"][:MAX_QUESTION_TOKENS], target))
    losses: list[float] = []
    bar = tqdm(_batches(examples, config.batch_size, rng), desc=f"epoch {epoch + 1}", disable=not progress)
    for batch in bar:
        loss = run.model(**_collate(batch, run.collator, run.device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), 1.0)
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        run.step += 1
        if run.step % 20 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{run.scheduler.get_last_lr()[0]:.1e}")
        if config.max_steps and run.step >= config.max_steps:
            break
    bar.close()
    run.epoch_loss = float(np.mean(losses)) if losses else None
    return {
        "epoch": epoch + 1,
        "step": run.step,
        "train_loss": round(float(np.mean(losses)), 4) if losses else None,
        "examples": len(examples),
        "train_seconds": round(time.monotonic() - epoch_start, 1),
    }


def _evaluate_and_save(run: _Run, epoch: int, record: dict[str, Any], epoch_start: float, progress: bool) -> None:
    """Dev EM_O (or the negated loss without dev), the log, the best epoch in float16, the resumable state."""
    config = run.config
    out_dir = Path(config.out_dir)
    last_dir = out_dir / "last"
    if run.dev_questions:
        eval_start = time.monotonic()
        options = DecodeOptions(num_beams=config.eval_beams, batch_size=config.eval_batch_size)
        answerer = QuestionAnswerer.from_model(run.model, run.tokenizer, run.index, options)
        metrics = evaluate_model(answerer, run.dev_questions, progress=progress)
        run.model.train()
        record["dev"] = {k: round(v, 2) for k, v in metrics.items()}
        record["eval_seconds"] = round(time.monotonic() - eval_start, 1)
        dev_score = metrics["EM_O"]
    else:
        dev_score = -run.epoch_loss if run.epoch_loss is not None else 0.0
    run.elapsed += time.monotonic() - epoch_start
    record["elapsed_minutes"] = round(run.elapsed / 60, 2)
    improved = dev_score > run.best
    if improved:
        run.best, run.bad_epochs = dev_score, 0
    else:
        run.bad_epochs += 1
    record["best"] = improved
    run.log.append(record)
    print(json.dumps(record, ensure_ascii=False))
    info = {"config": recorded_config(config), "log": run.log, "best_dev_EM_O": run.best if run.dev_questions else None}
    if improved:
        _save_half(run.model, run.tokenizer, out_dir, info)
    save_checkpoint(run.model, run.tokenizer, last_dir, info)
    torch.save(
        {
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "epoch": epoch + 1,
            "step": run.step,
            "best": run.best,
            "bad_epochs": run.bad_epochs,
            "elapsed": run.elapsed,
            "log": run.log,
            "python_rng": random.getstate(),
            "torch_rng": torch.get_rng_state(),
        },
        last_dir / STATE_FILE,
    )
    (out_dir / "train_log.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in run.log))


def _save_half(model: Any, tokenizer: Any, out_dir: Path, info: dict[str, Any]) -> None:
    """The best model in float16: half the bytes; it is loaded back as float32."""
    half = copy.deepcopy(model).to("cpu").half()
    save_checkpoint(half, tokenizer, out_dir, info)


def portable_path(path: str | None) -> str | None:
    """A path as a committed file may record it: relative to the working directory when under it, else the file
    name alone (never the absolute path of the machine that trained)."""
    if path is None:
        return None
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return resolved.name


def recorded_config(config: TrainConfig) -> dict[str, Any]:
    """The training settings for kgqa.json, with portable paths."""
    recorded = asdict(config)
    for key in ("train_file", "dev_file", "index_dir", "out_dir", "init"):
        if isinstance(recorded.get(key), str):
            recorded[key] = portable_path(recorded[key])
    return recorded
