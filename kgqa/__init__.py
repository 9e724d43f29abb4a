"""kgqa: question answering over a knowledge graph with trie-constrained seq2seq decoding."""
