"""A small character-level cross-encoder: how well a (relation, meaning) fits a question — one of the ranker's features.

Input ``[CLS] question-without-the-name [SEP] relation [SEP] meaning``; output one score. Trained on train.json with
hard negatives from the KB — the same name's other paths: the gold entity's other relations (the relation errors) and
the name's other entities (the meaning errors) — by a softmax over each question's group. Dev relations never occur
in train, so what it can learn is how relation and meaning *words* relate to question words (制作 ~ 做, 现住地 ~ a
person's meaning), not which relations are likely.

Character embeddings start random, from jieba's pretrained character embeddings (``jieba/lac_small``), or from the
seq2seq model's own (docs/evaluation.md compares them).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from kgqa.data import Question, normalize, split_head
from kgqa.model.rank import MATCHER_FILE, MATCHER_INFO
from kgqa.trie import KBIndex

PAD, CLS, SEP, UNK, NAME = 0, 1, 2, 3, 4  # NAME stands where the question's entity name was
_FIRST_CHAR = 5


@dataclass(frozen=True)
class MatcherConfig:
    dim: int = 128
    layers: int = 2
    heads: int = 4
    ffn: int = 256
    max_length: int = 96
    negatives: int = 7
    epochs: int = 3
    batch_groups: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    # "random", "jieba" or "seq2seq" (docs/evaluation.md: jieba's start scored best at telling paths apart)
    init: str = "jieba"
    object_chars: int = 12  # the object's first characters as a fourth segment (0: no object)


class RelationMatcher(nn.Module):
    def __init__(self, chars: Sequence[str], config: MatcherConfig) -> None:
        super().__init__()
        self.config = config
        self.chars = list(chars)
        self.char_ids = {ch: i + _FIRST_CHAR for i, ch in enumerate(self.chars)}
        self.embed = nn.Embedding(len(self.chars) + _FIRST_CHAR, config.dim, padding_idx=PAD)
        self.segment = nn.Embedding(
            4 if config.object_chars else 3, config.dim
        )  # question, relation, meaning[, object]
        self.position = nn.Embedding(config.max_length, config.dim)
        layer = nn.TransformerEncoderLayer(
            config.dim, config.heads, config.ffn, dropout=0.1, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, 1)

    def encode(
        self, question: str, name: str, relation: str, meaning: str, obj: str = ""
    ) -> tuple[list[int], list[int]]:
        text, own = normalize(question), normalize(name)
        cut = text.find(own) if own else -1
        before, after = (text[:cut], text[cut + len(own) :]) if cut >= 0 else (text, "")
        ids = [CLS, *self._ids(before), *([NAME] if cut >= 0 else []), *self._ids(after), SEP]
        segments = [0] * len(ids)
        rel = [*self._ids(normalize(relation)), SEP]
        mea = self._ids(normalize(meaning))
        ids += rel + mea
        segments += [1] * len(rel) + [2] * len(mea)
        if self.config.object_chars:
            tail = [SEP, *self._ids(normalize(obj)[: self.config.object_chars])]
            ids += tail
            segments += [3] * len(tail)
        limit = self.config.max_length
        return ids[:limit], segments[:limit]

    def _ids(self, text: str) -> list[int]:
        return [self.char_ids.get(ch, UNK) for ch in text]

    def forward(self, ids: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
        x = self.embed(ids) + self.segment(segments) + self.position(positions)
        x = self.encoder(x, src_key_padding_mask=ids == PAD)
        return self.head(self.norm(x[:, 0])).squeeze(-1)

    def scores(self, question: str, paths: Sequence[tuple[str, str, str, str]]) -> np.ndarray:
        """Scores of (name, relation, meaning, object) paths for one question (higher fits better)."""
        return self.scores_many([question], [paths])[0]

    @torch.inference_mode()
    def scores_many(
        self, questions: Sequence[str], paths: Sequence[Sequence[tuple[str, str, str, str]]], rows_per_pass: int = 512
    ) -> list[np.ndarray]:
        """``scores`` for many questions at once: their paths go through the encoder together (fewer, fuller passes)."""
        encoded = [self.encode(q, *p) for q, own in zip(questions, paths, strict=True) for p in own]
        flat = np.zeros(len(encoded), dtype=np.float32)
        was_training = self.training
        self.eval()
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))  # similar lengths pad little
        for start in range(0, len(order), rows_per_pass):
            chunk = order[start : start + rows_per_pass]
            ids, segments = _pad([encoded[i] for i in chunk])
            flat[chunk] = self(ids, segments).float().numpy()
        self.train(was_training)
        bounds = np.cumsum([0, *(len(own) for own in paths)])
        return [flat[bounds[i] : bounds[i + 1]] for i in range(len(paths))]

    def save(self, directory: str | Path, info: dict) -> None:
        directory = Path(directory)
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(directory / MATCHER_FILE))
        meta = {"config": asdict(self.config), "chars": "".join(self.chars)} | info
        (directory / MATCHER_INFO).write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")

    @staticmethod
    def present(directory: str | Path) -> bool:
        return (Path(directory) / MATCHER_INFO).is_file()

    @classmethod
    def load(cls, directory: str | Path) -> RelationMatcher:
        directory = Path(directory)
        meta = json.loads((directory / MATCHER_INFO).read_text(encoding="utf-8"))
        matcher = cls(list(meta["chars"]), MatcherConfig(**meta["config"]))
        matcher.load_state_dict(load_file(str(directory / MATCHER_FILE)))
        return matcher.eval()


def _pad(encoded: Sequence[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(ids) for ids, _ in encoded)
    ids = torch.tensor([i + [PAD] * (length - len(i)) for i, _ in encoded], dtype=torch.long)
    segments = torch.tensor([s + [0] * (length - len(s)) for _, s in encoded], dtype=torch.long)
    return ids, segments


def training_groups(
    questions: Sequence[Question], index: KBIndex, negatives: int, rng: random.Random
) -> list[tuple[str, str, list[tuple[str, str, str]]]]:
    """(question, name, [gold (relation, meaning, object), then up to ``negatives`` other paths of the same name])."""
    groups = []
    for q in questions:
        found = _gold_and_others(q, index)
        if found is None:
            continue
        name, gold, others = found
        rng.shuffle(others)
        groups.append((q.question, name, [gold, *others[:negatives]]))
    return groups


def _gold_and_others(
    q: Question, index: KBIndex
) -> tuple[str, tuple[str, str, str], list[tuple[str, str, str]]] | None:
    """(name, gold (relation, meaning, object), the name's other paths, sorted); None without answer or others."""
    if q.answer is None:
        return None
    name, meaning = split_head(q.answer.subject)
    gold = (q.answer.predicate, meaning, q.answer.object)
    others = [o for o in sorted({(t.relation, t.meaning, t.object) for t in index.triples(name)}) if o[:2] != gold[:2]]
    return (name, gold, others) if others else None


def pretrained_char_embeddings(chars: Sequence[str], source: str, dim: int, seq2seq_dir: str | Path | None = None):
    """Rows for ``chars`` from jieba's lac_small embeddings or the seq2seq model's (PCA to ``dim``); None if absent."""
    if source == "jieba":
        try:
            import jieba  # the package ships lac_small's character embeddings
        except ImportError as exc:
            raise ValueError("--init jieba needs the jieba package: pip install 'kgqa[dev]'") from exc

        base = Path(jieba.__file__).parent / "lac_small"
        table = np.frombuffer((base / "model_baseline" / "word_emb").read_bytes()[29:], dtype=np.float32)
        table = table.reshape(-1, 128)
        vocab = {}
        for line in (base / "word.dic").read_text(encoding="utf-8").split("\n"):  # not splitlines: \x1c is a char
            number, _, ch = line.rstrip("\r").partition("\t")
            if not number:
                continue
            vocab[ch] = int(number)
        rows = [table[vocab[ch]] if ch in vocab else None for ch in chars]
    elif source == "seq2seq":
        from kgqa.model.modeling import load_checkpoint

        model, tokenizer = load_checkpoint(seq2seq_dir)  # type: ignore[arg-type]
        weight = model.get_input_embeddings().weight.detach().float().numpy()
        centred = weight - weight.mean(0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        table = centred @ vt[:dim].T
        vocab = tokenizer.get_vocab()
        rows = [table[vocab[ch]] if ch in vocab else None for ch in chars]
    else:
        return None
    found = [r for r in rows if r is not None]
    scale = float(np.std(np.stack(found))) if found else 1.0
    # the scale of nn.Embedding's own N(0, 1) start, which the position and segment embeddings keep: pretrained rows
    # much smaller than those are drowned out, and training stalls (measured: rows at 0.1 did not learn)
    out = np.random.default_rng(0).normal(0.0, 1.0, size=(len(chars), dim)).astype(np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            out[i, : min(dim, len(r))] = r[:dim] / scale
    return out


def train_matcher(
    questions: Sequence[Question],
    index: KBIndex,
    config: MatcherConfig,
    seq2seq_dir: str | Path | None = None,
    progress: bool = True,
) -> tuple[RelationMatcher, dict]:
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    chars = sorted({ch for q in questions for ch in normalize(q.question)} | set(index.alphabet))
    matcher = RelationMatcher(chars, config)
    pretrained = pretrained_char_embeddings(chars, config.init, config.dim, seq2seq_dir)
    if pretrained is not None:
        with torch.no_grad():
            matcher.embed.weight[_FIRST_CHAR:] = torch.from_numpy(pretrained)
    optimizer = torch.optim.AdamW(matcher.parameters(), lr=config.learning_rate, weight_decay=0.01)
    log = []
    start = time.perf_counter()
    for epoch in range(1, config.epochs + 1):
        groups = training_groups(questions, index, config.negatives, rng)
        rng.shuffle(groups)
        matcher.train()
        total, count = 0.0, 0
        batches = range(0, len(groups), config.batch_groups)
        for b in tqdm(batches, desc=f"matcher epoch {epoch}", unit="batch", disable=not progress):
            batch = groups[b : b + config.batch_groups]
            encoded, owners, places = [], [], []
            for g, (question, name, paths) in enumerate(batch):
                for place, (relation, meaning, obj) in enumerate(paths):
                    encoded.append(matcher.encode(question, name, relation, meaning, obj))
                    owners.append(g)
                    places.append(place)
            ids, segments = _pad(encoded)
            logits = matcher(ids, segments)
            # a softmax over each question's group; the gold path is first in its group
            grouped = torch.full((len(batch), config.negatives + 1), float("-inf"))
            grouped = grouped.index_put((torch.tensor(owners), torch.tensor(places)), logits)
            loss = nn.functional.cross_entropy(grouped, torch.zeros(len(batch), dtype=torch.long))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
            count += len(batch)
        log.append({"epoch": epoch, "loss": round(total / max(1, count), 4)})
    info = {"log": log, "minutes": round((time.perf_counter() - start) / 60, 2), "questions": len(questions)}
    return matcher.eval(), info


def matcher_accuracy(matcher: RelationMatcher, questions: Sequence[Question], index: KBIndex) -> dict[str, float]:
    """How often the gold (relation, meaning) scores highest among all paths of its name (questions with several)."""
    top1 = groups = 0
    for q in tqdm(questions, desc="matcher dev", unit="q"):
        found = _gold_and_others(q, index)
        if found is None:
            continue
        name, gold, others = found
        scores = matcher.scores(q.question, [(name, r, m, o) for r, m, o in [gold, *others]])
        groups += 1
        top1 += int(np.argmax(scores) == 0)
    return {"top1": round(100 * top1 / max(1, groups), 2), "groups": groups}
