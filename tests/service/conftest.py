"""The service over the committed default model and the KgCLUE-sim index (built once per test session)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from kgqa.service.app import create_app
from kgqa.service.engine import Engine
from kgqa.service.settings import ServiceSettings
from kgqa.trie import KBIndex

REPO = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = REPO / "models" / "kgqa-default"


@pytest.fixture(scope="session")
def service_settings(kgclue_sim_index: KBIndex) -> ServiceSettings:
    if not (DEFAULT_MODEL / "config.json").is_file():
        pytest.skip("no default model in models/kgqa-default (make train)")
    return ServiceSettings(model=DEFAULT_MODEL, index=kgclue_sim_index.directory, batch_wait_ms=2.0)


@pytest.fixture(scope="session")
def engine(service_settings: ServiceSettings) -> Engine:
    return Engine.load(service_settings)


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


@dataclass
class RunningServer:
    process: subprocess.Popen[str]
    url: str
    output: list[str]


def start_server(settings: ServiceSettings, *flags: str, timeout: float = 120.0) -> RunningServer:
    """``kgqa serve`` in a child process on a free loopback port; returns once /readyz says ready."""
    command = [sys.executable, "-m", "kgqa.cli", "serve", "--model", str(settings.model)]
    command += ["--index", str(settings.index), "--host", "127.0.0.1", "--port", "0", "--no-access-log", *flags]
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"PYTHONUNBUFFERED": "1"}
    )
    output: list[str] = []
    deadline = time.monotonic() + timeout
    url = None
    assert process.stdout is not None
    while url is None:
        line = process.stdout.readline()
        if not line:
            raise AssertionError(f"kgqa serve exited ({process.wait()}):\n" + "".join(output))
        output.append(line)
        found = re.search(r"serving on (http://\S+)", line)
        url = found.group(1) if found else None
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("kgqa serve printed no URL:\n" + "".join(output))
    # keep reading its output, so a full pipe never blocks the server
    threading.Thread(target=lambda: output.extend(process.stdout), daemon=True).start()  # type: ignore[arg-type]
    with httpx.Client(base_url=url) as http:
        wait_ready(http, timeout)
    return RunningServer(process, url, output)


def stop_server(server: RunningServer, timeout: float = 60.0) -> int:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
    try:
        return server.process.wait(timeout)
    finally:
        if server.process.poll() is None:
            server.process.kill()


@pytest.fixture(scope="session")
def live_server(service_settings: ServiceSettings) -> Iterator[RunningServer]:
    server = start_server(service_settings)
    yield server
    stop_server(server)
