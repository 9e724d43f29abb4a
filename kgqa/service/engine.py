"""What the service answers with: the model, the KB index and the constraint, loaded once and checked at start-up."""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kgqa import __version__
from kgqa.data import split_head
from kgqa.model.answerer import DecodeOptions, QuestionAnswerer
from kgqa.model.candidate import Candidate
from kgqa.model.checkpoint import CheckpointError, read_training_info
from kgqa.model.decode.explain import PathTrace, trace_path
from kgqa.model.summary import model_summary
from kgqa.service.settings import ServiceSettings
from kgqa.trie import KBIndex
from kgqa.trie.index import IndexedTriple
from kgqa.trie.manifest import IndexLoadError
from kgqa.trie.tokens import VocabularyMismatchError

WARM_UP_QUESTION = "你知道守望星光是哪家公司出品的吗？"  # any text works


class StartupError(ValueError):
    """The service cannot start with these files; the message says what to do (the CLI prints it, exits 2)."""


@dataclass(frozen=True)
class EntityTriples:
    triples: list[IndexedTriple]
    total: int  # before the limit


class Engine:
    def __init__(self, answerer: QuestionAnswerer, quantized: bool = False, model_path: Path | None = None) -> None:
        self.answerer = answerer
        self.quantized = quantized
        self.model_path = model_path or Path("")
        self.index = answerer.index
        self.model_summary = model_summary(self.model_path) if self.model_path.is_dir() else {}
        self._trim = _malloc_trim()

    @classmethod
    def load(cls, settings: ServiceSettings) -> Engine:
        """Load and cross-check the index and the model; StartupError with the fix when they cannot serve."""
        try:
            index = KBIndex(settings.index)
        except IndexLoadError as exc:
            raise StartupError(f"cannot load the KB index: {exc}") from exc
        try:
            info = read_training_info(settings.model) if settings.model.is_dir() else {}
            options = DecodeOptions.from_training_info(
                info,
                num_beams=settings.num_beams,
                search=settings.search,
                search_margin=settings.search_margin,  # None: the model's
                use_ranker=settings.ranker,
                abstain_below=settings.abstain_below,  # None: the model's
                batch_size=settings.max_batch_size,
            )
            answerer = QuestionAnswerer.load(
                settings.model,
                index,
                options,
                quantize=settings.quantize,
                runtime=settings.runtime,
                threads=settings.threads_per_worker(),
            )
        except VocabularyMismatchError as exc:
            raise StartupError(
                f"the model at {settings.model} does not fit the index at {settings.index}: {exc}"
            ) from exc
        except (CheckpointError, OSError, ValueError) as exc:
            raise StartupError(
                f"cannot load the model at {settings.model}: {exc}. Point --model (KGQA_MODEL) at a directory "
                "written by kgqa train, e.g. models/kgqa-default"
            ) from exc
        return cls(answerer, quantized=settings.quantize, model_path=settings.model)

    def describe(self) -> dict[str, object]:
        """What is being served: the index (manifest checksum, triples, when built) and the model."""
        manifest = self.index.manifest
        return {
            "index": {
                "path": str(self.index.directory),
                "manifest_sha256": self.index.checksum,
                "triples": manifest.counts.get("triples", 0),
                "created_at": manifest.created_at,
            },
            "model": {
                "path": str(self.model_path),
                "runtime": self.answerer.runtime.name,
                "quantized": self.quantized,
                "added_characters": len(self.answerer.added_characters),
            },
        }

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/info`` reports of this engine: kgqa's version, the model, the index, the decoding options."""
        manifest = self.index.manifest
        counts = manifest.counts
        return {
            "version": __version__,
            "model": self.model_summary
            | {
                "name": self.model_summary.get("name", self.model_path.name),
                "parameters": self.answerer.parameters,
                "vocabulary_size": len(self.answerer.runtime.tokenizer),
                "runtime": self.answerer.runtime.name,
                "added_characters": len(self.answerer.added_characters),
                "quantized": self.quantized,
                "ranker": self.answerer.ranker is not None and self.answerer.options.use_ranker,
                "abstain_below": self.answerer.abstain_below,
            },
            "index": {
                "name": self.index.directory.name,
                "triples": counts.get("triples", 0),
                "names": counts.get("names", 0),
                "relations": counts.get("relations", 0),
                "objects": counts.get("objects", 0),
                "manifest_sha256": self.index.checksum,
                "created_at": manifest.created_at,
                "key_order": self.index.key_order,
                # file names only: the machine's directories are nobody's business
                "sources": [{"file": Path(s["path"]).name, "sha256": s.get("sha256")} for s in manifest.sources],
            },
            "decoding": asdict(self.answerer.options),
        }

    def explain(self, candidate: Candidate) -> PathTrace:
        """The constraint's view of each step of ``candidate``'s path (``"explain": true``)."""
        answerer = self.answerer
        return trace_path(candidate, answerer.codec, answerer.constraint, answerer.options.end_when_determined)

    def warm_up(self) -> None:
        """Answer one question: the first decode pays one-off costs, and a reloaded engine proves it works."""
        self.answer([WARM_UP_QUESTION], 1)

    def answer(self, questions: Sequence[str], top_k: int | Sequence[int]) -> list[list[Candidate]]:
        try:
            return self.answerer.answer(questions, top_k=top_k, explain=True)  # the API shows contributions
        finally:
            if self.trims_after(questions, top_k):
                self._trim()

    def trims_after(self, questions: Sequence[str], top_k: int | Sequence[int]) -> bool:
        """Whether to give freed memory back to the OS after this batch: a batch of several questions (or a wider
        beam) leaves hundreds of MB of transient tensors, better returned than kept per worker; a lone question's few
        MB are reused by the next batch (returning them cost it ~1,200 page faults, 5 ms of system time, here)."""
        widest = top_k if isinstance(top_k, int) else max(top_k, default=1)
        return len(questions) > 1 or self.answerer.options.beam_width(widest) > self.answerer.options.num_beams

    def entity(self, name: str, limit: int) -> EntityTriples:
        """All triples of ``name`` (every meaning), or of one entity when ``name`` is a head ``name（meaning）``."""
        triples = self.index.triples(name)
        if not triples:
            bare, meaning = split_head(name)
            if meaning:
                triples = [t for t in self.index.triples(bare) if t.meaning == meaning]
        return EntityTriples(triples[:limit], len(triples))


def _malloc_trim():
    """glibc's malloc_trim(0), or a no-op where there is none (macOS, musl)."""
    path = ctypes.util.find_library("c")
    trim = getattr(ctypes.CDLL(path), "malloc_trim", None) if path else None
    return (lambda: trim(0)) if trim is not None else (lambda: None)
