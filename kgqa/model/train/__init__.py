"""Training the seq2seq model (with KB-driven augmentation), tuning decoding, and fitting the learned ranker."""
