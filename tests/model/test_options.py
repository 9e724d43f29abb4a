"""Decoding options: what a model was tuned with, and what the caller changes on top."""

from __future__ import annotations

import pytest

from kgqa.model.options import DecodeOptions

TUNED = {"decoding": {"search_margin": 2.5, "anchor_names": 3, "lookahead_strength": 0.5, "batch_size": 7}}


def test_a_change_of_none_keeps_the_tuned_value_and_any_other_value_replaces_it() -> None:
    # a flag or setting left out arrives as None: the model's kgqa.json decides
    kept = DecodeOptions.from_training_info(TUNED, search_margin=None, lookahead_strength=None, num_beams=None)
    assert (kept.search_margin, kept.lookahead_strength, kept.num_beams) == (2.5, 0.5, DecodeOptions.num_beams)
    # 0 is a value (the exact top k), not "left out"
    changed = DecodeOptions.from_training_info(TUNED, search_margin=0.0, anchor_names=0, num_beams=2)
    assert (changed.search_margin, changed.anchor_names, changed.num_beams) == (0.0, 0, 2)
    # only tuned options come from kgqa.json: its batch_size is not one of them
    assert kept.batch_size == DecodeOptions.batch_size
    with pytest.raises(ValueError, match="search_margin"):
        DecodeOptions.from_training_info(TUNED, search_margin=-1.0)
