"""The GENRE-style baseline: allowed next characters by enumerating every key under the prefix.

This is what GENRE's ``MarisaTrie.get`` does (``{e[len(key)] for e in trie.keys(key)}``), without its cache of the
first branch. It is kept only as the benchmark's reference: at the root of a 20M-key trie one query walks every key.
"""

from __future__ import annotations

import marisa_trie

from kgqa.trie.keys import END_CODE


class EnumeratingTrie:
    def __init__(self, trie: marisa_trie.Trie) -> None:
        self.trie = trie

    def next_codepoints(self, prefix: str) -> set[int]:
        depth = len(prefix)
        return {ord(key[depth]) if len(key) > depth else END_CODE for key in self.trie.keys(prefix)}
