"""The real server: ``kgqa serve`` (uvicorn on a free loopback port), queried over HTTP."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from kgqa.bench.process import ServerProcess, child_pids
from kgqa.service.server import WORKER_MIN_LIFETIME_S
from kgqa.service.settings import ServiceSettings

QUESTION = "你知道守望星光是哪家公司出品的吗？"


def test_real_server_answers_over_http(live_server: ServerProcess) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        answer = http.post("/v1/answer", json={"question": QUESTION, "top_k": 2}).json()
        assert answer["answer"]["object"] == "韩玉玲原创音乐"
        batch = http.post("/v1/answer/batch", json={"questions": [QUESTION, "刘晓华主要讲什么课啊？"]}).json()
        assert [r["question"] for r in batch["results"]] == [QUESTION, "刘晓华主要讲什么课啊？"]
        assert http.get("/v1/entities/守望星光").status_code == 200
        assert http.post("/v1/answer", content=b"{", headers={"content-type": "application/json"}).status_code == 400


def test_concurrent_requests_are_batched(live_server: ServerProcess) -> None:
    def batch_count() -> float:
        text = httpx.get(f"{live_server.url}/metrics").text
        return float(next(line.split()[-1] for line in text.splitlines() if line.startswith("kgqa_batch_size_count")))

    before = batch_count()
    results: list[int] = []

    def ask() -> None:
        results.append(httpx.post(f"{live_server.url}/v1/answer", json={"question": QUESTION}, timeout=60).status_code)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 16
    assert batch_count() - before < 16  # fewer batches than requests: they were decoded together


def test_graceful_shutdown_lets_in_flight_requests_finish(service_settings: ServiceSettings) -> None:
    server = ServerProcess(service_settings.model, service_settings.index).start()
    questions = [QUESTION] * 24  # a second or two of decoding each (candidates and the learned ranker)
    statuses: list[int] = []

    def ask() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            statuses.append(http.post("/v1/answer/batch", json={"questions": questions}).status_code)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.5)  # the requests are in, the first batch is decoding
    server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    for t in threads:
        t.join()
    assert server.stop() == 0
    assert statuses == [200, 200, 200]
    with pytest.raises(httpx.TransportError):  # and then it is gone
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_two_workers_serve_replace_a_dead_one_and_shut_down(service_settings: ServiceSettings) -> None:
    server = ServerProcess(service_settings.model, service_settings.index, "--workers", "2").start()
    started = time.monotonic()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(4):
                answer = http.post("/v1/answer", json={"question": QUESTION}).json()["answer"]
                assert answer["object"] == "韩玉玲原创音乐"
            text = http.get("/metrics").text
            # every worker's samples, whichever worker answered /metrics
            line = next(line for line in text.splitlines() if line.startswith('kgqa_http_requests_total{method="POST"'))
            assert float(line.split()[-1]) == 4.0

            workers = child_pids(server.pid)
            assert len(workers) == 2
            time.sleep(max(0.0, WORKER_MIN_LIFETIME_S + 0.5 - (time.monotonic() - started)))
            killed = min(workers)
            os.kill(killed, signal.SIGKILL)  # a worker dies (out of memory, say): the parent forks another
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                current = child_pids(server.pid)
                if len(current) == 2 and killed not in current:
                    break
                time.sleep(0.1)
            assert len(current) == 2 and killed not in current
            time.sleep(2.0)  # the new worker's warm-up question (it answers 503 "loading" until then)
            for _ in range(4):
                assert http.post("/v1/answer", json={"question": QUESTION}).status_code == 200
    finally:
        assert server.stop() == 0


def test_workers_do_not_outlive_a_killed_parent(service_settings: ServiceSettings) -> None:
    """SIGKILL the parent (as the OOM killer would): its workers stop too, and the port is free again."""
    server = ServerProcess(service_settings.model, service_settings.index, "--workers", "2").start()
    workers = child_pids(server.pid)
    assert len(workers) == 2
    os.kill(server.pid, signal.SIGKILL)
    server.process.wait(timeout=10)  # type: ignore[union-attr]
    deadline = time.monotonic() + 40  # a graceful stop: in-flight requests may take their time (none here)
    alive = set(workers)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if Path(f"/proc/{pid}").exists() and not _is_zombie(pid)}
        time.sleep(0.1)
    assert not alive, f"workers {sorted(alive)} outlived their parent"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{server.url}/healthz", timeout=2)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_schema_fuzzing_finds_no_5xx(live_server: ServerProcess) -> None:
    """Every operation of the OpenAPI schema with generated bodies, paths and queries, valid and not (bounded)."""
    # schemathesis' pytest plugin does not run under this pytest; its strategies, driven by hypothesis, do
    schema = schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")
    calls: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=live_server.url, timeout=60)
            calls.append(f"{case.method} {case.path} {response.status_code}")
            assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text[:300]}"
            if response.status_code >= 400 and "application/json" in str(response.headers.get("content-type")):
                assert isinstance(response.json()["detail"], str)

        check()
    assert {call.rsplit(" ", 1)[0] for call in calls} >= {"POST /v1/answer", "POST /v1/answer/batch"}
    assert any(call.endswith(" 422") for call in calls) and any(call.endswith(" 200") for call in calls)
