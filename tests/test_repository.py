"""Committed files name no directory of the machine that made them (model metadata, READMEs, benchmark tables)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _tracked_text_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    files = []
    for name in listed.decode().split("\0"):
        path = REPO / name
        if name and path.is_file() and path.suffix not in {".safetensors", ".png", ".npy", ".marisa"}:
            files.append(path)
    return files


def test_no_committed_file_holds_this_checkouts_absolute_path() -> None:
    needles = {str(REPO), str(Path.home()) + "/"} - {"/"}
    offenders = []
    for path in _tracked_text_files():
        text = path.read_bytes().decode("utf-8", errors="ignore")
        offenders += [f"{path.relative_to(REPO)}: {n}" for n in needles if n in text]
    assert offenders == []
