"""Compiling knowledge files into an index directory.

Files written (all memory-mappable):

- ``paths.marisa``: marisa Trie of every distinct path key ``name SEP relation SEP meaning`` (or, built with
  ``key_order=NAME_MEANING_RELATION`` for the target-order ablation, ``name SEP meaning SEP relation``).
- ``objects.bin`` / ``objects.offsets.npy``: every distinct object string, UTF-8, in order of first sight; an object
  is only ever fetched by id, so a plain memory-mapped blob serves (on the 20M-triple synthetic KB, a marisa trie of
  its 11.7M objects was 1.07 GB, no smaller than the strings, and took two minutes to build and map).
- ``path_objects.offsets.npy`` / ``path_objects.ids.npy``: CSR from path key id to object ids.
- ``heavy.marisa`` + ``heavy_children.offsets.npy`` / ``heavy_children.codes.npy``: the sorted next-character code
  points of every *heavy* prefix, one with more than ``heavy_threshold`` keys below it. Any other prefix has few keys
  below, so enumerating them is cheap; a heavy one (the root has millions) is answered from this table instead.
- ``alphabet.txt``: every character that occurs in a path key (what a tokenizer must be able to spell).
- ``manifest.json``: sources with sizes and checksums, counts, skipped lines, build time; written last.

One streaming pass over the knowledge files numbers each distinct path key and object as it is first seen (objects
are written to the blob at once) and records (path number, object number) per triple. The sorted path keys, held
once as str, give the heavy prefixes; the paths trie is built from them and iterated once to map path numbers to
marisa's key ids. No triple is looked up in a trie.
"""

from __future__ import annotations

import array
import datetime as dt
import os
import shutil
import time
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import marisa_trie
import numpy as np
from tqdm import tqdm

from kgqa import __version__
from kgqa.data.knowledge import SkipCounter, Triple, iter_triples, split_head
from kgqa.trie.keys import END_CODE, KEY_ORDERS, NAME_RELATION_MEANING, SEP, path_key
from kgqa.trie.manifest import Manifest, sha256_file

DEFAULT_HEAVY_THRESHOLD = 32
MAX_CODE_POINT = 0x10FFFF


