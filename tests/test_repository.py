"""Committed files name no directory of the machine that made them (model metadata, READMEs, benchmark tables)."""

from __future__ import annotations

import subprocess
import sys
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


def _makefile_list(variable: str) -> list[str]:
    for line in (REPO / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith(f"{variable} :="):
            return line.split(":=", 1)[1].split()
    raise AssertionError(f"no {variable} in the Makefile")


def test_the_index_build_needs_only_the_packages_make_installs_first() -> None:
    """``make run`` builds the index while torch and transformers install: ``kgqa prepare`` must not import them."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        from pinned import pinned
    finally:
        sys.path.remove(str(REPO / "scripts"))
    first = _makefile_list("INDEX_PACKAGES")
    assert all("==" in requirement for requirement in pinned(first))
    probe = (
        "import sys, kgqa.cli; kgqa.cli.build_parser(); "
        "import kgqa.trie.commands, kgqa.trie.build, kgqa.trie.index, kgqa.data.locate, kgqa.data.questions; "
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    imported = set(
        subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.split()
    )
    installed_later = {"torch", "transformers", "tokenizers", "safetensors", "lightgbm", "fastapi", "uvicorn", "scipy"}
    assert imported & installed_later == set()
    assert {"numpy", "marisa_trie", "tqdm"} <= imported
