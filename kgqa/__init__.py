"""kgqa: question answering over a knowledge graph with trie-constrained seq2seq decoding."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kgqa")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "unknown"
