"""How a KB path is spelled as one key: the one owner of the key order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kgqa.trie.keys import (
    KEY_ORDERS,
    NAME_MEANING_RELATION,
    NAME_RELATION_MEANING,
    SEP,
    PathKey,
    key_parts,
    path_key,
    split_path_key,
)

PART = st.text(alphabet="守望星光ab（）、 ", max_size=6)


def test_key_parts_name_each_order() -> None:
    assert key_parts(NAME_RELATION_MEANING) == ("name", "relation", "meaning")
    assert key_parts(NAME_MEANING_RELATION) == ("name", "meaning", "relation")
    assert set(KEY_ORDERS) == {NAME_RELATION_MEANING, NAME_MEANING_RELATION}
    with pytest.raises(ValueError, match="unknown key order"):
        key_parts("relation,name,meaning")


@given(name=PART, relation=PART, meaning=PART, order=st.sampled_from(KEY_ORDERS))
def test_a_key_splits_back_into_its_path_in_either_order(name: str, relation: str, meaning: str, order: str) -> None:
    key = path_key(name, relation, meaning, order)
    assert key.split(SEP) == [{"name": name, "relation": relation, "meaning": meaning}[p] for p in key_parts(order)]
    assert split_path_key(key, order) == PathKey(name, relation, meaning)


def test_an_empty_meaning_ends_the_key_after_the_second_separator() -> None:
    assert path_key("龙编站", "坐标") == f"龙编站{SEP}坐标{SEP}"
    assert path_key("龙编站", "坐标", order=NAME_MEANING_RELATION) == f"龙编站{SEP}{SEP}坐标"


def test_a_key_without_three_parts_is_refused() -> None:
    with pytest.raises(ValueError):
        split_path_key(f"龙编站{SEP}坐标")
