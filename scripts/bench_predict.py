"""`kgqa predict` on dev with the local engine and on Ray (1 and 2 actors): wall time, questions/s, peak memory of
the whole process tree (Ray's own processes and actors included), and whether the files are identical.

A benchmark, not a test: it prints a table and writes JSON. Memory is sampled every 0.2 s (psutil: RSS and PSS)
over every descendant of the command (RSS counts shared pages once per process; PSS splits them).

    .venv/bin/python scripts/bench_predict.py --json bench/predict.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

from kgqa.bench.process import descendants, memory_mb
from kgqa.data.locate import find_data_dir

KGQA = [sys.executable, "-m", "kgqa.cli"]


def run(command: list[str]) -> dict:
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = {"rss_mb": 0.0, "pss_mb": 0.0, "processes": 0}
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    while process.poll() is None:
        now = memory_mb(descendants(process.pid))
        peak = {key: max(peak[key], now[key]) for key in peak}
        time.sleep(0.2)
    reader.join()
    if process.returncode != 0:
        raise RuntimeError(f"{command} exited {process.returncode}:\n" + "".join(output[-30:]))
    return {"seconds": round(time.perf_counter() - started, 1)} | {f"peak_{k}": v for k, v in peak.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/kgqa-default"))
    parser.add_argument("--index", type=Path, default=Path("indexes/kgclue-sim"))
    parser.add_argument("--qa", type=Path, help="default: KgCLUE's dev.json")
    parser.add_argument("--work", type=Path, default=Path("bench/predict"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    qa = args.qa or find_data_dir(download=False) / "dev.json"
    questions = sum(1 for line in qa.read_text(encoding="utf-8").splitlines() if line.strip())
    args.work.mkdir(parents=True, exist_ok=True)
    base = [*KGQA, "predict", "--model", str(args.model), "--index", str(args.index), "--qa", str(qa), "--quantize"]
    runs = {
        "local": [],
        "ray, 1 actor (2 CPUs)": ["--engine", "ray", "--actors", "1"],
        "ray, 2 actors (1 CPU each)": ["--engine", "ray", "--actors", "2"],
    }
    result: dict = {"questions": questions, "runs": {}}
    reference = None
    for label, flags in runs.items():
        out = args.work / f"{label.split(',')[0]}-{len(result['runs'])}.json"
        row = run([*base, *flags, "--out", str(out)])
        row["questions_per_second"] = round(questions / row["seconds"], 2)
        text = out.read_text(encoding="utf-8")
        reference = reference if reference is not None else text
        row["identical_to_local"] = text == reference
        result["runs"][label] = row
        print(f"{label}: {row}", flush=True)

    print(f"\n{questions:,} questions of {qa.name}, int8 (--quantize), wall time with start-up and model loading\n")
    print("| engine | seconds | questions/s | peak RSS MB (tree) | peak PSS MB (tree) | processes | same answers |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for label, r in result["runs"].items():
        print(
            f"| {label} | {r['seconds']} | {r['questions_per_second']} | {r['peak_rss_mb']} | {r['peak_pss_mb']} "
            f"| {r['peak_processes']} | {'yes' if r['identical_to_local'] else 'NO'} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        print(f"written {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
