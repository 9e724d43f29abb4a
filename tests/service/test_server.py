"""The real server: ``kgqa serve`` (uvicorn on a free loopback port), queried over HTTP, over the tiny test model."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from kgqa.bench.process import ServerProcess, child_pids
from kgqa.data import split_head
from kgqa.service.app import create_app
from kgqa.service.engine import Engine
from kgqa.service.settings import ServiceSettings
from kgqa.service.worker import graceful_server_class
from tests.conftest import TINY_KB
from tests.service.conftest import wait_ready

QUESTION = "你知道守望星光是哪家公司出品的吗？"
TINY_TRIPLES = {tuple(line.split("\t")) for line in TINY_KB}


def is_tiny_kb_triple(answer: dict) -> bool:
    return (answer["subject"], answer["predicate"], answer["object"]) in TINY_TRIPLES and (
        answer["name"],
        answer["meaning"],
    ) == split_head(answer["subject"])


def test_real_server_answers_over_http(live_server: ServerProcess) -> None:
    with httpx.Client(base_url=live_server.url, timeout=60) as http:
        answer = http.post("/v1/answer", json={"question": QUESTION, "top_k": 2}).json()
        assert all(is_tiny_kb_triple(c) for c in answer["candidates"]) and answer["answer"] == answer["candidates"][0]
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


class GatedEngine:
    """The real engine, except that answering one of ``gates``' questions first waits for its gate to open; its
    answer was computed before. Which request is in flight, and which one cannot finish, is then up to the test,
    not the machine's speed."""

    def __init__(self, engine: Engine, gates: dict[str, threading.Event]) -> None:
        self._engine = engine
        self.gates = gates
        self.started = {question: threading.Event() for question in gates}
        self._answers = {question: engine.answer([question], 1)[0] for question in gates}

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def answer(self, questions, top_k):  # type: ignore[no-untyped-def]
        if questions[0] in self.gates:
            self.started[questions[0]].set()
            self.gates[questions[0]].wait()
            return [self._answers[q] for q in questions]
        return self._engine.answer(questions, top_k)


def test_sigterm_lets_in_flight_questions_finish_and_answers_the_rest_503(
    service_settings: ServiceSettings, engine: Engine
) -> None:
    """On SIGTERM (uvicorn's handler, as the signal calls it): not ready at once; a question in flight that finishes
    within the grace period gets 200; one that cannot gets 503 with Retry-After and a JSON message; never a 500."""
    in_flight, stuck = "守望星光的歌手是谁？", "龙编站的所属国家是哪里"
    gates = {in_flight: threading.Event(), stuck: threading.Event()}  # ``stuck`` opens only after the test
    gated = GatedEngine(engine, gates)
    settings = service_settings.model_copy(update={"graceful_shutdown_s": 2.0, "max_batch_size": 1})
    app = create_app(settings, gated)  # type: ignore[arg-type]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = graceful_server_class()(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=7.0)
    )
    serving = threading.Thread(target=server.run)
    serving.start()
    responses: dict[str, httpx.Response] = {}
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while not server.started or httpx.get(f"{url}/readyz").status_code != 200:
            assert time.monotonic() < deadline, "the server did not get ready"
            time.sleep(0.05)

        def ask(question: str) -> None:
            responses[question] = httpx.post(f"{url}/v1/answer", json={"question": question}, timeout=60)

        askers = [threading.Thread(target=ask, args=(q,)) for q in (in_flight, stuck)]
        askers[0].start()
        assert gated.started[in_flight].wait(30)  # being decoded
        askers[1].start()
        state = app.state.kgqa
        while state.batcher.waiting < 1:  # waiting behind it
            time.sleep(0.01)
        server.handle_exit(signal.SIGTERM, None)
        while not state.stopping:
            time.sleep(0.01)
        assert not state.ready  # /readyz answers 503 from here (the listening socket is closed too)
        gates[in_flight].set()  # it finishes within the grace period
        for asker in askers:
            asker.join(30)
        serving.join(30)
        assert not serving.is_alive()
    finally:
        for gate in gates.values():
            gate.set()
        server.should_exit = True
        serving.join(30)
    assert responses[in_flight].status_code == 200
    assert responses[in_flight].json()["question"] == in_flight
    cut = responses[stuck]
    assert cut.status_code == 503, cut.text
    assert cut.headers["retry-after"] == "1" and "retry" in cut.json()["detail"]


def test_readyz_turns_503_as_shutdown_begins(service_settings: ServiceSettings, engine: Engine) -> None:
    with TestClient(create_app(service_settings, engine)) as client:
        wait_ready(client)
        state = client.app.state.kgqa  # type: ignore[attr-defined]
        client.portal.call(state.begin_shutdown)  # type: ignore[union-attr]  # in the app's event loop
        ready = client.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"status": "stopping"}
        refused = client.post("/v1/answer", json={"question": QUESTION})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"


def test_sigterm_to_the_real_server_never_answers_500(
    service_settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``kgqa serve`` with a grace period far shorter than the work sent: every request gets 200 or 503."""
    monkeypatch.setenv("KGQA_GRACEFUL_SHUTDOWN_S", "0.5")
    server = ServerProcess(service_settings.model, service_settings.index).start()
    questions = [QUESTION * 7] * 256  # wide-beam batches of long questions: far more than half a second of work
    responses: list[httpx.Response] = []

    def ask() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as http:
            responses.append(http.post("/v1/answer/batch", json={"questions": questions, "top_k": 20}))

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)  # the requests are in, the first batch is decoding
    server.process.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
    for t in threads:
        t.join()
    assert server.stop() == 0
    assert len(responses) == 3
    for response in responses:
        assert response.status_code in (200, 503), response.text
        if response.status_code == 503:
            assert response.headers["retry-after"] == "1" and "retry" in response.json()["detail"]
    with pytest.raises(httpx.TransportError):  # and then it is gone
        httpx.get(f"{server.url}/healthz", timeout=2)


def test_two_workers_serve_replace_a_dead_one_and_shut_down(service_settings: ServiceSettings) -> None:
    server = ServerProcess(service_settings.model, service_settings.index, "--workers", "2").start()
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(4):
                answer = http.post("/v1/answer", json={"question": QUESTION}).json()["answer"]
                assert is_tiny_kb_triple(answer)
            text = http.get("/metrics").text
            # every worker's samples, whichever worker answered /metrics
            line = next(line for line in text.splitlines() if line.startswith('kgqa_http_requests_total{method="POST"'))
            assert float(line.split()[-1]) == 4.0

            workers = child_pids(server.pid)
            assert len(workers) == 2
            # a worker killed right after it served (the service answered through both): replaced, not fatal
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


def test_a_worker_that_dies_before_it_is_ready_stops_the_service(service_settings: ServiceSettings) -> None:
    """Killed before its warm-up answered (as a worker that cannot start would die): another would die too, so the
    parent stops the service (exit 1) rather than forking in a loop."""
    server = ServerProcess(service_settings.model, service_settings.index, "--workers", "2")
    server.process = subprocess.Popen(server.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        # the workers are forked once the parent says where it serves (before it, loading may run a short-lived
        # child of its own, ldconfig for ctypes)
        assert server.process.stdout is not None
        for line in server.process.stdout:
            if "serving on" in line:
                break
        deadline = time.monotonic() + 120
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = child_pids(server.pid)
            time.sleep(0.005)  # a worker is ready after its warm-up question: far longer than this
        os.kill(min(workers), signal.SIGKILL)
        assert server.process.wait(timeout=60) == 1
        assert "before it was ready; stopping" in server.process.stdout.read()  # type: ignore[union-attr]
    finally:
        server.stop()
