"""The model room: tokenizer, encoder-decoder and targets (here), decoding under the KB (``decode``), candidate
ranking (``rank``), answering on top of both (``answerer``), and training and fitting (``train``). Uses kgqa.trie and
kgqa.data."""
