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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import DataCollatorForSeq2Seq, set_seed

from kgqa.data import Question, evaluate_answers, read_questions, split_head
from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.augment import PathSampler, TemplateBank, synthesize
from kgqa.model.candidate import top_answers
from kgqa.model.modeling import (
    build_model,
    default_device,
    load_checkpoint,
    save_checkpoint,
    target_order,
    write_training_info,
)
from kgqa.model.targets import TargetCodec
from kgqa.model.tokenizer import build_char_tokenizer
from kgqa.model.vocabulary import extend_for_index
from kgqa.trie import KBIndex

MAX_QUESTION_TOKENS = 120
MAX_TARGET_TOKENS = 120
STATE_FILE = "trainer_state.pt"


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


def train(config: TrainConfig, progress: bool = True) -> dict[str, Any]:
    """Train (or resume) into ``config.out_dir``; returns the training summary also written to ``kgqa.json``."""
    out_dir = Path(config.out_dir)
    last_dir = out_dir / "last"
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

    def schedule(step: int) -> float:  # linear warm-up, then linear decay to zero at the planned last step
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    log: list[dict[str, Any]] = []
    start_epoch, step, best, bad_epochs, elapsed = 0, 0, -1.0, 0, 0.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, best = state["epoch"], state["step"], state["best"]
        bad_epochs, elapsed, log = state["bad_epochs"], state["elapsed"], state["log"]
        random.setstate(state["python_rng"])
        torch.set_rng_state(state["torch_rng"])

    print(
        f"training {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters on {device}: "
        f"{len(real):,} real + {synthetic_count:,} synthetic questions an epoch ({len(bank):,} templates), "
        f"{steps_per_epoch} steps an epoch, up to {config.epochs} epochs"
    )
    stop_reason = "epochs done"
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.monotonic()
        rng = random.Random(config.seed * 1000 + epoch)
        examples = list(real)
        if sampler is not None:
            for question, path in synthesize(bank, sampler, synthetic_count, seed=config.seed * 1000 + epoch):
                if codec.can_spell(path.name + path.relation + path.meaning):
                    target = codec.encode(*path)
                    if len(target) <= MAX_TARGET_TOKENS:
                        examples.append((tokenizer(question)["input_ids"][:MAX_QUESTION_TOKENS], target))
        losses: list[float] = []
        bar = tqdm(_batches(examples, config.batch_size, rng), desc=f"epoch {epoch + 1}", disable=not progress)
        for batch in bar:
            loss = model(**_collate(batch, collator, device)).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
            step += 1
            if step % 20 == 0:
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", lr=f"{scheduler.get_last_lr()[0]:.1e}")
            if config.max_steps and step >= config.max_steps:
                break
        bar.close()
        train_seconds = time.monotonic() - epoch_start
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": step,
            "train_loss": round(float(np.mean(losses)), 4) if losses else None,
            "examples": len(examples),
            "train_seconds": round(train_seconds, 1),
        }
        if dev_questions:
            eval_start = time.monotonic()
            answerer = QuestionAnswerer(
                model, tokenizer, index, DecodeOptions(num_beams=config.eval_beams, batch_size=config.eval_batch_size)
            )
            metrics = evaluate_model(answerer, dev_questions, progress=progress)
            model.train()
            record["dev"] = {k: round(v, 2) for k, v in metrics.items()}
            record["eval_seconds"] = round(time.monotonic() - eval_start, 1)
            dev_score = metrics["EM_O"]
        else:
            dev_score = -float(np.mean(losses)) if losses else 0.0
        elapsed += time.monotonic() - epoch_start
        record["elapsed_minutes"] = round(elapsed / 60, 2)
        improved = dev_score > best
        if improved:
            best, bad_epochs = dev_score, 0
        else:
            bad_epochs += 1
        record["best"] = improved
        log.append(record)
        print(json.dumps(record, ensure_ascii=False))
        info = {"config": recorded_config(config), "log": log, "best_dev_EM_O": best if dev_questions else None}
        if improved:
            _save_half(model, tokenizer, out_dir, info)
        save_checkpoint(model, tokenizer, last_dir, info)
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1,
                "step": step,
                "best": best,
                "bad_epochs": bad_epochs,
                "elapsed": elapsed,
                "log": log,
                "python_rng": random.getstate(),
                "torch_rng": torch.get_rng_state(),
            },
            last_dir / STATE_FILE,
        )
        (out_dir / "train_log.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in log))
        if config.max_steps and step >= config.max_steps:
            stop_reason = "max steps"
            break
        if dev_questions and bad_epochs >= config.patience:
            stop_reason = f"no better dev EM_O for {bad_epochs} epochs"
            break
        epoch_seconds = time.monotonic() - epoch_start
        if config.max_minutes is not None and elapsed + epoch_seconds > config.max_minutes * 60:
            stop_reason = f"another epoch would overrun {config.max_minutes} minutes"
            break
    summary = {"config": recorded_config(config), "log": log, "best_dev_EM_O": best if dev_questions else None}
    summary["stop_reason"] = stop_reason
    write_training_info(out_dir, summary)
    print(f"stopped: {stop_reason}; best dev EM_O {best:.2f}; {elapsed / 60:.1f} min; model in {out_dir}")
    return summary


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
