"""The service over the tiny test model and KB (no KgCLUE data needed), and, for the tests about KgCLUE itself, over
the committed default model and the KgCLUE-sim index (built once per test session)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kgqa.bench.process import ServerProcess
from kgqa.service.app import create_app
from kgqa.service.engine import Engine
from kgqa.service.settings import ServiceSettings
from kgqa.trie import KBIndex

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "kgqa-default"


@pytest.fixture(scope="session")
def service_settings(tiny_model: Path, tiny_index: KBIndex) -> ServiceSettings:
    return ServiceSettings(model=tiny_model, index=tiny_index.directory, batch_wait_ms=2.0)


@pytest.fixture(scope="session")
def engine(service_settings: ServiceSettings) -> Engine:
    return Engine.load(service_settings)


@pytest.fixture(scope="session")
def kgclue_settings(kgclue_sim_index: KBIndex) -> ServiceSettings:
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("no default model in models/kgqa-default (make train)")
    return ServiceSettings(model=DEFAULT_MODEL, index=kgclue_sim_index.directory, batch_wait_ms=2.0)


@pytest.fixture(scope="session")
def kgclue_engine(kgclue_settings: ServiceSettings) -> Engine:
    return Engine.load(kgclue_settings)


def wait_ready(client: TestClient | httpx.Client, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError("the service did not become ready")


@pytest.fixture(scope="module")
def client(service_settings: ServiceSettings, engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(service_settings, engine), raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture(scope="module")
def kgclue_client(kgclue_settings: ServiceSettings, kgclue_engine: Engine) -> Iterator[TestClient]:
    with TestClient(create_app(kgclue_settings, kgclue_engine), raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


@pytest.fixture(scope="session")
def live_server(service_settings: ServiceSettings) -> Iterator[ServerProcess]:
    server = ServerProcess(service_settings.model, service_settings.index).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def kgclue_live_server(kgclue_settings: ServiceSettings) -> Iterator[ServerProcess]:
    server = ServerProcess(kgclue_settings.model, kgclue_settings.index).start()
    yield server
    server.stop()
