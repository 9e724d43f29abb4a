"""Load test of `kgqa serve` on loopback: latency and throughput at several concurrencies, RSS of 1 vs 2 workers.

A benchmark, not a test: it prints a table and writes JSON. Each level runs for a fixed time (or request count) with
that many clients, each sending one KgCLUE dev question per request (`POST /v1/answer`) as soon as its last answer
came (a request that fails or answers null counts as an error). The load generator runs on the same machine as the
server and takes some of its CPU; it is a minimal keep-alive HTTP client to take little.

    .venv/bin/python scripts/bench_service.py --model models/kgqa-default --index indexes/kgclue-sim --json OUT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import socket
import statistics
import sys
import time
from pathlib import Path

from kgqa.bench.process import ServerProcess, child_pids, memory_mb
from kgqa.data import read_questions
from kgqa.data.locate import find_data_dir


def tree_memory_mb(pid: int) -> dict[str, float]:
    """RSS and PSS (shared pages split among their users) summed over a process and its children."""
    return memory_mb([pid, *child_pids(pid)])


class Connection:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams: a fraction of httpx's CPU per request, which matters
    when the load generator shares the server's two cores."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: dict) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers (names in lower case)."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert self.reader is not None
        payload = json.dumps(body, ensure_ascii=False).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(payload)}\r\n\r\n"
        ).encode()
        self.writer.write(head + payload)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed")
        headers = {}
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        return int(status_line.split()[1]), await self.reader.readexactly(length), headers

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def load(url: str, questions: list[str], concurrency: int, seconds: float, max_requests: int) -> dict:
    host, port = url.removeprefix("http://").rsplit(":", 1)
    latencies: list[float] = []
    timings: list[dict[str, float]] = []  # each answer's Server-Timing (ms)
    errors = 0
    sent = 0
    deadline = time.perf_counter() + seconds

    async def one_client() -> None:
        nonlocal errors, sent
        connection = Connection(host, int(port))
        try:
            while time.perf_counter() < deadline and sent < max_requests:
                question = questions[sent % len(questions)]
                sent += 1
                started = time.perf_counter()
                try:
                    status, body, headers = await connection.post_json("/v1/answer", {"question": question})
                    answer = json.loads(body) if status == 200 else {}
                    # an abstention ("the KB does not hold this") is an answer; no KB path for a dev question is not
                    ok = answer.get("answer") is not None or answer.get("reason") == "below_threshold"
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    ok = False
                    await connection.close()
                    connection = Connection(host, int(port))
                if ok:
                    latencies.append(time.perf_counter() - started)
                    timings.append(server_timing(headers.get("server-timing", "")))
                else:
                    errors += 1
        finally:
            await connection.close()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started

    quantiles = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [latencies[0]] * 99
    return {
        "concurrency": concurrency,
        "requests": len(latencies) + errors,
        "errors": errors,
        "seconds": round(elapsed, 2),
        "questions_per_second": round(len(latencies) / elapsed, 1),
        "p50_ms": round(1000 * statistics.median(latencies), 1),
        "p95_ms": round(1000 * quantiles[94], 1),
        "p99_ms": round(1000 * quantiles[98], 1),
        "where_ms": where_time_goes(latencies, timings),
    }


def server_timing(header: str) -> dict[str, float]:
    """``{"queue": ms, "model": ms, "app": ms}`` of a ``Server-Timing`` header value."""
    metrics = (metric.partition(";dur=") for metric in header.split(",") if metric.strip())
    return {name.strip(): float(duration) for name, _, duration in metrics}


def where_time_goes(latencies: list[float], timings: list[dict[str, float]]) -> dict[str, float]:
    """The mean answer's latency split by the service's Server-Timing (means, so the parts add up): waiting for a
    batch, decoding (the model, ranking included), the rest of the handler, and HTTP (transport, parsing,
    validation, serialization, this client)."""
    if not timings or any(set(t) != {"queue", "model", "app"} for t in timings):
        return {}
    queue, model, app = (statistics.fmean(t[part] for t in timings) for part in ("queue", "model", "app"))
    latency = 1000 * statistics.fmean(latencies)
    parts = {"mean": latency, "batching": queue, "model": model, "handler": app - queue - model, "http": latency - app}
    return {name: round(value, 2) for name, value in parts.items()}


async def fairness(url: str, questions: list[str], seconds_between: float = 0.5) -> dict:
    """Single questions, one every ``seconds_between``, while one batch request of 256 questions of 256 characters
    with top_k 20 (the largest the API accepts) decodes: their latency, and how long the batch took."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    long_questions = [(q * 20)[:256] for q in questions[:256]]
    batch_connection = Connection(host, int(port))
    started = time.perf_counter()
    batch = asyncio.ensure_future(
        batch_connection.post_json("/v1/answer/batch", {"questions": long_questions, "top_k": 20})
    )
    latencies: list[float] = []
    errors = 0
    single = Connection(host, int(port))
    await asyncio.sleep(1.0)  # the batch is in and decoding
    while not batch.done():
        sent = time.perf_counter()
        status, _, _ = await single.post_json("/v1/answer", {"question": questions[len(latencies) % len(questions)]})
        if status == 200:
            latencies.append(time.perf_counter() - sent)
        else:
            errors += 1
        await asyncio.sleep(seconds_between)
    batch_status, _, _ = await batch
    batch_seconds = time.perf_counter() - started
    await single.close()
    await batch_connection.close()
    # inclusive: with few samples (the baseline's) a percentile stays within what was seen, never beyond the maximum
    quantiles = (
        statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [latencies[0]] * 99
    )
    return {
        "batch_status": batch_status,
        "batch_seconds": round(batch_seconds, 1),
        "single_questions": len(latencies),
        "single_errors": errors,
        "single_p50_ms": round(1000 * statistics.median(latencies), 1),
        "single_p99_ms": round(1000 * quantiles[98], 1),
        "single_max_ms": round(1000 * max(latencies), 1),
        "single_latencies_ms": [round(1000 * x, 1) for x in latencies],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    parser.add_argument("--index", type=Path, default=Path("indexes/kgclue-sim"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=20.0, help="per concurrency level")
    parser.add_argument("--max-requests", type=int, default=2000, help="per concurrency level")
    parser.add_argument("--rss-seconds", type=float, default=15.0, help="load at concurrency 32 before reading RSS")
    parser.add_argument("--serve-flags", default="", help='passed to kgqa serve, e.g. "--threads 1"')
    parser.add_argument("--workers", type=int, default=1, help="workers for the latency/throughput levels")
    parser.add_argument("--skip-memory", action="store_true", help="no 1-vs-2-worker memory runs")
    parser.add_argument(
        "--fairness-only", action="store_true", help="only single questions' latency beside a 256-question batch"
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    questions = [q.question for q in read_questions(find_data_dir(download=False) / "dev.json")]
    result: dict = {"levels": [], "memory": [], "serve_flags": args.serve_flags, "cpus": os.cpu_count()}

    result["workers"] = args.workers
    flags = shlex.split(args.serve_flags)
    if args.fairness_only:
        # the baseline in the same run: batches bounded by their number of questions only, as before the cost bound
        runs = {"no cost bound (baseline)": ["--max-batch-cost", str(10**9)], "default cost bound": []}
        result["fairness"] = {}
        for label, extra in runs.items():
            server = ServerProcess(args.model, args.index, "--workers", str(args.workers), *flags, *extra).start()
            try:
                result["fairness"][label] = asyncio.run(fairness(server.url, questions))
            finally:
                server.stop()
            shown = {k: v for k, v in result["fairness"][label].items() if k != "single_latencies_ms"}
            print(f"{label}: single questions beside a 256 x 256-character batch (top_k 20): {shown}", flush=True)
        base, bounded = result["fairness"].values()
        print()
        print("| batching | batch request (s) | single questions | single p50 ms | single p99 ms | single max ms |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for label, r in result["fairness"].items():
            print(
                f"| {label} | {r['batch_seconds']} | {r['single_questions']} | {r['single_p50_ms']} | "
                f"{r['single_p99_ms']} | {r['single_max_ms']} |"
            )
        print(
            f"| ratio (bounded / baseline) | {bounded['batch_seconds'] / base['batch_seconds']:.2f}x | | "
            f"{bounded['single_p50_ms'] / base['single_p50_ms']:.2f}x | "
            f"{bounded['single_p99_ms'] / base['single_p99_ms']:.2f}x | |"
        )
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    server = ServerProcess(args.model, args.index, "--workers", str(args.workers), *flags).start()
    url = server.url
    try:
        asyncio.run(load(url, questions[-50:], 4, 3.0, 50))  # warm-up, on questions not in the measured runs
        for concurrency in args.concurrency:
            level = asyncio.run(load(url, questions, concurrency, args.seconds, args.max_requests))
            result["levels"].append(level)
            print(f"concurrency {concurrency}: {level}", flush=True)
    finally:
        server.stop()

    for workers in () if args.skip_memory else (1, 2):
        server = ServerProcess(args.model, args.index, "--workers", str(workers), *flags).start()
        try:
            idle = tree_memory_mb(server.pid)
            level = asyncio.run(load(server.url, questions, 32, args.rss_seconds, args.max_requests))
            loaded = tree_memory_mb(server.pid)
        finally:
            server.stop()
        row = {"workers": workers, "idle": idle, "after_load": loaded, "load": level}
        result["memory"].append(row)
        print(f"workers {workers}: {row}", flush=True)

    print()
    print("| concurrency | requests | errors | questions/s | p50 ms | p95 ms | p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in result["levels"]:
        print(
            f"| {r['concurrency']} | {r['requests']} | {r['errors']} | {r['questions_per_second']} "
            f"| {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} |"
        )
    print()
    print("where the mean answer's time goes (ms; the service's Server-Timing header):\n")
    print("| concurrency | mean | batching (queue) | model | handler rest | HTTP and client |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in result["levels"]:
        w = r["where_ms"]
        if w:
            print(
                f"| {r['concurrency']} | {w['mean']} | {w['batching']} | {w['model']} | {w['handler']} | {w['http']} |"
            )
    print()
    if result["memory"]:
        print(
            "| workers | processes | RSS idle MB | PSS idle MB | RSS after load MB | PSS after load MB "
            "| q/s at 32 | errors |"
        )
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m in result["memory"]:
            print(
                f"| {m['workers']} | {m['after_load']['processes']} | {m['idle']['rss_mb']} | {m['idle']['pss_mb']} "
                f"| {m['after_load']['rss_mb']} | {m['after_load']['pss_mb']} | {m['load']['questions_per_second']} "
                f"| {m['load']['errors']} |"
            )
        one, two = (m["after_load"] for m in result["memory"])
        ratio = {"rss": round(two["rss_mb"] / one["rss_mb"], 3), "pss": round(two["pss_mb"] / one["pss_mb"], 3)}
        result["ratio_2_to_1"] = ratio
        print(f"\n2 workers / 1 worker after load: RSS {ratio['rss']}×, PSS {ratio['pss']}× (PSS splits shared pages)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
