"""What the routes share within one worker: the settings, the engine, the micro-batcher and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
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
    stopping: bool = False  # SIGTERM: not ready, no new questions, the grace period runs
    loop: asyncio.AbstractEventLoop | None = field(default=None, repr=False)  # the loop serving this app
    # closes this worker's listening socket (set by the server once it listens): the others keep accepting
    stop_accepting: Callable[[], None] | None = field(default=None, repr=False)

    def drain(self) -> None:
        """Retiring after a reload: take no new connections (the new workers get them), and close each kept-alive
        one after its next response, so that by SIGTERM only a client idle through the whole drain is still here."""
        self.draining = True
        if self.stop_accepting is not None:
            self.stop_accepting()

    def begin_shutdown(self) -> None:
        """On SIGTERM: /readyz answers 503 at once (a load balancer stops sending); questions not answered within
        ``graceful_shutdown_s`` are answered 503 with Retry-After (kgqa.service.errors), never cut off with a 500."""
        self.stopping = True
        self.ready = False
        if self.batcher is not None:
            self.batcher.close(self.settings.graceful_shutdown_s or None)

    def request_shutdown(self) -> None:
        """``begin_shutdown`` from a signal handler (which may run inside the loop's own code)."""
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.begin_shutdown)

    def answer(self, questions: Sequence[str], top_k: int | Sequence[int]) -> list[list[Candidate]]:
        """The engine of the moment answers (a reload switches engines between batches, never within one)."""
        engine = self.engine
        assert engine is not None, "answer() before the engine is loaded"
        return engine.answer(questions, top_k)
