"""SIGHUP reloads the index (and model) of a running ``kgqa serve`` under load: no request fails, a subject only the
new KB has is answered afterwards, a KB with characters the model never saw is served, a corrupt index is refused
while the old one keeps serving."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from kgqa.bench.process import ServerProcess
from kgqa.model.tokenizer import load_tokenizer
from kgqa.service.settings import ServiceSettings
from kgqa.trie import KBIndex, build_index
from tests.conftest import TINY_KB, write_kb

OLD_QUESTION = "你知道守望星光是哪家公司出品的吗？"
NEW_KB = [
    *TINY_KB,
    "守望月光\t出品公司\t月光唱片",  # only in the new KB
    "㐆山\t海拔\t1234米",  # a character the model never saw
]


def _index(root: Path, name: str, lines: list[str]) -> KBIndex:
    build_index([write_kb(root / f"{name}.tsv", lines)], root / name, progress=False)
    return KBIndex(root / name)


def _point(link: Path, target: Path) -> None:
    """Switch the symlink ``link`` to ``target`` atomically, as an operator would (ln -sfn then mv -T)."""
    staged = link.with_name(link.name + ".new")
    staged.unlink(missing_ok=True)
    staged.symlink_to(target)
    os.replace(staged, link)


def _served(http: httpx.Client) -> dict:
    return http.get("/readyz").json()["index"]


def _reload_and_wait(server: ServerProcess, http: httpx.Client, checksum: str, timeout: float = 120.0) -> float:
    started = time.monotonic()
    os.kill(server.pid, signal.SIGHUP)
    while _served(http)["manifest_sha256"] != checksum:
        assert time.monotonic() - started < timeout, "the reload did not happen:\n" + "".join(server.output)
        assert server.process is not None and server.process.poll() is None, "".join(server.output)
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.mark.parametrize("workers", [1, 2])
def test_sighup_reloads_under_load_without_a_failed_request(
    service_settings: ServiceSettings, tmp_path: Path, workers: int
) -> None:
    old = _index(tmp_path, "old", TINY_KB)
    new = _index(tmp_path, "new", NEW_KB)
    corrupt = tmp_path / "corrupt"
    shutil.copytree(new.directory, corrupt)
    with open(corrupt / "shards/00000/paths.marisa", "r+b") as f:  # same size, other bytes: the trie no longer loads
        f.write(b"\0" * 64)
    link = tmp_path / "current"
    _point(link, old.directory)
    server = ServerProcess(service_settings.model, link, "--workers", str(workers)).start()
    statuses: list[int | str] = []
    stop = threading.Event()

    def load() -> None:  # questions back to back, each client on its own keep-alive connection
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                try:
                    statuses.append(client.post("/v1/answer", json={"question": OLD_QUESTION}).status_code)
                except httpx.HTTPError as exc:
                    statuses.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(4)]
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            assert _served(http)["manifest_sha256"] == old.checksum
            for t in threads:
                t.start()
            time.sleep(1.0)
            _point(link, new.directory)
            _reload_and_wait(server, http, new.checksum)
            if workers > 1:  # once the old workers drain, every new connection reaches a new one
                deadline = time.monotonic() + 60
                while sum("draining" in line for line in server.output) < workers:
                    assert time.monotonic() < deadline, "".join(server.output)
                    time.sleep(0.1)
                for _ in range(20):
                    assert httpx.get(f"{server.url}/readyz").json()["index"]["manifest_sha256"] == new.checksum
            time.sleep(1.0)
            answered = len(statuses)
            _point(link, corrupt)
            os.kill(server.pid, signal.SIGHUP)
            deadline = time.monotonic() + 60
            while not any("reload failed" in line for line in server.output):
                assert time.monotonic() < deadline, "".join(server.output)
                time.sleep(0.1)
            time.sleep(1.0)
            stop.set()
            for t in threads:
                t.join()
            assert len(statuses) > answered > 0
            assert set(statuses) == {200}, [s for s in statuses if s != 200][:5]
            assert _served(http)["manifest_sha256"] == new.checksum  # the corrupt index was refused
            assert "cannot be read" in "".join(server.output)  # and the log says why
            # the new KB's own subjects are served: found, and answered with its paths (the tiny test model's
            # answers need not be the right ones)
            assert http.get("/v1/entities/守望月光").json()["triples"][0]["object"] == "月光唱片"
            unseen = set(new.alphabet) - set(load_tokenizer(service_settings.model).get_vocab())
            assert "㐆" in unseen
            assert http.get("/readyz").json()["model"]["added_characters"] == len(unseen)
            assert http.get("/v1/entities/㐆山").json()["triples"][0]["object"] == "1234米"
            new_triples = {tuple(line.split("\t")) for line in NEW_KB}
            for question in ("你知道守望月光是哪家公司出品的吗？", "㐆山的海拔是多少？"):
                answer = http.post("/v1/answer", json={"question": question}).json()["answer"]
                assert (answer["subject"], answer["predicate"], answer["object"]) in new_triples
            metrics = http.get("/metrics").text
            assert f'manifest_sha256="{new.checksum}"' in metrics
            assert 'kgqa_reloads_total{result="ok"} 1.0' in metrics
            assert 'kgqa_reloads_total{result="failed"} 1.0' in metrics
            print(f"\n{workers} worker(s): {len(statuses)} requests during the test, statuses {sorted(set(statuses))}")
            print("".join(line for line in server.output if "reload" in line.lower()), end="")
    finally:
        stop.set()
        assert server.stop() == 0
