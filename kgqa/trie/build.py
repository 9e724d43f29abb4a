"""Compiling knowledge files into an index directory, in memory bounded by a budget, not by the KB.

Layout (all memory-mappable):

- ``shards/NNNNN/``: the keys of one contiguous key range each (see :mod:`kgqa.trie.shard`); the manifest lists every
  shard's first key and path count, so a prefix query reads the one shard its keys start in (two at a boundary).
- ``heavy.marisa`` + ``heavy_children.*.npy``: next characters of the prefixes with many keys below them that may
  span shards, the root's included; each shard holds the table of its own (see :mod:`kgqa.trie.heavy`).
- ``alphabet.txt``: every character that occurs in a path key (what a tokenizer must be able to spell).
- ``relation_stats/``: paths by relation and meaning ending, in key-range parts (see :mod:`kgqa.trie.stats`).
- ``manifest.json``: sources with sizes and checksums, counts, shards, skipped lines, build time; written last.

The build is an external sort (:mod:`kgqa.trie.runs`): the knowledge files, cut into pieces (:mod:`kgqa.trie.read`),
are read into sorted runs of (path key, object) lines; a k-way merge cuts the sorted stream into shard inputs; each
shard is built from its input alone. Pieces and shards are tasks, run here, in ``jobs`` worker processes or as Ray
tasks (:mod:`kgqa.trie.engines`). Temporary files live in a directory beside ``out_dir``, removed on success and on
failure; the finished index is swapped into ``out_dir`` atomically.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from kgqa import __version__
from kgqa.data.knowledge import SkipCounter
from kgqa.data.report import sha256_file
from kgqa.trie.engines import ENGINES, Runner, run_in_order, task_runner
from kgqa.trie.heavy import merge_heavy, save_heavy
from kgqa.trie.keys import KEY_ORDERS, NAME_RELATION_MEANING, SEP, key_parts
from kgqa.trie.manifest import Manifest
from kgqa.trie.read import read_into_runs
from kgqa.trie.runs import SortedRuns, merge_runs
from kgqa.trie.shard import ShardSummary, build_shard
from kgqa.trie.stats import RelationCounter, StatsSummary

# A light prefix's next characters come from enumerating its keys: at most this many. At 100M keys restoring one
# costs several µs (cache misses), so 8 keeps the p99 of a query near 100 µs; the table grows as the threshold falls.
DEFAULT_HEAVY_THRESHOLD = 8
DEFAULT_MEMORY_BUDGET = 2 * 2**30
# tiny budgets make many runs and shards of a small KB (tests do); a real build wants hundreds of MB or more
MIN_MEMORY_BUDGET = 4096
SHARDS_DIR = "shards"


class NotEnoughDiskError(OSError):
    """The temporary files and the index would not fit the disk; the message says how much space the build needs."""


@dataclass(frozen=True)
class BuildPlan:
    """How a memory budget is spent: the sort buffer of the pass over the files (shared by the ``jobs`` pieces read at
    once, so the read as a whole stays within it), then one shard at a time in each process. It depends on the budget
    alone, so the shards (and so the files) do not depend on ``jobs``; with ``jobs`` > 1 each shard-building worker
    stays within the budget (the merging process holds its statistics and little else meanwhile).

    A shard build holds its keys as str, the marisa trie being built, and its objects: measured at about
    ``SHARD_MEMORY_PER_INPUT_BYTE`` bytes per byte of shard input. The merging process also counts the KB's relation
    statistics, in ``stats_bytes`` (spilled beyond it, :mod:`kgqa.trie.stats`), beside a shard build of its own.
    """

    run_buffer_bytes: int
    shard_bytes: int
    stats_bytes: int

    SHARD_MEMORY_PER_INPUT_BYTE = 6
    RESERVED_BYTES = 160 * 2**20  # the interpreter, numpy, marisa, the merge's buffers

    @classmethod
    def for_budget(cls, memory_budget: int) -> BuildPlan:
        if memory_budget < MIN_MEMORY_BUDGET:
            raise ValueError(f"memory budget {memory_budget:,} bytes is below the least usable, {MIN_MEMORY_BUDGET:,}")
        usable = max(memory_budget - cls.RESERVED_BYTES, memory_budget // 4)
        stats = usable // 8
        return cls(
            run_buffer_bytes=usable * 3 // 5,
            shard_bytes=max(1, (usable - stats) // cls.SHARD_MEMORY_PER_INPUT_BYTE),
            stats_bytes=stats,
        )


def build_index(
    kb_files: Sequence[str | Path],
    out_dir: str | Path,
    heavy_threshold: int = DEFAULT_HEAVY_THRESHOLD,
    progress: bool = True,
    key_order: str = NAME_RELATION_MEANING,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    jobs: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
) -> Manifest:
    """Build the index of ``kb_files`` into ``out_dir`` (replaced atomically: a failed build leaves no index).

    ``key_order`` is the order of the parts after the name in each key, so the decoder's target order (relation then
    meaning by default). ``memory_budget`` (bytes) bounds what each process of the build holds in memory at once;
    ``jobs`` shards build at once (worker processes, or Ray tasks with ``engine="ray"``). Neither changes what the
    index answers, and ``jobs`` and ``engine`` do not change its files.
    """
    started = time.perf_counter()
    kb_files = _checked_inputs(kb_files, key_order, engine, jobs)
    plan = BuildPlan.for_budget(memory_budget)
    out_dir = Path(out_dir)
    _remove_abandoned_builds(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    check_disk_space(kb_files, out_dir.parent)
    work = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    spill = out_dir.with_name(f".{out_dir.name}.spill-{os.getpid()}")
    steps = tqdm(total=5, desc="index build", unit="step", disable=not progress, position=0, leave=True)
    try:
        work.mkdir()
        spill.mkdir()
        (work / SHARDS_DIR).mkdir()
        # a runner (worker processes) per step: a process that sorted a piece keeps some of that memory
        with _step(steps, "read and sort"), task_runner(engine, jobs, ray_address) as runner:
            runs, counter = _read(kb_files, spill, plan, key_order, runner, jobs, progress)
        if not runs.triples:
            raise ValueError(
                "no valid triple in " + ", ".join(map(str, kb_files)) + f" ({counter.lines} lines, all skipped)"
            )
        with _step(steps, "merge and build shards"), task_runner(engine, jobs, ray_address) as runner:
            summaries, stats = _merge_and_build(
                runs, spill, work, plan, heavy_threshold, progress, runner, jobs, key_order
            )
        with _step(steps, "heavy prefixes"):
            top_heavy = save_heavy(*merge_heavy([s.edges for s in summaries], heavy_threshold), work)
            alphabet = set().union(*(s.alphabet for s in summaries))
            (work / "alphabet.txt").write_text("".join(sorted(alphabet)), encoding="utf-8")
        with _step(steps, "checksums"):
            counts = _counts(summaries, stats.relations, top_heavy, len(alphabet))
            manifest = Manifest(
                heavy_threshold=heavy_threshold,
                sources=[_source(f) for f in kb_files],
                counts=counts,
                read=counter.as_dict(),
                kgqa_version=__version__,
                key_order=key_order,
                shards=[{"dir": _shard_dir(s.number), "first_key": s.first_key, "paths": s.paths} for s in summaries],
            )
            manifest.record_files(work)
        with _step(steps, "finish"):
            manifest.build_seconds = time.perf_counter() - started
            manifest.created_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            manifest.write(work)
            _swap_into(work, out_dir)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(spill, ignore_errors=True)
        steps.close()
    return manifest


def _read(
    kb_files: Sequence[Path], spill: Path, plan: BuildPlan, key_order: str, runner: Runner, jobs: int, progress: bool
) -> tuple[SortedRuns, SkipCounter]:
    total = sum(f.stat().st_size for f in kb_files)
    with tqdm(total=total, desc="read and sort", unit="B", unit_scale=True, disable=not progress, leave=False) as bar:
        return read_into_runs(kb_files, spill, plan.run_buffer_bytes, key_order, runner, jobs, bar.update)


def _merge_and_build(
    runs: SortedRuns,
    spill: Path,
    work: Path,
    plan: BuildPlan,
    heavy_threshold: int,
    progress: bool,
    runner: Runner,
    jobs: int,
    key_order: str,
) -> tuple[list[ShardSummary], StatsSummary]:
    """Merge the runs into shards and build them (``jobs`` at once); the merge also counts the paths into the KB
    statistics. A shard's input is removed once the shard is built."""
    stats = RelationCounter(spill, plan.stats_bytes)
    summaries: list[ShardSummary] = []
    with (
        tqdm(
            total=runs.triples, desc="merge", unit="line", unit_scale=True, disable=not progress, leave=False
        ) as merged,
        tqdm(desc="shards built", unit="shard", disable=not progress, leave=False) as built,
    ):

        def on_built(args: tuple, summary: ShardSummary) -> None:
            summaries.append(summary)
            Path(args[1]).unlink()
            built.update(1)

        on_key = _counting_paths(stats, key_order)
        inputs = merge_runs(runs.paths, spill, plan.shard_bytes, on_lines=merged.update, on_key=on_key)
        arguments = (
            (shard.number, str(shard.path), str(work / _shard_dir(shard.number)), heavy_threshold) for shard in inputs
        )
        run_in_order(runner, build_shard, arguments, jobs, on_built)
    return summaries, stats.save(work)


