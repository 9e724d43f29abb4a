"""A shard's distinct objects, compressed in blocks: the bulk of an index's bytes (descriptions), read a few at a time.

Files (all memory-mappable):

- ``objects.zlib``: the objects' UTF-8 text in blocks of ``OBJECTS_PER_BLOCK`` consecutive objects, each block one
  zlib stream;
- ``objects.blocks.npy``: where each block starts in ``objects.zlib`` (and the end);
- ``objects.offsets.npy``: where each object starts in the uncompressed text (and the end).

Objects are only read for paths a search has found (a few dozen per question), so a lookup may pay one block's
inflation (about 10 µs for 32 objects, ~2 KB of text); a KB of Chinese text takes about 1/1.6 of its bytes.
"""

from __future__ import annotations

import array
import mmap
import zlib
from collections.abc import Iterable
from pathlib import Path

import numpy as np

OBJECTS_PER_BLOCK = 32
ZLIB_LEVEL = 6
TEXT_FILE = "objects.zlib"
BLOCKS_FILE = "objects.blocks.npy"
OFFSETS_FILE = "objects.offsets.npy"


def save_offsets(ends: array.array | np.ndarray, path: Path) -> None:
    """Offsets with a leading 0, as uint32 when they fit."""
    values = np.asarray(ends, dtype=np.uint64)
    offsets = np.zeros(len(values) + 1, dtype=np.uint32 if len(values) == 0 or values[-1] < 2**32 else np.uint64)
    offsets[1:] = values
    np.save(path, offsets)


class ObjectWriter:
    """Appends distinct objects (their id is their position) to a shard directory's object files."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.text = open(directory / TEXT_FILE, "wb")  # noqa: SIM115 -- closed by close()
        self.block: list[bytes] = []
        self.text_end = 0
        self.ends = array.array("Q")
        self.block_ends = array.array("Q")

    def add(self, obj: str) -> None:
        encoded = obj.encode("utf-8")
        self.block.append(encoded)
        self.text_end += len(encoded)
        self.ends.append(self.text_end)
        if len(self.block) == OBJECTS_PER_BLOCK:
            self._flush()

    def _flush(self) -> None:
        self.text.write(zlib.compress(b"".join(self.block), ZLIB_LEVEL))
        self.block_ends.append(self.text.tell())
        self.block = []

    @property
    def count(self) -> int:
        return len(self.ends)

    def close(self) -> int:
        """Write the last block and the offsets; the number of objects."""
        if self.block:
            self._flush()
        self.text.close()
        save_offsets(self.ends, self.directory / OFFSETS_FILE)
        save_offsets(self.block_ends, self.directory / BLOCKS_FILE)
        return self.count


class ObjectTable:
    """A shard's objects by id, read from the memory-mapped blocks."""

    def __init__(self, directory: Path) -> None:
        with open(directory / TEXT_FILE, "rb") as f:  # never empty: a shard has an object, a block a zlib header
            self.text = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        self.blocks = np.load(directory / BLOCKS_FILE, mmap_mode="r").view(np.ndarray)
        self.offsets = np.load(directory / OFFSETS_FILE, mmap_mode="r").view(np.ndarray)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, ids: Iterable[int]) -> list[str]:
        """The objects of ``ids``, in that order (a block read twice in a row is inflated once)."""
        found, inflated, inflated_block = [], b"", -1
        for object_id in ids:
            block = object_id // OBJECTS_PER_BLOCK
            if block != inflated_block:
                inflated = zlib.decompress(self.text[int(self.blocks[block]) : int(self.blocks[block + 1])])
                inflated_block = block
            base = int(self.offsets[block * OBJECTS_PER_BLOCK])
            start, stop = int(self.offsets[object_id]) - base, int(self.offsets[object_id + 1]) - base
            found.append(inflated[start:stop].decode("utf-8"))
        return found

    def consistent(self) -> bool:
        """The block table covers the text file and every object (cheap: no inflation)."""
        blocks = -(-len(self) // OBJECTS_PER_BLOCK)
        return len(self.blocks) == blocks + 1 and int(self.blocks[-1]) == len(self.text)
