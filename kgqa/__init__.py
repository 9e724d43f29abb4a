"""kgqa: question answering over a knowledge graph with trie-constrained seq2seq decoding."""

# the one place the version is written: pyproject.toml reads it from here, so a source tree that is not installed
# (make builds the index from it while the rest installs) knows it too
__version__ = "0.1.0"
