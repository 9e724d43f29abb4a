"""Pretrained Chinese lexical knowledge: word vectors and the synonym thesaurus 同义词词林 (Cilin extended).

The ranker's relations are never seen in training, so what tells it that 讨厌 answers 不喜欢, or 会议时间 什么时候召开,
must come from outside the 18,000 training questions. These files carry it, converted once from a wheel
(``kgqa.model.rank.wordsource``) and read here without unpickling anything:

- ``words.marisa``: the vocabulary (every word with a vector or a Cilin entry), a marisa-trie, so segmentation is a
  greedy longest match over its prefixes;
- ``words.npy``: one int8 row per word with a vector, the unit vector times 127, memory-mapped (workers share it);
- ``words_index.npz``: per vocabulary id, its vector row (-1: none) and its Cilin groups (CSR), and each group's
  broad group (the code without its last two digits: 召开 Ie13B01 → Ie13B);
- ``words.json``: where the data came from (package, version, licence), each file's sha256, counts.

A ranker fit with these features records the manifest's sha256 and refuses to load without the same files.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import marisa_trie
import numpy as np

from kgqa.data.report import read_versioned_json, sha256_file

WORDS_MANIFEST = "words.json"
VOCABULARY_FILE = "words.marisa"
VECTORS_FILE = "words.npy"
INDEX_FILE = "words_index.npz"
WORDS_FORMAT = 1
SCALE = 127.0  # int8 rows are unit vectors times this


class WordsLoadError(ValueError):
    """Word files missing, of another format, or not the ones their manifest describes; the message says what to do."""


class WordKnowledge:
    """Segmentation, word vectors and synonym groups, all keyed by the vocabulary trie's ids."""

    def __init__(
        self,
        vocabulary: marisa_trie.Trie,
        vectors: np.ndarray,
        rows: np.ndarray,
        group_offsets: np.ndarray,
        groups: np.ndarray,
        broad_of_group: np.ndarray,
        info: dict | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.vectors = vectors  # int8 (words with a vector, dimensions)
        self.rows = rows  # vocabulary id -> row of ``vectors``, -1 when the word has none
        self.group_offsets = group_offsets  # vocabulary id -> its groups in groups[offsets[i]:offsets[i + 1]]
        self.groups = groups
        self.broad_of_group = broad_of_group
        self.info = info or {}
        self.segment = lru_cache(maxsize=8192)(self._segment)

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])

    def _segment(self, text: str, kind: str = "any") -> tuple[int, ...]:
        """Vocabulary ids of ``text``'s words, greedy longest match left to right; characters in no word are
        skipped. ``kind``: "vector" matches only words with a vector, "cilin" only words with a Cilin group (the
        longest word is not always the one that has what is asked: 适应症 is in Cilin alone, 适应 and 症 have
        vectors)."""
        ids: list[int] = []
        i = 0
        while i < len(text):
            found = [
                (len(word), word_id)
                for word, word_id in self.vocabulary.iter_prefixes_with_ids(text[i:])
                if kind == "any"
                or (kind == "vector" and self.rows[word_id] >= 0)
                or (kind == "cilin" and self.group_offsets[word_id + 1] > self.group_offsets[word_id])
            ]
            if found:
                length, word_id = max(found)
                ids.append(word_id)
                i += length
            else:
                i += 1
        return tuple(ids)

    def words(self, text: str) -> list[str]:
        """``text`` segmented, as words (for reading; the features use ids)."""
        return [self.vocabulary.restore_key(i) for i in self.segment(text)]

    def unit_vectors(self, ids: Sequence[int]) -> np.ndarray:
        """Float32 unit vectors of the ids that have one (rows × dimensions; words without a vector left out)."""
        rows = self.rows[np.asarray(ids, dtype=np.int64)] if len(ids) else np.zeros(0, dtype=np.int32)
        rows = rows[rows >= 0]
        return self.vectors[rows].astype(np.float32) / SCALE

    def group_ids(self, word_id: int, broad: bool = False) -> set[int]:
        """The Cilin groups of a word (empty when Cilin lacks it); ``broad``: one level up."""
        found = self.groups[self.group_offsets[word_id] : self.group_offsets[word_id + 1]]
        return set((self.broad_of_group[found] if broad else found).tolist())

    def similarity(self, a: str, b: str) -> float:
        """Cosine of two words' vectors; 0.0 when either has none (the documented default)."""
        if a not in self.vocabulary or b not in self.vocabulary:
            return 0.0
        va, vb = self.unit_vectors([self.vocabulary[a]]), self.unit_vectors([self.vocabulary[b]])
        return float(va[0] @ vb[0]) if len(va) and len(vb) else 0.0

    def synonyms(self, a: str, b: str, broad: bool = False) -> bool:
        """Whether two words share a Cilin group (strict), or a group one level up (``broad``)."""
        if a not in self.vocabulary or b not in self.vocabulary:
            return False
        return bool(self.group_ids(self.vocabulary[a], broad) & self.group_ids(self.vocabulary[b], broad))

    @staticmethod
    def present(directory: str | Path) -> bool:
        return (Path(directory) / WORDS_MANIFEST).is_file()

    @staticmethod
    def manifest_path(directory: str | Path) -> Path:
        return Path(directory) / WORDS_MANIFEST

    @classmethod
    def load(cls, directory: str | Path, verify: bool = True) -> WordKnowledge:
        """The word files of a model directory; WordsLoadError when one is missing, of another format or (``verify``)
        not the file its manifest's sha256 names."""
        directory = Path(directory)
        redo = f"convert them again with `kgqa ranker words --model {directory.name}`"
        info = read_versioned_json(directory / WORDS_MANIFEST, WORDS_FORMAT, WordsLoadError, redo)
        for name in (VOCABULARY_FILE, VECTORS_FILE, INDEX_FILE):
            path = directory / name
            if not path.is_file():
                raise WordsLoadError(f"{name} is missing from {directory.name}; {redo}")
            if verify and sha256_file(path) != info.get("files", {}).get(name):
                raise WordsLoadError(f"{name} in {directory.name} is not the file {WORDS_MANIFEST} records; {redo}")
        vocabulary = marisa_trie.Trie()
        vocabulary.mmap(str(directory / VOCABULARY_FILE))
        vectors = np.load(directory / VECTORS_FILE, mmap_mode="r")
        with np.load(directory / INDEX_FILE) as arrays:
            index = {k: arrays[k] for k in ("rows", "group_offsets", "groups", "broad_of_group")}
        if len(index["rows"]) != len(vocabulary) or len(index["group_offsets"]) != len(vocabulary) + 1:
            raise WordsLoadError(f"{INDEX_FILE} does not fit {VOCABULARY_FILE} in {directory.name}; {redo}")
        return cls(vocabulary, vectors, **index, info=info)
