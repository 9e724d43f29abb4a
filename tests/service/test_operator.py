"""What an operator and a page need: the path trace, /v1/info, offline docs, API key, CORS, request ids, JSON logs."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from kgqa.bench.process import ServerProcess
from kgqa.service.app import create_app
from kgqa.service.engine import Engine
from kgqa.service.logs import JsonFormatter
from kgqa.service.settings import ServiceSettings
from kgqa.trie.keys import SEP, path_key
from tests.service.conftest import DEFAULT_MODEL, wait_ready

QUESTION = "刘晓华主要讲什么课啊？"


@pytest.fixture(scope="module")
def client_with(service_settings: ServiceSettings, engine: Engine):
    """A client of an app with other settings (the engine loaded once)."""

    def make(**changes: object) -> TestClient:
        return TestClient(create_app(ServiceSettings(**(service_settings.model_dump() | changes)), engine))

    return make


def test_explain_returns_the_constraints_view_of_each_step(client: TestClient, engine: Engine) -> None:
    plain = client.post("/v1/answer", json={"question": QUESTION}).json()
    assert plain["trace"] is None  # off by default
    body = client.post("/v1/answer", json={"question": QUESTION, "top_k": 3, "explain": True}).json()
    answer, trace = body["answer"], body["trace"]
    assert answer == plain["answer"]
    key = path_key(answer["name"], answer["predicate"], answer["meaning"])
    steps = trace["steps"]
    assert "".join(SEP if s["part"] == "separator" else s["text"] for s in steps[:-1]) == key
    for position, step in enumerate(steps):
        assert step["allowed"] == len(engine.index.next_codepoints(key[:position])), position
        assert step["forced"] == (step["allowed"] == 1)
    assert trace["forced_steps"] == sum(s["forced"] for s in steps)
    assert trace["chosen_steps"] == sum(not s["forced"] for s in steps)
    assert trace["chosen_steps"] + trace["forced_steps"] == len(steps)  # the counts the page shows add up
    assert trace["completed_steps"] == sum(not s["decoded"] for s in steps) <= trace["forced_steps"]
    assert trace["decoded_steps"] == len(steps) - trace["completed_steps"]
    assert all(s["forced"] for s in steps if not s["decoded"])  # what the KB completed, it forced
    assert set(trace["log_probability"]) == {"name", "relation", "meaning"}
    schema = client.get("/openapi.json").json()["components"]["schemas"]
    assert schema["AnswerRequest"]["properties"]["explain"]["default"] is False
    assert "trace" in schema["AnswerResponse"]["properties"]


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_explain_must_be_a_boolean(client: TestClient, value: object) -> None:
    response = client.post("/v1/answer", json={"question": QUESTION, "explain": value})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][-1] == "explain"


def test_info_reports_version_model_index_and_settings(kgclue_client: TestClient, kgclue_engine: Engine) -> None:
    engine = kgclue_engine
    info = kgclue_client.get("/v1/info").json()
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", info["version"])
    model = info["model"]
    assert model["name"] == "kgqa-default"
    assert model["parameters"] == sum(p.numel() for p in _float_model(engine).parameters())
    assert model["vocabulary_size"] == len(engine.answerer.runtime.tokenizer)
    assert model["quantized"] is True and model["ranker"] is True
    assert (
        model["abstain_below"]
        == engine.answerer.abstain_below
        == json.loads((DEFAULT_MODEL / "confidence.json").read_text(encoding="utf-8"))["threshold"]
    )
    assert model["training"]["train_file"] == "train.json"
    assert model["dev"]["greedy_best_epoch"]["EM_O"] > 0
    assert [r["ranking"] for r in model["dev"]["ranker_out_of_fold"]["rows"]] == [
        "model log-probability",
        "learned ranker, all features",
    ]
    index = info["index"]
    counts = engine.index.manifest.counts
    assert (index["triples"], index["names"], index["relations"]) == (
        counts["triples"],
        counts["names"],
        counts["relations"],
    )
    assert index["manifest_sha256"] == engine.index.checksum
    assert [s["file"] for s in index["sources"]] == ["knowledge_sim_dev.tsv.gz"]  # a file name, not a machine path
    assert info["decoding"]["num_beams"] == 5
    assert info["service"]["workers"] == 1 and info["service"]["api_key_required"] is False
    assert "/" not in json.dumps(info["index"]["sources"])


def _float_model(engine: Engine):
    from kgqa.model.modeling import load_checkpoint

    model, _ = load_checkpoint(engine.model_path)
    return model


def test_docs_and_redoc_load_nothing_from_another_host(client: TestClient) -> None:
    for route in ("/docs", "/redoc"):
        response = client.get(route)
        assert "default-src 'self'" in response.headers["content-security-policy"]  # the browser refuses any other
        html = response.text
        assert not re.search(r"(https?:)?//", html), route
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert assets and all(a.startswith("/static-offline-docs/") for a in assets)
        for asset in assets:
            assert client.get(asset).status_code == 200, asset
    assert "validatorUrl" in client.get("/docs").text  # Swagger UI must not post the schema to validator.swagger.io


def test_the_page_and_its_files_are_served_with_a_same_origin_policy(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert not re.search(r"(https?:)?//", page.text)
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        assert client.get(asset).status_code == 200
    assert "/" not in client.get("/openapi.json").json()["paths"]  # the page is not part of the API


def test_api_key_guards_v1_and_leaves_probes_metrics_and_page_open(client_with) -> None:
    with client_with(api_key="s3cret") as keyed:
        wait_ready(keyed)
        for response in (
            keyed.post("/v1/answer", json={"question": QUESTION}),
            keyed.post("/v1/answer", json={"question": QUESTION}, headers={"Authorization": "Bearer wrong"}),
            keyed.post("/v1/answer", json={"question": QUESTION}, headers={"Authorization": "Basic czNjcmV0"}),
            keyed.post("/v1/answer", json={"nonsense": 1}),  # 401 before validation: nothing is told to strangers
            keyed.get("/v1/info"),
            keyed.get("/v1/entities/龙编站"),
        ):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            assert "KGQA_API_KEY" in response.json()["detail"]
        ok = keyed.post("/v1/answer", json={"question": QUESTION}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and ok.json()["answer"]["object"]
        assert keyed.get("/v1/info", headers={"Authorization": "Bearer s3cret"}).json()["service"]["api_key_required"]
        for route in ("/healthz", "/readyz", "/metrics", "/", "/static/app.js", "/docs", "/openapi.json"):
            assert keyed.get(route).status_code == 200, route
    schema = client_with().get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_cors_answers_only_configured_origins(client: TestClient, client_with) -> None:
    allowed, other = "https://pages.example", "https://elsewhere.example"
    with client_with(cors_origins=[allowed]) as cors:
        wait_ready(cors)
        yes = cors.post("/v1/answer", json={"question": QUESTION}, headers={"Origin": allowed})
        assert yes.headers["access-control-allow-origin"] == allowed
        assert "x-request-id" in yes.headers["access-control-expose-headers"].lower()
        no = cors.post("/v1/answer", json={"question": QUESTION}, headers={"Origin": other})
        assert "access-control-allow-origin" not in no.headers
        preflight = {"Origin": allowed, "Access-Control-Request-Method": "POST"}
        preflight["Access-Control-Request-Headers"] = "authorization,content-type"
        answered = cors.options("/v1/answer", headers=preflight)
        assert answered.status_code == 200 and answered.headers["access-control-allow-origin"] == allowed
        assert cors.options("/v1/answer", headers=preflight | {"Origin": other}).status_code == 400
    default = client.post("/v1/answer", json={"question": QUESTION}, headers={"Origin": allowed})
    assert "access-control-allow-origin" not in default.headers  # none by default


def test_settings_read_cors_origins_and_api_key_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGQA_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("KGQA_API_KEY", "key-9f3e")
    monkeypatch.setenv("KGQA_LOG_FORMAT", "json")
    settings = ServiceSettings()
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "key-9f3e"
    assert "key-9f3e" not in repr(settings)
    monkeypatch.setenv("KGQA_API_KEY", "")
    assert ServiceSettings().api_key is None  # an empty variable is no key, not an empty key
    monkeypatch.setenv("KGQA_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        ServiceSettings()


def test_request_id_is_echoed_or_made_and_written_in_the_access_log(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="kgqa.access"):
        given = client.get("/healthz", headers={"X-Request-ID": "trace-42.a:b_c"})
        made = client.get("/healthz")
        unsafe = client.get("/healthz", headers={"X-Request-ID": "x" * 129})
        failed = client.post("/v1/answer", json={}, headers={"X-Request-ID": "bad-body-1"})
    assert given.headers["x-request-id"] == "trace-42.a:b_c"
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe.headers["x-request-id"])
    assert failed.status_code == 422 and failed.headers["x-request-id"] == "bad-body-1"
    logged = {r.request_id: r for r in caplog.records if r.name == "kgqa.access"}
    assert logged["trace-42.a:b_c"].status == 200 and logged["trace-42.a:b_c"].path == "/healthz"
    assert "request_id=bad-body-1" in logged["bad-body-1"].getMessage() and logged["bad-body-1"].status == 422
    assert made.headers["x-request-id"] in logged


def test_json_formatter_writes_one_object_with_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord("kgqa.access", logging.INFO, __file__, 1, "GET %s", ("/x",), None)
    record.request_id = "r1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "GET /x" and line["level"] == "info" and line["request_id"] == "r1"
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        failed = logging.LogRecord("kgqa", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    assert "ValueError: boom" in json.loads(JsonFormatter().format(failed))["exception"]


@pytest.fixture(scope="module")
def json_logging_server(service_settings: ServiceSettings) -> Iterator[ServerProcess]:
    server = ServerProcess(
        service_settings.model, service_settings.index, "--log-format", "json", access_log=True
    ).start()
    yield server
    server.stop()


def test_a_real_server_logs_json_lines_with_request_ids(json_logging_server: ServerProcess) -> None:
    import httpx

    with httpx.Client(base_url=json_logging_server.url, timeout=60) as http:
        response = http.post("/v1/answer", json={"question": QUESTION}, headers={"X-Request-ID": "json-log-check"})
    assert response.status_code == 200 and response.headers["x-request-id"] == "json-log-check"
    assert json_logging_server.stop() == 0
    # every log line is one JSON object; the rest of the output is the URL line and the weights' progress bar
    lines = [json.loads(line) for line in json_logging_server.output if line.startswith("{")]
    assert {"time", "level", "logger", "message"} <= set(lines[0])
    loggers = {line["logger"] for line in lines}
    assert {"kgqa.service", "uvicorn.error", "kgqa.access"} <= loggers
    [access] = [line for line in lines if line.get("request_id") == "json-log-check"]
    assert (access["method"], access["path"], access["status"]) == ("POST", "/v1/answer", 200)
    assert access["duration_ms"] > 0