def _counting_paths(stats: RelationCounter, key_order: str) -> Callable[[bytes], None]:
    """Counts each distinct path key into ``stats`` (an entity holding a relation counts once, whatever its objects)."""
    relation_at = key_parts(key_order).index("relation")

    def on_key(key: bytes) -> None:
        parts = key.decode().split(SEP)
        stats.add(parts[relation_at], parts[3 - relation_at])

    return on_key


def _counts(summaries: list[ShardSummary], relations: int, top_heavy: int, alphabet: int) -> dict[str, int]:
    return {
        "triples": sum(s.pairs for s in summaries),
        "paths": sum(s.paths for s in summaries),
        "names": _distinct_names(summaries),
        "relations": relations,
        "objects": sum(s.objects for s in summaries),
        "heavy_prefixes": top_heavy + sum(s.own_heavy for s in summaries),
        "alphabet": alphabet,
        "shards": len(summaries),
    }


def _shard_dir(number: int) -> str:
    return f"{SHARDS_DIR}/{number:05d}"


def _distinct_names(summaries: list[ShardSummary]) -> int:
    """Distinct names over all shards: a name cut by a shard boundary is counted by both shards."""
    shared = sum(a.last_name == b.first_name for a, b in itertools.pairwise(summaries))
    return sum(s.names for s in summaries) - shared


