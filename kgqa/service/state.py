"""What the routes share within one worker: the settings, the engine, the micro-batcher and readiness."""

from __future__ import annotations

from dataclasses import dataclass, field

from kgqa.service.batcher import MicroBatcher
from kgqa.service.engine import Engine
from kgqa.service.settings import ServiceSettings


@dataclass
class ServiceState:
    settings: ServiceSettings
    engine: Engine | None = None
    batcher: MicroBatcher | None = field(default=None, repr=False)
    ready: bool = False
