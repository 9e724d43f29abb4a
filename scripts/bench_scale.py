"""The service at KgCLUE's full scale: the KgCLUE-sim KB plus synthetic triples to 20.56M, against the 2.4M-triple
KgCLUE-sim KB alone, in the same run.

A benchmark, not a test: it prints a table and writes JSON. Steps (the synthetic KB and its index are made once and
reused; their build figures are kept in ``build.json`` beside them):
1. ``kgqa bench synth-kb`` writes 20.56M minus the KgCLUE-sim KB's triples (seeded);
2. ``kgqa index build`` over both files, in a child process: wall time and peak RSS;
3. for each index: ``kgqa serve`` start-up time (process start to /readyz 200), single-question p50/p99
   (concurrency 1), questions/s at concurrency 32, RSS and PSS of 1 and 2 workers after load, the time a SIGHUP
   reload takes with 1 and 2 workers; and dev EM_O (``kgqa evaluate --quantize``, what the service decodes with).

    .venv/bin/python scripts/bench_scale.py --json bench/scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from bench_service import load, tree_memory_mb

from kgqa.bench.process import ServerProcess
from kgqa.bench.synthetic import KGCLUE_TRIPLES
from kgqa.data import read_questions
from kgqa.data.locate import find_data_dir
from kgqa.trie import KBIndex

KGQA = [sys.executable, "-m", "kgqa.cli"]


def build_scale_index(sim_kb: Path, sim_triples: int, work: Path, seed: int) -> dict:
    """The synthetic part and the index over both, once; their figures (reused on later runs)."""
    figures_file = work / "build.json"
    if figures_file.is_file() and (work / "index" / "manifest.json").is_file():
        return json.loads(figures_file.read_text())
    work.mkdir(parents=True, exist_ok=True)
    synth = work / "synth.tsv"
    if not synth.is_file():
        command = [*KGQA, "bench", "synth-kb", "--triples", str(KGCLUE_TRIPLES - sim_triples), "--seed", str(seed)]
        subprocess.run([*command, "--out", str(synth)], check=True)
    started = time.perf_counter()
    subprocess.run(
        [*KGQA, "index", "build", "--kb", str(sim_kb), "--kb", str(synth), "--out", str(work / "index"), "--quiet"],
        check=True,
    )
    figures = {
        "synthetic_file": synth.name,
        "seed": seed,
        "build_seconds": round(time.perf_counter() - started, 1),
        # the largest child's peak: the build ran alone in its child process
        "build_peak_rss_gb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2, 2),
    }
    figures_file.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def reloads_ok(url: str) -> float:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if line.startswith('kgqa_reloads_total{result="ok"}'):
                return float(line.split()[-1])
    return 0.0


def reload_seconds(server: ServerProcess, timeout: float = 300.0) -> float:
    """SIGHUP, then the time until the reload is done (its counter moves: the same index keeps its checksum)."""
    before = reloads_ok(server.url)
    started = time.perf_counter()
    os.kill(server.pid, signal.SIGHUP)
    while reloads_ok(server.url) == before:
        if time.perf_counter() - started > timeout:
            raise RuntimeError("the reload did not finish:\n" + "".join(server.output[-20:]))
        time.sleep(0.05)
    return round(time.perf_counter() - started, 2)


def measure_service(model: Path, index: Path, questions: list[str], seconds: float) -> dict:
    row: dict = {}
    for workers in (1, 2):
        started = time.perf_counter()
        server = ServerProcess(model, index, "--workers", str(workers)).start(timeout=600)
        startup = round(time.perf_counter() - started, 2)
        try:
            asyncio.run(load(server.url, questions[-50:], 4, 3.0, 50))  # warm-up, on questions not measured
            if workers == 1:
                row["startup_seconds"] = startup
                row["single"] = asyncio.run(load(server.url, questions, 1, seconds, 400))
                row["concurrency_32"] = asyncio.run(load(server.url, questions, 32, seconds, 4000))
            else:
                row["startup_seconds_2_workers"] = startup
                asyncio.run(load(server.url, questions, 32, seconds / 2, 2000))
            row[f"memory_{workers}_workers"] = tree_memory_mb(server.pid)
            row[f"reload_seconds_{workers}_workers"] = reload_seconds(server)
        finally:
            server.stop()
        print(f"{index}: {row}", flush=True)
    return row


def evaluate(model: Path, index: Path, dev: Path, out: Path, reuse: bool = False) -> dict:
    if reuse and out.is_file():  # dev EM_O does not depend on the machine's load: an earlier run's figure holds
        return json.loads(out.read_text())
    command = [*KGQA, "evaluate", "--model", str(model), "--index", str(index), "--qa", str(dev), "--quantize"]
    subprocess.run([*command, "--json", str(out)], check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    parser.add_argument("--index", type=Path, default=Path("indexes/kgclue-sim"), help="the 2.4M-triple index")
    parser.add_argument("--work", type=Path, default=Path("bench/scale"), help="synthetic KB and 20.56M index")
    parser.add_argument("--seconds", type=float, default=20.0, help="per load level")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--reuse-eval", action="store_true", help="take dev EM_O from an earlier run's files")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    data = find_data_dir(download=False)
    sim = KBIndex(args.index)
    result: dict = {"cpus": os.cpu_count(), "build": {}, "indexes": {}}
    result["build"] = build_scale_index(
        data / "knowledge_sim_dev.tsv.gz", sim.manifest.counts["triples"], args.work, args.seed
    )
    print(f"build: {result['build']}", flush=True)
    questions = [q.question for q in read_questions(data / "dev.json")]
    for label, index in (("2.4M", args.index), ("20.56M", args.work / "index")):
        kb = KBIndex(index)
        row = {"triples": kb.manifest.counts["triples"], "alphabet": len(kb.alphabet)}
        row |= measure_service(args.model, index, questions, args.seconds)
        if not args.skip_eval:
            out = args.work / f"eval-{label}.json"
            metrics = evaluate(args.model, index, data / "dev.json", out, args.reuse_eval)
            row |= {"dev_EM_O": metrics["EM_O"], "dev_seconds": metrics["seconds"]}
        result["indexes"][label] = row
    print_table(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {args.json}")
    return 0


def print_table(result: dict) -> None:
    small, large = result["indexes"]["2.4M"], result["indexes"]["20.56M"]
    rows = [
        ("triples", lambda r: f"{r['triples']:,}"),
        ("index characters", lambda r: f"{r['alphabet']:,}"),
        ("service start-up, 1 worker (s)", lambda r: r["startup_seconds"]),
        ("service start-up, 2 workers (s)", lambda r: r["startup_seconds_2_workers"]),
        ("single question p50 (ms)", lambda r: r["single"]["p50_ms"]),
        ("single question p99 (ms)", lambda r: r["single"]["p99_ms"]),
        ("questions/s at concurrency 32", lambda r: r["concurrency_32"]["questions_per_second"]),
        ("errors at concurrency 32", lambda r: r["concurrency_32"]["errors"]),
        ("RSS, 1 worker after load (MB)", lambda r: r["memory_1_workers"]["rss_mb"]),
        ("PSS, 1 worker after load (MB)", lambda r: r["memory_1_workers"]["pss_mb"]),
        ("RSS, 2 workers after load (MB)", lambda r: r["memory_2_workers"]["rss_mb"]),
        ("PSS, 2 workers after load (MB)", lambda r: r["memory_2_workers"]["pss_mb"]),
        (
            "PSS 2 workers / 1 worker",
            lambda r: round(r["memory_2_workers"]["pss_mb"] / r["memory_1_workers"]["pss_mb"], 2),
        ),
        ("SIGHUP reload, 1 worker (s)", lambda r: r["reload_seconds_1_workers"]),
        ("SIGHUP reload, 2 workers (s)", lambda r: r["reload_seconds_2_workers"]),
        ("dev EM_O (int8)", lambda r: r.get("dev_EM_O", "-")),
    ]
    build = result["build"]
    print(f"\n20.56M index build: {build['build_seconds']} s, peak RSS {build['build_peak_rss_gb']} GB\n")
    print("| measure | 2.4M (KgCLUE-sim) | 20.56M (+ synthetic) | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for name, value in rows:
        a, b = value(small), value(large)
        ratio = f"{b / a:.2f}×" if isinstance(a, int | float) and isinstance(b, int | float) and a else ""
        print(f"| {name} | {a} | {b} | {ratio} |")


if __name__ == "__main__":
    sys.exit(main())
