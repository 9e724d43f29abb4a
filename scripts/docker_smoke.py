"""Build the image, run it on 127.0.0.1 with a read-only root filesystem (as deploy/k8s runs it; /tmp a tmpfs),
wait for /readyz, ask real questions, check the answers, reload it with SIGHUP, remove it.

Uses docker where a Docker engine answers, else podman (on machines without an engine, `podman-setup.sh` from
../shared/container makes podman usable and provides a local python:3.11-slim). Exits non-zero on any failure.

    .venv/bin/python scripts/docker_smoke.py --index indexes/kgclue-sim
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
PODMAN_SETUP = REPO.parent / "shared" / "container" / "podman-setup.sh"
IMAGE = "kgqa:smoke"
# (question, gold object from KgCLUE): questions the default model answers right
EXPECTED = [
    ("你知道守望星光是哪家公司出品的吗？", "韩玉玲原创音乐"),
    ("刘晓华主要讲什么课啊？", "《固体物理》"),
]


def log(message: str) -> None:
    print(f"[docker-smoke] {message}", flush=True)


def container_engine() -> list[str]:
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return ["docker"]
    if PODMAN_SETUP.is_file():
        log(f"no Docker engine; setting up podman with {PODMAN_SETUP}")
        done = subprocess.run(["bash", str(PODMAN_SETUP)], capture_output=True, text=True, check=True)
        export = done.stdout.strip().splitlines()[-1]  # export CONTAINERS_CONF=...
        name, _, value = export.removeprefix("export ").partition("=")
        os.environ[name] = value
    if shutil.which("podman"):
        return ["podman"]
    raise SystemExit("neither a Docker engine nor podman is available")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    log("$ " + " ".join(command))
    return subprocess.run(command, text=True, check=True, **kwargs)  # type: ignore[call-overload]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path, default=REPO / "indexes" / "kgclue-sim")
    args = parser.parse_args()

    engine = container_engine()
    build = [*engine, "build", "-t", IMAGE]
    if engine == ["podman"]:
        build += ["--pull=never", "--format", "docker"]  # docker format keeps HEALTHCHECK
    started = time.monotonic()
    run([*build, str(REPO)])
    log(f"image built in {time.monotonic() - started:.0f} s")
    size = run([*engine, "image", "inspect", IMAGE, "--format", "{{.Size}}"], capture_output=True).stdout.strip()
    log(f"image size: {int(size) / 1e9:.2f} GB")

    port = free_port()
    index = args.index.resolve()
    # a read-only root filesystem with /tmp writable, as deploy/k8s runs it
    flags = ["-d", "--init", "--read-only", "--tmpfs", "/tmp", "-p", f"127.0.0.1:{port}:8000"]
    container = run(
        [*engine, "run", *flags, "-v", f"{index}:/srv/kgqa/index:ro", IMAGE], capture_output=True
    ).stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        ready = False
        while time.monotonic() < deadline and not ready:
            with contextlib.suppress(httpx.TransportError):
                ready = httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            if not ready:
                state = run([*engine, "inspect", container, "--format", "{{.State.Status}}"], capture_output=True)
                if state.stdout.strip() != "running":
                    raise SystemExit(f"the container stopped ({state.stdout.strip()})")
                time.sleep(1)
        if not ready:
            raise SystemExit("the container did not become ready in 180 s")
        log(f"ready after {time.monotonic() - deadline + 180:.0f} s at {url}")
        user = run([*engine, "exec", container, "id", "-u"], capture_output=True).stdout.strip()
        assert user != "0", "the service runs as root"
        log(f"runs as uid {user}")

        with httpx.Client(base_url=url, timeout=60) as http:
            for question, expected in EXPECTED:
                body = http.post("/v1/answer", json={"question": question, "top_k": 3}).json()
                answer = body["answer"]
                log(f"{question} -> {answer['subject']} ||| {answer['predicate']} ||| {answer['object']}")
                if expected is not None:
                    assert answer["object"] == expected, f"expected {expected!r}"
                triples = http.get(f"/v1/entities/{answer['subject']}").json()["triples"]
                assert (answer["predicate"], answer["object"]) in {(t["predicate"], t["object"]) for t in triples}
            batch = http.post("/v1/answer/batch", json={"questions": [q for q, _ in EXPECTED]}).json()
            assert [r["question"] for r in batch["results"]] == [q for q, _ in EXPECTED]
            bad = http.post("/v1/answer", json={"question": "  "})
            assert bad.status_code == 422, bad.status_code
            log(f"blank question -> {bad.status_code} {bad.json()['detail']}")
            metrics = http.get("/metrics").text
            assert 'route="/v1/answer",status="200"' in metrics
            # the web page and the offline docs are in the image (package data), with their files
            page = http.get("/")
            assert page.status_code == 200 and "/static/app.js" in page.text, page.status_code
            assert http.get("/static/app.js").status_code == 200
            assert http.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
            info = http.get("/v1/info").json()
            assert info["model"]["name"] == "kgqa-default", info["model"]["name"]  # the model's own name, not "model"
            log(f"page, docs and /v1/info served: model {info['model']['name']}, {info['index']['triples']} triples")
            # a live reload as the README says to send it (through --init to kgqa serve); the same index comes back
            served = http.get("/readyz").json()["index"]["manifest_sha256"]
            run([*engine, "kill", "--signal", "HUP", container], capture_output=True)
            reload_deadline = time.monotonic() + 120
            while 'kgqa_reloads_total{result="ok"} 1.0' not in http.get("/metrics").text:
                assert time.monotonic() < reload_deadline, "SIGHUP did not reload"
                time.sleep(0.5)
            assert http.get("/readyz").json()["index"]["manifest_sha256"] == served
            assert http.post("/v1/answer", json={"question": EXPECTED[0][0]}).status_code == 200
            log("SIGHUP (kill --signal HUP) reloaded the index; still answering")
        if engine == ["podman"]:
            check = subprocess.run(["podman", "healthcheck", "run", container], capture_output=True, text=True)
            log(f"HEALTHCHECK: {'healthy' if check.returncode == 0 else 'unhealthy: ' + check.stdout + check.stderr}")
            assert check.returncode == 0
        log("all checks passed")
        return 0
    except BaseException:
        logs = subprocess.run([*engine, "logs", container], capture_output=True, text=True)
        print(logs.stdout[-4000:], logs.stderr[-4000:], file=sys.stderr)
        raise
    finally:
        subprocess.run([*engine, "rm", "-f", "-t", "10", container], capture_output=True)
        log(f"removed container {container[:12]}")


if __name__ == "__main__":
    sys.exit(main())
