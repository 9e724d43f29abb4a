from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.data.locate import DataNotFoundError, find_data_dir, knowledge_file
from kgqa.trie import KBIndex


@pytest.fixture(scope="session")
def kgclue_dir() -> Path:
    """The real KgCLUE files, found as the product finds them (never copied into the repo)."""
    try:
        return find_data_dir(download=False)
    except DataNotFoundError as exc:
        pytest.skip(f"KgCLUE data not available: {exc}")


@pytest.fixture(scope="session")
def kgclue_kb(kgclue_dir: Path) -> Path:
    kb = knowledge_file(kgclue_dir)
    if kb is None:
        pytest.skip(f"no KgCLUE-sim knowledge file in {kgclue_dir}")
    return kb


def write_kb(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def kgclue_sim_index(kgclue_kb: Path, tmp_path_factory: pytest.TempPathFactory) -> KBIndex:
    """The index of the KgCLUE-sim KB, built once per test session (about 30 s)."""
    from kgqa.trie import build_index

    directory = tmp_path_factory.mktemp("sim") / "index"
    build_index([kgclue_kb], directory, progress=False)
    return KBIndex(directory)
