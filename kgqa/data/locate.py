"""Finding the KgCLUE files: ``$KGQA_DATA_DIR``, ``./data/kgclue``, ``../shared/kgclue``, else download.

The question files can be downloaded from KgCLUE's GitHub repository; its 20M-triple knowledge base cannot (it is
distributed through cloud drives), so a downloaded data directory has no knowledge file and callers fall back to the
answer triples of the question files.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path

QUESTION_FILES = ("train.json", "dev.json", "test.json")
KNOWLEDGE_FILE = "knowledge_sim_dev.tsv.gz"
DEFAULT_INDEX_DIR = Path("indexes/kgclue-sim")  # where `kgqa prepare` builds the index, and what commands read
DEFAULT_DOWNLOAD_URL = "https://raw.githubusercontent.com/CLUEbenchmark/KgCLUE/main/datasets"
_REPO_ROOT = Path(__file__).resolve().parents[2]


class DataNotFoundError(FileNotFoundError):
    pass


def candidate_dirs() -> list[Path]:
    """Where the data is looked for, in order. Relative places are tried from the working directory and the repo."""
    dirs: list[Path] = []
    if env := os.environ.get("KGQA_DATA_DIR"):
        dirs.append(Path(env))
    for base in (Path.cwd(), _REPO_ROOT):
        dirs += [base / "data" / "kgclue", base.parent / "shared" / "kgclue"]
    return list(dict.fromkeys(dirs))


def has_questions(directory: Path) -> bool:
    return all((directory / name).is_file() for name in QUESTION_FILES[:2])


def find_data_dir(download: bool = True) -> Path:
    """The first candidate directory holding KgCLUE's train and dev files; download them if none does."""
    if env := os.environ.get("KGQA_DATA_DIR"):
        # An explicit setting that is wrong is an error, not something to silently look past.
        if not has_questions(Path(env)):
            raise DataNotFoundError(f"KGQA_DATA_DIR={env} has no train.json and dev.json")
        return Path(env)
    for directory in candidate_dirs():
        if has_questions(directory):
            return directory
    if not download:
        raise DataNotFoundError("KgCLUE data not found in: " + ", ".join(map(str, candidate_dirs())))
    return download_questions(Path.cwd() / "data" / "kgclue")


def download_questions(out_dir: Path, base_url: str | None = None) -> Path:
    """Download KgCLUE's question files into ``out_dir`` (``$KGQA_DATA_URL`` overrides the source)."""
    base_url = base_url or os.environ.get("KGQA_DATA_URL", DEFAULT_DOWNLOAD_URL)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in QUESTION_FILES:
        target = out_dir / name
        if target.is_file():
            continue
        partial = target.with_suffix(".part")
        try:
            with urllib.request.urlopen(f"{base_url}/{name}", timeout=60) as response, open(partial, "wb") as f:
                shutil.copyfileobj(response, f)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise DataNotFoundError(
                f"KgCLUE data not found locally and downloading {base_url}/{name} failed ({exc}); "
                "put train.json, dev.json and test.json in ./data/kgclue or set KGQA_DATA_DIR"
            ) from exc
        partial.rename(target)
    return out_dir


def knowledge_file(data_dir: Path) -> Path | None:
    """The KgCLUE-sim knowledge file in ``data_dir``, if it is there."""
    path = data_dir / KNOWLEDGE_FILE
    return path if path.is_file() else None