def build_index(
    kb_files: Sequence[str | Path],
    out_dir: str | Path,
    heavy_threshold: int = DEFAULT_HEAVY_THRESHOLD,
    progress: bool = True,
    key_order: str = NAME_RELATION_MEANING,
) -> Manifest:
    """Build the index of ``kb_files`` into ``out_dir`` (replaced atomically: a failed build leaves no index).

    ``key_order`` is the order of the parts after the name in each key, so the decoder's target order
    (relation then meaning by default).
    """
    started = time.perf_counter()
    kb_files = _checked_inputs(kb_files, key_order)
    out_dir = Path(out_dir)
    _remove_abandoned_builds(out_dir)
    work = out_dir.with_name(f".{out_dir.name}.building-{os.getpid()}")
    work.mkdir(parents=True)
    steps = tqdm(total=7, desc="index build", unit="step", disable=not progress, position=0, leave=True)
    try:
        counter = SkipCounter()
        with _step(steps, "read knowledge files"):
            read = _read(kb_files, counter, work, progress, key_order)
        with _step(steps, "sort path keys"):
            keys = list(read.paths)
            keys.sort()
            rank_of_number = _ranks(read.paths, keys)
            read.paths = {}  # the dict's table is as big as the keys' list: free it before the trie build
            name_count = _count_names(keys)
            alphabet = _alphabet(keys)
            (work / "alphabet.txt").write_text("".join(sorted(alphabet)), encoding="utf-8")
        with _step(steps, "find heavy prefixes"):
            heavy_count = _save_heavy(*_heavy_prefixes(keys, heavy_threshold, progress), work)
        with _step(steps, "write paths"):
            key_id_of_rank = _save_sorted_trie(keys, work / "paths.marisa")
            path_count, relation_count, object_count = len(keys), read.relation_count, read.object_count
            del keys
            path_ids = key_id_of_rank[rank_of_number[read.triple_paths]]
            del key_id_of_rank, rank_of_number
            pair_count = _save_path_objects(path_ids, read.triple_objects, path_count, work)
            del path_ids, read
        with _step(steps, "checksums"):
            manifest = Manifest(
                heavy_threshold=heavy_threshold,
                sources=[_source(f) for f in kb_files],
                counts={
                    "triples": pair_count,
                    "paths": path_count,
                    "names": name_count,
                    "relations": relation_count,
                    "objects": object_count,
                    "heavy_prefixes": heavy_count,
                    "alphabet": len(alphabet),
                },
                read=counter.as_dict(),
                kgqa_version=__version__,
                key_order=key_order,
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
        steps.close()
    return manifest


def _checked_inputs(kb_files: Sequence[str | Path], key_order: str) -> list[Path]:
    if key_order not in KEY_ORDERS:
        raise ValueError(f"key order must be one of {KEY_ORDERS}, not {key_order!r}")
    paths = [Path(f) for f in kb_files]
    for f in paths:
        if not f.is_file():
            raise FileNotFoundError(f"knowledge file not found: {f}")
    return paths


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
    """Remove work (and replaced) directories left by builds that were killed (their process is gone)."""
    for stale in [*out_dir.parent.glob(f".{out_dir.name}.building-*"), *out_dir.parent.glob(f".{out_dir.name}.old-*")]:
        pid = stale.name.rsplit("-", 1)[1]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(stale, ignore_errors=True)


@contextmanager
def _step(bar: tqdm, description: str) -> Iterator[None]:
    bar.set_postfix_str(description)
    yield
    bar.update(1)


def _byte_bar(kb_files: Sequence[Path], description: str, progress: bool) -> tqdm:
    total = sum(f.stat().st_size for f in kb_files)
    return tqdm(total=total, desc=description, unit="B", unit_scale=True, disable=not progress, leave=False)


def _iter_all(kb_files: Sequence[Path], counter: SkipCounter, description: str, progress: bool) -> Iterator[Triple]:
    with _byte_bar(kb_files, description, progress) as bar:
        done = 0
        for f in kb_files:

            def on_progress(position: int, base: int = done) -> None:
                bar.n = base + position
                bar.refresh()

            yield from iter_triples(f, counter, on_progress)
            done += f.stat().st_size


@dataclass
class _Read:
    """What the pass over the knowledge files leaves: distinct path keys numbered by first sight, and per triple
    (path number, object id)."""

    paths: dict[str, int]
    triple_paths: np.ndarray
    triple_objects: np.ndarray
    object_count: int
    relation_count: int


def _read(kb_files: Sequence[Path], counter: SkipCounter, work: Path, progress: bool, key_order: str) -> _Read:
    paths: dict[str, int] = {}
    objects: dict[str, int] = {}
    relations: set[str] = set()
    object_ends = array.array("Q")
    triple_paths, triple_objects = array.array("I"), array.array("I")
    number_path, object_id = paths.setdefault, objects.get
    add_path, add_object, add_relation = triple_paths.append, triple_objects.append, relations.add
    with open(work / "objects.bin", "wb") as blob:
        for head, relation, tail in _iter_all(kb_files, counter, "read", progress):
            name, meaning = split_head(head)
            add_path(number_path(path_key(name, relation, meaning, key_order), len(paths)))
            found = object_id(tail)
            if found is None:
                found = objects[tail] = len(objects)
                blob.write(tail.encode("utf-8"))
                object_ends.append(blob.tell())
            add_object(found)
            add_relation(relation)
    if not paths:
        raise ValueError(
            "no valid triple in " + ", ".join(map(str, kb_files)) + f" ({counter.lines} lines, all skipped)"
        )
    ends = np.frombuffer(object_ends, dtype=np.uint64)
    offsets = np.zeros(len(ends) + 1, dtype=np.uint32 if ends[-1] < 2**32 else np.uint64)
    offsets[1:] = ends
    np.save(work / "objects.offsets.npy", offsets)
    return _Read(
        paths,
        np.frombuffer(triple_paths, dtype=np.uint32),
        np.frombuffer(triple_objects, dtype=np.uint32),
        len(objects),
        len(relations),
    )


def _ranks(numbers: dict[str, int], sorted_keys: list[str]) -> np.ndarray:
    """Map each key's number (order of first sight) to its rank in ``sorted_keys``."""
    rank_of_number = np.empty(len(sorted_keys), dtype=np.uint32)
    for rank, key in enumerate(sorted_keys):
        rank_of_number[numbers[key]] = rank
    return rank_of_number


def _count_names(sorted_keys: list[str]) -> int:
    count, previous = 0, None
    for key in sorted_keys:
        name = key[: key.index(SEP)]
        if name != previous:
            count, previous = count + 1, name
    return count


def _alphabet(keys: list[str], chunk: int = 200_000) -> set[str]:
    alphabet: set[str] = set()
    for start in range(0, len(keys), chunk):
        alphabet.update("".join(keys[start : start + chunk]))
    alphabet.discard(SEP)
    return alphabet


def _heavy_prefixes(keys: list[str], threshold: int, progress: bool) -> tuple[list[str], list[array.array]]:
    """Every prefix with more than ``threshold`` keys below it, with its sorted next-character code points.

    Walks the sorted keys depth-first; a node's children are found by binary search for the end of each run of
    equal next characters, so the work is proportional to the number of heavy nodes' children, not of keys.
    """
    prefixes: list[str] = []
    children: list[array.array] = []
    stack = [("", 0, len(keys))] if len(keys) > threshold else []
    with tqdm(
        total=len(keys), desc="heavy prefixes", unit="key", unit_scale=True, disable=not progress, leave=False
    ) as bar:
        if not stack:
            bar.update(len(keys))
        while stack:
            prefix, lo, hi = stack.pop()
            depth = len(prefix)
            codes = array.array("I")
            i = lo
            if len(keys[i]) == depth:  # keys are distinct, so at most one ends here, and it sorts first
                codes.append(END_CODE)
                i += 1
                bar.update(1)
            while i < hi:
                code = ord(keys[i][depth])
                j = hi if code == MAX_CODE_POINT else bisect_left(keys, prefix + chr(code + 1), i, hi)
                codes.append(code)
                if j - i > threshold:
                    stack.append((prefix + chr(code), i, j))
                else:
                    bar.update(j - i)
                i = j
            prefixes.append(prefix)
            children.append(codes)
    return prefixes, children


def _save_trie(keys: Iterable[str], path: Path) -> marisa_trie.Trie:
    trie = marisa_trie.Trie(keys)
    trie.save(str(path))
    return trie


def _save_sorted_trie(sorted_keys: list[str], path: Path) -> np.ndarray:
    """Save a trie of the sorted keys; return the array that maps each key's rank to its marisa key id."""
    trie = _save_trie(sorted_keys, path)
    return np.fromiter(map(trie.key_id, sorted_keys), dtype=np.uint32, count=len(sorted_keys))


def _save_heavy(prefixes: list[str], children: list[array.array], work: Path) -> int:
    trie = _save_trie(prefixes, work / "heavy.marisa")
    # marisa assigns its own key ids: lay the children out in id order so that id -> offsets[id]:offsets[id + 1].
    lengths = np.zeros(len(prefixes) + 1, dtype=np.int64)
    order = np.empty(len(prefixes), dtype=np.int64)
    for position, prefix in enumerate(prefixes):
        key_id = trie[prefix]
        order[key_id] = position
        lengths[key_id + 1] = len(children[position])
    offsets = np.cumsum(lengths)
    codes = np.empty(int(offsets[-1]), dtype=np.uint32)
    for key_id, position in enumerate(order):
        codes[offsets[key_id] : offsets[key_id + 1]] = children[position]
    np.save(work / "heavy_children.offsets.npy", offsets)
    np.save(work / "heavy_children.codes.npy", codes)
    return len(prefixes)


def _save_path_objects(triple_paths: np.ndarray, triple_objects: np.ndarray, path_count: int, work: Path) -> int:
    """(path id, object id) of every triple, deduplicated, as CSR arrays. Returns the number of distinct triples."""
    pairs = np.unique(triple_paths.astype(np.uint64) << np.uint64(32) | triple_objects.astype(np.uint64))
    offsets = np.zeros(path_count + 1, dtype=np.uint32 if len(pairs) < 2**32 else np.uint64)
    np.cumsum(np.bincount((pairs >> np.uint64(32)).astype(np.int64), minlength=path_count), out=offsets[1:])
    np.save(work / "path_objects.offsets.npy", offsets)
    np.save(work / "path_objects.ids.npy", (pairs & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    return len(pairs)
