"""``kgqa bench index``: build, size, load and allowed-next latency of the index, beside a GENRE-style baseline.

The build and the queries run in child processes, so peak RSS, load time and RSS after load are each measured in a
process that did only that. Both query functions answer the same random real prefixes, and their answers are
compared; the baseline gets a time budget per depth, since at the root of a big trie a single query takes seconds.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
from tqdm import tqdm

from kgqa.bench.genre import EnumeratingTrie
from kgqa.data.report import markdown_table
from kgqa.trie.index import KBIndex, mmap_trie
from kgqa.trie.keys import END_CODE, SEP_CODE
from kgqa.trie.tokens import TokenConstraint

DEPTHS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32)


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _drop_page_cache() -> bool:
    """Drop the OS page cache so the load is cold (needs root; says whether it worked)."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def _percentiles(samples_ns: list[int]) -> dict[str, float]:
    values = np.array(samples_ns, dtype=np.float64) / 1000.0
    return {"n": len(values), "p50_us": float(np.percentile(values, 50)), "p99_us": float(np.percentile(values, 99))}


def measure_queries(index_dir: Path, queries_per_depth: int, baseline_seconds: float, seed: int) -> dict[str, Any]:
    """Runs in a fresh process: load time, RSS, and per-depth latency of ours, ours as token ids, and the baseline."""
    rss_before = _rss_mb()
    started = time.perf_counter()
    index = KBIndex(index_dir)
    load_seconds = time.perf_counter() - started
    rss_after_load = _rss_mb()
    baseline = EnumeratingTrie(
        [mmap_trie(index_dir / shard["dir"] / "paths.marisa") for shard in index.manifest.shards]
    )
    vocab = {ch: i + 3 for i, ch in enumerate(index.alphabet)}  # a character vocabulary as the tokenizer builds one
    tokens = TokenConstraint(index, vocab, sep_token_id=1, eos_token_id=2)
    id_of = {**vocab, chr(SEP_CODE): 1}

    rng = random.Random(seed)
    sample = [index.path_key_by_id(rng.randrange(len(index))) for _ in range(queries_per_depth)]
    depths: list[dict[str, Any]] = []
    mismatches = 0
    for depth in tqdm(DEPTHS, desc="query latency by depth", unit="depth", file=sys.stderr):
        prefixes = [key[:depth] for key in sample if len(key) >= depth]
        if not prefixes:
            continue
        ours, as_ids, base = [], [], []
        for prefix in prefixes:
            t0 = time.perf_counter_ns()
            index.next_codepoints(prefix)
            ours.append(time.perf_counter_ns() - t0)
        for prefix in prefixes:
            token_ids = [id_of[ch] for ch in prefix]
            t0 = time.perf_counter_ns()
            tokens.allowed_token_ids(token_ids)
            as_ids.append(time.perf_counter_ns() - t0)
        budget_end = time.perf_counter() + baseline_seconds
        for prefix in prefixes if baseline_seconds > 0 else ():  # 0: no baseline (at 100M its root query takes minutes)
            t0 = time.perf_counter_ns()
            expected = baseline.next_codepoints(prefix)
            base.append(time.perf_counter_ns() - t0)
            mismatches += set(index.next_codepoints(prefix).tolist()) != expected
            if time.perf_counter() > budget_end:
                break
        row = {"depth": depth, "ours": _percentiles(ours), "ours_token_ids": _percentiles(as_ids)}
        if base:
            row["genre_style"] = _percentiles(base)
            row["speedup_p50"] = row["genre_style"]["p50_us"] / row["ours"]["p50_us"]
            row["speedup_p99"] = row["genre_style"]["p99_us"] / row["ours"]["p99_us"]
        depths.append(row)
    return {
        "load_seconds": load_seconds,
        "rss_mb_before_load": rss_before,
        "rss_mb_after_load": rss_after_load,
        "rss_mb_after_queries": _rss_mb(),
        "answers_differing_from_baseline": mismatches,
        "end_code": END_CODE,
        "depths": depths,
    }


