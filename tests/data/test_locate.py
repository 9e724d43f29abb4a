from __future__ import annotations

from pathlib import Path

import pytest

from kgqa.data import locate


def _make_data(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in locate.QUESTION_FILES:
        (directory / name).write_text('{"id": 0, "question": "q"}\n', encoding="utf-8")
    return directory


def test_env_var_comes_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = _make_data(tmp_path / "mine")
    _make_data(tmp_path / "cwd" / "data" / "kgclue")
    monkeypatch.chdir(tmp_path / "cwd")
    monkeypatch.setenv("KGQA_DATA_DIR", str(chosen))
    assert locate.find_data_dir(download=False) == chosen


def test_a_wrong_env_var_is_an_error_not_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KGQA_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(locate.DataNotFoundError, match="KGQA_DATA_DIR"):
        locate.find_data_dir()


def test_local_data_dir_before_shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KGQA_DATA_DIR", raising=False)
    local = _make_data(tmp_path / "work" / "data" / "kgclue")
    _make_data(tmp_path / "shared" / "kgclue")
    monkeypatch.chdir(tmp_path / "work")
    assert locate.find_data_dir(download=False) == local


def test_shared_beside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KGQA_DATA_DIR", raising=False)
    shared = _make_data(tmp_path / "shared" / "kgclue")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    monkeypatch.setattr(locate, "_REPO_ROOT", tmp_path / "work")
    assert locate.find_data_dir(download=False) == shared


def test_download_fetches_the_question_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real urllib download, from a file:// URL standing in for GitHub (this machine cannot reach GitHub).
    source = _make_data(tmp_path / "upstream")
    monkeypatch.setenv("KGQA_DATA_URL", source.as_uri())
    out = locate.download_questions(tmp_path / "data" / "kgclue")
    assert sorted(p.name for p in out.iterdir()) == sorted(locate.QUESTION_FILES)
    assert locate.knowledge_file(out) is None


def test_failed_download_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(locate.DataNotFoundError, match="KGQA_DATA_DIR"):
        locate.download_questions(tmp_path / "out", base_url=(tmp_path / "missing").as_uri())
    assert not list((tmp_path / "out").iterdir())
