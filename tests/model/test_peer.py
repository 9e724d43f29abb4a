from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.model.evaluate import evaluate_peer
from kgqa.model.peer import LongestNamePeer
from kgqa.trie import KBIndex


def test_longest_name_then_closest_relation(tiny_index: KBIndex) -> None:
    peer = LongestNamePeer(tiny_index)
    found = peer.answer("守望星光的歌手是谁？")  # 守望 is a name too, but shorter
    assert found is not None and (found.name, found.relation, found.object) == ("守望星光", "歌手", "韩玉玲")
    assert peer.answer("完全无关") is None


@pytest.mark.slow
def test_peer_on_kgclue_dev(kgclue_dir: Path, kgclue_sim_index: KBIndex) -> None:
    """The peer on the real files lands near the shared README's 78.4 (tie-breaking differs)."""
    result = evaluate_peer(kgclue_sim_index, kgclue_dir / "dev.json")
    assert result["questions"] == 2000
    assert 75.0 <= result["EM_O"] <= 85.0
