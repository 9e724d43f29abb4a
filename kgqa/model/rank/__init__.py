"""Ordering candidates: features, the question-relation matcher, the learned ranker and the hand-set re-ranking."""