def bench_index(
    kb_files: list[Path],
    work_dir: Path,
    queries_per_depth: int = 2000,
    baseline_seconds: float = 20.0,
    seed: int = 0,
    heavy_threshold: int | None = None,
    reuse: bool = False,
) -> dict[str, Any]:
    index_dir = work_dir / "index"
    work_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"kb": [f.name for f in kb_files], "kb_bytes": sum(f.stat().st_size for f in kb_files)}
    if not (reuse and (index_dir / "manifest.json").is_file()):
        command = [sys.executable, "-m", "kgqa", "index", "build", "--out", str(index_dir)]
        for f in kb_files:
            command += ["--kb", str(f)]
        if heavy_threshold is not None:
            command += ["--heavy-threshold", str(heavy_threshold)]
        started = time.perf_counter()
        subprocess.run(command, check=True)
        result["build_seconds"] = time.perf_counter() - started
        # ru_maxrss of children: the largest child waited for so far, which is the build (the first child).
        result["build_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    manifest = json.loads((index_dir / "manifest.json").read_text())
    result["counts"] = manifest["counts"]
    result["skipped_lines"] = manifest["read"]["skipped"]
    result["heavy_threshold"] = manifest["heavy_threshold"]
    result["index_bytes"] = sum(p.stat().st_size for p in index_dir.rglob("*") if p.is_file())
    result["page_cache_dropped"] = _drop_page_cache()
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "kgqa.bench.index",
            str(index_dir),
            str(queries_per_depth),
            str(baseline_seconds),
            str(seed),
        ],
        check=True,
        stdout=subprocess.PIPE,  # the JSON result; its progress bar goes to our stderr
        text=True,
    )
    result.update(json.loads(worker.stdout.strip().splitlines()[-1]))
    return result


def format_table(result: dict[str, Any]) -> str:
    counts = result["counts"]
    measures: list[list[object]] = []
    if "build_seconds" in result:
        measures += [
            ["build wall time", f"{result['build_seconds']:.1f} s"],
            ["build peak RSS", f"{result['build_peak_rss_mb'] / 1024:.2f} GB"],
        ]
    cache = "cold: page cache dropped" if result["page_cache_dropped"] else "page cache not dropped"
    measures += [
        ["index size on disk", f"{result['index_bytes'] / 1e9:.3f} GB"],
        [f"load time ({cache})", f"{result['load_seconds'] * 1000:.1f} ms"],
        [
            "RSS after load (after all queries)",
            f"{result['rss_mb_after_load']:.0f} MB ({result['rss_mb_after_queries']:.0f} MB)",
        ],
        [f"heavy prefixes precomputed (> {result['heavy_threshold']} keys below)", f"{counts['heavy_prefixes']:,}"],
        ["answers differing from the baseline", result["answers_differing_from_baseline"]],
    ]
    depths = []
    for row in result["depths"]:
        ours, ids, base = row["ours"], row["ours_token_ids"], row["genre_style"]
        depths.append(
            [
                row["depth"], ours["n"], f"{ours['p50_us']:.1f}", f"{ours['p99_us']:.1f}", f"{ids['p99_us']:.1f}",
                base["n"], f"{base['p50_us']:,.1f}", f"{base['p99_us']:,.1f}", f"{row['speedup_p50']:,.0f}×",
                f"{row['speedup_p99']:,.0f}×",
            ]
        )  # fmt: skip
    depth_header = ["depth", "n", "ours p50", "ours p99", "as token ids p99", "GENRE-style n", "GENRE-style p50"]
    depth_header += ["GENRE-style p99", "speed-up p50", "speed-up p99"]
    return "\n".join(
        [
            f"knowledge base: {', '.join(result['kb'])} ({result['kb_bytes'] / 1e9:.2f} GB on disk)",
            f"  {counts['triples']:,} triples, {counts['paths']:,} paths, {counts['names']:,} names, "
            f"{counts['relations']:,} relations, {counts['objects']:,} objects, "
            f"{result['skipped_lines']:,} lines skipped",
            "",
            markdown_table(["measure", "value"], measures, numeric_from=2),
            "",
            "allowed next characters, latency in µs (n = queries timed; the baseline stops after its time budget)",
            "",
            markdown_table(depth_header, depths, numeric_from=0),
        ]
    )


if __name__ == "__main__":  # the query worker, run by bench_index in a fresh process
    print(json.dumps(measure_queries(Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))))