def _checked_inputs(kb_files: Sequence[str | Path], key_order: str, engine: str, jobs: int) -> list[Path]:
    if key_order not in KEY_ORDERS:
        raise ValueError(f"key order must be one of {KEY_ORDERS}, not {key_order!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, not {engine!r}")
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, not {jobs}")
    paths = [Path(f) for f in kb_files]
    for f in paths:
        if not f.is_file():
            raise FileNotFoundError(f"knowledge file not found: {f}")
    return paths


def text_bytes(kb_file: Path) -> int:
    """The knowledge file's size as text: its size, or for gzip the size its trailer records (modulo 2**32, so taken
    as the least such size not below the compressed one)."""
    size = kb_file.stat().st_size
    if kb_file.suffix != ".gz" or size < 18:
        return size
    with open(kb_file, "rb") as f:
        f.seek(-4, os.SEEK_END)
        modulo = int.from_bytes(f.read(4), "little")
    return modulo + 2**32 * max(0, -(-(size - modulo) // 2**32))


# Temporary files hold the KB's lines about twice (sorted runs, shard inputs), and the index itself about once.
DISK_PER_TEXT_BYTE = 2.5


def check_disk_space(kb_files: Sequence[Path], directory: Path) -> None:
    """Fail before reading anything when the temporary files and the index would not fit in ``directory``."""
    needed = int(DISK_PER_TEXT_BYTE * sum(text_bytes(f) for f in kb_files))
    free = shutil.disk_usage(directory).free
    if needed > free:
        raise NotEnoughDiskError(
            f"building this index needs about {needed / 2**30:.1f} GiB free beside {directory.resolve()} (sorted runs, "
            f"shard inputs and the index, about {DISK_PER_TEXT_BYTE}x the knowledge files' text); "
            f"{free / 2**30:.1f} GiB is free there: free some space or build with --out on another disk"
        )


def _source(kb_file: Path) -> dict[str, object]:
    return {"path": str(kb_file.resolve()), "size": kb_file.stat().st_size, "sha256": sha256_file(kb_file)}


def _swap_into(work: Path, out_dir: Path) -> None:
    """Two renames, no copy: a service reading out_dir (or a reload of it) sees the old index or the new one, never a
    half-written one; a service still serving the old files keeps its mappings of them."""
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    if out_dir.exists():
        out_dir.rename(old)
    work.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def _remove_abandoned_builds(out_dir: Path) -> None:
    """Remove work, spill and replaced directories left by builds that were killed (their process is gone)."""
    for pattern in ("building", "spill", "old"):
        for stale in out_dir.parent.glob(f".{out_dir.name}.{pattern}-*"):
            pid = stale.name.rsplit("-", 1)[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def _step(bar: tqdm, description: str) -> Iterator[None]:
    bar.set_postfix_str(description)
    yield
    bar.update(1)
