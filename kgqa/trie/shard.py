"""Building one shard of the index: the keys of one contiguous key range, from its shard input.

Files of a shard directory (all memory-mappable):

- ``paths.marisa``: marisa Trie of the shard's path keys;
- ``objects.zlib`` / ``objects.blocks.npy`` / ``objects.offsets.npy``: the shard's distinct objects in order of first
  sight, compressed in blocks (see :mod:`kgqa.trie.objects`);
- ``path_objects.offsets.npy`` / ``path_objects.ids.npy``: CSR from the trie's key id to object ids;
- ``heavy.marisa`` + ``heavy_children.*.npy``: the shard's own heavy prefixes (see :mod:`kgqa.trie.heavy`).

A shard is built from its input alone, so shards build in any order, in parallel, on any machine that sees the files.
What the whole index needs from a shard comes back in a :class:`ShardSummary`.
"""

from __future__ import annotations

import array
from dataclasses import dataclass
from pathlib import Path

import marisa_trie
import numpy as np

from kgqa.trie.heavy import HeavyReport, explore_heavy, save_heavy, split_edges
from kgqa.trie.keys import SEP
from kgqa.trie.objects import ObjectWriter, save_offsets
from kgqa.trie.runs import iter_shard_input


@dataclass
class ShardSummary:
    """A built shard: its counts, its first key (the top-level table's entry), what the top-level heavy table (its
    edge prefixes) and the distinct-name count need across shards, and its alphabet."""

    number: int
    first_key: str
    paths: int
    pairs: int
    objects: int
    names: int
    first_name: str
    last_name: str
    alphabet: str
    own_heavy: int
    edges: HeavyReport


def build_shard(number: int, input_path: str | Path, out_dir: str | Path, heavy_threshold: int) -> ShardSummary:
    """Build shard ``number`` from ``input_path`` into ``out_dir`` (created; its parent must exist, so a shard still
    building when its index build was abandoned writes nothing); the input is left in place.

    The input is read twice: its keys (with their object counts) for the trie and the heavy table, then, once the
    keys are freed, its objects, streamed into the object blocks: never both in memory at once."""
    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)
    keys: list[str] = []
    object_counts = array.array("Q")
    for key, objects in iter_shard_input(Path(input_path)):
        keys.append(key)
        object_counts.append(len(objects))
    if not keys:
        raise ValueError(f"shard input {input_path} holds no key")
    own, edges = split_edges(explore_heavy(keys, heavy_threshold), keys[0], keys[-1], heavy_threshold)
    own_heavy = save_heavy(own.prefixes, own.children, out_dir)
    del own
    names = _distinct_names(keys)
    alphabet = _alphabet(keys)
    trie = marisa_trie.Trie(keys)
    trie.save(str(out_dir / "paths.marisa"))
    key_id_of_rank = np.fromiter((trie.key_id(key) for key in keys), dtype=np.int64, count=len(keys))
    first_key, last_key = keys[0], keys[-1]
    del keys, trie
    pairs, object_count = _save_objects(
        Path(input_path), key_id_of_rank, np.frombuffer(object_counts, np.uint64), out_dir
    )
    return ShardSummary(
        number=number,
        first_key=first_key,
        paths=len(key_id_of_rank),
        pairs=pairs,
        objects=object_count,
        names=names,
        first_name=first_key[: first_key.index(SEP)],
        last_name=last_key[: last_key.index(SEP)],
        alphabet="".join(sorted(alphabet)),
        own_heavy=own_heavy,
        edges=edges,
    )


def _save_objects(input_path: Path, key_id_of_rank: np.ndarray, counts: np.ndarray, out_dir: Path) -> tuple[int, int]:
    """Write the shard's distinct objects (in key order of first sight) and the key id → object ids CSR from a
    second read of the input; return (pairs, distinct objects)."""
    ids: dict[str, int] = {}
    writer = ObjectWriter(out_dir)
    ids_by_rank = array.array("I")  # the object ids of every key, keys in sorted order
    for _, objects in iter_shard_input(input_path):
        for obj in objects:
            found = ids.get(obj)
            if found is None:
                found = ids[obj] = len(ids)
                writer.add(obj)
            ids_by_rank.append(found)
    writer.close()
    del ids
    # the CSR is by trie key id: key id k's objects are those of its rank, moved to where key id order puts them
    counts_by_key_id = np.empty_like(counts)
    counts_by_key_id[key_id_of_rank] = counts
    path_ends = np.cumsum(counts_by_key_id)
    rank_starts = np.zeros(len(counts), dtype=np.int64)
    rank_starts[1:] = np.cumsum(counts[:-1])
    rank_of_key_id = np.empty_like(key_id_of_rank)
    rank_of_key_id[key_id_of_rank] = np.arange(len(key_id_of_rank))
    key_starts = (path_ends - counts_by_key_id).astype(np.int64)
    shift = np.repeat(rank_starts[rank_of_key_id] - key_starts, counts_by_key_id.astype(np.int64))
    object_ids = np.frombuffer(ids_by_rank, dtype=np.uint32)[np.arange(len(ids_by_rank)) + shift]
    save_offsets(path_ends, out_dir / "path_objects.offsets.npy")
    np.save(out_dir / "path_objects.ids.npy", object_ids)
    return len(object_ids), writer.count


def _distinct_names(sorted_keys: list[str]) -> int:
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
