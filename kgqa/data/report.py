"""What every command prints and writes: a markdown table, and a JSON file (UTF-8, indented, parents made); and the
files they read and record: versioned JSON, a file's SHA-256."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], numeric_from: int = 1) -> str:
    """A GitHub markdown table; columns from ``numeric_from`` on are right-aligned."""
    align = ["---" if i < numeric_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path | None, data: Any, announce: bool = True) -> None:
    """``data`` as indented UTF-8 JSON at ``path`` (nothing when None); says where unless ``announce`` is off."""
    if path is None:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    if announce:
        print(f"written {path}")


def sha256_file(path: str | Path) -> str:
    """The hex SHA-256 of a file's bytes (index manifests, model records, the unanswerable mix's manifest)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def read_versioned_json(path: Path, version: int, error: type[Exception], redo: str) -> dict[str, Any]:
    """A JSON object whose ``format`` must be ``version``; ``error`` (its message ending with ``redo``, what to run)
    when the file cannot be read or is of another format."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise error(f"cannot read {path.name} in {path.parent.name}: {exc}; {redo}") from exc
    if not isinstance(data, dict) or data.get("format") != version:
        found = data.get("format") if isinstance(data, dict) else None
        raise error(f"{path.name} is format {found}, this kgqa reads format {version}; {redo}")
    return data
