"""The loaded, memory-mapped KB index: allowed next characters of a partial path, objects, a name's paths and triples.

Loading maps the files (marisa ``mmap`` and ``numpy.load(mmap_mode="r")``), so several processes serving the same
index share one copy in the page cache and loading does not read the index.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import marisa_trie
import numpy as np

from kgqa.data.knowledge import join_head
from kgqa.data.report import sha256_file
from kgqa.trie.keys import END_CODE, SEP, PathKey, path_key, split_path_key
from kgqa.trie.manifest import MANIFEST_NAME, IndexLoadError, Manifest, rebuild_hint
from kgqa.trie.objects import ObjectTable
from kgqa.trie.stats import RelationStats

_NO_CODES = np.empty(0, dtype=np.uint32)
# No key holds a NUL (the KB reader refuses control characters), but marisa-trie cuts C strings at one: its exact
# lookup of "a\x00b" finds "a", and iteritems("\x00" + SEP) lists every key. So a query with a NUL matches nothing.
_NUL = "\x00"


class IndexedTriple(NamedTuple):
    name: str
    meaning: str
    relation: str
    object: str

    @property
    def head(self) -> str:
        return join_head(self.name, self.meaning)


def mapped_array(path: Path) -> np.ndarray:
    """A ``.npy`` file memory-mapped read-only, as a plain ndarray over the mapped pages (``numpy.memmap`` runs
    Python code on every index: three times the cost of a lookup)."""
    return np.load(path, mmap_mode="r").view(np.ndarray)


class _HeavyTable(NamedTuple):
    """Sorted next characters of heavy prefixes: marisa key id -> codes[offsets[id]:offsets[id + 1]]."""

    prefixes: marisa_trie.Trie
    offsets: np.ndarray
    codes: np.ndarray

    @classmethod
    def load(cls, directory: Path) -> _HeavyTable:
        return cls(
            mmap_trie(directory / "heavy.marisa"),
            mapped_array(directory / "heavy_children.offsets.npy"),
            mapped_array(directory / "heavy_children.codes.npy"),
        )

    def next_codepoints(self, prefix: str) -> np.ndarray | None:
        key_id = self.prefixes.get(prefix)
        return None if key_id is None else self.codes[self.offsets[key_id] : self.offsets[key_id + 1]]


class _Shard(NamedTuple):
    """One contiguous key range: its trie, its objects, the CSR from the trie's key id to object ids, and the table of
    its own heavy prefixes."""

    paths: marisa_trie.Trie
    object_table: ObjectTable
    path_object_offsets: np.ndarray
    path_object_ids: np.ndarray
    heavy: _HeavyTable

    @classmethod
    def load(cls, directory: Path) -> _Shard:
        return cls(
            mmap_trie(directory / "paths.marisa"),
            ObjectTable(directory),
            mapped_array(directory / "path_objects.offsets.npy"),
            mapped_array(directory / "path_objects.ids.npy"),
            _HeavyTable.load(directory),
        )

    def objects_of(self, key_id: int) -> list[str]:
        start, stop = self.path_object_offsets[key_id], self.path_object_offsets[key_id + 1]
        return self.object_table.get(self.path_object_ids[start:stop].tolist())

    def consistent(self) -> bool:
        return len(self.path_object_offsets) == len(self.paths) + 1 and self.object_table.consistent()


class KBIndex:
    """Answers, for a partial key ``name SEP relation SEP meaning``, which characters may come next.

    The keys are split into shards of contiguous key ranges; a path's id is its shard's first id plus its key id in
    the shard's trie.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        # every file from one directory, even if a symlink on the way is switched to another index meanwhile
        files = self.directory.resolve()
        self.manifest = Manifest.read(files)
        # what is being served, in one value: the manifest holds every file's sha256
        self.checksum = sha256_file(files / MANIFEST_NAME)
        try:
            self._shards = [_Shard.load(files / shard["dir"]) for shard in self.manifest.shards]
            self._heavy = _HeavyTable.load(files)  # the heavy prefixes that may span shards
            self.alphabet = (files / "alphabet.txt").read_text(encoding="utf-8")
            self.relation_stats = RelationStats.load(files)
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexLoadError(
                f"index at {self.directory} cannot be read ({exc}); " + rebuild_hint(self.directory)
            ) from exc
        self._first_keys = [shard["first_key"] for shard in self.manifest.shards]
        self._first_ids = np.cumsum([0] + [len(shard.paths) for shard in self._shards]).tolist()
        self._check_counts()

    def _check_counts(self) -> None:
        counts = self.manifest.counts
        found = {
            "paths": self._first_ids[-1],
            "objects": sum(len(shard.object_table) for shard in self._shards),
            "heavy_prefixes": len(self._heavy.prefixes) + sum(len(shard.heavy.prefixes) for shard in self._shards),
            "triples": sum(len(shard.path_object_ids) for shard in self._shards),
            "shards": len(self._shards),
        }
        expected = {name: counts.get(name) for name in found}
        consistent = all(shard.consistent() for shard in self._shards) and [
            shard["paths"] for shard in self.manifest.shards
        ] == [len(shard.paths) for shard in self._shards]
        if found != expected or not consistent:
            raise IndexLoadError(
                f"index at {self.directory} does not match its manifest (found {found}, manifest says {expected}); "
                + rebuild_hint(self.directory)
            )

    @property
    def heavy_threshold(self) -> int:
        return self.manifest.heavy_threshold

    def __len__(self) -> int:
        """Number of distinct paths (name, relation, meaning)."""
        return self._first_ids[-1]

    def _shards_holding(self, prefix: str) -> Iterator[int]:
        """The shards that may hold keys starting with ``prefix``: the one whose range it falls in, then each next
        one whose first key starts with it (for a prefix with few keys below it, at most one)."""
        first_keys = self._first_keys
        number = self._shard_of(prefix)
        yield number
        number += 1
        while number < len(first_keys) and first_keys[number].startswith(prefix):
            yield number
            number += 1

    def _shard_of(self, text: str) -> int:
        """The shard whose key range ``text`` falls in."""
        return max(0, bisect_right(self._first_keys, text) - 1)

    def _keys(self, prefix: str) -> Iterator[str]:
        """Every key starting with ``prefix``, in no particular order (``prefix`` holds no NUL)."""
        for number in self._shards_holding(prefix):
            yield from self._shards[number].paths.iterkeys(prefix)

    def _items(self, prefix: str) -> Iterator[tuple[str, int, int]]:
        """(key, shard number, key id in the shard) of every key starting with ``prefix``."""
        for number in self._shards_holding(prefix):
            for key, key_id in self._shards[number].paths.iteritems(prefix):
                yield key, number, key_id

    def _lookup(self, key: str) -> tuple[int, int] | None:
        """(shard number, key id in the shard) of a whole key, or None."""
        if _NUL in key:
            return None
        number = self._shard_of(key)
        key_id = self._shards[number].paths.get(key)
        return None if key_id is None else (number, key_id)

    def next_codepoints(self, prefix: str) -> np.ndarray:
        """Sorted code points that may follow ``prefix`` on the way to a KB path; ``END_CODE`` if it is a whole path.

        Never walks more than ``heavy_threshold`` keys: prefixes with more keys below them are precomputed.
        """
        if _NUL in prefix:
            return _NO_CODES
        codes = self._heavy.next_codepoints(prefix)
        if codes is None:  # not heavy across shards: heavy in the one shard that holds it, or light
            codes = self._shards[self._shard_of(prefix)].heavy.next_codepoints(prefix)
        if codes is not None:
            return codes
        depth = len(prefix)
        found = {ord(key[depth]) if len(key) > depth else END_CODE for key in self._keys(prefix)}
        return np.array(sorted(found), dtype=np.uint32) if found else _NO_CODES

    def completion(self, prefix: str) -> str | None:
        """The one key that starts with ``prefix``; None when none or several do (walks at most two keys)."""
        if _NUL in prefix:
            return None
        keys = self._keys(prefix)
        first = next(keys, None)
        return first if first is not None and next(keys, None) is None else None

    def next_chars(self, prefix: str) -> list[str]:
        """:meth:`next_codepoints` as characters (``END`` for the end of a path); for tests and debugging."""
        return [chr(c) for c in self.next_codepoints(prefix)]

    def is_path(self, name: str, relation: str, meaning: str = "") -> bool:
        return self._lookup(path_key(name, relation, meaning, self.key_order)) is not None

    def objects(self, name: str, relation: str, meaning: str = "") -> list[str]:
        """The object(s) of (name, relation, meaning); empty when that path is not in the KB."""
        found = self._lookup(path_key(name, relation, meaning, self.key_order))
        return [] if found is None else self._shards[found[0]].objects_of(found[1])

    def triples(self, name: str) -> list[IndexedTriple]:
        """Every triple whose head has this name, all meanings, sorted by meaning then relation."""
        found = []
        if _NUL in name:
            return found
        for key, number, key_id in self._items(name + SEP):
            _, relation, meaning = split_path_key(key, self.key_order)
            found += [IndexedTriple(name, meaning, relation, obj) for obj in self._shards[number].objects_of(key_id)]
        return sorted(found, key=lambda t: (t.meaning, t.relation, t.object))

    def paths(self, name: str) -> list[PathKey]:
        """Every path (name, relation, meaning) of this name, sorted by meaning then relation; no object is read."""
        if _NUL in name:
            return []
        return sorted((split_path_key(key, self.key_order) for key in self._keys(name + SEP)), key=lambda p: p[::-1])

    def relations(self, name: str, meaning: str | None = None) -> list[str]:
        """The distinct relations of a name, over all its meanings or of one meaning, sorted."""
        return sorted({p.relation for p in self.paths(name) if meaning is None or p.meaning == meaning})

    def names_in(self, text: str) -> list[str]:
        """Every KB name occurring in ``text`` as a substring, distinct, longest first (then by position)."""
        found: dict[str, None] = {}
        for start in range(len(text)):
            for stop in range(start + 1, len(text) + 1):
                candidate = text[start:stop]
                if not self._has_keys_with_prefix(candidate):
                    break  # no key starts with it, so none starts with a longer one either
                if self._has_keys_with_prefix(candidate + SEP):
                    found[candidate] = None
        return sorted(found, key=lambda name: (-len(name), text.find(name)))

    def _has_keys_with_prefix(self, prefix: str) -> bool:
        return _NUL not in prefix and next(self._keys(prefix), None) is not None

    def path_key_by_id(self, path_id: int) -> str:
        """The key of path ``path_id`` (0 ≤ id < len(self))."""
        if not 0 <= path_id < len(self):
            raise IndexError(f"path id {path_id} is not below {len(self)}")
        number = bisect_right(self._first_ids, path_id) - 1
        return self._shards[number].paths.restore_key(path_id - self._first_ids[number])

    def path_by_id(self, path_id: int) -> PathKey:
        return split_path_key(self.path_key_by_id(path_id), self.key_order)

    @property
    def key_order(self) -> str:
        """The order of the parts in a key: the decoder's target order."""
        return self.manifest.key_order


def mmap_trie(path: Path) -> marisa_trie.Trie:
    trie = marisa_trie.Trie()
    trie.mmap(str(path))
    return trie
