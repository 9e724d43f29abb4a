"""External sort of a KB's (path key, object) pairs: sorted runs spilled to disk under a memory budget, then one k-way
merge that cuts the sorted, deduplicated stream into shard inputs.

A run line is ``key RUN_SEP position object \\n`` in UTF-8: UTF-8 byte order is code point order, and ``RUN_SEP``
sorts below every byte a key holds (keys hold ``SEP`` = 0x1f and printable characters), so sorting whole lines as
bytes sorts by key, then by the triple's position in the knowledge files (a fixed-width number: the file's number and
the line's byte offset in its text), so a path's objects keep the order in which the files give them, however the
files were split into runs. A shard input line is ``key RUN_SEP object \\n``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from kgqa.data.knowledge import split_head
from kgqa.trie.keys import path_key

RUN_SEP = "\x1e"
_RUN_SEP_BYTE = RUN_SEP.encode()
SEQUENCE_DIGITS = 16
# a triple's position: file number * FILE_STRIDE + the byte offset of its line (up to 1000 files of up to 10 TB)
FILE_STRIDE = 10**13
MAX_FILES = 10**SEQUENCE_DIGITS // FILE_STRIDE
# bytes a buffered line costs beyond its length: the bytes object's header and the list's pointer to it
_LINE_OVERHEAD = 48
# runs merged at once (open files); more runs are first merged in groups into longer runs
MERGE_FAN_IN = 256


@dataclass
class SortedRuns:
    """The runs written by :func:`write_sorted_runs` and what the pass over the triples counted."""

    paths: list[Path] = field(default_factory=list)
    triples: int = 0


def write_sorted_runs(
    triples: Iterable[tuple[int, tuple[str, str, str]]],
    directory: Path,
    buffer_bytes: int,
    key_order: str,
    name: str = "run",
) -> SortedRuns:
    """Sort the (position, triple)s' (path key, object) lines in memory up to ``buffer_bytes``, spilling each full
    buffer to a run file ``name-NNNNN`` in ``directory``."""
    runs = SortedRuns()
    buffer: list[bytes] = []
    used = 0
    for position, (head, relation, tail) in triples:
        head_name, meaning = split_head(head)
        key = path_key(head_name, relation, meaning, key_order)
        line = f"{key}{RUN_SEP}{position:0{SEQUENCE_DIGITS}d}{tail}\n".encode()
        buffer.append(line)
        used += len(line) + _LINE_OVERHEAD
        runs.triples += 1
        if used >= buffer_bytes:
            runs.paths.append(_spill(buffer, directory / f"{name}-{len(runs.paths):05d}"))
            buffer, used = [], 0
    if buffer:
        runs.paths.append(_spill(buffer, directory / f"{name}-{len(runs.paths):05d}"))
    return runs


def _spill(buffer: list[bytes], path: Path) -> Path:
    buffer.sort()
    with open(path, "wb") as f:
        f.writelines(buffer)
    return path


@dataclass
class ShardInput:
    """One shard's slice of the merged stream: its file, and how many distinct keys and (key, object) lines it holds."""

    number: int
    path: Path
    keys: int
    lines: int


def merge_runs(
    runs: list[Path],
    directory: Path,
    shard_bytes: int,
    on_lines: Callable[[int], None] | None = None,
    on_key: Callable[[bytes], None] | None = None,
) -> Iterator[ShardInput]:
    """Merge the runs into shard inputs of about ``shard_bytes`` each (cut only between keys), yielding each shard as
    soon as its file is complete. Duplicate (key, object) pairs are dropped; a key's objects keep their run order.

    ``on_lines(n)`` is told of every ``n`` merged lines (progress), ``on_key(key)`` of every distinct key.
    """
    runs = merge_down(runs, directory)
    with ExitStack() as stack:
        files = [stack.enter_context(open(run, "rb", buffering=1 << 20)) for run in runs]
        shard: _ShardWriter | None = None
        previous_key, seen_objects = b"", set()
        unreported = 0
        for line in heapq.merge(*files):
            unreported += 1
            if on_lines is not None and unreported == 65536:
                on_lines(unreported)
                unreported = 0
            cut = line.index(_RUN_SEP_BYTE)
            key, obj = line[:cut], line[cut + 1 + SEQUENCE_DIGITS :]
            if key == previous_key:
                if obj in seen_objects:
                    continue
                seen_objects.add(obj)
            else:
                previous_key, seen_objects = key, {obj}
                if on_key is not None:
                    on_key(key)
                if shard is None or shard.written >= shard_bytes:
                    if shard is not None:
                        yield shard.close()
                    shard = _ShardWriter(0 if shard is None else shard.number + 1, directory)
                shard.keys += 1
            shard.write(key + _RUN_SEP_BYTE + obj)
        if on_lines is not None:
            on_lines(unreported)
        if shard is not None:
            yield shard.close()


def merge_down(runs: list[Path], directory: Path, name: str = "merged") -> list[Path]:
    """At most ``MERGE_FAN_IN`` runs: groups of runs merged into longer ones ``name-G-NNNNN`` (as many passes as it
    takes), each group removed once merged. Lines stay whole and in byte order, so the final merge sees the same
    stream."""
    generation = 0
    while len(runs) > MERGE_FAN_IN:
        merged = []
        for start in range(0, len(runs), MERGE_FAN_IN):
            group = runs[start : start + MERGE_FAN_IN]
            path = directory / f"{name}-{generation}-{len(merged):05d}"
            with ExitStack() as stack, open(path, "wb", buffering=1 << 20) as out:
                out.writelines(heapq.merge(*(stack.enter_context(open(run, "rb", buffering=1 << 16)) for run in group)))
            for run in group:
                run.unlink()
            merged.append(path)
        runs, generation = merged, generation + 1
    return runs


class _ShardWriter:
    def __init__(self, number: int, directory: Path) -> None:
        self.number = number
        self.path = directory / f"shard-{number:05d}.input"
        self.file = open(self.path, "wb", buffering=1 << 20)  # noqa: SIM115 -- closed by close()
        self.written = self.keys = self.lines = 0

    def write(self, record: bytes) -> None:
        self.file.write(record)
        self.written += len(record)
        self.lines += 1

    def close(self) -> ShardInput:
        self.file.close()
        return ShardInput(self.number, self.path, self.keys, self.lines)


def iter_shard_input(path: Path) -> Iterator[tuple[str, list[str]]]:
    """The sorted distinct keys of a shard input, each with its objects in order, one key at a time."""
    key, objects = None, []
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            line_key, obj = line[:-1].split(RUN_SEP)
            if line_key != key:
                if key is not None:
                    yield key, objects
                key, objects = line_key, []
            objects.append(obj)
    if key is not None:
        yield key, objects
