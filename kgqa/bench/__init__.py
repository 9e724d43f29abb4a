"""Benchmarks and what they need: synthetic and renamed KBs, the GENRE-style baseline trie, a server in a child
process. Above every other room (it may use them all); nothing imports it but the CLI, the tests and scripts/."""
