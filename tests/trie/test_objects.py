from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kgqa.trie.objects import OBJECTS_PER_BLOCK, TEXT_FILE, ObjectTable, ObjectWriter


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(objects=st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=5 * OBJECTS_PER_BLOCK))
def test_objects_read_back_by_id_in_any_order(tmp_path_factory: pytest.TempPathFactory, objects: list[str]) -> None:
    directory = tmp_path_factory.mktemp("shard")
    writer = ObjectWriter(directory)
    for obj in objects:
        writer.add(obj)
    assert writer.close() == len(objects)
    table = ObjectTable(directory)
    assert len(table) == len(objects) and table.consistent()
    ids = list(range(len(objects))) * 2
    random.Random(0).shuffle(ids)
    assert table.get(ids) == [objects[i] for i in ids]


def test_a_block_table_that_misses_the_text_is_inconsistent(tmp_path: Path) -> None:
    writer = ObjectWriter(tmp_path)
    for i in range(3 * OBJECTS_PER_BLOCK):
        writer.add(f"描述{i}" * 20)
    writer.close()
    with open(tmp_path / TEXT_FILE, "ab") as f:
        f.write(b"more")
    assert not ObjectTable(tmp_path).consistent()
