"""Tokenizer, encoder-decoder, training and constrained decoding (the model issue). Uses kgqa.trie and kgqa.data."""
