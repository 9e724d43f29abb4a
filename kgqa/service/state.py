"""What the routes share within one worker: the settings, the engine, the micro-batcher and readiness."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kgqa.model.candidate import Candidate
from kgqa.service.batcher import MicroBatcher
from kgqa.service.engine import Engine
from kgqa.service.settings import ServiceSettings


@dataclass
class ServiceState:
    settings: ServiceSettings
    engine: Engine | None = None
    batcher: MicroBatcher | None = field(default=None, repr=False)
    ready: bool = False
    reloading: bool = False
    draining: bool = False  # retiring after a reload: responses close their connections (kgqa.service.reload)

    def answer(self, questions: Sequence[str], top_k: int | Sequence[int]) -> list[list[Candidate]]:
        """The engine of the moment answers (a reload switches engines between batches, never within one)."""
        engine = self.engine
        assert engine is not None, "answer() before the engine is loaded"
        return engine.answer(questions, top_k)
