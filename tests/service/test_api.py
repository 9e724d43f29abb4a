"""Every route and every kind of bad input, through FastAPI's TestClient against a real model and index: the tiny
test model and KB; the tests about KgCLUE itself over the default model and the KgCLUE-sim index."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from kgqa.service.app import create_app
from kgqa.service.engine import Engine
from kgqa.service.settings import ServiceSettings
from tests.conftest import TINY_KB, TINY_QA
from tests.service.conftest import wait_ready

QUESTION = "你知道守望星光是哪家公司出品的吗？"  # the README's example; the default model answers it right


def test_the_default_model_answers_the_readmes_question(kgclue_client: TestClient) -> None:
    body = kgclue_client.post("/v1/answer", json={"question": QUESTION, "top_k": 3}).json()
    assert body["answer"]["object"] == "韩玉玲原创音乐"
    assert body["answer"]["predicate"] == "出品公司"
    assert body["answer"]["subject"] == "守望星光（韩玉玲、刘东考演唱歌曲）"


def test_the_default_model_says_when_the_kb_does_not_hold_the_answer(kgclue_client: TestClient) -> None:
    """Chit-chat gets no KB fact: answer null, the reason, the confidence and threshold, the nearest candidates."""
    body = kgclue_client.post("/v1/answer", json={"question": "你好", "top_k": 3}).json()
    assert body["answer"] is None and body["reason"] == "below_threshold"
    assert 0 <= body["confidence"] < body["threshold"] <= 1
    assert body["candidates"] and body["candidates"][0]["confidence"] == body["confidence"]
    assert all(c["confidence"] is None for c in body["candidates"][1:])
    answered = kgclue_client.post("/v1/answer", json={"question": QUESTION}).json()
    assert answered["reason"] is None and answered["confidence"] >= answered["threshold"]
    assert answered["answer"] == answered["candidates"][0]
    never = kgclue_client.post("/v1/answer/batch", json={"questions": ["你好", QUESTION]}).json()["results"]
    assert [r["reason"] for r in never] == ["below_threshold", None]


def test_answer_is_a_kb_path_with_its_object(client: TestClient, engine: Engine) -> None:
    response = client.post("/v1/answer", json={"question": QUESTION, "top_k": 3})
    assert response.status_code == 200
    body = response.json()
    assert body["question"] == QUESTION
    assert body["answer"] == body["candidates"][0]
    assert body["reason"] is None and body["threshold"] is None  # no ranker, so no confidence: never withheld
    assert 1 <= len(body["candidates"]) <= 3
    scores = [c["score"] for c in body["candidates"]]
    assert scores == sorted(scores, reverse=True)
    assert len({(c["subject"], c["predicate"]) for c in body["candidates"]}) == len(body["candidates"])
    for c in body["candidates"]:
        assert c["object"] in engine.index.objects(c["name"], c["predicate"], c["meaning"])
    assert body["took_ms"] > 0


def test_candidates_come_in_the_learned_rankers_order(kgclue_client: TestClient, kgclue_engine: Engine) -> None:
    """The default model ships a ranker: the API returns its order and scores, and what moved each candidate."""
    engine = kgclue_engine
    assert engine.answerer.ranker is not None, "models/kgqa-default has no ranker (make ranker)"
    question = "仁川的市鸟是什么？"
    body = kgclue_client.post("/v1/answer", json={"question": question, "top_k": 5}).json()
    expected = engine.answerer.answer([question], top_k=5)[0]
    assert [(c["subject"], c["predicate"]) for c in body["candidates"]] == [(c.subject, c.relation) for c in expected]
    assert [c["score"] for c in body["candidates"]] == pytest.approx([c.score for c in expected])
    for c in body["candidates"]:
        assert set(c["contributions"]) == set(engine.answerer.ranker.groups)
    assert body["answer"] == body["candidates"][0]


def test_top_k_defaults_to_one_and_may_exceed_the_beam(client: TestClient) -> None:
    assert len(client.post("/v1/answer", json={"question": QUESTION}).json()["candidates"]) == 1
    assert len(client.post("/v1/answer", json={"question": QUESTION, "top_k": 2.0}).json()["candidates"]) == 2
    wide = client.post("/v1/answer", json={"question": QUESTION, "top_k": 20}).json()
    assert 5 < len(wide["candidates"]) <= 20  # 20 beams for this one, distinct KB paths


def test_batch_keeps_the_order_and_matches_single_answers(client: TestClient) -> None:
    questions = [question for question, _ in TINY_QA] * 2
    batch = client.post("/v1/answer/batch", json={"questions": questions, "top_k": 2})
    assert batch.status_code == 200
    results = batch.json()["results"]
    assert [r["question"] for r in results] == questions
    for question, result in zip(questions[:4], results, strict=False):
        single = client.post("/v1/answer", json={"question": question, "top_k": 2}).json()
        assert [c["subject"] for c in single["candidates"]] == [c["subject"] for c in result["candidates"]]
        assert [c["predicate"] for c in single["candidates"]] == [c["predicate"] for c in result["candidates"]]


def server_timing(header: str) -> dict[str, float]:
    """``{"queue": ms, ...}`` of a ``Server-Timing`` header value."""
    metrics = (metric.partition(";dur=") for metric in header.split(",") if metric.strip())
    return {name.strip(): float(duration) for name, _, duration in metrics}


def test_server_timing_splits_the_handlers_time_into_queue_and_model(client: TestClient) -> None:
    """Each answer says where its time went: waiting for a batch, decoding, the whole handler (which holds both)."""
    single = client.post("/v1/answer", json={"question": QUESTION})
    batch = client.post("/v1/answer/batch", json={"questions": [question for question, _ in TINY_QA], "top_k": 2})
    for response in (single, batch):
        timing = server_timing(response.headers["Server-Timing"])
        assert set(timing) == {"queue", "model", "app"}
        assert timing["model"] > 0 and timing["queue"] >= 0
        assert timing["app"] >= timing["queue"] + timing["model"] - 0.01  # each rounded to 0.01 ms
    # the handler's time runs on after the body's took_ms is taken (the header is written last)
    assert server_timing(single.headers["Server-Timing"])["app"] >= single.json()["took_ms"] - 0.01


def test_question_that_no_kb_path_fits_gets_a_null_answer(service_settings: ServiceSettings, engine: Engine) -> None:
    # one decoding step decides no KB path: nothing fits, and that is an answer, not an error
    cut_short = Engine(engine.answerer.with_options(max_new_tokens=1))
    with TestClient(create_app(service_settings, cut_short)) as short_client:
        wait_ready(short_client)
        response = short_client.post("/v1/answer", json={"question": QUESTION, "top_k": 3})
    assert response.status_code == 200
    assert response.json()["answer"] is None
    assert response.json()["candidates"] == []


def test_entity_lists_every_meaning_and_one_entity_by_its_head(client: TestClient, engine: Engine) -> None:
    every = client.get("/v1/entities/守望星光").json()
    expected = engine.index.triples("守望星光")
    assert every["count"] == len(expected) and not every["truncated"]
    assert {(t["meaning"], t["predicate"], t["object"]) for t in every["triples"]} == {
        (t.meaning, t.relation, t.object) for t in expected
    }
    assert len({t["meaning"] for t in every["triples"]}) > 1
    one = client.get("/v1/entities/守望星光（韩玉玲、刘东考演唱歌曲）").json()
    assert one["count"] >= 1
    assert {t["subject"] for t in one["triples"]} == {"守望星光（韩玉玲、刘东考演唱歌曲）"}
    assert ("出品公司", "韩玉玲原创音乐") in {(t["predicate"], t["object"]) for t in one["triples"]}
    limited = client.get("/v1/entities/守望星光", params={"limit": 2}).json()
    assert len(limited["triples"]) == 2 and limited["truncated"] and limited["count"] == every["count"]


def test_memory_goes_back_to_the_os_after_a_batch_of_several_or_a_wide_beam_not_after_a_lone_question(
    engine: Engine,
) -> None:
    beam = engine.answerer.options.num_beams
    assert not engine.trims_after(["守望星光是谁出品的"], 1)
    assert not engine.trims_after(["守望星光是谁出品的"], [beam])
    assert engine.trims_after(["守望星光是谁出品的"], beam + 1)
    assert engine.trims_after(["守望星光是谁出品的", "刘晓华主要讲什么课啊"], [1, 1])


def test_unknown_entity_is_404_with_a_message(client: TestClient) -> None:
    response = client.get("/v1/entities/这个名字不在知识库里")
    assert response.status_code == 404
    assert "这个名字不在知识库里" in response.json()["detail"]
    # a NUL once listed the whole KB (marisa-trie cuts strings at NUL); a lone surrogate is no text at all
    assert client.get("/v1/entities/%00").status_code == 404
    assert client.get("/v1/entities/守望星光%00").status_code == 404
    assert client.get("/v1/entities/%ED%A0%80").status_code == 404


def test_odd_characters_in_a_question_are_answered_or_refused_never_5xx(client: TestClient) -> None:
    nul = client.post("/v1/answer", json={"question": "你知道守望星光\u0000是哪家公司出品的吗？"})
    assert nul.status_code == 200 and "\x00" not in nul.json()["answer"]["subject"]
    surrogate = client.post(
        "/v1/answer", content=b'{"question": "\\ud800abc"}', headers={"content-type": "application/json"}
    )
    assert surrogate.status_code == 422 and "question" in surrogate.json()["detail"]


def test_probes_and_docs(client: TestClient, engine: Engine) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready"
    assert ready["index"]["manifest_sha256"] == engine.index.checksum
    assert ready["index"]["triples"] == engine.index.manifest.counts["triples"] == len(TINY_KB)
    assert ready["model"] == {
        "path": str(engine.model_path),
        "runtime": "onnx",
        "quantized": True,
        "added_characters": 0,
    }
    metrics = client.get("/metrics").text
    assert f'kgqa_index_info{{manifest_sha256="{engine.index.checksum}",' in metrics
    assert f"kgqa_index_triples {float(len(TINY_KB))}" in metrics
    schema = client.get("/openapi.json").json()
    assert {"/v1/answer", "/v1/answer/batch", "/v1/entities/{name}", "/healthz", "/readyz", "/metrics"} <= set(
        schema["paths"]
    )
    assert client.get("/docs").status_code == 200


def test_metrics_count_requests_by_route_and_status_and_batches(client: TestClient) -> None:
    client.post("/v1/answer", json={"question": QUESTION})
    client.post("/v1/answer", json={"question": ""})
    client.get("/v1/entities/这个名字不在知识库里")
    text = client.get("/metrics").text
    assert 'kgqa_http_requests_total{method="POST",route="/v1/answer",status="200"}' in text
    assert 'kgqa_http_requests_total{method="POST",route="/v1/answer",status="422"}' in text
    assert 'kgqa_http_requests_total{method="GET",route="/v1/entities/{name}",status="404"}' in text
    assert 'kgqa_http_request_duration_seconds_bucket{le="0.5",route="/v1/answer"}' in text
    assert "kgqa_batch_size_count" in text and "kgqa_queue_depth" in text
    assert "kgqa_queue_duration_seconds_count" in text


def test_not_ready_before_start_up(service_settings: ServiceSettings, engine: Engine) -> None:
    # no lifespan has run (no `with`): the batcher is not started and nothing is warmed up
    not_started = TestClient(create_app(service_settings, engine))
    assert not_started.get("/healthz").status_code == 200
    readyz = not_started.get("/readyz")
    assert readyz.status_code == 503 and readyz.json() == {"status": "loading"}
    response = not_started.post("/v1/answer", json={"question": QUESTION})
    assert response.status_code == 503 and "loading" in response.json()["detail"]


BAD_ANSWER_BODIES = {
    "empty question": ({"question": ""}, 422, "question"),
    "whitespace question": ({"question": " \t\n　"}, 422, "question"),
    "question over 256 characters": ({"question": "问" * 257}, 422, "question"),
    "question not a string": ({"question": 42}, 422, "question"),
    "question null": ({"question": None}, 422, "question"),
    "question missing": ({"top_k": 2}, 422, "question"),
    "top_k zero": ({"question": QUESTION, "top_k": 0}, 422, "top_k"),
    "top_k over 20": ({"question": QUESTION, "top_k": 21}, 422, "top_k"),
    "top_k a string": ({"question": QUESTION, "top_k": "3"}, 422, "top_k"),
    "top_k a float": ({"question": QUESTION, "top_k": 2.5}, 422, "top_k"),
    "top_k a boolean": ({"question": QUESTION, "top_k": True}, 422, "top_k"),
    "top_k null": ({"question": QUESTION, "top_k": None}, 422, "top_k"),
    "unknown field": ({"question": QUESTION, "lang": "zh"}, 422, "lang"),
    "not an object": ([QUESTION], 422, "body"),
}


@pytest.mark.parametrize("body, status, field", BAD_ANSWER_BODIES.values(), ids=BAD_ANSWER_BODIES.keys())
def test_bad_answer_body_is_a_4xx_json_error(client: TestClient, body: object, status: int, field: str) -> None:
    response = client.post("/v1/answer", json=body)
    assert response.status_code == status
    error = response.json()
    assert isinstance(error["detail"], str) and field in error["detail"]


BAD_BATCH_BODIES = {
    "no questions": ({"questions": []}, "questions"),
    "257 questions": ({"questions": [QUESTION] * 257}, "questions"),
    "one blank question": ({"questions": [QUESTION, "  "]}, "questions.1"),
    "questions not a list": ({"questions": QUESTION}, "questions"),
    "a question not a string": ({"questions": [QUESTION, 7]}, "questions.1"),
    "unknown field": ({"questions": [QUESTION], "question": QUESTION}, "question"),
}


@pytest.mark.parametrize("body, field", BAD_BATCH_BODIES.values(), ids=BAD_BATCH_BODIES.keys())
def test_bad_batch_body_is_422(client: TestClient, body: object, field: str) -> None:
    response = client.post("/v1/answer/batch", json=body)
    assert response.status_code == 422
    assert field in response.json()["detail"]


@pytest.mark.parametrize("content", [b"{bad", b'{"question": "a",}', b"\xff\xfe", b'{"question": "a"'])
def test_invalid_json_is_400(client: TestClient, content: bytes) -> None:
    response = client.post("/v1/answer", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


def test_missing_body_and_wrong_content_type(client: TestClient) -> None:
    missing = client.post("/v1/answer", headers={"content-type": "application/json"})
    assert missing.status_code == 422 and "missing" in missing.json()["detail"]
    form = client.post("/v1/answer", content=json.dumps({"question": QUESTION}), headers={"content-type": "text/plain"})
    assert form.status_code == 415 and "application/json" in form.json()["detail"]


def test_body_over_the_size_limit_is_413(client: TestClient, service_settings: ServiceSettings) -> None:
    big = json.dumps({"question": "问" * service_settings.max_body_bytes}).encode()
    declared = client.post("/v1/answer", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and "larger than" in declared.json()["detail"]

    def chunks():  # no Content-Length: the limit is counted as the body arrives
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    streamed = client.post("/v1/answer", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413


def test_unknown_route_and_wrong_method_are_json(client: TestClient) -> None:
    missing = client.get("/v2/answer")
    assert missing.status_code == 404 and "detail" in missing.json()
    wrong = client.get("/v1/answer")
    assert wrong.status_code == 405 and "detail" in wrong.json()
    bad_limit = client.get("/v1/entities/守望星光", params={"limit": 0})
    assert bad_limit.status_code == 422 and "limit" in bad_limit.json()["detail"]


def test_overload_is_503_with_retry_after(service_settings: ServiceSettings, engine: Engine) -> None:
    tight = service_settings.model_copy(update={"max_queue": 2})
    with TestClient(create_app(tight, engine)) as small_client:
        wait_ready(small_client)
        response = small_client.post("/v1/answer/batch", json={"questions": [QUESTION] * 3})
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1" and "overloaded" in response.json()["detail"]
        assert small_client.post("/v1/answer/batch", json={"questions": [QUESTION] * 2}).status_code == 200


def test_a_draining_worker_closes_each_connection_after_its_response(client: TestClient) -> None:
    """What a worker retired by a reload does for its last seconds (SIGUSR1), so keep-alive clients move off it."""
    assert "connection" not in client.get("/healthz").headers
    state = client.app.state.kgqa
    state.draining = True
    try:
        response = client.post("/v1/answer", json={"question": "守望星光的歌手是谁？"})
        assert response.status_code == 200 and response.headers["connection"] == "close"
    finally:
        state.draining = False


def test_a_request_past_its_deadline_gets_504_json(service_settings: ServiceSettings, engine: Engine) -> None:
    settings = service_settings.model_copy(update={"request_timeout_s": 1e-6})
    with TestClient(create_app(settings, engine), raise_server_exceptions=False) as late:
        wait_ready(late)
        response = late.post("/v1/answer/batch", json={"questions": ["守望星光的歌手是谁？"] * 8})
        assert response.status_code == 504
        assert "KGQA_REQUEST_TIMEOUT_S" in response.json()["detail"]
