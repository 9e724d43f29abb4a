"""Ordering candidates: features, the question-relation matcher, the learned ranker and the hand-set re-ranking."""

# The optional neural matcher's files (kgqa.model.rank.matcher, which needs torch): named here, so that a model
# without one is answered without importing it.
MATCHER_FILE = "matcher.safetensors"
MATCHER_INFO = "matcher.json"
