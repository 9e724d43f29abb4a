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
from kgqa.trie.runs import read_shard_input


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
    building when its index build was abandoned writes nothing); the input is left in place."""
    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)
    keys, objects_of_rank = read_shard_input(Path(input_path))
    if not keys:
        raise ValueError(f"shard input {input_path} holds no key")
    own, edges = split_edges(explore_heavy(keys, heavy_threshold), keys[0], keys[-1], heavy_threshold)
    own_heavy = save_heavy(own.prefixes, own.children, out_dir)
    del own
    names = _distinct_names(keys)
    alphabet = _alphabet(keys)
    trie = marisa_trie.Trie(keys)
    trie.save(str(out_dir / "paths.marisa"))
    rank_of_key_id = np.empty(len(keys), dtype=np.int64)
    for rank, key in enumerate(keys):
        rank_of_key_id[trie.key_id(key)] = rank
    first_key, last_key = keys[0], keys[-1]
    del keys, trie
    pairs, object_count = _save_objects([objects_of_rank[r] for r in rank_of_key_id.tolist()], out_dir)
    return ShardSummary(
        number=number,
        first_key=first_key,
        paths=len(objects_of_rank),
        pairs=pairs,
        objects=object_count,
        names=names,
        first_name=first_key[: first_key.index(SEP)],
        last_name=last_key[: last_key.index(SEP)],
        alphabet="".join(sorted(alphabet)),
        own_heavy=own_heavy,
        edges=edges,
    )


def _save_objects(objects_by_key_id: list[list[str]], out_dir: Path) -> tuple[int, int]:
    """Write the shard's distinct objects and the key id → object ids CSR; return (pairs, distinct objects)."""
    ids: dict[str, int] = {}
    writer = ObjectWriter(out_dir)
    object_ids = array.array("I")
    path_ends = array.array("Q")
    for objects in objects_by_key_id:
        for obj in objects:
            found = ids.get(obj)
            if found is None:
                found = ids[obj] = len(ids)
                writer.add(obj)
            object_ids.append(found)
        path_ends.append(len(object_ids))
    writer.close()
    save_offsets(path_ends, out_dir / "path_objects.offsets.npy")
    np.save(out_dir / "path_objects.ids.npy", np.frombuffer(object_ids, dtype=np.uint32))
    return len(object_ids), len(ids)


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
