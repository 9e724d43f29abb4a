"""The GENRE-style baseline: allowed next characters by enumerating every key under the prefix.

This is what GENRE's ``MarisaTrie.get`` does (``{e[len(key)] for e in trie.keys(key)}``), without its cache of the
first branch. It is kept only as the benchmark's reference: at the root of a 20M-key trie one query walks every key.
"""

from __future__ import annotations

import marisa_trie

from kgqa.trie.keys import END_CODE


class EnumeratingTrie:
    """Over one trie, or over an index's shards (each holds a key range; together they hold every key once)."""

    def __init__(self, tries: list[marisa_trie.Trie]) -> None:
        self.tries = tries

    def next_codepoints(self, prefix: str) -> set[int]:
        depth = len(prefix)
        return {ord(key[depth]) if len(key) > depth else END_CODE for trie in self.tries for key in trie.keys(prefix)}
