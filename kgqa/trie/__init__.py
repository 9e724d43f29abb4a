"""The compiled, memory-mapped KB index. Imports only kgqa.data."""

from kgqa.trie.build import build_index
from kgqa.trie.index import IndexedTriple, KBIndex
from kgqa.trie.keys import END, END_CODE, SEP, SEP_CODE, PathKey, path_key, split_path_key
from kgqa.trie.manifest import IndexLoadError
from kgqa.trie.stats import RelationStats
from kgqa.trie.tokens import TokenConstraint, VocabularyMismatchError

__all__ = [
    "END",
    "END_CODE",
    "SEP",
    "SEP_CODE",
    "IndexLoadError",
    "IndexedTriple",
    "KBIndex",
    "PathKey",
    "RelationStats",
    "TokenConstraint",
    "VocabularyMismatchError",
    "build_index",
    "path_key",
    "split_path_key",
]
